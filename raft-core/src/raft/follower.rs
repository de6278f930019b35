//! The follower: appending the leader's entries, heartbeats, snapshots, forwarding.

use tracing::{debug, info, warn};

use super::{INVALID_ID, Raft, StateRole};
use crate::confchange;
use crate::eraftpb::{Message, MessageType, Snapshot};
use crate::error::{Error, Result};
use crate::read_only::ReadState;
use crate::storage::Storage;
use crate::tracker::ProgressTracker;

impl<S: Storage> Raft<S> {
    pub(super) fn step_follower(&mut self, mut m: Message, msg_type: MessageType) -> Result<()> {
        match msg_type {
            MessageType::MsgPropose => {
                // A request is forwarded at most once: one that another node forwarded to
                // us (taking us for the leader) is dropped, so stale or corrupt views of
                // who leads can never make requests circulate between followers.
                if self.leader_id == INVALID_ID
                    || self.disable_proposal_forwarding
                    || !self.is_own_request(&m)
                {
                    debug!(
                        id = self.id,
                        leader = self.leader_id,
                        "cannot forward proposal"
                    );
                    return Err(Error::ProposalDropped);
                }
                m.to = self.leader_id;
                self.send(m);
            }
            MessageType::MsgAppend => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_append_entries(m)?;
            }
            MessageType::MsgHeartbeat => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::MsgSnapshot => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_snapshot(m)?;
            }
            MessageType::MsgTransferLeader => {
                // A local request carries no term; a forwarded one carries the sender's.
                if self.leader_id == INVALID_ID || m.term != 0 {
                    debug!(id = self.id, "no leader to forward the transfer request to");
                    return Ok(());
                }
                m.to = self.leader_id;
                self.send(m);
            }
            MessageType::MsgTimeoutNow => {
                // Leadership transfers skip the pre-vote: the leader asked for this.
                info!(
                    id = self.id,
                    term = self.term,
                    from = m.from,
                    "TimeoutNow: campaigning"
                );
                self.hup(true)?;
            }
            MessageType::MsgReadIndex => {
                if self.leader_id == INVALID_ID || !self.is_own_request(&m) {
                    debug!(id = self.id, "no leader: dropping read index request");
                    return Err(Error::ProposalDropped);
                }
                m.to = self.leader_id;
                self.send(m);
            }
            MessageType::MsgReadIndexResp => {
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx: m.context,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether a proposal or read request originates here (local input carries this
    /// node's id or none) rather than being forwarded by another node.
    fn is_own_request(&self, m: &Message) -> bool {
        m.from == INVALID_ID || m.from == self.id
    }

    pub(super) fn handle_append_entries(&mut self, m: Message) -> Result<()> {
        let committed = self.raft_log.committed;
        if m.index < committed {
            // Everything up to our commit index already matches: say so.
            self.send_append_response(m.from, committed, false, 0, 0);
            return Ok(());
        }
        if let Some(last_new) = self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, m.entries)?
        {
            self.send_append_response(m.from, last_new, false, 0, 0);
            return Ok(());
        }
        // The log does not match at m.index: give the leader a hint to skip a whole term.
        let hint = m.index.min(self.raft_log.last_index());
        let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term)?;
        debug!(
            id = self.id,
            index = m.index,
            log_term = m.log_term,
            hint_index,
            hint_term,
            "rejected append"
        );
        self.send_append_response(m.from, m.index, true, hint_index, hint_term);
        Ok(())
    }

    fn send_append_response(
        &mut self,
        to: u64,
        index: u64,
        reject: bool,
        hint: u64,
        hint_term: u64,
    ) {
        self.send(Message {
            msg_type: MessageType::MsgAppendResponse as i32,
            to,
            index,
            reject,
            reject_hint: hint,
            log_term: hint_term,
            ..Default::default()
        });
    }

    fn handle_heartbeat(&mut self, m: Message) {
        if m.commit <= self.raft_log.last_index() {
            self.raft_log.commit_to(m.commit);
        } else {
            warn!(
                id = self.id,
                commit = m.commit,
                "heartbeat commit past our last index; ignored"
            );
        }
        self.send(Message {
            msg_type: MessageType::MsgHeartbeatResponse as i32,
            to: m.from,
            context: m.context,
            ..Default::default()
        });
    }

    fn handle_snapshot(&mut self, m: Message) -> Result<()> {
        let Some(snapshot) = m.snapshot.map(|s| *s) else {
            return Err(Error::InvalidMessage(
                "MsgSnapshot without a snapshot".into(),
            ));
        };
        let Some((index, term)) = snapshot.metadata.as_ref().map(|md| (md.index, md.term)) else {
            return Err(Error::InvalidMessage("snapshot without metadata".into()));
        };
        if self.restore(snapshot)? {
            info!(id = self.id, index, term, "restored snapshot");
            let last = self.raft_log.last_index();
            self.send_append_response(m.from, last, false, 0, 0);
        } else {
            debug!(id = self.id, index, term, "ignored snapshot");
            let committed = self.raft_log.committed;
            self.send_append_response(m.from, committed, false, 0, 0);
        }
        Ok(())
    }

    /// Replaces the log and membership with a snapshot's. Returns false when the snapshot
    /// is stale, does not include this node, or the log already holds its last entry (in
    /// which case only the commit index moves).
    ///
    /// # Errors
    /// [`Error::InvalidMessage`] for a snapshot at index `u64::MAX`, an impossible
    /// membership in the snapshot, or a storage failure.
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<bool> {
        let Some(meta) = snapshot.metadata.as_ref() else {
            return Ok(false);
        };
        let (index, term) = (meta.index, meta.term);
        if index == u64::MAX {
            // The log would end at the last possible index (see `RaftLog`'s invariants).
            return Err(Error::InvalidMessage(format!(
                "snapshot index {index} leaves no room for the log"
            )));
        }
        if index <= self.raft_log.committed {
            return Ok(false);
        }
        if self.state != StateRole::Follower {
            warn!(
                id = self.id,
                "refusing to restore a snapshot while not a follower"
            );
            return Ok(false);
        }
        let cs = meta.conf_state.clone().unwrap_or_default();
        let member = [&cs.voters, &cs.learners, &cs.voters_outgoing]
            .iter()
            .any(|ids| ids.contains(&self.id));
        if !member {
            warn!(
                id = self.id,
                index, "snapshot does not include this node; ignored"
            );
            return Ok(false);
        }
        if self.raft_log.match_term(index, term)? {
            // We already hold the snapshot's last entry: fast-forward the commit index.
            self.raft_log.commit_to(index);
            return Ok(false);
        }
        // Validate the membership before touching anything.
        let mut trk = ProgressTracker::new(self.trk.max_inflight_msgs, self.trk.max_inflight_bytes);
        confchange::restore(&mut trk, index, &cs)?;
        self.raft_log.restore(snapshot);
        self.trk = trk;
        Ok(true)
    }
}
