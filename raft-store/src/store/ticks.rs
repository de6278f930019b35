//! What a store does on its ticks: ticking every peer, and the periodic checks (snapshot
//! sweeps, log compaction, splits by size, uninitialized peers' membership).

use engines::Engine;
use tracing::{debug, info};

use super::Store;
use crate::error::Result;
use crate::keys::{self, CF_DEFAULT};
use crate::pb::metapb::{self, Region};
use crate::pb::raft_cmdpb::{
    AdminCmdType, AdminRequest, CompactLogRequest, RaftCmdRequest, RequestHeader, SplitRequest,
};
use crate::sender::RaftMessageSender;

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    /// One tick: every peer's raft clock, then whichever periodic checks are due.
    pub(super) fn on_tick(&mut self) -> Result<()> {
        self.ticks += 1;
        crate::store_metrics::entry_cache_bytes(self.entry_cache_budget.used());
        for peer in self.peers.values_mut() {
            // A peer applying a snapshot must not time out and campaign meanwhile.
            if !peer.is_applying_snapshot() {
                peer.tick()?;
            }
        }
        let ticks = self.ticks;
        let due = |every: usize| ticks.is_multiple_of(every as u64);
        if due(self.cfg.snap_gc_tick_ticks) {
            self.sweep_snapshots();
        }
        if due(self.cfg.raft_log_gc_tick_ticks) {
            self.propose_log_gc();
            let crowded = self.entry_cache_budget.crowded();
            for peer in self.peers.values_mut() {
                peer.raft_group_mut().store_mut().sweep_entry_cache(crowded);
            }
        }
        if due(self.cfg.split_check_tick_ticks) {
            self.check_splits()?;
        }
        if due(self.cfg.uninitialized_peer_check_ticks) {
            self.ask_whether_uninitialized_peers_are_members();
        }
        Ok(())
    }

    /// Leaders of regions larger than `region_max_size_bytes` propose splitting them at
    /// the key where the first `region_split_size_bytes` end.
    fn check_splits(&mut self) -> Result<()> {
        let (max, split_at) = (
            self.cfg.region_max_size_bytes,
            self.cfg.region_split_size_bytes,
        );
        let mut proposals = Vec::new();
        for peer in self.peers.values().filter(|p| p.is_leader()) {
            let region = peer.region();
            let start = keys::data_key(&region.start_key);
            let end = keys::data_end_key(&region.end_key);
            let (mut size, mut split_key) = (0u64, None);
            self.kv_engine.scan(
                CF_DEFAULT,
                start.as_slice()..end.as_slice(),
                engines::Direction::Forward,
                |k, v| {
                    size += (k.len() + v.len()) as u64;
                    if split_key.is_none() && size >= split_at {
                        split_key = keys::origin_key(k).map(<[u8]>::to_vec);
                    }
                    size <= max
                },
            )?;
            // The split key must leave something on the left.
            let split_key = split_key.filter(|k| k[..] > region.start_key[..]);
            if let (true, Some(split_key)) = (size > max, split_key) {
                proposals.push((region.clone(), *peer.meta(), split_key));
            }
        }
        for (region, meta, split_key) in proposals {
            info!(
                region_id = region.id,
                ?split_key,
                "region too large: proposing split"
            );
            let split = AdminRequest {
                cmd_type: AdminCmdType::Split as i32,
                split: Some(SplitRequest {
                    split_key: split_key.into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.on_command(admin_command(&region, meta, split), Box::new(|_| {}));
        }
        Ok(())
    }

    /// Leaders whose log grew past the GC limit propose compacting it.
    fn propose_log_gc(&mut self) {
        let limit = self.cfg.raft_log_gc_count_limit;
        let mut proposals = Vec::new();
        for peer in self.peers.values() {
            if !peer.is_leader() {
                continue;
            }
            let storage = peer.raft_group().store();
            let applied = storage.applied_index();
            let truncated = storage.truncated_index();
            // Counted from the followers' truncation, not this leader's own: a leader that
            // caught up by snapshot has a short log while theirs may still be long.
            let compacted = peer.log_compacted_to();
            if applied.saturating_sub(compacted) < limit {
                continue;
            }
            // Keep what a live follower still needs, unless it lags so far that a
            // snapshot is the better way to catch it up.
            let status = peer.raft_group().status();
            let replicated = status
                .progress
                .iter()
                .flat_map(|p| p.values())
                .map(|p| p.matched)
                .min()
                .unwrap_or(applied);
            let compact_index = log_gc_compact_index(applied, truncated, replicated, limit);
            // At this leader's own truncated index the term is still known: a compaction
            // there truncates only the followers' logs.
            let Ok(compact_term) = raft_core::Storage::term(storage, compact_index) else {
                continue;
            };
            if compact_index <= compacted {
                continue;
            }
            proposals.push((
                peer.region().clone(),
                *peer.meta(),
                compact_index,
                compact_term,
            ));
        }
        for (region, meta, compact_index, compact_term) in proposals {
            let compact = AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index,
                    compact_term,
                }),
                ..Default::default()
            };
            debug!(
                region_id = region.id,
                compact_index, "proposing log compaction"
            );
            self.on_command(admin_command(&region, meta, compact), Box::new(|_| {}));
        }
    }
}

/// An admin command the store proposes itself through its peer `meta` of `region`, at the
/// region's current epoch (nobody awaits the answer).
fn admin_command(region: &Region, meta: metapb::Peer, admin: AdminRequest) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RequestHeader {
            region_id: region.id,
            peer: Some(meta),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: Vec::new(),
        admin_request: Some(Box::new(admin)),
    }
}

/// Where a leader compacts its log: up to what every follower has (`replicated`, the
/// lowest match index) so live followers need no snapshot, unless one lags more than
/// `2 × limit` behind `applied` (a snapshot is then cheaper); never past `applied`.
/// Followers may have more of the log than the leader applied (`replicated > applied`).
fn log_gc_compact_index(applied: u64, truncated: u64, replicated: u64, limit: u64) -> u64 {
    if replicated > truncated && applied.saturating_sub(replicated) < 2 * limit {
        replicated.min(applied)
    } else {
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::log_gc_compact_index;

    #[test]
    fn log_gc_keeps_what_followers_need_and_never_passes_applied() {
        // A follower at 40 of 50 applied: keep its entries.
        assert_eq!(log_gc_compact_index(50, 10, 40, 10), 40);
        // Lagging by 2 × limit or more: compact to applied, it gets a snapshot.
        assert_eq!(log_gc_compact_index(50, 10, 30, 10), 50);
        assert_eq!(log_gc_compact_index(50, 10, 5, 10), 50);
        // Followers ahead of what the leader applied (they persist before it applies):
        // this used to overflow `applied - replicated` and panic the raft worker.
        assert_eq!(log_gc_compact_index(50, 10, 53, 10), 50);
    }
}
