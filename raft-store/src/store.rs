//! A store: every peer on this node, driven by one loop body over a mailbox.
//!
//! [`Store::handle_msgs`] is the whole raft worker iteration: it reads no clock and draws
//! no randomness, so a production thread and a deterministic simulator drive the same
//! code (the simulator delivers `Tick`s by virtual time).

mod commands;
mod raft_messages;
mod raft_writes;
mod region_tasks;
mod stale_peer;
mod ticks;

use raft_writes::{PersistedReady, RaftWrites};

use region_tasks::begin_apply_snapshot;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use engines::{Engine, WriteBatch, WriteOptions};
use prost::Message as _;
use raft_core::eraftpb;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::entry_cache::CacheBudget;
use crate::error::{Error, Result};
use crate::id_alloc::IdAllocator;
use crate::keys::{self, CF_META, CF_RAFT};
use crate::msg::{Callback, RegionStatus, StoreMsg};
use crate::pb::metapb::{self, Region, RegionEpoch};
use crate::pb::raft_cmdpb::RaftCmdResponse;
use crate::pb::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use crate::peer::{ApplyResult, Peer};
use crate::raft_log_gc::RaftLogGcTask;
use crate::raft_log_writer::recycle;
use crate::region_worker::{RegionRunner, RegionTask};
use crate::sender::RaftMessageSender;
use crate::snapshot::{SnapKey, SnapManager};
use crate::worker::Scheduler;

/// Every peer on one node, over one raft engine and one kv engine.
pub struct Store<ER: Engine, EK: Engine, S: RaftMessageSender> {
    store_id: u64,
    cfg: Config,
    raft_engine: ER,
    kv_engine: EK,
    /// Ordered so every iteration visits peers in the same order (determinism).
    peers: BTreeMap<u64, Peer<ER, EK>>,
    /// Initialized regions by the data key their range ends at, for routing by key.
    region_ranges: BTreeMap<Vec<u8>, u64>,
    /// Regions whose peer here was destroyed, with an epoch at which that peer was no
    /// longer a member: messages from an older conf_ver are stale.
    tombstones: HashMap<u64, RegionEpoch>,
    sender: S,
    ticks: u64,
    id_alloc: IdAllocator,
    /// Where truncated raft log goes to be deleted; `None` deletes inline.
    log_gc: Option<Scheduler<RaftLogGcTask>>,
    /// This store's staged snapshots.
    snap_mgr: SnapManager,
    /// Where region tasks run.
    region_tasks: RegionDispatch<ER, EK>,
    /// Region tasks not yet handed over (the worker's queue was full, or they run inline
    /// at the end of the iteration), in the order they must run.
    pending_region_tasks: VecDeque<RegionTask<EK::Snapshot>>,
    /// Regions whose destroyed peer's data is still being deleted: no peer of them is
    /// created meanwhile (it would find the old raft state).
    pending_destroys: BTreeSet<u64>,
    /// The id of the next snapshot generation (older answers are discarded).
    next_gen_id: u64,
    /// The answers of a round, kept empty between rounds so its capacity is reused: at a
    /// few thousand commands per round, growing it afresh every round costs reallocations
    /// and page faults on the hot path.
    answers: Vec<(Callback, RaftCmdResponse)>,
    /// A round's raft-engine and kv-engine write batches, cleared at the start of each
    /// round and kept for the next, for the same reason as `answers`.
    raft_wb: ER::WriteBatch,
    kv_wb: EK::WriteBatch,
    /// Where `raft_wb` is written (inline unless an asynchronous writer was set up),
    /// and the Readies waiting for it.
    raft_writes: RaftWrites<ER>,
    /// What every peer's entry cache counts in (`raft_entry_cache_store_bytes`).
    entry_cache_budget: CacheBudget,
}

/// Where a store's region tasks run.
enum RegionDispatch<ER: Engine, EK: Engine> {
    /// On the raft worker's thread, at the end of each `handle_msgs` (the default: fully
    /// deterministic, for single-threaded clusters and simple embeddings).
    Inline(Box<RegionRunner<ER, EK>>),
    /// On a worker: a thread, or a queue whose owner runs the tasks when it chooses and
    /// sends the results back as `StoreMsg::RegionTaskDone`.
    Scheduled(Scheduler<RegionTask<EK::Snapshot>>),
}

impl<ER: Engine, EK: Engine, S: RaftMessageSender> std::fmt::Debug for Store<ER, EK, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("store_id", &self.store_id)
            .field("regions", &self.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    /// Opens store `store_id`: loads every region this store has a peer of, with its
    /// staged snapshots in `snap_mgr`. A region found `Applying` has its snapshot applied
    /// again, a tombstoned one whose cleanup was interrupted is cleaned up again (both as
    /// region tasks, which run inline until [`Self::set_region_scheduler`] is called).
    ///
    /// # Errors
    /// An invalid config, an engine failure, or corrupt persisted state.
    pub fn open(
        store_id: u64,
        cfg: Config,
        raft_engine: ER,
        kv_engine: EK,
        sender: S,
        snap_mgr: SnapManager,
    ) -> Result<Self> {
        cfg.validate()?;
        let id_alloc = IdAllocator::load(&kv_engine, store_id)?;
        let inline = RegionRunner::new(
            raft_engine.clone(),
            kv_engine.clone(),
            snap_mgr.clone(),
            cfg.snap_apply_batch_bytes as usize,
            // Inline results are returned, never notified.
            Box::new(|_| {}),
        );
        let (raft_wb, kv_wb) = (raft_engine.write_batch(), kv_engine.write_batch());
        let raft_writes = RaftWrites::new(cfg.raft_async_write);
        let entry_cache_budget = CacheBudget::new(cfg.raft_entry_cache_store_bytes);
        let mut store = Self {
            store_id,
            cfg,
            raft_engine,
            kv_engine,
            peers: BTreeMap::new(),
            region_ranges: BTreeMap::new(),
            tombstones: HashMap::new(),
            sender,
            ticks: 0,
            id_alloc,
            log_gc: None,
            snap_mgr,
            region_tasks: RegionDispatch::Inline(Box::new(inline)),
            pending_region_tasks: VecDeque::new(),
            pending_destroys: BTreeSet::new(),
            next_gen_id: 1,
            answers: Vec::new(),
            raft_wb,
            kv_wb,
            raft_writes,
            entry_cache_budget,
        };
        let (lo, hi) = keys::region_state_range();
        let mut states = Vec::new();
        let mut failure = None;
        store.kv_engine.scan(
            CF_META,
            lo.as_slice()..hi.as_slice(),
            engines::Direction::Forward,
            |k, v| {
                match RegionLocalState::decode(v) {
                    Ok(s) => states.push(s),
                    Err(e) => failure = Some(Error::Corruption(format!("region state {k:?}: {e}"))),
                }
                failure.is_none()
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        let mut applies = Vec::new();
        for state in states {
            let peer_state = state.state();
            let region = state.region.unwrap_or_default();
            if peer_state == PeerState::Tombstone {
                let cleanup_unfinished = store
                    .raft_engine
                    .get(CF_RAFT, &keys::raft_state_key(region.id))?
                    .is_some();
                store
                    .tombstones
                    .insert(region.id, region.region_epoch.unwrap_or_default());
                if cleanup_unfinished {
                    info!(
                        region_id = region.id,
                        "finishing an interrupted peer cleanup"
                    );
                    store.pending_destroys.insert(region.id);
                    store
                        .pending_region_tasks
                        .push_back(RegionTask::Destroy { region });
                }
                continue;
            }
            let Some(meta) = region
                .peers
                .iter()
                .find(|p| p.store_id == store_id)
                .copied()
            else {
                warn!(
                    region_id = region.id,
                    "region has no peer on this store; skipped"
                );
                continue;
            };
            store.insert_peer(region.clone(), meta)?;
            if peer_state == PeerState::Applying {
                applies.push((region, state.applying_snapshot.map(Box::new)));
            }
        }
        // After every cleanup: a snapshot may cover a destroyed peer's old range.
        for (region, snapshot) in applies {
            let key = snapshot.as_deref().map_or_else(
                || {
                    let storage = store.peers[&region.id].raft_group().store();
                    SnapKey {
                        region_id: region.id,
                        term: storage.truncated_term(),
                        index: storage.truncated_index(),
                    }
                },
                SnapKey::of,
            );
            info!(region_id = region.id, %key, "resuming an interrupted snapshot apply");
            if let Some(peer) = store.peers.get_mut(&region.id) {
                peer.set_applying_snapshot(Some(key));
            }
            store.pending_region_tasks.push_back(RegionTask::Apply {
                region,
                snapshot,
                stale_ranges: Vec::new(),
            });
        }
        info!(store_id, regions = store.peers.len(), "store opened");
        Ok(store)
    }

    fn insert_peer(&mut self, region: Region, meta: metapb::Peer) -> Result<()> {
        // A replaced peer's unwritten rounds must not be confirmed to its successor.
        self.flush_raft_writes_of(region.id)?;
        let peer = Peer::new(
            &self.cfg,
            self.raft_engine.clone(),
            self.kv_engine.clone(),
            region,
            meta,
            self.entry_cache_budget.clone(),
        )?;
        if peer.raft_group().store().is_initialized() {
            self.region_ranges
                .insert(keys::data_end_key(&peer.region().end_key), peer.region_id());
        }
        self.peers.insert(peer.region_id(), peer);
        Ok(())
    }

    /// The store's configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Deletes truncated raft log on `scheduler`'s worker instead of inline.
    pub fn set_log_gc_scheduler(&mut self, scheduler: Scheduler<RaftLogGcTask>) {
        self.log_gc = Some(scheduler);
    }

    /// Hands region tasks (snapshot generation and apply, cleanup of destroyed peers) to
    /// `scheduler`'s worker instead of running them inline. The worker must run them in
    /// order and send each result back as [`StoreMsg::RegionTaskDone`]: a
    /// [`RegionRunner`] from [`Self::region_runner`] on a [`crate::worker::Worker`]
    /// thread, or a caller draining a [`Scheduler::manual`] queue.
    pub fn set_region_scheduler(&mut self, scheduler: Scheduler<RegionTask<EK::Snapshot>>) {
        self.region_tasks = RegionDispatch::Scheduled(scheduler);
    }

    /// A region task runner over this store's engines and snapshots, reporting to
    /// `notify`.
    #[must_use]
    pub fn region_runner(&self, notify: crate::region_worker::Notifier) -> RegionRunner<ER, EK> {
        RegionRunner::new(
            self.raft_engine.clone(),
            self.kv_engine.clone(),
            self.snap_mgr.clone(),
            self.cfg.snap_apply_batch_bytes as usize,
            notify,
        )
    }

    /// This store's staged snapshots.
    #[must_use]
    pub fn snap_manager(&self) -> &SnapManager {
        &self.snap_mgr
    }

    /// Whether the data of a destroyed peer of `region_id` is still being deleted.
    #[must_use]
    pub fn is_destroy_pending(&self, region_id: u64) -> bool {
        self.pending_destroys.contains(&region_id)
    }

    /// This store's id.
    #[must_use]
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The peer of `region_id` on this store.
    #[must_use]
    pub fn peer(&self, region_id: u64) -> Option<&Peer<ER, EK>> {
        self.peers.get(&region_id)
    }

    /// The status of every region on this store (peers pending removal left out), in
    /// region id order.
    #[must_use]
    pub fn region_statuses(&self) -> Vec<RegionStatus> {
        self.peers
            .values()
            .filter(|p| !p.pending_remove())
            .map(|p| {
                let raft = p.raft_group().raft();
                let hard_state = raft.hard_state();
                let status = RegionStatus {
                    region: p.region().clone(),
                    leader_store_id: p.leader().map_or(0, |l| l.store_id),
                    is_leader: p.is_leader(),
                    term: hard_state.term,
                    commit_index: hard_state.commit,
                    applied_index: raft.raft_log().applied,
                };
                debug_assert!(status.applied_index <= status.commit_index);
                status
            })
            .collect()
    }

    /// Every peer on this store.
    pub fn peers(&self) -> impl Iterator<Item = &Peer<ER, EK>> {
        self.peers.values()
    }

    /// The bytes of log entries this store's peers keep cached, together (bounded by
    /// `raft_entry_cache_store_bytes` plus one entry per peer).
    #[must_use]
    pub fn entry_cache_bytes(&self) -> u64 {
        self.entry_cache_budget.used()
    }

    /// The region holding `key`, if this store has a peer of it.
    #[must_use]
    pub fn region_for_key(&self, key: &[u8]) -> Option<&Region> {
        let data_key = keys::data_key(key);
        let (_, id) = self
            .region_ranges
            .range::<[u8], _>((
                std::ops::Bound::Excluded(data_key.as_slice()),
                std::ops::Bound::Unbounded,
            ))
            .next()?;
        let region = self.peers.get(id)?.region();
        crate::region_check::key_in_region(key, region).then_some(region)
    }

    /// The message sender.
    #[must_use]
    pub fn sender(&self) -> &S {
        &self.sender
    }

    /// The message sender, mutably.
    pub fn sender_mut(&mut self) -> &mut S {
        &mut self.sender
    }

    /// One raft worker iteration: handles `msgs`, then sends every peer's Ready messages,
    /// applies the committed entries into one kv-engine write batch and answers their
    /// callbacks, persists the Readies in one raft-engine write batch with one fsync (group
    /// commit), writes the kv batch and serves reads. Region
    /// tasks run at the end when they run inline, and their results are handled at once.
    ///
    /// # Errors
    /// Only fatal errors (engine failures); the store must stop on them.
    pub fn handle_msgs(&mut self, msgs: impl IntoIterator<Item = StoreMsg>) -> Result<()> {
        self.handle_batch(msgs)?;
        // Inline tasks can lead to more (an apply lets a peer take its next Ready); a few
        // rounds settle it, the rest runs after the next batch.
        for _ in 0..4 {
            let results = self.run_inline_region_tasks();
            if results.is_empty() {
                break;
            }
            self.handle_batch(
                results
                    .into_iter()
                    .map(|r| StoreMsg::RegionTaskDone(Box::new(r))),
            )?;
        }
        Ok(())
    }

    fn handle_batch(&mut self, msgs: impl IntoIterator<Item = StoreMsg>) -> Result<()> {
        self.complete_raft_writes()?;
        for msg in msgs {
            match msg {
                StoreMsg::RaftLogWritten => {}
                StoreMsg::Tick => self.on_tick()?,
                StoreMsg::RaftMessage(m) => self.on_raft_message(*m)?,
                StoreMsg::Command { request, callback } => self.on_command(*request, callback),
                StoreMsg::StoreUnreachable(store_id) => self.on_store_unreachable(store_id),
                StoreMsg::QueryRegions(callback) => callback(self.region_statuses()),
                StoreMsg::SnapshotStatus {
                    region_id,
                    to_peer,
                    delivered,
                } => {
                    if let Some(peer) = self.peers.get_mut(&region_id) {
                        let status = if delivered {
                            raft_core::SnapshotStatus::Finish
                        } else {
                            raft_core::SnapshotStatus::Failure
                        };
                        peer.raft_group_mut().report_snapshot(to_peer, status);
                    }
                }
                StoreMsg::RegionTaskDone(result) => self.on_region_task_done(*result)?,
            }
        }
        for peer in self.peers.values_mut() {
            peer.flush_writes(&self.cfg);
            peer.flush_reads();
        }
        // Persisting and applying can produce more work (a leader commits once its own
        // write is durable); a few rounds settle it, the rest waits for the next batch.
        for _ in 0..4 {
            if !self.handle_readies()? {
                break;
            }
        }
        // The kv engine now holds exactly what each peer applied: the moment to take
        // engine snapshots for the generations raft asked for.
        self.schedule_snapshot_generations()?;
        self.dispatch_region_tasks();
        self.sender.flush();
        Ok(())
    }

    /// One round of Ready handling over every peer. Returns whether any peer had one.
    fn handle_readies(&mut self) -> Result<bool> {
        self.flush_raft_writes_before_snapshots()?;
        let Self {
            peers,
            sender,
            cfg,
            region_ranges,
            pending_region_tasks,
            raft_wb,
            kv_wb,
            raft_writes,
            ..
        } = self;
        // Both batches start empty but for the rounds gathering in `raft_wb` for the
        // next asynchronous write: every write recycles its batch (a failed one stops
        // the store).
        let mut readies = Vec::new();
        let mut must_sync = false;
        let mut has_snapshot = false;
        for (&region_id, peer) in peers.iter_mut() {
            if peer.is_applying_snapshot() || !peer.raft_group().has_ready() {
                continue;
            }
            let mut rd = peer.raft_group_mut().ready()?;
            send_messages(peer, rd.take_messages(), sender);
            if let Some(snapshot) = rd.snapshot() {
                let task = begin_apply_snapshot(peer, snapshot, region_ranges, raft_wb)?;
                pending_region_tasks.push_back(task);
                has_snapshot = true;
            }
            let storage = peer.raft_group_mut().store_mut();
            storage.append(rd.entries(), raft_wb)?;
            if let Some(hs) = rd.hard_state() {
                storage.set_hard_state(*hs);
            }
            storage.write_raft_state(raft_wb)?;
            must_sync |= rd.must_sync();
            readies.push((region_id, rd));
        }
        if readies.is_empty() {
            return Ok(false);
        }
        // A leader's appends leave before its own fsync, so its disk write and the
        // followers' overlap (Raft thesis §10.2.1). Messages that promise durability
        // (votes, append responses) are the persisted messages, sent only after the write.
        sender.flush();
        // The committed entries are applied and their proposals answered before this
        // round's raft write. raft-core hands out only entries at or below the persisted
        // index (`RaftLog::next_committed_ents`), so they are durable here and on a quorum
        // already; only the entries appended in this round wait for the fsync. Answering
        // first spares every write one fsync of latency: the entries proposed after it
        // no longer hold its answer back. A read is served on this thread after the kv
        // write, so nothing reads around it.
        let apply_started = std::time::Instant::now();
        let mut answers = std::mem::take(&mut self.answers);
        let mut results = Vec::new();
        for (region_id, rd) in &mut readies {
            let peer = peers.get_mut(region_id).expect("peer handled above");
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                crate::store_metrics::applied_entries(committed.len());
                let _span =
                    tracing::debug_span!("apply", region_id = *region_id, peer_id = peer.meta().id)
                        .entered();
                peer.apply_entries(committed, kv_wb, &mut answers, &mut results)?;
                peer.write_apply_state(kv_wb)?;
                peer.trim_entry_cache();
            }
        }
        let apply_seconds = apply_started.elapsed().as_secs_f64();
        for (cb, resp) in answers.drain(..) {
            cb(resp);
        }
        // Group commit: one write and at most one fsync for every peer's Ready. With an
        // asynchronous writer the round joins the batch gathering for the next write, and
        // its persisted messages wait for that write. A round that begins applying a
        // snapshot is written here, after everything before it: the region worker
        // applies the snapshot's data once the round ends.
        let sync = must_sync && cfg.sync_log;
        let write_now = !raft_writes.is_async() || has_snapshot;
        let mut round = Vec::new();
        for (region_id, mut rd) in readies {
            let peer = peers.get_mut(&region_id).expect("peer handled above");
            round.push(PersistedReady {
                region_id,
                number: rd.number(),
                messages: rd.take_persisted_messages(),
            });
            let lost_leadership = rd
                .soft_state()
                .is_some_and(|ss| ss.raft_state != raft_core::StateRole::Leader);
            if lost_leadership {
                peer.on_leadership_lost();
                // Only a leader sends snapshots: its staged one can go.
                peer.raft_group_mut().store_mut().clear_snapshot_cache();
            }
            peer.on_read_states(rd.take_read_states());
        }
        self.answers = answers;
        self.raft_writes.gather(round, sync);
        if write_now {
            self.flush_raft_writes()?;
        } else {
            self.raft_writes
                .submit_if_idle(&mut self.raft_wb, &self.raft_engine);
        }
        let Self {
            peers,
            kv_engine,
            kv_wb,
            ..
        } = self;
        let mut answers = std::mem::take(&mut self.answers);
        // The applied index travels with the data it describes. A compaction must be on
        // disk before the log it truncates is deleted, and a removal (Tombstone) before
        // the destroyed peer's data is. This batch may reach the disk before the raft
        // batch of its round (with an asynchronous writer, or after a crash between the
        // two): it applies only entries persisted in earlier rounds, so the applied index
        // on disk never passes the log on disk, and a commit index on disk left behind
        // the applied index is raised to it on load (`PeerStorage::new`).
        let must_sync_kv = results.iter().any(|r| {
            matches!(
                r,
                ApplyResult::CompactLog { .. }
                    | ApplyResult::ConfChange {
                        removed_self: true,
                        ..
                    }
            )
        });
        if !kv_wb.is_empty() {
            let write_started = std::time::Instant::now();
            kv_engine.write(kv_wb, WriteOptions { sync: must_sync_kv })?;
            crate::store_metrics::apply_round(
                apply_seconds + write_started.elapsed().as_secs_f64(),
            );
        }
        for peer in peers.values_mut().filter(|p| !p.is_applying_snapshot()) {
            let applied = peer.raft_group().store().applied_index();
            if applied > peer.raft_group().raft().raft_log().applied {
                peer.raft_group_mut().advance_apply_to(applied)?;
            }
            peer.serve_reads(&mut answers)?;
        }
        for (cb, resp) in answers.drain(..) {
            cb(resp);
        }
        self.answers = answers;
        recycle(&self.kv_engine, &mut self.kv_wb);
        self.on_apply_results(results)?;
        Ok(true)
    }

    fn on_apply_results(&mut self, results: Vec<ApplyResult>) -> Result<()> {
        for result in results {
            match result {
                ApplyResult::CompactLog {
                    region_id,
                    first_index,
                    compact_index,
                } => {
                    let task = RaftLogGcTask {
                        region_id,
                        start_index: first_index,
                        end_index: compact_index + 1,
                    };
                    debug!(region_id, first_index, compact_index, "raft log compacted");
                    // On the GC worker when there is one (and room in its queue); inline
                    // otherwise, as in the deterministic test clusters.
                    let unscheduled = match &self.log_gc {
                        Some(scheduler) => scheduler.schedule(task).err(),
                        None => Some(task),
                    };
                    if let Some(task) = unscheduled {
                        task.run_on(&self.raft_engine)?;
                    }
                }
                ApplyResult::ConfChange {
                    region_id,
                    removed_self: true,
                } => self.destroy_peer(region_id, TombstoneWrite::AlreadyDurable)?,
                ApplyResult::ConfChange { .. } => {}
                ApplyResult::Split { derived, regions } => self.on_split(derived, regions)?,
            }
        }
        Ok(())
    }

    /// Registers the regions a split created and starts their peers on this store.
    fn on_split(&mut self, derived: Region, regions: Vec<Region>) -> Result<()> {
        let parent_leads = self.peers.get(&derived.id).is_some_and(|p| p.is_leader());
        for r in &regions {
            self.region_ranges
                .insert(keys::data_end_key(&r.end_key), r.id);
        }
        self.region_ranges
            .insert(keys::data_end_key(&derived.end_key), derived.id);
        for r in regions {
            let Some(meta) = r
                .peers
                .iter()
                .find(|p| p.store_id == self.store_id)
                .copied()
            else {
                continue;
            };
            let region_id = r.id;
            self.insert_peer(r, meta)?;
            if parent_leads {
                // The parent's leader is up to date: elect its sibling at once rather than
                // after an election timeout.
                if let Some(peer) = self.peers.get_mut(&region_id) {
                    peer.raft_group_mut().campaign()?;
                }
            }
        }
        Ok(())
    }

    /// Removes a peer that is no longer a member and has its data deleted by the region
    /// worker. `tombstone` says whether its `Tombstone` state is already on disk.
    fn destroy_peer(&mut self, region_id: u64, tombstone: TombstoneWrite) -> Result<()> {
        // The region worker deletes the peer's raft log: none of its writes may land
        // after that.
        self.flush_raft_writes_of(region_id)?;
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        info!(
            store_id = self.store_id,
            region_id, "destroying removed peer"
        );
        peer.fail_all(&Error::RegionNotFound(region_id));
        let mut region = peer.region().clone();
        unregister_range(&mut self.region_ranges, &region.end_key, region_id);
        if let TombstoneWrite::Needed { removed_by } = tombstone {
            // Recorded at the conf_ver that proved the removal, not the stale peer's own:
            // messages of the configurations in between may still name this peer id, and
            // must not recreate it with an empty log (it voted and acknowledged entries).
            let epoch = region.region_epoch.get_or_insert_with(Default::default);
            epoch.conf_ver = epoch.conf_ver.max(removed_by);
        }
        self.tombstones
            .insert(region_id, region.region_epoch.unwrap_or_default());
        // The tombstone is durable before the data goes (a restart finishes the cleanup,
        // never resurrects the peer).
        if tombstone != TombstoneWrite::AlreadyDurable {
            let mut kv_wb = self.kv_engine.write_batch();
            crate::peer_storage::write_region_state(&mut kv_wb, &region, PeerState::Tombstone)?;
            self.kv_engine.write(&kv_wb, WriteOptions::synced())?;
        }
        self.pending_destroys.insert(region_id);
        self.pending_region_tasks
            .push_back(RegionTask::Destroy { region });
        Ok(())
    }
}

/// Whether [`Store::destroy_peer`] must write the peer's `Tombstone` state itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TombstoneWrite {
    /// Apply wrote it, synced, in the batch of the conf change that removed the peer.
    AlreadyDurable,
    /// The peer learned of its removal from another store (a tombstone reply, or a
    /// message to a newer peer of its region on this store): nothing local wrote it.
    /// `removed_by` is the conf_ver of the configuration that proved the removal.
    Needed {
        /// A conf_ver at which the peer is no longer a member.
        removed_by: u64,
    },
}

/// Removes the entry of the region ending at user key `end_key` from `region_ranges` if
/// it is `region_id`'s (another region may own that end by now).
fn unregister_range(region_ranges: &mut BTreeMap<Vec<u8>, u64>, end_key: &[u8], region_id: u64) {
    let end = keys::data_end_key(end_key);
    if region_ranges.get(&end) == Some(&region_id) {
        region_ranges.remove(&end);
    }
}

/// Wraps a peer's Raft messages with routing information and queues them.
pub(crate) fn send_messages<ER: Engine, EK: Engine, S: RaftMessageSender>(
    peer: &Peer<ER, EK>,
    msgs: Vec<eraftpb::Message>,
    sender: &mut S,
) {
    let region = peer.region();
    for m in msgs {
        let Some(to) = peer.resolve_peer(m.to) else {
            debug!(
                region_id = region.id,
                to = m.to,
                "no address for peer; message dropped"
            );
            continue;
        };
        let rm = RaftMessage {
            region_id: region.id,
            from_peer: Some(*peer.meta()),
            to_peer: Some(to),
            message: Some(m),
            region_epoch: region.region_epoch,
            is_tombstone: false,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        };
        sender.send(to.store_id, rm);
    }
}
