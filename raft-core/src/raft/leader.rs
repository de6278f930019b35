//! The leader: proposals, replication, commitment, ReadIndex and leadership transfer.

use bytes::Bytes;
use prost::Message as _;
use tracing::{debug, info, warn};

use super::{INVALID_ID, Raft, StateRole, read_ctx};
use crate::conf_change::ConfChangeI;
use crate::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use crate::error::{Error, Result, StorageError};
use crate::quorum::VoteResult;
use crate::read_only::{ReadOnlyOption, ReadState};
use crate::storage::Storage;
use crate::tracker::ProgressState;
use crate::util::{entry_size, payload_size};

impl<S: Storage> Raft<S> {
    pub(super) fn step_leader(&mut self, m: Message, msg_type: MessageType) -> Result<()> {
        match msg_type {
            MessageType::MsgBeat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::MsgCheckQuorum => {
                self.check_quorum_active();
                return Ok(());
            }
            MessageType::MsgPropose => return self.on_propose(m.entries),
            MessageType::MsgReadIndex => return self.on_read_index(m),
            _ => {}
        }
        // Everything else comes from (or is about) a peer we must be tracking.
        if !self.trk.progress.contains_key(&m.from) {
            debug!(
                id = self.id,
                from = m.from,
                ?msg_type,
                "no progress for the sender; ignored"
            );
            return Ok(());
        }
        match msg_type {
            MessageType::MsgAppendResponse => self.on_append_response(&m),
            MessageType::MsgHeartbeatResponse => self.on_heartbeat_response(&m),
            MessageType::MsgSnapStatus => {
                self.on_snap_status(m.from, m.reject);
                Ok(())
            }
            MessageType::MsgUnreachable => {
                if let Some(pr) = self.trk.progress.get_mut(&m.from) {
                    // Stop streaming blindly: probe until the peer answers again.
                    if pr.state == ProgressState::Replicate {
                        pr.become_probe();
                    }
                }
                Ok(())
            }
            MessageType::MsgTransferLeader => self.on_transfer_leader(m.from),
            _ => Ok(()),
        }
    }

    /// CheckQuorum (thesis §6.2): step down without recent contact from a quorum.
    fn check_quorum_active(&mut self) {
        if !self.trk.quorum_active() {
            warn!(
                id = self.id,
                term = self.term,
                "lost contact with a quorum; stepping down"
            );
            self.become_follower(self.term, INVALID_ID);
            return;
        }
        let id = self.id;
        for (&pid, pr) in self.trk.progress.iter_mut() {
            pr.recent_active = pid == id;
        }
    }

    pub(super) fn on_propose(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Err(Error::InvalidMessage("proposal without entries".into()));
        }
        if !self.trk.progress.contains_key(&self.id) {
            debug!(id = self.id, "not a member any more: dropping proposal");
            return Err(Error::ProposalDropped);
        }
        if self.lead_transferee != INVALID_ID {
            debug!(
                id = self.id,
                transferee = self.lead_transferee,
                "transferring: dropping proposal"
            );
            return Err(Error::ProposalDropped);
        }
        let last_index = self.raft_log.last_index();
        let mut pending_conf_index = self.pending_conf_index;
        for (i, e) in entries.iter().enumerate() {
            let cc = match EntryType::try_from(e.entry_type) {
                Ok(EntryType::EntryNormal) => continue,
                Ok(EntryType::EntryConfChange) => ConfChange::decode(e.data.clone())
                    .map(|cc| cc.as_v2())
                    .map_err(|err| Error::InvalidMessage(format!("bad ConfChange: {err}")))?,
                Ok(EntryType::EntryConfChangeV2) => ConfChangeV2::decode(e.data.clone())
                    .map_err(|err| Error::InvalidMessage(format!("bad ConfChangeV2: {err}")))?,
                Err(_) => {
                    return Err(Error::InvalidMessage(format!(
                        "unknown entry type {}",
                        e.entry_type
                    )));
                }
            };
            let already_joint = self.trk.conf.voters.is_joint();
            let wants_leave = cc.leave_joint();
            let refusal = if pending_conf_index > self.raft_log.applied {
                Some("a conf change is already pending")
            } else if already_joint && !wants_leave {
                Some("must leave the joint configuration first")
            } else if !already_joint && wants_leave {
                Some("not in a joint configuration")
            } else {
                None
            };
            if let Some(reason) = refusal {
                info!(id = self.id, reason, "refusing conf change proposal");
                return Err(Error::ProposalDropped);
            }
            pending_conf_index = last_index + 1 + i as u64;
        }
        if !self.append_entries(entries) {
            debug!(
                id = self.id,
                uncommitted_bytes = self.uncommitted_bytes,
                "uncommitted log over its limit: dropping proposal"
            );
            return Err(Error::ProposalDropped);
        }
        self.pending_conf_index = pending_conf_index;
        self.bcast_pending = true;
        Ok(())
    }

    /// Appends entries in the current term. Returns false (appending nothing) when they
    /// would take the uncommitted log past its limit.
    pub(super) fn append_entries(&mut self, mut entries: Vec<Entry>) -> bool {
        let last_index = self.raft_log.last_index();
        for (i, e) in entries.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last_index + 1 + i as u64;
        }
        let bytes: u64 = entries.iter().map(payload_size).sum();
        // An empty budget accepts one oversized batch so progress is always possible.
        if self.uncommitted_bytes > 0
            && bytes > 0
            && self.uncommitted_bytes + bytes > self.max_uncommitted_bytes
        {
            return false;
        }
        self.uncommitted_bytes += bytes;
        self.raft_log.append(entries);
        true
    }

    /// Releases budget for entries that committed.
    pub(crate) fn reduce_uncommitted_bytes(&mut self, committed: &[Entry]) {
        if self.state != StateRole::Leader {
            return;
        }
        let bytes: u64 = committed.iter().map(payload_size).sum();
        self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(bytes);
    }

    /// Advances the commit index to what a quorum holds, if that entry is of this term.
    pub(super) fn maybe_commit(&mut self) -> Result<bool> {
        let index = self.trk.committed();
        self.raft_log.maybe_commit(index, self.term)
    }

    /// Reacts to a higher commit index: followers must hear of it, and reads waiting for
    /// the first commit of this term can proceed.
    pub(super) fn on_commit_advanced(&mut self) {
        let committed = self.raft_log.committed;
        let waiting = self.urgent_commit_indexes.len();
        self.urgent_commit_indexes
            .retain(|&index| index > committed);
        let urgent = self.urgent_commit_indexes.len() < waiting;
        // Followers must apply a configuration change soon (they may be leaving, or be
        // needed for the next quorum), so its commit goes out at once, as an urgent one.
        if !self.skip_bcast_commit || urgent || self.pending_conf_index > self.raft_log.applied {
            self.bcast_pending = true;
        }
        self.release_pending_read_index_messages();
    }

    /// Sets whether a new commit index waits for the next append or heartbeat to reach
    /// the followers (see [`Config::skip_bcast_commit`](crate::Config::skip_bcast_commit)).
    pub fn set_skip_bcast_commit(&mut self, skip: bool) {
        self.skip_bcast_commit = skip;
    }

    /// Makes the commit of the entry at `index` reach the followers at once, even when
    /// commits are not broadcast: for entries the followers must apply soon (a region
    /// split). Ignored unless this node leads and the entry is not committed yet; a term
    /// change forgets it.
    pub fn broadcast_commit_of(&mut self, index: u64) {
        if self.state == StateRole::Leader && index > self.raft_log.committed {
            self.urgent_commit_indexes.push(index);
        }
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log
            .term_or_zero(self.raft_log.committed)
            .is_ok_and(|t| t == self.term)
    }

    /// Sends the coalesced broadcast, if one is pending.
    pub(super) fn flush_broadcast(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.bcast_pending) || self.state != StateRole::Leader {
            return Ok(());
        }
        self.bcast_append()
    }

    /// Sends appends (or empty appends carrying the commit index) to every peer.
    pub fn bcast_append(&mut self) -> Result<()> {
        for &id in self.trk.member_id_list().as_slice() {
            if id != self.id {
                self.maybe_send_append(id, true)?;
            }
        }
        Ok(())
    }

    /// Sends an append to `to`, even an empty one.
    pub(super) fn send_append(&mut self, to: u64) -> Result<()> {
        self.maybe_send_append(to, true).map(|_| ())
    }

    /// Sends `to` the entries it lacks (or a snapshot when they are compacted). Returns
    /// whether a message was sent; nothing is sent while the peer is paused, or when
    /// there is nothing new and `send_if_empty` is false.
    pub(super) fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> Result<bool> {
        let Some(pr) = self.trk.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused() {
            return Ok(false);
        }
        let next = pr.next_idx;
        let prev_index = next - 1;
        if !send_if_empty && next > self.raft_log.last_index() {
            // Nothing new to send (and `prev_index` is the last entry, never compacted).
            return Ok(false);
        }
        let prev_term = self.raft_log.term(prev_index);
        let entries = self.raft_log.entries(next, Some(self.max_msg_bytes));
        let (prev_term, entries) = match (prev_term, entries) {
            (Ok(t), Ok(e)) => (t, e),
            (Err(StorageError::Compacted), _) | (_, Err(StorageError::Compacted)) => {
                return self.send_snapshot(to);
            }
            (Err(StorageError::Unavailable), _) | (_, Err(StorageError::Unavailable)) => {
                debug!(id = self.id, to, next, "peer's next index is past our log");
                return Ok(false);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        if entries.is_empty() && !send_if_empty {
            return Ok(false);
        }
        if let Some(last) = entries.last() {
            let last = last.index;
            let pr = self
                .trk
                .progress
                .get_mut(&to)
                .expect("progress checked above");
            match pr.state {
                ProgressState::Replicate => {
                    let bytes = entries.iter().map(entry_size).sum();
                    pr.optimistic_update(last);
                    pr.inflights.add(last, bytes);
                }
                ProgressState::Probe => pr.probe_sent = true,
                ProgressState::Snapshot => unreachable!("a peer receiving a snapshot is paused"),
            }
        }
        let commit = self.raft_log.committed;
        self.send(Message {
            msg_type: MessageType::MsgAppend as i32,
            to,
            index: prev_index,
            log_term: prev_term,
            entries,
            commit,
            ..Default::default()
        });
        Ok(true)
    }

    /// Sends an append without entries at the peer's next index (used to unblock a full
    /// inflight window); falls back to a snapshot when that position is compacted.
    fn send_empty_append(&mut self, to: u64) -> Result<()> {
        let Some(pr) = self.trk.progress.get(&to) else {
            return Ok(());
        };
        let prev_index = pr.next_idx - 1;
        let prev_term = match self.raft_log.term(prev_index) {
            Ok(t) => t,
            Err(StorageError::Compacted) => return self.send_snapshot(to).map(|_| ()),
            Err(StorageError::Unavailable) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let commit = self.raft_log.committed;
        self.send(Message {
            msg_type: MessageType::MsgAppend as i32,
            to,
            index: prev_index,
            log_term: prev_term,
            commit,
            ..Default::default()
        });
        Ok(())
    }

    fn send_snapshot(&mut self, to: u64) -> Result<bool> {
        let Some(pr) = self.trk.progress.get(&to) else {
            return Ok(false);
        };
        if !pr.recent_active {
            debug!(
                id = self.id,
                to, "peer not recently active: not sending a snapshot"
            );
            return Ok(false);
        }
        let snapshot = match self.raft_log.snapshot(0) {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => {
                debug!(id = self.id, to, "snapshot not ready yet; will retry");
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let index = snapshot.metadata.as_ref().map_or(0, |m| m.index);
        if index == 0 {
            warn!(
                id = self.id,
                to, "storage returned an empty snapshot; not sending"
            );
            return Ok(false);
        }
        let pr = self
            .trk
            .progress
            .get_mut(&to)
            .expect("progress checked above");
        debug!(
            id = self.id,
            to,
            index,
            matched = pr.matched,
            "sending snapshot"
        );
        pr.become_snapshot(index);
        self.send(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            to,
            snapshot: Some(Box::new(snapshot)),
            ..Default::default()
        });
        Ok(true)
    }

    fn send_heartbeat(&mut self, to: u64, ctx: Bytes) {
        // A follower may not yet hold everything committed: never make it commit past
        // what it is known to match.
        let matched = self.trk.progress.get(&to).map_or(0, |p| p.matched);
        let commit = matched.min(self.raft_log.committed);
        self.send(Message {
            msg_type: MessageType::MsgHeartbeat as i32,
            to,
            commit,
            context: ctx,
            ..Default::default()
        });
    }

    /// Sends heartbeats to every peer, carrying the newest pending read's context.
    pub fn bcast_heartbeat(&mut self) {
        let ctx = self
            .read_only
            .last_pending_request_ctx()
            .unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, ctx: Bytes) {
        for &id in self.trk.member_id_list().as_slice() {
            if id != self.id {
                self.send_heartbeat(id, ctx.clone());
            }
        }
    }

    fn on_append_response(&mut self, m: &Message) -> Result<()> {
        let from = m.from;
        if m.reject {
            // Thesis §4.2.1 fast backtracking: skip every entry of a term the follower
            // does not have.
            let next_probe = if m.log_term > 0 {
                self.raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)?
                    .0
            } else {
                m.reject_hint
            };
            let pr = self
                .trk
                .progress
                .get_mut(&from)
                .expect("checked by step_leader");
            pr.recent_active = true;
            if pr.maybe_decr_to(m.index, next_probe) {
                debug!(
                    id = self.id,
                    from,
                    rejected = m.index,
                    next = pr.next_idx,
                    "append rejected"
                );
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from)?;
            }
            return Ok(());
        }
        let last_index = self.raft_log.last_index();
        let first_index = self.raft_log.first_index();
        let pr = self
            .trk
            .progress
            .get_mut(&from)
            .expect("checked by step_leader");
        pr.recent_active = true;
        if m.index > last_index {
            debug!(
                id = self.id,
                from,
                index = m.index,
                last_index,
                "ack past our last index; ignored"
            );
            return Ok(());
        }
        let old_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return Ok(());
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= first_index => {
                // The snapshot (or entries) caught it up: resume normal replication.
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Snapshot => {}
            ProgressState::Replicate => pr.inflights.free_to(m.index),
        }
        let matched = pr.matched;
        // An acknowledgement at or below the commit index cannot raise it, so the quorum
        // is not counted again for the later acks of an entry. Raising one peer's match
        // to `matched <= committed` leaves the quorum index where it was or moves it to
        // at most `matched`; and where it was, if above the commit index, is an entry of
        // an earlier term (one of this term would have committed when the quorum reached
        // it), which this leader may not commit by counting.
        if matched > self.raft_log.committed && self.maybe_commit()? {
            self.on_commit_advanced();
        } else if old_paused {
            // The peer was paused and may have missed a commit index update.
            self.send_append(from)?;
        }
        // Fill the window again.
        while self.maybe_send_append(from, false)? {}
        if from == self.lead_transferee && matched == self.raft_log.last_index() {
            info!(
                id = self.id,
                to = from,
                "transferee caught up; sending TimeoutNow"
            );
            self.send_timeout_now(from);
        }
        Ok(())
    }

    fn on_heartbeat_response(&mut self, m: &Message) -> Result<()> {
        let last_index = self.raft_log.last_index();
        let pr = self
            .trk
            .progress
            .get_mut(&m.from)
            .expect("checked by step_leader");
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.inflights.full() && pr.matched < last_index {
            // Every append in the window may have been lost (the peer restarted or the
            // network dropped them): nothing would ever free it. An empty append gets
            // acknowledged or rejected, and either answer unblocks replication.
            self.send_empty_append(m.from)?;
        } else if pr.matched < last_index {
            self.send_append(m.from)?;
        }
        if self.read_only.option != ReadOnlyOption::Safe || m.context.is_empty() {
            return Ok(());
        }
        let won = match self.read_only.recv_ack(m.from, &m.context) {
            Some(acks) => {
                self.trk
                    .conf
                    .voters
                    .vote_result(|id| acks.contains(&id).then_some(true))
                    == VoteResult::Won
            }
            None => false,
        };
        if won {
            for rs in self.read_only.advance(&m.context) {
                self.respond_to_read_index(rs.req, rs.index);
            }
        }
        Ok(())
    }

    fn on_snap_status(&mut self, from: u64, failed: bool) {
        let Some(pr) = self.trk.progress.get_mut(&from) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if failed {
            pr.snapshot_failure();
        }
        debug!(id = self.id, from, failed, "snapshot status");
        pr.become_probe();
        // Wait for the follower's answer (or a heartbeat response) before probing, so the
        // probe starts from what the snapshot gave it.
        pr.probe_sent = true;
    }

    fn on_transfer_leader(&mut self, transferee: u64) -> Result<()> {
        let Some(pr) = self.trk.progress.get(&transferee) else {
            return Ok(());
        };
        if pr.is_learner {
            debug!(
                id = self.id,
                transferee, "cannot transfer leadership to a learner"
            );
            return Ok(());
        }
        let matched = pr.matched;
        if self.lead_transferee != INVALID_ID {
            if self.lead_transferee == transferee {
                return Ok(());
            }
            self.abort_leader_transfer();
        }
        if transferee == self.id {
            return Ok(());
        }
        info!(
            id = self.id,
            term = self.term,
            transferee,
            "starting leadership transfer"
        );
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        if matched == self.raft_log.last_index() {
            self.send_timeout_now(transferee);
        } else {
            self.send_append(transferee)?;
        }
        Ok(())
    }

    fn send_timeout_now(&mut self, to: u64) {
        self.send(Message {
            msg_type: MessageType::MsgTimeoutNow as i32,
            to,
            ..Default::default()
        });
    }

    fn on_read_index(&mut self, m: Message) -> Result<()> {
        if self.trk.is_singleton() {
            let index = self.raft_log.committed;
            self.respond_to_read_index(m, index);
            return Ok(());
        }
        // Until an entry of this term commits, the leader's commit index may lag what an
        // earlier leader committed (thesis §6.4): hold the read.
        if !self.committed_entry_in_current_term() {
            self.pending_read_index_messages.push(m);
            return Ok(());
        }
        self.send_read_index_request(m);
        Ok(())
    }

    fn send_read_index_request(&mut self, m: Message) {
        let index = self.raft_log.committed;
        match self.read_only.option {
            ReadOnlyOption::Safe => {
                let ctx = read_ctx(&m);
                self.read_only.add_request(index, m, self.id);
                self.bcast_heartbeat_with_ctx(ctx);
            }
            ReadOnlyOption::LeaseBased => self.respond_to_read_index(m, index),
        }
    }

    fn release_pending_read_index_messages(&mut self) {
        if self.pending_read_index_messages.is_empty() || !self.committed_entry_in_current_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index_messages) {
            self.send_read_index_request(m);
        }
    }

    fn respond_to_read_index(&mut self, req: Message, index: u64) {
        if req.from == INVALID_ID || req.from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: req.context,
            });
        } else {
            self.send(Message {
                msg_type: MessageType::MsgReadIndexResp as i32,
                to: req.from,
                index,
                context: req.context,
                ..Default::default()
            });
        }
    }
}
