//! The store's side of the region worker: starting snapshot generations and applies,
//! taking their results, checking incoming snapshots, and sweeping staged data.
//!
//! The store never waits for the worker: tasks queue in `pending_region_tasks` and are
//! handed over at the end of an iteration (or run right there, inline); results come
//! back as `StoreMsg::RegionTaskDone`.

use std::collections::{BTreeMap, BTreeSet};

use engines::Engine;
use raft_core::eraftpb::{self, Snapshot};
use tracing::{debug, info, warn};

use super::{RegionDispatch, Store, unregister_range};
use crate::error::Result;
use crate::keys::{self, SnapRange, region_snapshot_ranges};
use crate::pb::metapb::Region;
use crate::pb::raft_serverpb::RaftMessage;
use crate::peer::Peer;
use crate::region_worker::{RegionTask, RegionTaskResult};
use crate::sender::RaftMessageSender;
use crate::snapshot::{SnapKey, SnapKind, decode_descriptor};

/// Starts applying the snapshot of a Ready: persists `Applying` (see
/// [`crate::peer_storage::PeerStorage::begin_apply_snapshot`]), stages the raft state
/// into `raft_wb`, moves the region's range in `region_ranges`, and returns the apply
/// task for the region worker.
///
/// # Errors
/// A descriptor that does not decode (it was checked on arrival, so this is a bug) or an
/// engine failure: both fatal.
pub(super) fn begin_apply_snapshot<ER: Engine, EK: Engine>(
    peer: &mut Peer<ER, EK>,
    snapshot: &Snapshot,
    region_ranges: &mut BTreeMap<Vec<u8>, u64>,
    raft_wb: &mut ER::WriteBatch,
) -> Result<RegionTask<EK::Snapshot>> {
    let meta = decode_descriptor(snapshot)?;
    let region_id = meta.region_id;
    let was_initialized = peer.raft_group().store().is_initialized();
    let old = peer
        .raft_group_mut()
        .store_mut()
        .begin_apply_snapshot(&meta, raft_wb)?;
    let region = peer.region().clone();
    if was_initialized {
        unregister_range(region_ranges, &old.end_key, region_id);
    }
    region_ranges.insert(keys::data_end_key(&region.end_key), region_id);
    // What the peer owned and the snapshot's region does not cover (a split it missed)
    // is stale: cleared by the same task, before any later snapshot could claim it.
    let stale_ranges = if was_initialized {
        subtract_ranges(
            &region_snapshot_ranges(&old),
            &region_snapshot_ranges(&region),
        )
    } else {
        Vec::new()
    };
    let key = SnapKey::of(&meta);
    peer.set_applying_snapshot(Some(key));
    info!(region_id, %key, size_bytes = meta.size_bytes, "applying a snapshot");
    Ok(RegionTask::Apply {
        region,
        snapshot: Some(Box::new(meta)),
        stale_ranges,
    })
}

/// The parts of `ranges` that no range of `minus` (of the same column family) covers.
fn subtract_ranges(ranges: &[SnapRange], minus: &[SnapRange]) -> Vec<SnapRange> {
    let mut out: Vec<SnapRange> = ranges.to_vec();
    for m in minus {
        out = out
            .into_iter()
            .flat_map(|r| {
                if r.cf != m.cf || m.end <= r.start || r.end <= m.start {
                    return vec![r];
                }
                let mut parts = Vec::new();
                if r.start < m.start {
                    parts.push(SnapRange {
                        cf: r.cf,
                        start: r.start.clone(),
                        end: m.start.clone(),
                    });
                }
                if m.end < r.end {
                    parts.push(SnapRange {
                        cf: r.cf,
                        start: m.end.clone(),
                        end: r.end,
                    });
                }
                parts
            })
            .collect();
    }
    out
}

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    /// Takes an engine snapshot for every peer whose raft asked for a snapshot, and
    /// queues its generation. Called when the kv engine holds exactly what each peer
    /// applied, so the view is the state at the peer's applied index.
    pub(super) fn schedule_snapshot_generations(&mut self) -> Result<()> {
        for peer in self.peers.values_mut() {
            let gen_id = self.next_gen_id;
            if !peer
                .raft_group_mut()
                .store_mut()
                .take_snapshot_request(gen_id)
            {
                continue;
            }
            self.next_gen_id += 1;
            let storage = peer.raft_group().store();
            let (index, term) = (storage.applied_index(), storage.apply_state().applied_term);
            debug!(
                region_id = storage.region().id,
                index, gen_id, "scheduling snapshot generation"
            );
            self.pending_region_tasks.push_back(RegionTask::Generate {
                gen_id,
                region: storage.region().clone(),
                index,
                term,
                view: self.kv_engine.snapshot()?,
            });
        }
        Ok(())
    }

    /// Hands queued tasks to the worker, keeping them (in order) while its queue is full.
    pub(super) fn dispatch_region_tasks(&mut self) {
        let RegionDispatch::Scheduled(scheduler) = &self.region_tasks else {
            return;
        };
        while let Some(task) = self.pending_region_tasks.pop_front() {
            if let Err(task) = scheduler.schedule(task) {
                debug!(?task, "region worker busy or gone; task kept for later");
                self.pending_region_tasks.push_front(task);
                break;
            }
        }
    }

    /// Runs the queued tasks here when there is no worker; returns their results.
    pub(super) fn run_inline_region_tasks(&mut self) -> Vec<RegionTaskResult> {
        let RegionDispatch::Inline(runner) = &mut self.region_tasks else {
            return Vec::new();
        };
        self.pending_region_tasks
            .drain(..)
            .map(|task| runner.execute(task))
            .collect()
    }

    pub(super) fn on_region_task_done(&mut self, result: RegionTaskResult) -> Result<()> {
        match result {
            RegionTaskResult::Generated {
                region_id,
                gen_id,
                result,
            } => {
                let taken = self.peers.get_mut(&region_id).is_some_and(|p| {
                    p.raft_group_mut()
                        .store_mut()
                        .on_snapshot_generated(gen_id, result)
                });
                if !taken {
                    // Its staged data is swept once unused.
                    debug!(region_id, gen_id, "superseded snapshot generation dropped");
                }
                Ok(())
            }
            RegionTaskResult::Applied { region_id, result } => {
                self.on_snapshot_applied(region_id, result)
            }
            RegionTaskResult::Destroyed { region_id, result } => {
                // A failed cleanup keeps the region blocked; the next start retries it.
                if result.is_ok() {
                    self.pending_destroys.remove(&region_id);
                }
                Ok(())
            }
        }
    }

    fn on_snapshot_applied(&mut self, region_id: u64, result: Result<()>) -> Result<()> {
        // A failed apply rewrites the peer's raft state directly: nothing of the region
        // may still be on its way to the raft engine (by construction nothing is: the
        // peer made no Ready while applying, and the snapshot's round was written first).
        self.flush_raft_writes_of(region_id)?;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
        let Some(key) = peer.applying_snapshot() else {
            return Ok(());
        };
        peer.set_applying_snapshot(None);
        self.snap_mgr.delete(SnapKind::Received, key);
        let held = peer.take_held_messages();
        let Err(e) = result else {
            // Now the snapshot may be acked; the peer takes its next Ready in this
            // iteration and catches up from the log.
            super::send_messages(peer, held, &mut self.sender);
            let mut answers = Vec::new();
            peer.answer_proposals_covered_by_snapshot(&mut answers)?;
            for (cb, resp) in answers {
                cb(resp);
            }
            return Ok(());
        };
        // The staged data was lost or corrupt and the region's data is cleared: forget
        // the snapshot (and the log after it, never acked: `held` is dropped) so the
        // leader, which still sees this peer behind its log, sends a new one.
        warn!(
            region_id,
            %key,
            "snapshot apply failed; the peer starts over and waits for a new snapshot: {e}"
        );
        peer.raft_group().store().reset_to_uninitialized()?;
        // The peer is replaced: whatever waits on it has an outcome it cannot learn.
        peer.fail_all(&crate::error::Error::OutcomeUnknown { region_id });
        let meta = *peer.meta();
        unregister_range(&mut self.region_ranges, &peer.region().end_key, region_id);
        self.peers.remove(&region_id);
        self.insert_peer(
            Region {
                id: region_id,
                ..Default::default()
            },
            meta,
        )
    }

    /// Deletes staged snapshots no peer needs any more (see [`crate::snapshot::SnapManager::sweep`]).
    pub(super) fn sweep_snapshots(&self) {
        let mut in_use = BTreeSet::new();
        for peer in self.peers.values() {
            if let Some(key) = peer.raft_group().store().cached_snapshot() {
                in_use.insert((SnapKind::Generated, key));
            }
            if let Some(key) = peer.applying_snapshot() {
                in_use.insert((SnapKind::Received, key));
            }
        }
        let deleted = self.snap_mgr.sweep(&in_use);
        if deleted > 0 {
            debug!(store_id = self.store_id, deleted, "staged snapshots swept");
        }
    }

    /// Whether a snapshot message may be stepped. Its descriptor must be sound and name
    /// the target peer, its data must be staged (verified on arrival), and it must not be
    /// stale: not for a peer already applying one, not older than the peer's region epoch,
    /// term or commit index, and not overlapping another region of this store. A refused
    /// snapshot's staged data is deleted.
    pub(super) fn check_snapshot(&mut self, m: &RaftMessage, msg: &eraftpb::Message) -> bool {
        let region_id = m.region_id;
        let Some(snapshot) = msg.snapshot.as_ref() else {
            return false;
        };
        let meta = match decode_descriptor(snapshot) {
            Ok(meta) => meta,
            Err(e) => {
                warn!(region_id, "dropping a snapshot: {e}");
                return false;
            }
        };
        let key = SnapKey::of(&meta);
        let region = meta.region.unwrap_or_default();
        let to = m.to_peer.unwrap_or_default();
        let reason = if region.id != region_id {
            Some("it is of another region")
        } else if !region.peers.iter().any(|p| p.id == to.id) {
            Some("its region does not include the target peer")
        } else if !self.snap_mgr.contains(SnapKind::Received, key) {
            Some("its data is not staged")
        } else {
            self.peers.get(&region_id).and_then(|peer| {
                let local = peer.region().region_epoch.unwrap_or_default();
                let theirs = region.region_epoch.unwrap_or_default();
                let raft = peer.raft_group().raft();
                // A snapshot raft accepted but the store has not started applying yet
                // counts too: a duplicate of it in the same batch must not delete the
                // staged data the apply is about to read.
                if peer.is_applying_snapshot() || raft.raft_log().has_pending_snapshot() {
                    Some("the peer is applying one already")
                } else if peer.raft_group().store().is_initialized()
                    && (theirs.conf_ver < local.conf_ver || theirs.version < local.version)
                {
                    Some("its region epoch is stale")
                } else if msg.term < raft.term() {
                    Some("its term is stale")
                } else if key.index <= raft.raft_log().committed {
                    Some("the peer's log already covers it")
                } else {
                    None
                }
            })
        }
        .or_else(|| {
            self.overlaps_another_region(&region)
                .then_some("it overlaps another region")
        });
        let Some(reason) = reason else {
            return true;
        };
        warn!(region_id, %key, "dropping a snapshot: {reason}");
        let peer = self.peers.get(&region_id);
        let applying = peer.and_then(|p| p.applying_snapshot());
        // A pending snapshot's key is not known here: keep the data (the sweep deletes it
        // once unreferenced).
        let pending = peer.is_some_and(|p| p.raft_group().raft().raft_log().has_pending_snapshot());
        if applying != Some(key) && !pending {
            self.snap_mgr.delete(SnapKind::Received, key);
        }
        false
    }

    /// Whether `region`'s range overlaps a region of this store other than itself.
    fn overlaps_another_region(&self, region: &Region) -> bool {
        let start = keys::data_key(&region.start_key);
        let end = keys::data_end_key(&region.end_key);
        self.region_ranges
            .range::<[u8], _>((
                std::ops::Bound::Excluded(start.as_slice()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(_, id)| {
                self.peers
                    .get(id)
                    .is_some_and(|p| keys::data_key(&p.region().start_key) < end)
            })
            .any(|(_, &id)| id != region.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CF_DEFAULT;

    fn r(start: &[u8], end: &[u8]) -> SnapRange {
        SnapRange {
            cf: CF_DEFAULT,
            start: start.to_vec(),
            end: end.to_vec(),
        }
    }

    #[test]
    fn stale_ranges_are_what_the_new_region_does_not_cover() {
        assert_eq!(
            subtract_ranges(&[r(b"a", b"z")], &[r(b"c", b"m")]),
            vec![r(b"a", b"c"), r(b"m", b"z")]
        );
        assert_eq!(subtract_ranges(&[r(b"a", b"m")], &[r(b"a", b"z")]), vec![]);
        assert_eq!(
            subtract_ranges(&[r(b"a", b"m")], &[r(b"m", b"z")]),
            vec![r(b"a", b"m")]
        );
        let meta = SnapRange {
            cf: "meta",
            ..r(b"a", b"z")
        };
        assert_eq!(
            subtract_ranges(std::slice::from_ref(&meta), &[r(b"a", b"z")]),
            vec![meta]
        );
    }
}
