//! Applying committed entries to the kv engine, atomically with the applied index.

use bytes::Bytes;
use engines::Engine;
use prost::Message as _;
use raft_core::ConfChangeI;
use raft_core::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType};
use tracing::{error, info, warn};

use super::{BATCH_CONTEXT, Peer, error_response};
use crate::apply_overlay::ApplyOverlay;
use crate::client_session::{Check, SessionTable};
use crate::error::{Error, Result};
use crate::keys::{self, CF_DEFAULT};
use crate::msg::Callback;
use crate::pb::metapb;
use crate::pb::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, ChangePeerResponse, CmdType, CompactLogResponse,
    CompareAndSwapResponse, RaftCmdRequest, RaftCmdResponse, Request, Response,
};
use crate::pb::raft_serverpb::{PeerState, RaftTruncatedState};
use crate::peer_storage::{region_peers_from_conf_state, write_region_state};
use crate::region_check::{check_conf_change, check_epoch, check_key_sizes, check_keys};

/// The kv write batch of one apply round, with reads that see its pending writes.
type Batch<'a, EK> = ApplyOverlay<'a, EK>;

/// Something applying did that the store must act on after the batch is written.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyResult {
    /// The log was truncated up to `compact_index`: delete `[first_index, compact_index]`.
    CompactLog {
        /// The region.
        region_id: u64,
        /// The first index that was still in the log.
        first_index: u64,
        /// The last index to delete.
        compact_index: u64,
    },
    /// The region split: `derived` keeps the first part of the range, `regions` are new.
    Split {
        /// The region that split, with its narrowed range.
        derived: metapb::Region,
        /// The new regions, in key order.
        regions: Vec<metapb::Region>,
    },
    /// The membership changed; `removed_self` when this peer is no longer a member.
    ConfChange {
        /// The region.
        region_id: u64,
        /// Whether this peer was removed.
        removed_self: bool,
    },
}

/// The user column family a request names, mapped to the engine's.
fn data_cf(cf: &str) -> Result<&'static str> {
    match cf {
        "" | CF_DEFAULT => Ok(CF_DEFAULT),
        other => Err(Error::Other(format!("unknown column family {other:?}"))),
    }
}

impl<ER: Engine, EK: Engine> Peer<ER, EK> {
    /// Applies `entries` (committed, in order) into `wb`, advancing the applied index in
    /// memory; the caller writes `wb` (which must also carry the apply state, see
    /// [`Self::write_apply_state`]) and only then fires `answers` and acts on `results`.
    ///
    /// # Errors
    /// An engine failure while staging writes.
    pub fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        wb: &mut EK::WriteBatch,
        answers: &mut Vec<(Callback, RaftCmdResponse)>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<()> {
        let engine = self.raft_group.store().kv_engine().clone();
        let applied = self.raft_group.store().applied_index();
        if self.sessions.synced_index() != applied {
            // A snapshot replaced the region's state since the sessions were loaded.
            self.sessions =
                SessionTable::load(&engine, self.region_id(), self.session_policy, applied)?;
        }
        let mut batch = ApplyOverlay::new(engine, wb);
        for entry in entries {
            let (index, term) = (entry.index, entry.term);
            let batch = &mut batch;
            let resp = match EntryType::try_from(entry.entry_type) {
                Ok(EntryType::EntryNormal) if entry.data.is_empty() => None,
                Ok(EntryType::EntryNormal) if entry.context[..] == *BATCH_CONTEXT => {
                    Some(self.apply_batch(entry.data.clone(), index, batch, results)?)
                }
                Ok(EntryType::EntryNormal) => Some(vec![self.apply_command(
                    entry.data.clone(),
                    index,
                    batch,
                    results,
                )?]),
                Ok(EntryType::EntryConfChange | EntryType::EntryConfChangeV2) => {
                    Some(vec![self.apply_conf_change(&entry, batch, results)?])
                }
                Err(_) => {
                    error!(
                        region_id = self.region_id(),
                        index, "unknown entry type; skipped"
                    );
                    None
                }
            };
            let storage = self.raft_group.store_mut();
            let mut state = *storage.apply_state();
            state.applied_index = index;
            state.applied_term = term;
            storage.set_apply_state(state);
            self.answer_proposals(index, term, resp, answers);
        }
        let applied = self.raft_group.store().applied_index();
        self.sessions.flush(&mut batch, applied)
    }

    /// Stages the apply state into `wb`.
    ///
    /// # Errors
    /// An engine failure while staging.
    pub fn write_apply_state(&self, wb: &mut EK::WriteBatch) -> Result<()> {
        self.raft_group.store().write_apply_state(wb)
    }

    fn answer_proposals(
        &mut self,
        index: u64,
        term: u64,
        responses: Option<Vec<RaftCmdResponse>>,
        answers: &mut Vec<(Callback, RaftCmdResponse)>,
    ) {
        let stale = || error_response(&Error::StaleCommand);
        // An entry without commands (a leader's no-op) is no proposal's entry, and every
        // callback of a proposal has its own response: an empty default answer would
        // read as a success that applied nothing.
        let is_command = responses.is_some();
        let mut responses = responses.unwrap_or_default().into_iter();
        while let Some(p) = self.proposals.front() {
            if p.index > index {
                break;
            }
            let p = self.proposals.pop_front().expect("front exists");
            if p.index == index && p.term == term && is_command {
                for c in p.commands {
                    answers.push((c.callback, responses.next().unwrap_or_else(stale)));
                }
            } else {
                // Another entry took this proposal's place: it will never apply.
                for c in p.commands {
                    answers.push((c.callback, stale()));
                }
            }
        }
    }

    /// Answers the proposals whose entries the snapshot just applied covers (this peer
    /// never saw those entries apply, and never will: the log below the snapshot is gone).
    /// A command of an exactly-once session gets its real outcome from the sessions the
    /// snapshot carried: its recorded response if it applied, `StaleCommand` if its
    /// session shows it did not, `SequenceForgotten` if the session no longer knows. A
    /// command without a session (or whose session is gone) gets `OutcomeUnknown`.
    ///
    /// # Errors
    /// An engine failure while loading the sessions.
    pub fn answer_proposals_covered_by_snapshot(
        &mut self,
        answers: &mut Vec<(Callback, RaftCmdResponse)>,
    ) -> Result<()> {
        let snapshot_index = self.raft_group.store().applied_index();
        if self
            .proposals
            .front()
            .is_none_or(|p| p.index > snapshot_index)
        {
            return Ok(());
        }
        let engine = self.raft_group.store().kv_engine().clone();
        self.sessions = SessionTable::load(
            &engine,
            self.region_id(),
            self.session_policy,
            snapshot_index,
        )?;
        let region_id = self.region_id();
        while self
            .proposals
            .front()
            .is_some_and(|p| p.index <= snapshot_index)
        {
            let p = self.proposals.pop_front().expect("front exists");
            for c in p.commands {
                let (client_id, sequence) = c.session;
                let known = client_id != 0 && self.sessions.session(client_id).is_some();
                let resp = match self.sessions.check(client_id, sequence) {
                    _ if !known => error_response(&Error::OutcomeUnknown { region_id }),
                    Check::Duplicate(resp) => *resp,
                    Check::New => error_response(&Error::StaleCommand),
                    Check::Forgotten {
                        first_kept_sequence,
                    } => error_response(&Error::SequenceForgotten {
                        client_id,
                        sequence,
                        first_kept_sequence,
                    }),
                };
                answers.push((c.callback, resp));
            }
        }
        Ok(())
    }

    fn apply_batch(
        &mut self,
        data: Bytes,
        index: u64,
        batch: &mut Batch<'_, EK>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<Vec<RaftCmdResponse>> {
        let commands = match self.decode_logged(crate::command_batch::decode(data), "command batch")
        {
            Ok(commands) => commands,
            Err(e) => return Ok(vec![error_response(&e)]),
        };
        // Sized up front: a batch holds up to thousands of commands, and growing the
        // vector by doubling showed up as reallocations and page faults in profiles.
        let mut responses = Vec::with_capacity(commands.len());
        for req in commands {
            responses.push(self.apply_request(req, index, batch, results)?);
        }
        Ok(responses)
    }

    fn apply_command(
        &mut self,
        data: Bytes,
        index: u64,
        batch: &mut Batch<'_, EK>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<RaftCmdResponse> {
        match self.decode_logged(RaftCmdRequest::decode(data), "command") {
            Ok(req) => self.apply_request(req, index, batch, results),
            Err(e) => Ok(error_response(&e)),
        }
    }

    /// Decodes the data of a command entry. On failure the entry is answered with the
    /// `Corruption` error and skipped: every replica fails the same way on the same
    /// bytes, so skipping keeps them consistent. Decoded from `Bytes`, the keys and values
    /// share the entry's buffer instead of being copied out one allocation each.
    fn decode_logged<M, E: std::fmt::Display>(
        &self,
        decoded: std::result::Result<M, E>,
        what: &str,
    ) -> Result<M> {
        decoded.map_err(|e| {
            error!(
                region_id = self.region_id(),
                "undecodable {what} in the log: {e}"
            );
            Error::Corruption(e.to_string())
        })
    }

    fn apply_request(
        &mut self,
        req: RaftCmdRequest,
        index: u64,
        batch: &mut Batch<'_, EK>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<RaftCmdResponse> {
        // Borrowed, not cloned: this runs for every applied command.
        let region = self.region();
        if let Err(e) = check_epoch(&req, region).and_then(|()| check_keys(&req, region)) {
            return Ok(error_response(&e));
        }
        if let Some(admin) = &req.admin_request {
            return self.apply_admin(admin, batch, results);
        }
        // Validate everything first: a command applies entirely or not at all.
        if let Err(e) = check_key_sizes(&req).and_then(|()| validate_writes(&req.requests)) {
            return Ok(error_response(&e));
        }
        let header = req.header.unwrap_or_default();
        self.sessions.advance_clock(header.timestamp_ms);
        let deduplicated = header.client_id != 0 && header.sequence != 0;
        if deduplicated {
            match self.sessions.check(header.client_id, header.sequence) {
                Check::New => {}
                Check::Duplicate(resp) => {
                    self.sessions.touch(
                        header.client_id,
                        header.sequence,
                        header.first_awaited_sequence,
                        index,
                    );
                    return Ok(*resp);
                }
                Check::Forgotten {
                    first_kept_sequence,
                } => {
                    return Ok(error_response(&Error::SequenceForgotten {
                        client_id: header.client_id,
                        sequence: header.sequence,
                        first_kept_sequence,
                    }));
                }
            }
        }
        let mut responses = Vec::with_capacity(req.requests.len());
        for r in req.requests {
            responses.push(apply_write(r, batch)?);
        }
        let resp = RaftCmdResponse {
            responses,
            ..Default::default()
        };
        if deduplicated {
            self.sessions.record(
                header.client_id,
                header.sequence,
                header.first_awaited_sequence,
                index,
                resp.clone(),
            );
        }
        Ok(resp)
    }

    fn apply_admin(
        &mut self,
        admin: &AdminRequest,
        batch: &mut Batch<'_, EK>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<RaftCmdResponse> {
        match admin.cmd_type() {
            AdminCmdType::CompactLog => {
                let req = admin.compact_log.unwrap_or_default();
                // Even when it truncates nothing here (this peer's log starts at a later
                // snapshot), every replica that applies it has truncated this far.
                self.log_compacted_to = self.log_compacted_to.max(req.compact_index);
                let storage = self.raft_group.store_mut();
                let first_index = storage.truncated_index() + 1;
                if req.compact_index >= first_index && req.compact_index <= storage.applied_index()
                {
                    let mut state = *storage.apply_state();
                    state.truncated_state = Some(RaftTruncatedState {
                        index: req.compact_index,
                        term: req.compact_term,
                    });
                    storage.set_apply_state(state);
                    results.push(ApplyResult::CompactLog {
                        region_id: self.region_id(),
                        first_index,
                        compact_index: req.compact_index,
                    });
                }
                let admin = AdminResponse {
                    cmd_type: AdminCmdType::CompactLog as i32,
                    compact_log: Some(CompactLogResponse {}),
                    ..Default::default()
                };
                Ok(RaftCmdResponse {
                    admin_response: Some(Box::new(admin)),
                    ..Default::default()
                })
            }
            AdminCmdType::Split | AdminCmdType::BatchSplit => {
                self.apply_split(admin, batch, results)
            }
            other => Ok(error_response(&Error::Other(format!(
                "{other:?} is not applied as a command"
            )))),
        }
    }

    fn apply_split(
        &mut self,
        admin: &AdminRequest,
        batch: &mut Batch<'_, EK>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<RaftCmdResponse> {
        let splits = super::propose::split_requests(admin);
        let mut derived = self.region().clone();
        if let Err(e) = super::propose::validate_splits(&derived, &splits) {
            return Ok(error_response(&e));
        }
        let epoch = derived.region_epoch.get_or_insert_with(Default::default);
        epoch.version += splits.len() as u64;
        let epoch = *epoch;
        let mut regions = Vec::with_capacity(splits.len());
        for (i, s) in splits.iter().enumerate() {
            let end = splits
                .get(i + 1)
                .map_or_else(|| derived.end_key.clone(), |n| n.split_key.clone());
            let peers = derived
                .peers
                .iter()
                .zip(&s.new_peer_ids)
                .map(|(p, &id)| metapb::Peer {
                    id,
                    store_id: p.store_id,
                    role: p.role,
                })
                .collect();
            regions.push(metapb::Region {
                id: s.new_region_id,
                start_key: s.split_key.clone(),
                end_key: end,
                region_epoch: Some(epoch),
                peers,
            });
        }
        derived.end_key = splits[0].split_key.clone();
        // Region and apply states are never read back during apply: straight to the batch.
        let wb = batch.write_batch();
        write_region_state(wb, &derived, PeerState::Normal)?;
        let init = crate::pb::raft_serverpb::RaftApplyState {
            applied_index: crate::peer_storage::RAFT_INIT_LOG_INDEX,
            applied_term: crate::peer_storage::RAFT_INIT_LOG_TERM,
            truncated_state: Some(RaftTruncatedState {
                index: crate::peer_storage::RAFT_INIT_LOG_INDEX,
                term: crate::peer_storage::RAFT_INIT_LOG_TERM,
            }),
        };
        for r in &regions {
            write_region_state(wb, r, PeerState::Normal)?;
            crate::peer_storage::write_apply_state(wb, r.id, &init)?;
        }
        // The new regions answer the retries of commands the parent applied.
        for r in &regions {
            self.sessions.copy_to(r.id, batch)?;
        }
        let new_ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
        info!(region_id = derived.id, ?new_ids, "region split");
        self.raft_group.store_mut().set_region(derived.clone());
        results.push(ApplyResult::Split {
            derived: derived.clone(),
            regions: regions.clone(),
        });
        let mut all = vec![derived];
        all.extend(regions);
        let admin = AdminResponse {
            cmd_type: admin.cmd_type,
            splits: Some(crate::pb::raft_cmdpb::BatchSplitResponse { regions: all }),
            ..Default::default()
        };
        Ok(RaftCmdResponse {
            admin_response: Some(Box::new(admin)),
            ..Default::default()
        })
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        batch: &mut Batch<'_, EK>,
        results: &mut Vec<ApplyResult>,
    ) -> Result<RaftCmdResponse> {
        let decoded = if entry.entry_type() == EntryType::EntryConfChange {
            ConfChange::decode(entry.data.clone()).map(|cc| cc.as_v2())
        } else {
            ConfChangeV2::decode(entry.data.clone())
        };
        let cc = match decoded {
            Ok(cc) => cc,
            Err(e) => {
                error!(region_id = self.region_id(), "undecodable conf change: {e}");
                return Ok(error_response(&Error::Corruption(e.to_string())));
            }
        };
        // The peers a change adds travel in its context (raft-core knows only ids). The
        // empty change that leaves a joint configuration has none.
        let req = match RaftCmdRequest::decode(cc.context.clone()) {
            Ok(req) => req,
            Err(e) => return Ok(error_response(&Error::Corruption(e.to_string()))),
        };
        let mut region = self.region().clone();
        if req.header.is_some()
            && let Err(e) =
                check_epoch(&req, &region).and_then(|()| check_conf_change(&req, &region))
        {
            // Rejected alike on every replica: raft-core never sees the change.
            return Ok(error_response(&e));
        }
        let cs = match self.raft_group.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(e) => {
                warn!(region_id = region.id, "conf change rejected: {e}");
                return Ok(error_response(&Error::Raft(e)));
            }
        };
        let mut known: Vec<metapb::Peer> = region.peers.clone();
        if let Some(admin) = &req.admin_request {
            let named = admin
                .change_peer
                .iter()
                .chain(admin.change_peer_v2.iter().flat_map(|v| &v.changes));
            known.extend(named.filter_map(|c| c.peer));
        }
        region.peers = region_peers_from_conf_state(&cs, &known);
        let epoch = region.region_epoch.get_or_insert_with(Default::default);
        epoch.conf_ver += cc.changes.len().max(1) as u64;
        let removed_self = !region.peers.iter().any(|p| p.id == self.meta.id);
        info!(region_id = region.id, peers = ?region.peers, removed_self, "membership changed");
        write_region_state(
            batch.write_batch(),
            &region,
            if removed_self {
                PeerState::Tombstone
            } else {
                PeerState::Normal
            },
        )?;
        if let Some(p) = region.peers.iter().find(|p| p.id == self.meta.id) {
            self.meta = *p;
        }
        self.raft_group.store_mut().set_region(region.clone());
        if removed_self {
            self.pending_remove = true;
        }
        results.push(ApplyResult::ConfChange {
            region_id: region.id,
            removed_self,
        });
        let cmd_type = req
            .admin_request
            .map_or(AdminCmdType::ChangePeerV2, |a| a.cmd_type());
        let admin = AdminResponse {
            cmd_type: cmd_type as i32,
            change_peer: Some(ChangePeerResponse {
                region: Some(region),
            }),
            ..Default::default()
        };
        Ok(RaftCmdResponse {
            admin_response: Some(Box::new(admin)),
            ..Default::default()
        })
    }
}

/// Checks that every request of a write command is a write with a body and a known column
/// family, before anything of the command is staged.
fn validate_writes(requests: &[Request]) -> Result<()> {
    for r in requests {
        let cf = match r.cmd_type() {
            CmdType::Put => r.put.as_ref().map(|p| p.cf.as_str()),
            CmdType::Delete => r.delete.as_ref().map(|d| d.cf.as_str()),
            CmdType::DeleteRange => r.delete_range.as_ref().map(|d| d.cf.as_str()),
            CmdType::CompareAndSwap => r.cas.as_ref().map(|c| c.cf.as_str()),
            other => return Err(Error::Other(format!("{other:?} in a write command"))),
        };
        let Some(cf) = cf else {
            return Err(Error::Other(format!(
                "bad request: {:?} without a body",
                r.cmd_type()
            )));
        };
        data_cf(cf)?;
    }
    Ok(())
}

/// Stages one validated write; a compare-and-swap reads through the batch, so it sees
/// every write staged before it.
fn apply_write<EK: Engine>(r: Request, batch: &mut Batch<'_, EK>) -> Result<Response> {
    let cmd_type = r.cmd_type();
    let mut resp = Response {
        cmd_type: cmd_type as i32,
        ..Default::default()
    };
    match cmd_type {
        CmdType::Put => {
            let p = r.put.unwrap_or_default();
            batch.put(data_cf(&p.cf)?, keys::data_key(&p.key), p.value)?;
        }
        CmdType::Delete => {
            let d = r.delete.unwrap_or_default();
            batch.delete(data_cf(&d.cf)?, keys::data_key(&d.key))?;
        }
        CmdType::DeleteRange => {
            let d = r.delete_range.unwrap_or_default();
            let start = keys::data_key(&d.start_key);
            let end = keys::data_end_key(&d.end_key);
            batch.delete_range(data_cf(&d.cf)?, start, end)?;
        }
        CmdType::CompareAndSwap => {
            let c = r.cas.unwrap_or_default();
            let cf = data_cf(&c.cf)?;
            let key = keys::data_key(&c.key);
            let current = batch.get(cf, &key)?;
            let matched = if c.expect_absent {
                current.is_none()
            } else {
                current.as_deref() == Some(&c.expected_value[..])
            };
            if matched && c.delete {
                batch.delete(cf, key)?;
            } else if matched {
                batch.put(cf, key, c.new_value)?;
            }
            resp.cas = Some(Box::new(CompareAndSwapResponse {
                succeeded: matched,
                previous_found: current.is_some(),
                previous_value: current.unwrap_or_default(),
            }));
        }
        other => {
            // validate_writes admits writes only.
            return Err(Error::Other(format!("{other:?} is not a write")));
        }
    }
    Ok(resp)
}
