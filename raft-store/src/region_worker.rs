//! The region worker: generates snapshots, applies received ones, and deletes the data of
//! destroyed peers, off the raft worker. Results go back to the store as
//! [`StoreMsg::RegionTaskDone`].
//!
//! Tasks run one at a time in the order scheduled. The store relies on that order: a
//! destroyed peer's range is cleared before a later snapshot of a region covering that
//! range is applied.

use std::time::Instant;

use engines::{Engine, WriteBatch, WriteOptions};
use tracing::{error, info, info_span, warn};

use crate::error::{Error, Result};
use crate::keys::{self, CF_META, CF_RAFT, SnapRange, region_snapshot_ranges};
use crate::msg::StoreMsg;
use crate::pb::metapb::Region;
use crate::pb::raft_serverpb::{PeerState, SnapshotMeta};
use crate::peer_storage::{write_apply_state, write_region_state};
use crate::snapshot::apply::{apply_staged, clear_ranges};
use crate::snapshot::generate::generate_snapshot;
use crate::snapshot::{SnapManager, apply_state_at};
use crate::worker::Runnable;

/// Work for the region worker. `S` is the kv engine's snapshot type.
pub enum RegionTask<S> {
    /// Stage a snapshot of `region` at `(index, term)` from `view`.
    Generate {
        /// Tells this generation from older ones of the same peer.
        gen_id: u64,
        /// The region as of `index`.
        region: Region,
        /// The applied index `view` holds.
        index: u64,
        /// The term of the entry at `index`.
        term: u64,
        /// The kv engine at the moment `index` was the applied index.
        view: S,
    },
    /// Replace `region`'s data with the staged snapshot `snapshot` (`None` when it was
    /// lost: the data is cleared and the apply fails), after clearing `stale_ranges`
    /// (ranges the peer owned before and the snapshot's region does not cover).
    Apply {
        /// The snapshot's region.
        region: Region,
        /// The descriptor of the staged data.
        snapshot: Option<Box<SnapshotMeta>>,
        /// Ranges to clear besides the region's own.
        stale_ranges: Vec<SnapRange>,
    },
    /// Delete the data, raft log and raft state of a destroyed peer of `region` (whose
    /// `Tombstone` state is durable).
    Destroy {
        /// The region as the peer last knew it.
        region: Region,
    },
}

impl<S> std::fmt::Debug for RegionTask<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegionTask::Generate {
                region,
                index,
                gen_id,
                ..
            } => write!(
                f,
                "Generate(region {}, index {index}, gen {gen_id})",
                region.id
            ),
            RegionTask::Apply { region, .. } => write!(f, "Apply(region {})", region.id),
            RegionTask::Destroy { region } => write!(f, "Destroy(region {})", region.id),
        }
    }
}

/// What a region task did, for the store.
#[derive(Debug)]
pub enum RegionTaskResult {
    /// A snapshot was staged (or could not be).
    Generated {
        /// The region.
        region_id: u64,
        /// The generation it answers.
        gen_id: u64,
        /// The descriptor of the staged data.
        result: Result<Box<SnapshotMeta>>,
    },
    /// A snapshot was applied: its data and `PeerState::Normal` are durable. On failure
    /// the region's data was cleared and the peer must start over.
    Applied {
        /// The region.
        region_id: u64,
        /// The outcome.
        result: Result<()>,
    },
    /// A destroyed peer's data and raft state are deleted.
    Destroyed {
        /// The region.
        region_id: u64,
        /// The outcome.
        result: Result<()>,
    },
}

/// Where a worker reports results: the store's mailbox in production (waiting while it is
/// full, since a lost result would leave a peer applying forever), a queue the caller
/// drains in deterministic runs.
pub type Notifier = Box<dyn Fn(StoreMsg) + Send>;

/// Runs [`RegionTask`]s against a store's engines and snapshot directory.
pub struct RegionRunner<ER: Engine, EK: Engine> {
    raft_engine: ER,
    kv_engine: EK,
    snap_mgr: SnapManager,
    apply_batch_bytes: usize,
    notify: Notifier,
}

impl<ER: Engine, EK: Engine> std::fmt::Debug for RegionRunner<ER, EK> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionRunner")
            .field("snap_dir", &self.snap_mgr.dir())
            .finish_non_exhaustive()
    }
}

impl<ER: Engine, EK: Engine> RegionRunner<ER, EK> {
    /// A runner over the engines and snapshot directory of one store, writing batches of
    /// about `apply_batch_bytes`, reporting to `notify`.
    #[must_use]
    pub fn new(
        raft_engine: ER,
        kv_engine: EK,
        snap_mgr: SnapManager,
        apply_batch_bytes: usize,
        notify: Notifier,
    ) -> Self {
        Self {
            raft_engine,
            kv_engine,
            snap_mgr,
            apply_batch_bytes: apply_batch_bytes.max(1),
            notify,
        }
    }

    /// Runs one task and returns its result instead of reporting it.
    pub fn execute(&mut self, task: RegionTask<EK::Snapshot>) -> RegionTaskResult {
        match task {
            RegionTask::Generate {
                gen_id,
                region,
                index,
                term,
                view,
            } => {
                let _span = info_span!("snapshot_generate", region_id = region.id).entered();
                let result =
                    generate_snapshot(&self.snap_mgr, &view, &region, index, term).map(Box::new);
                if let Err(e) = &result {
                    crate::store_metrics::snapshot_failed("generate");
                    warn!(region_id = region.id, "snapshot generation failed: {e}");
                }
                RegionTaskResult::Generated {
                    region_id: region.id,
                    gen_id,
                    result,
                }
            }
            RegionTask::Apply {
                region,
                snapshot,
                stale_ranges,
            } => {
                let _span = info_span!("snapshot_apply", region_id = region.id).entered();
                let result = self.apply(&region, snapshot.as_deref(), &stale_ranges);
                RegionTaskResult::Applied {
                    region_id: region.id,
                    result,
                }
            }
            RegionTask::Destroy { region } => {
                let _span = info_span!("region_destroy", region_id = region.id).entered();
                let started = Instant::now();
                let result = self.destroy(&region);
                match &result {
                    Ok(()) => {
                        crate::store_metrics::region_destroyed(started.elapsed().as_secs_f64());
                        info!(region_id = region.id, "destroyed peer's data deleted");
                    }
                    Err(e) => error!(
                        region_id = region.id,
                        "deleting a destroyed peer failed: {e}"
                    ),
                }
                RegionTaskResult::Destroyed {
                    region_id: region.id,
                    result,
                }
            }
        }
    }

    fn apply(
        &self,
        region: &Region,
        snapshot: Option<&SnapshotMeta>,
        stale_ranges: &[SnapRange],
    ) -> Result<()> {
        let started = Instant::now();
        let result =
            clear_ranges(&self.kv_engine, stale_ranges, self.apply_batch_bytes).and_then(|_| {
                let key = region.id;
                let meta = snapshot.ok_or_else(|| {
                    Error::Corruption(format!("region {key}: no descriptor of the snapshot"))
                })?;
                self.apply_data(meta)
            });
        match result {
            Ok(keys) => {
                let size = snapshot.map_or(0, |m| m.size_bytes);
                let seconds = started.elapsed().as_secs_f64();
                crate::store_metrics::snapshot_applied(size, keys, seconds);
                info!(
                    region_id = region.id,
                    keys, size, seconds, "snapshot applied"
                );
                Ok(())
            }
            Err(e) => {
                crate::store_metrics::snapshot_failed("apply");
                error!(
                    region_id = region.id,
                    "snapshot apply failed, clearing the region: {e}"
                );
                // Never leave half-applied data behind: the peer starts over empty.
                let ranges = region_snapshot_ranges(region);
                if let Err(e) = clear_ranges(&self.kv_engine, &ranges, self.apply_batch_bytes)
                    .and_then(|_| Ok(self.kv_engine.sync()?))
                {
                    error!(region_id = region.id, "clearing a failed apply failed: {e}");
                }
                Err(e)
            }
        }
    }

    /// Writes the staged data, then the apply state and `Normal`, synced. Returns the
    /// number of keys written.
    fn apply_data(&self, meta: &SnapshotMeta) -> Result<u64> {
        let (mut wb, summary) = apply_staged(
            &self.kv_engine,
            &self.snap_mgr,
            meta,
            self.apply_batch_bytes,
        )?;
        let region = meta.region.clone().unwrap_or_default();
        write_apply_state(&mut wb, region.id, &apply_state_at(meta))?;
        write_region_state(&mut wb, &region, PeerState::Normal)?;
        self.kv_engine.write(&wb, WriteOptions::synced())?;
        Ok(summary.key_count)
    }

    /// Deletes the data (durably), then the raft log and raft state: a restart that finds
    /// the raft state of a tombstoned region knows the cleanup did not finish.
    fn destroy(&self, region: &Region) -> Result<()> {
        // An uninitialized peer owns no range and no data: "its" range (unbounded) would
        // be every region's data.
        if !region.peers.is_empty() {
            let ranges = region_snapshot_ranges(region);
            clear_ranges(&self.kv_engine, &ranges, self.apply_batch_bytes)?;
        }
        // The apply state goes with the data: a peer of this region created here later
        // (added back under a new id) starts from nothing, not from this one's applied
        // index. The tombstone region state stays.
        let mut kv_wb = self.kv_engine.write_batch();
        kv_wb.delete(CF_META, &keys::apply_state_key(region.id))?;
        self.kv_engine.write(&kv_wb, WriteOptions::synced())?;
        let mut wb = self.raft_engine.write_batch();
        let log_start = keys::raft_log_prefix(region.id);
        let log_end = keys::raft_log_key(region.id, u64::MAX);
        wb.delete_range(CF_RAFT, log_start.as_slice()..log_end.as_slice())?;
        wb.delete(CF_RAFT, &keys::raft_state_key(region.id))?;
        self.raft_engine.write(&wb, WriteOptions::synced())?;
        Ok(())
    }
}

impl<ER: Engine, EK: Engine> Runnable for RegionRunner<ER, EK> {
    type Task = RegionTask<EK::Snapshot>;

    fn run(&mut self, task: Self::Task) {
        let result = self.execute(task);
        (self.notify)(StoreMsg::RegionTaskDone(Box::new(result)));
    }
}
