//! Turning client commands into log entries.

use engines::Engine;
use prost::Message as _;
use raft_core::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tracing::debug;

use super::{BATCH_CONTEXT, Peer, Proposal, ProposedCommand, error_response};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::msg::Callback;
use crate::pb::raft_cmdpb::{
    AdminCmdType, AdminResponse, RaftCmdBatch, RaftCmdRequest, RaftCmdResponse,
};
use crate::region_check::{
    check_conf_change, check_epoch, check_key_sizes, check_keys, is_read_only,
};

impl<ER: Engine, EK: Engine> Peer<ER, EK> {
    /// Proposes a client command; the callback answers it once applied, or at once with
    /// a typed error (`NotLeader`, `EpochNotMatch`, `KeyNotInRegion`, ...).
    pub fn propose(&mut self, cfg: &Config, req: RaftCmdRequest, callback: Callback) {
        if let Err(e) = self.pre_propose(&req) {
            callback(error_response(&e));
            return;
        }
        if is_read_only(&req) {
            self.read_batch.push((req, callback));
            return;
        }
        if req.admin_request.is_none() {
            let size = req.encoded_len() as u64;
            if size > cfg.raft_entry_max_bytes {
                let e = Error::RaftEntryTooLarge {
                    region_id: self.region_id(),
                    entry_size: size,
                };
                callback(error_response(&e));
                return;
            }
            self.write_batch.push(PendingWrite {
                req,
                callback,
                entry_bytes: size + 8,
            });
            return;
        }
        let result = match req.admin_request.as_ref().map(|a| a.cmd_type()) {
            Some(AdminCmdType::TransferLeader) => {
                let target = req
                    .admin_request
                    .as_ref()
                    .and_then(|a| a.transfer_leader.as_ref());
                let target = target.and_then(|t| t.peer).map_or(0, |p| p.id);
                if self.find_peer(target).is_none() {
                    Err(Error::Other(format!(
                        "transfer target {target} is not a member"
                    )))
                } else {
                    self.raft_group
                        .transfer_leader(target)
                        .map_err(Error::from)
                        .map(|()| {
                            let admin = AdminResponse {
                                cmd_type: AdminCmdType::TransferLeader as i32,
                                ..Default::default()
                            };
                            callback_now(callback_ok(admin))
                        })
                }
            }
            Some(AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2) => {
                self.propose_conf_change(&req)
            }
            Some(AdminCmdType::Split | AdminCmdType::BatchSplit) => {
                let splits = split_requests(req.admin_request.as_ref().expect("admin checked"));
                let proposed = validate_splits(self.region(), &splits)
                    .and_then(|()| self.propose_normal(cfg, &req));
                if let Ok(ProposeOutcome::Proposed { index, .. }) = proposed {
                    // The followers create the new regions' peers when they apply it: the
                    // new regions cannot elect leaders before that.
                    self.raft_group.broadcast_commit_of(index);
                }
                proposed
            }
            _ => self.propose_normal(cfg, &req),
        };
        match result {
            Ok(ProposeOutcome::Proposed { index, term }) => {
                crate::store_metrics::proposal(1);
                debug_assert!(self.proposals.back().is_none_or(|p| p.index < index));
                self.proposals.push_back(Proposal {
                    index,
                    term,
                    commands: vec![ProposedCommand {
                        callback,
                        session: session_of(&req),
                    }],
                });
            }
            Ok(ProposeOutcome::Answered(resp)) => callback(*resp),
            Err(e) => callback(error_response(&e)),
        }
    }

    fn pre_propose(&self, req: &RaftCmdRequest) -> Result<()> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        check_epoch(req, self.region())?;
        check_keys(req, self.region())?;
        check_key_sizes(req)?;
        if req.admin_request.is_some() && !req.requests.is_empty() {
            return Err(Error::Other(
                "a command is either admin or data, not both".into(),
            ));
        }
        if req.admin_request.is_none() && req.requests.is_empty() {
            return Err(Error::Other("empty command".into()));
        }
        Ok(())
    }

    fn propose_normal(&mut self, cfg: &Config, req: &RaftCmdRequest) -> Result<ProposeOutcome> {
        let data = req.encode_to_vec();
        if data.len() as u64 > cfg.raft_entry_max_bytes {
            return Err(Error::RaftEntryTooLarge {
                region_id: self.region_id(),
                entry_size: data.len() as u64,
            });
        }
        self.raft_group
            .propose(Default::default(), data.into())
            .map_err(|e| self.map_propose_error(e))?;
        Ok(self.proposed_at_last_index())
    }

    /// Proposes the writes that arrived in this loop iteration, as few entries as the
    /// entry size limit allows: one command alone as is, several as a `RaftCmdBatch`.
    ///
    /// Writes are queued while this peer leads, but a message later in the same loop
    /// iteration may have deposed it. A follower's raft forwards a proposal to the leader
    /// and reports success without appending it, so the proposal would be registered at
    /// an index holding another entry and answered with that entry's result (an empty
    /// answer for a leader's no-op). A deposed peer refuses its queued writes instead, with
    /// `NotLeader`: the client retries them on the new leader, exactly once.
    pub fn flush_writes(&mut self, cfg: &Config) {
        if self.write_batch.is_empty() {
            return;
        }
        if !self.is_leader() {
            let err = self.not_leader();
            for w in std::mem::take(&mut self.write_batch) {
                (w.callback)(error_response(&err));
            }
            return;
        }
        // Drained rather than taken, so the next round's writes reuse its capacity. The
        // writes of each entry are counted first so its vectors are sized once (a round
        // can hold thousands of writes).
        let mut writes = std::mem::take(&mut self.write_batch);
        let entry_lengths = entry_lengths(&writes, cfg.raft_entry_max_bytes);
        let mut pending = writes.drain(..);
        for n in entry_lengths {
            let mut requests = Vec::with_capacity(n);
            let mut commands = Vec::with_capacity(n);
            for w in pending.by_ref().take(n) {
                commands.push(ProposedCommand {
                    callback: w.callback,
                    session: session_of(&w.req),
                });
                requests.push(w.req);
            }
            let (context, data) = if n == 1 {
                (bytes::Bytes::new(), requests.remove(0).encode_to_vec())
            } else {
                let batch = RaftCmdBatch { commands: requests };
                (
                    bytes::Bytes::from_static(BATCH_CONTEXT),
                    batch.encode_to_vec(),
                )
            };
            match self.raft_group.propose(context, data.into()) {
                Ok(()) => {
                    crate::store_metrics::proposal(n);
                    let (index, term) = self.last_entry();
                    self.proposals.push_back(Proposal {
                        index,
                        term,
                        commands,
                    });
                }
                Err(e) => {
                    let err = self.map_propose_error(e);
                    for c in commands {
                        (c.callback)(error_response(&err));
                    }
                }
            }
        }
        drop(pending);
        self.write_batch = writes;
    }

    fn propose_conf_change(&mut self, req: &RaftCmdRequest) -> Result<ProposeOutcome> {
        // Checked again when applied, against the region as of that entry.
        check_conf_change(req, self.region())?;
        let admin = req.admin_request.clone().unwrap_or_default();
        let is_v1 = admin.cmd_type() == AdminCmdType::ChangePeer;
        let changes: Vec<_> = if is_v1 {
            admin.change_peer.into_iter().collect()
        } else {
            admin
                .change_peer_v2
                .map(|v2| v2.changes)
                .unwrap_or_default()
        };
        let mut cc = ConfChangeV2 {
            context: req.encode_to_vec().into(),
            ..Default::default()
        };
        for change in &changes {
            let peer = change.peer.unwrap_or_default();
            if peer.id == 0 || peer.store_id == 0 {
                return Err(Error::Other("conf change names no peer".into()));
            }
            let change_type = ConfChangeType::try_from(change.change_type)
                .map_err(|_| Error::Other(format!("unknown change type {}", change.change_type)))?;
            cc.changes
                .push(ConfChangeSingle::with(change_type, peer.id));
        }
        if cc.changes.is_empty() && is_v1 {
            return Err(Error::Other("ChangePeer without a change".into()));
        }
        self.check_quorum_keeps_the_log(&cc)?;
        debug!(
            region_id = self.region_id(),
            ?changes,
            "proposing conf change"
        );
        self.raft_group
            .propose_conf_change(Default::default(), &cc)
            .map_err(|e| self.map_propose_error(e))?;
        Ok(self.proposed_at_last_index())
    }

    /// Refuses a membership change after which the voters holding the leader's log could
    /// not form a quorum (TiKV's "unsafe conf change" check): the index a quorum of the
    /// new voters has acknowledged, new peers counting as having nothing, must not fall
    /// below what the leader's log still holds. Otherwise adding a voter while another is
    /// down or far behind would leave a group that cannot commit, possibly for good, until
    /// a snapshot reaches enough of them. Changes that only leave a joint state pass.
    fn check_quorum_keeps_the_log(&self, cc: &ConfChangeV2) -> Result<()> {
        if cc.changes.is_empty() {
            return Ok(());
        }
        let raft = self.raft_group.raft();
        let trk = raft.tracker();
        let mut voters = trk.conf.voters.incoming.clone();
        for change in &cc.changes {
            match change.change_type() {
                ConfChangeType::AddNode => voters.insert(change.node_id),
                ConfChangeType::AddLearnerNode | ConfChangeType::RemoveNode => {
                    voters.remove(change.node_id)
                }
            };
        }
        let acked = voters.committed_index(&|id: u64| trk.progress.get(&id).map(|p| p.matched));
        let truncated = raft.raft_log().first_index().saturating_sub(1);
        if acked < truncated {
            return Err(Error::Other(format!(
                "region {}: unsafe conf change: a quorum of the new voters {:?} has the \
                 log only to {acked}, below the leader's first entry {}",
                self.region_id(),
                voters.ids(),
                truncated + 1
            )));
        }
        Ok(())
    }

    /// The index and term of the entry just proposed: the last of the log.
    fn last_entry(&self) -> (u64, u64) {
        let raft = self.raft_group.raft();
        (raft.raft_log().last_index(), raft.term())
    }

    fn proposed_at_last_index(&self) -> ProposeOutcome {
        let (index, term) = self.last_entry();
        ProposeOutcome::Proposed { index, term }
    }

    fn map_propose_error(&self, e: raft_core::Error) -> Error {
        match e {
            raft_core::Error::ProposalDropped if self.is_leader() => {
                Error::ServerIsBusy(format!("region {}: proposal dropped", self.region_id()))
            }
            raft_core::Error::ProposalDropped => self.not_leader(),
            other => Error::Raft(other),
        }
    }
}

/// A write waiting for the end of the loop iteration to be proposed.
pub(super) struct PendingWrite {
    req: RaftCmdRequest,
    pub(super) callback: Callback,
    /// What the write adds to its entry's size (its encoding plus framing), measured once
    /// when it was checked against the entry size limit.
    entry_bytes: u64,
}

/// How many of `writes`, in order, go into each entry: as many as fit in
/// `entry_max_bytes`, and at least one (a write alone was already checked against it).
fn entry_lengths(writes: &[PendingWrite], entry_max_bytes: u64) -> Vec<usize> {
    let mut lengths = Vec::new();
    let (mut n, mut size) = (0usize, 0u64);
    for w in writes {
        if n > 0 && size + w.entry_bytes > entry_max_bytes {
            lengths.push(n);
            (n, size) = (0, 0);
        }
        n += 1;
        size += w.entry_bytes;
    }
    if n > 0 {
        lengths.push(n);
    }
    lengths
}

/// The exactly-once session `(client_id, sequence)` a command belongs to; `(0, 0)` for
/// none.
fn session_of(req: &RaftCmdRequest) -> (u64, u64) {
    req.header
        .as_ref()
        .filter(|h| h.client_id != 0 && h.sequence != 0)
        .map_or((0, 0), |h| (h.client_id, h.sequence))
}

/// What proposing did.
enum ProposeOutcome {
    /// An entry was appended at `index` in `term`; the callback waits for it to apply.
    Proposed { index: u64, term: u64 },
    /// The command was answered without a log entry.
    Answered(Box<RaftCmdResponse>),
}

fn callback_ok(admin: AdminResponse) -> RaftCmdResponse {
    RaftCmdResponse {
        admin_response: Some(Box::new(admin)),
        ..Default::default()
    }
}

fn callback_now(resp: RaftCmdResponse) -> ProposeOutcome {
    ProposeOutcome::Answered(Box::new(resp))
}

/// The split requests of a Split or BatchSplit admin command.
#[must_use]
pub fn split_requests(
    admin: &crate::pb::raft_cmdpb::AdminRequest,
) -> Vec<crate::pb::raft_cmdpb::SplitRequest> {
    match admin.cmd_type() {
        AdminCmdType::Split => admin.split.clone().into_iter().collect(),
        _ => admin.splits.clone().map(|b| b.requests).unwrap_or_default(),
    }
}

/// Checks that split keys fall strictly inside the region, ascending, and that every new
/// region has ids for all its peers.
///
/// # Errors
/// [`Error::Other`] describing the first problem.
pub fn validate_splits(
    region: &crate::pb::metapb::Region,
    splits: &[crate::pb::raft_cmdpb::SplitRequest],
) -> Result<()> {
    if splits.is_empty() {
        return Err(Error::Other("split without split keys".into()));
    }
    let mut prev: &[u8] = &region.start_key;
    for s in splits {
        let key: &[u8] = &s.split_key;
        if key <= prev || (!region.end_key.is_empty() && key >= &region.end_key[..]) {
            return Err(Error::Other(format!(
                "split key {key:?} is not inside region {} or not ascending",
                region.id
            )));
        }
        if s.new_region_id == 0 || s.new_peer_ids.len() != region.peers.len() {
            return Err(Error::Other(
                "split needs a region id and one peer id per peer".into(),
            ));
        }
        prev = key;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(sizes: &[u64]) -> Vec<PendingWrite> {
        sizes
            .iter()
            .map(|&entry_bytes| PendingWrite {
                req: RaftCmdRequest::default(),
                callback: Box::new(|_| {}),
                entry_bytes,
            })
            .collect()
    }

    #[test]
    fn writes_fill_entries_up_to_the_limit_in_order() {
        assert_eq!(
            entry_lengths(&writes(&[40, 40, 20, 1, 60, 30, 70]), 100),
            [3, 3, 1]
        );
        assert!(entry_lengths(&[], 100).is_empty());
    }

    #[test]
    fn a_write_at_or_over_the_limit_gets_an_entry_of_its_own() {
        assert_eq!(
            entry_lengths(&writes(&[10, 100, 150, 10]), 100),
            [1, 1, 1, 1]
        );
    }
}
