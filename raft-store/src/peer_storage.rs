//! raft-core's `Storage` over the raft engine, plus the persisted state of one peer.

use std::cell::RefCell;
use std::fmt;

use engines::{Direction, Engine, Peekable, WriteBatch, WriteOptions};
use prost::Message as _;
use raft_core::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft_core::{RaftState, Storage, StorageError, StorageResult};
use tracing::debug;

use crate::entry_cache::{CacheBudget, EntryCache};
use crate::error::{Error, Result};
use crate::keys::{self, CF_META, CF_RAFT};
use crate::pb::metapb::{self, PeerRole, Region, RegionEpoch};
use crate::pb::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState, SnapshotMeta,
};
use crate::snapshot::{SnapKey, to_raft_snapshot};

/// The log index and term every bootstrapped region starts at. Peers created later by a
/// conf change start empty (index 0), so the leader must send them a snapshot rather
/// than replay a log that never existed on them.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// See [`RAFT_INIT_LOG_INDEX`].
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Where the snapshot this peer hands its followers stands (a leader's business).
#[derive(Debug, Default)]
enum SnapGen {
    /// No snapshot wanted or held.
    #[default]
    Idle,
    /// raft asked for one; the store schedules a generation at the end of its iteration.
    Requested,
    /// The region worker is building generation `gen_id`.
    Generating {
        /// Answers from older generations are discarded.
        gen_id: u64,
    },
    /// A staged snapshot, handed to raft for as long as it stays usable.
    Ready {
        /// The descriptor, as raft sends it.
        snapshot: Snapshot,
        /// Its staged data.
        key: SnapKey,
        /// The region epoch it was taken at.
        epoch: Option<RegionEpoch>,
    },
}

/// The persisted state of one peer and the read side of its raft log.
///
/// Invariants: `apply_state.truncated_state.index < first_index() <= last_index() + 1`;
/// `apply_state.applied_index <= raft_state.hard_state.commit <= raft_state.last_index`
/// (the commit index is raised to the applied index on load if it lagged, since the
/// commit index is persisted without sync).
pub struct PeerStorage<ER: Engine, EK: Engine> {
    region: Region,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    raft_engine: ER,
    kv_engine: EK,
    /// The newest entries, served to `entries` without reading the raft engine.
    entry_cache: EntryCache,
    /// Changed by `Storage::snapshot` (which takes `&self`); only the raft worker thread
    /// touches a peer, so a `RefCell` is enough.
    snap_gen: RefCell<SnapGen>,
}

impl<ER: Engine, EK: Engine> fmt::Debug for PeerStorage<ER, EK> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerStorage")
            .field("region_id", &self.region.id)
            .field("raft_state", &self.raft_state)
            .field("apply_state", &self.apply_state)
            .finish_non_exhaustive()
    }
}

/// The raft-core membership of a region (the inverse of [`region_peers_from_conf_state`]).
#[must_use]
pub fn conf_state_from_region(region: &Region) -> ConfState {
    let mut cs = ConfState::default();
    let mut joint = false;
    for p in &region.peers {
        match p.role() {
            PeerRole::Voter => {
                cs.voters.push(p.id);
                cs.voters_outgoing.push(p.id);
            }
            PeerRole::Learner => cs.learners.push(p.id),
            PeerRole::IncomingVoter => {
                joint = true;
                cs.voters.push(p.id);
            }
            PeerRole::DemotingVoter => {
                joint = true;
                cs.voters_outgoing.push(p.id);
                cs.learners_next.push(p.id);
            }
            PeerRole::OutgoingVoter => {
                joint = true;
                cs.voters_outgoing.push(p.id);
            }
        }
    }
    if !joint {
        cs.voters_outgoing.clear();
    }
    cs
}

/// The roles of a region's peers after a membership change: every member of `cs`, with
/// store ids taken from `known` (the region's old peers and the peers the change named).
/// Members whose store is unknown are left out (they cannot be reached anyway).
#[must_use]
pub fn region_peers_from_conf_state(cs: &ConfState, known: &[metapb::Peer]) -> Vec<metapb::Peer> {
    let joint = !cs.voters_outgoing.is_empty();
    let mut ids: Vec<u64> = cs
        .voters
        .iter()
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners)
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut peers = Vec::with_capacity(ids.len());
    for id in ids {
        let incoming = cs.voters.contains(&id);
        let outgoing = cs.voters_outgoing.contains(&id);
        let role = if cs.learners.contains(&id) {
            PeerRole::Learner
        } else if !joint || (incoming && outgoing) {
            PeerRole::Voter
        } else if incoming {
            PeerRole::IncomingVoter
        } else if cs.learners_next.contains(&id) {
            PeerRole::DemotingVoter
        } else {
            PeerRole::OutgoingVoter
        };
        if let Some(p) = known.iter().find(|p| p.id == id) {
            peers.push(metapb::Peer {
                id,
                store_id: p.store_id,
                role: role as i32,
            });
        }
    }
    peers
}

fn storage_err(e: impl Into<Error>) -> StorageError {
    StorageError::Other(Box::new(e.into()))
}

/// Reads and decodes a protobuf value.
pub(crate) fn get_msg<M: prost::Message + Default>(
    engine: &impl Peekable,
    cf: &str,
    key: &[u8],
) -> Result<Option<M>> {
    match engine.get_with(cf, key, |v| M::decode(v))? {
        Some(Ok(m)) => Ok(Some(m)),
        Some(Err(e)) => Err(Error::Corruption(format!("key {key:?} in {cf}: {e}"))),
        None => Ok(None),
    }
}

impl<ER: Engine, EK: Engine> PeerStorage<ER, EK> {
    /// Loads the peer of `region` from the engines (or initializes its state when the
    /// engines hold none: a bootstrapped region starts at [`RAFT_INIT_LOG_INDEX`], a peer
    /// created by a message starts empty).
    ///
    /// # Errors
    /// An engine failure, or persisted state that contradicts itself.
    pub fn new(raft_engine: ER, kv_engine: EK, region: Region) -> Result<Self> {
        let region_id = region.id;
        let initialized = !region.peers.is_empty();
        let raft_state = match get_msg::<RaftLocalState>(
            &raft_engine,
            CF_RAFT,
            &keys::raft_state_key(region_id),
        )? {
            Some(s) => s,
            None if initialized => RaftLocalState {
                hard_state: Some(HardState {
                    term: RAFT_INIT_LOG_TERM,
                    vote: 0,
                    commit: RAFT_INIT_LOG_INDEX,
                }),
                last_index: RAFT_INIT_LOG_INDEX,
                last_term: RAFT_INIT_LOG_TERM,
            },
            None => RaftLocalState::default(),
        };
        let apply_state = match get_msg::<RaftApplyState>(
            &kv_engine,
            CF_META,
            &keys::apply_state_key(region_id),
        )? {
            Some(s) => s,
            None if initialized => RaftApplyState {
                applied_index: RAFT_INIT_LOG_INDEX,
                applied_term: RAFT_INIT_LOG_TERM,
                truncated_state: Some(RaftTruncatedState {
                    index: RAFT_INIT_LOG_INDEX,
                    term: RAFT_INIT_LOG_TERM,
                }),
            },
            None => RaftApplyState::default(),
        };
        let mut storage = Self {
            region,
            raft_state,
            apply_state,
            raft_engine,
            kv_engine,
            entry_cache: EntryCache::new(0, CacheBudget::new(0)),
            snap_gen: RefCell::new(SnapGen::Idle),
        };
        storage.validate_and_repair()?;
        Ok(storage)
    }

    fn validate_and_repair(&mut self) -> Result<()> {
        let truncated = self.truncated_index();
        let applied = self.apply_state.applied_index;
        let last = self.raft_state.last_index;
        let hs = self
            .raft_state
            .hard_state
            .get_or_insert_with(HardState::default);
        // The commit index is persisted without sync, the applied index with the data:
        // after a crash the applied index may be ahead, and it is the truth.
        if hs.commit < applied {
            hs.commit = applied;
        }
        if last < truncated {
            // A snapshot's kv batch landed but its raft batch did not (see `snapshot`):
            // the log ends at the snapshot.
            self.raft_state.last_index = truncated;
            self.raft_state.last_term = self.truncated_term();
        }
        let last = self.raft_state.last_index;
        let hs = self
            .raft_state
            .hard_state
            .get_or_insert_with(HardState::default);
        if hs.commit < truncated {
            hs.commit = truncated;
        }
        if hs.commit > last {
            return Err(Error::Corruption(format!(
                "region {}: inconsistent raft state {:?} with apply state {:?}",
                self.region.id, self.raft_state, self.apply_state
            )));
        }
        if last == truncated && self.raft_state.last_term == 0 {
            self.raft_state.last_term = self.truncated_term();
        }
        Ok(())
    }

    /// The region this peer replicates.
    #[must_use]
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Replaces the region (after a conf change, split or snapshot).
    pub fn set_region(&mut self, region: Region) {
        self.region = region;
    }

    /// Whether the peer knows its region's membership (a peer created by a message does
    /// not until its first snapshot).
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The persisted raft state.
    #[must_use]
    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    /// The persisted apply state.
    #[must_use]
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    /// Replaces the apply state (after applying a batch).
    pub fn set_apply_state(&mut self, state: RaftApplyState) {
        self.apply_state = state;
    }

    /// The applied index.
    #[must_use]
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    /// The index of the last truncated entry.
    #[must_use]
    pub fn truncated_index(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.index)
    }

    /// The term of the last truncated entry.
    #[must_use]
    pub fn truncated_term(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.term)
    }

    /// The raft engine.
    #[must_use]
    pub fn raft_engine(&self) -> &ER {
        &self.raft_engine
    }

    /// The kv engine.
    #[must_use]
    pub fn kv_engine(&self) -> &EK {
        &self.kv_engine
    }

    /// Stages `entries` into `wb`, deleting any persisted entries after them that they
    /// replace (a conflicting suffix), and updates the cached last index and term.
    ///
    /// # Errors
    /// An engine failure while staging.
    pub fn append(&mut self, entries: &[Entry], wb: &mut ER::WriteBatch) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        debug_assert!(
            first.index > self.truncated_index(),
            "append before the truncated index"
        );
        let region_id = self.region.id;
        let mut buf = Vec::new();
        for e in entries {
            buf.clear();
            e.encode(&mut buf)
                .map_err(|err| Error::Other(err.to_string()))?;
            wb.put(CF_RAFT, &keys::raft_log_key(region_id, e.index), &buf)?;
        }
        let prev_last = self.raft_state.last_index;
        if last.index < prev_last {
            let from = keys::raft_log_key(region_id, last.index + 1);
            let to = keys::raft_log_key(region_id, prev_last + 1);
            wb.delete_range(CF_RAFT, from.as_slice()..to.as_slice())?;
        }
        self.raft_state.last_index = last.index;
        self.raft_state.last_term = last.term;
        self.entry_cache.append(entries);
        Ok(())
    }

    /// Drops the cached entries at or below `index` (see [`EntryCache::compact_to`]).
    pub fn compact_entry_cache(&mut self, index: u64) {
        self.entry_cache.compact_to(index);
    }

    /// Empties the entry cache if this peer appended nothing since the previous sweep and
    /// the store's caches are `crowded` (see [`EntryCache::sweep`]).
    pub fn sweep_entry_cache(&mut self, crowded: bool) {
        self.entry_cache.sweep(crowded);
    }

    /// The bytes of log entries this peer keeps cached.
    #[must_use]
    pub fn entry_cache_bytes(&self) -> u64 {
        self.entry_cache.bytes()
    }

    /// Keeps up to `peer_bytes` of the newest entries in memory (0: none), within the
    /// store's `budget`, from the next append on.
    pub fn set_entry_cache(&mut self, peer_bytes: u64, budget: CacheBudget) {
        self.entry_cache = EntryCache::new(peer_bytes, budget);
    }

    /// Moves the log's end to a snapshot at `(index, term)`: the log is empty after it.
    pub fn set_snapshot_raft_state(&mut self, index: u64, term: u64) {
        self.raft_state.last_index = index;
        self.raft_state.last_term = term;
        self.entry_cache.clear();
    }

    /// Records a new hard state (staged by [`Self::write_raft_state`]).
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.raft_state.hard_state = Some(hs);
    }

    /// Stages the raft state into `wb`.
    ///
    /// # Errors
    /// An engine failure while staging.
    pub fn write_raft_state(&self, wb: &mut ER::WriteBatch) -> Result<()> {
        wb.put(
            CF_RAFT,
            &keys::raft_state_key(self.region.id),
            &self.raft_state.encode_to_vec(),
        )?;
        Ok(())
    }

    /// Stages the apply state into `wb` (a kv write batch, with the data it describes).
    ///
    /// # Errors
    /// An engine failure while staging.
    pub fn write_apply_state(&self, wb: &mut EK::WriteBatch) -> Result<()> {
        write_apply_state(wb, self.region.id, &self.apply_state)
    }

    fn check_range(&self, low: u64, high: u64) -> StorageResult<()> {
        if low > high {
            return Err(storage_err(Error::Other(format!(
                "invalid log range [{low}, {high})"
            ))));
        }
        if low <= self.truncated_index() {
            return Err(StorageError::Compacted);
        }
        if high > self.raft_state.last_index + 1 {
            return Err(StorageError::Unavailable);
        }
        Ok(())
    }
}

/// Stages a region's apply state into a kv write batch.
///
/// # Errors
/// An engine failure while staging.
pub fn write_apply_state<W: WriteBatch>(
    wb: &mut W,
    region_id: u64,
    state: &RaftApplyState,
) -> Result<()> {
    wb.put(
        CF_META,
        &keys::apply_state_key(region_id),
        &state.encode_to_vec(),
    )?;
    Ok(())
}

/// Stages a region's local state into a kv write batch.
///
/// # Errors
/// An engine failure while staging.
pub fn write_region_state<W: WriteBatch>(
    wb: &mut W,
    region: &Region,
    state: PeerState,
) -> Result<()> {
    let local = RegionLocalState {
        state: state as i32,
        region: Some(region.clone()),
        applying_snapshot: None,
    };
    wb.put(
        CF_META,
        &keys::region_state_key(region.id),
        &local.encode_to_vec(),
    )?;
    Ok(())
}

/// Stages the `Applying` state of a region that is being replaced by the snapshot `meta`
/// (whose region it records).
///
/// # Errors
/// An engine failure while staging.
pub fn write_applying_state<W: WriteBatch>(wb: &mut W, meta: &SnapshotMeta) -> Result<()> {
    let local = RegionLocalState {
        state: PeerState::Applying as i32,
        region: meta.region.clone(),
        applying_snapshot: Some(meta.clone()),
    };
    wb.put(
        CF_META,
        &keys::region_state_key(meta.region_id),
        &local.encode_to_vec(),
    )?;
    Ok(())
}

impl<ER: Engine, EK: Engine> Storage for PeerStorage<ER, EK> {
    fn initial_state(&self) -> StorageResult<RaftState> {
        let hard_state = self.raft_state.hard_state.unwrap_or_default();
        Ok(RaftState::new(
            hard_state,
            conf_state_from_region(&self.region),
        ))
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>> {
        self.check_range(low, high)?;
        if low == high {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.entry_cache.get(low, high, max_size) {
            return Ok(entries);
        }
        let region_id = self.region.id;
        let from = keys::raft_log_key(region_id, low);
        let to = keys::raft_log_key(region_id, high);
        let mut entries = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        let mut failure = None;
        self.raft_engine
            .scan(
                CF_RAFT,
                from.as_slice()..to.as_slice(),
                Direction::Forward,
                |_, value| {
                    let entry = match Entry::decode(value) {
                        Ok(e) => e,
                        Err(e) => {
                            failure = Some(Error::Corruption(format!("raft log entry: {e}")));
                            return false;
                        }
                    };
                    let expected = low + entries.len() as u64;
                    if entry.index != expected {
                        failure = Some(Error::Corruption(format!(
                            "region {region_id}: raft log has entry {} where {expected} belongs",
                            entry.index
                        )));
                        return false;
                    }
                    size += raft_core::util::entry_size(&entry);
                    if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                        return false;
                    }
                    entries.push(entry);
                    true
                },
            )
            .map_err(storage_err)?;
        if let Some(e) = failure {
            return Err(storage_err(e));
        }
        let limited = max_size.is_some_and(|max| size > max);
        if entries.len() as u64 != high - low && !limited {
            return Err(storage_err(Error::Corruption(format!(
                "region {region_id}: raft log holes in [{low}, {high}): found {}",
                entries.len()
            ))));
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> StorageResult<u64> {
        if index == self.truncated_index() {
            return Ok(self.truncated_term());
        }
        self.check_range(index, index + 1)?;
        if index == self.raft_state.last_index {
            return Ok(self.raft_state.last_term);
        }
        // A leader asks for the term before each append it sends and each index it
        // may commit: the newest entries, which the cache holds (else a read and a
        // decode of the whole entry for one number).
        if let Some(term) = self.entry_cache.term(index) {
            return Ok(term);
        }
        let key = keys::raft_log_key(self.region.id, index);
        match get_msg::<Entry>(&self.raft_engine, CF_RAFT, &key).map_err(storage_err)? {
            Some(e) => Ok(e.term),
            None => Err(storage_err(Error::Corruption(format!(
                "region {}: raft log entry {index} missing",
                self.region.id
            )))),
        }
    }

    fn first_index(&self) -> u64 {
        self.truncated_index() + 1
    }

    fn last_index(&self) -> u64 {
        self.raft_state.last_index
    }

    /// Never builds a snapshot here: it hands out the staged one while it is usable (at
    /// least `request_index`, not older than the log's start, taken at the current
    /// epoch), and otherwise records a request and answers
    /// `SnapshotTemporarilyUnavailable`; the store has it generated off this thread.
    fn snapshot(&self, request_index: u64) -> StorageResult<Snapshot> {
        let mut state = self.snap_gen.borrow_mut();
        if let SnapGen::Ready {
            snapshot, epoch, ..
        } = &*state
        {
            let index = crate::snapshot::snapshot_index(snapshot);
            if index >= request_index
                && index >= self.truncated_index()
                && *epoch == self.region.region_epoch
            {
                return Ok(snapshot.clone());
            }
            debug!(
                region_id = self.region.id,
                index, request_index, "staged snapshot is stale; generating another"
            );
            *state = SnapGen::Idle;
        }
        if matches!(*state, SnapGen::Idle) && self.is_initialized() {
            *state = SnapGen::Requested;
        }
        Err(StorageError::SnapshotTemporarilyUnavailable)
    }
}

/// The snapshot side of a peer's storage: generation bookkeeping (leader) and the start
/// of an apply (follower).
impl<ER: Engine, EK: Engine> PeerStorage<ER, EK> {
    /// Whether raft asked for a snapshot since the last call; if so it is now generation
    /// `gen_id`, which the caller must schedule.
    pub fn take_snapshot_request(&mut self, gen_id: u64) -> bool {
        let state = self.snap_gen.get_mut();
        if matches!(state, SnapGen::Requested) {
            *state = SnapGen::Generating { gen_id };
            return true;
        }
        false
    }

    /// Takes the result of generation `gen_id`, unless a newer one superseded it (or the
    /// peer stopped wanting one). A snapshot of an epoch the region has left is dropped.
    /// Returns whether the result answered the current generation.
    pub fn on_snapshot_generated(
        &mut self,
        gen_id: u64,
        result: Result<Box<SnapshotMeta>>,
    ) -> bool {
        let state = self.snap_gen.get_mut();
        if !matches!(state, SnapGen::Generating { gen_id: g } if *g == gen_id) {
            return false;
        }
        let epoch = self.region.region_epoch;
        *state = match result {
            Ok(meta) if meta.region.as_ref().and_then(|r| r.region_epoch) == epoch => {
                SnapGen::Ready {
                    snapshot: to_raft_snapshot(&meta),
                    key: SnapKey::of(&meta),
                    epoch,
                }
            }
            // The region changed meanwhile (the snapshot may not even name a new member),
            // or generation failed: raft asks again on its next attempt.
            Ok(_) | Err(_) => SnapGen::Idle,
        };
        true
    }

    /// Forgets the staged snapshot and any generation in progress (leadership lost).
    pub fn clear_snapshot_cache(&mut self) {
        *self.snap_gen.get_mut() = SnapGen::Idle;
    }

    /// The staged snapshot this peer holds for its followers, if any.
    #[must_use]
    pub fn cached_snapshot(&self) -> Option<SnapKey> {
        match &*self.snap_gen.borrow() {
            SnapGen::Ready { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// Starts applying the snapshot `meta` describes: persists (synced) `Applying` with
    /// the new region and the descriptor, and the apply state at the snapshot; stages
    /// the deletion of the whole old log into `raft_wb`; moves the in-memory state to the
    /// snapshot. The region worker writes the data later. Returns the previous region.
    ///
    /// The kv write comes first: a crash before the raft batch lands leaves a raft state
    /// behind the truncated index, which [`Self::new`] repairs.
    ///
    /// # Errors
    /// A descriptor for another region, or an engine failure.
    pub fn begin_apply_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        raft_wb: &mut ER::WriteBatch,
    ) -> Result<Region> {
        let region = meta.region.clone().unwrap_or_default();
        if region.id != self.region.id {
            return Err(Error::Corruption(format!(
                "snapshot of region {} sent to region {}",
                region.id, self.region.id
            )));
        }
        let apply_state = crate::snapshot::apply_state_at(meta);
        let mut kv_wb = self.kv_engine.write_batch();
        write_apply_state(&mut kv_wb, region.id, &apply_state)?;
        write_applying_state(&mut kv_wb, meta)?;
        self.kv_engine.write(&kv_wb, WriteOptions::synced())?;

        let log_start = keys::raft_log_prefix(region.id);
        let log_end = keys::raft_log_key(region.id, u64::MAX);
        raft_wb.delete_range(CF_RAFT, log_start.as_slice()..log_end.as_slice())?;
        self.set_snapshot_raft_state(apply_state.applied_index, apply_state.applied_term);
        self.apply_state = apply_state;
        self.write_raft_state(raft_wb)?;
        self.clear_snapshot_cache();
        Ok(std::mem::replace(&mut self.region, region))
    }

    /// Forgets everything but the vote, durably: the log and raft state go (keeping term
    /// and vote, so no vote is ever cast twice), then the region and apply states. The
    /// peer is uninitialized afterwards and needs a new snapshot. For a snapshot whose
    /// staged data was lost or corrupt; the caller has cleared the region's data.
    ///
    /// # Errors
    /// An engine failure.
    pub fn reset_to_uninitialized(&self) -> Result<()> {
        let region_id = self.region.id;
        let hs = self.raft_state.hard_state.unwrap_or_default();
        let raft_state = RaftLocalState {
            hard_state: Some(HardState {
                term: hs.term,
                vote: hs.vote,
                commit: 0,
            }),
            last_index: 0,
            last_term: 0,
        };
        // Raft first: a crash before the kv write leaves `Applying`, which is redone
        // (and fails the same way) at the next start.
        let mut raft_wb = self.raft_engine.write_batch();
        let log_start = keys::raft_log_prefix(region_id);
        let log_end = keys::raft_log_key(region_id, u64::MAX);
        raft_wb.delete_range(CF_RAFT, log_start.as_slice()..log_end.as_slice())?;
        raft_wb.put(
            CF_RAFT,
            &keys::raft_state_key(region_id),
            &raft_state.encode_to_vec(),
        )?;
        self.raft_engine.write(&raft_wb, WriteOptions::synced())?;
        let mut kv_wb = self.kv_engine.write_batch();
        kv_wb.delete(CF_META, &keys::region_state_key(region_id))?;
        kv_wb.delete(CF_META, &keys::apply_state_key(region_id))?;
        self.kv_engine.write(&kv_wb, WriteOptions::synced())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use engines::{Engine, MemoryEngine};

    use super::*;
    use crate::pb::metapb::Peer;

    fn engines() -> (MemoryEngine, MemoryEngine) {
        let raft = MemoryEngine::new(&[CF_RAFT]).unwrap();
        let kv = MemoryEngine::new(&[keys::CF_DEFAULT, CF_META]).unwrap();
        (raft, kv)
    }

    fn region() -> Region {
        Region {
            id: 1,
            peers: vec![
                Peer {
                    id: 1,
                    store_id: 1,
                    role: 0,
                },
                Peer {
                    id: 2,
                    store_id: 2,
                    role: 0,
                },
            ],
            ..Default::default()
        }
    }

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: bytes::Bytes::from(vec![index as u8; 10]),
            ..Default::default()
        }
    }

    fn append(s: &mut PeerStorage<MemoryEngine, MemoryEngine>, es: &[Entry]) {
        let mut wb = s.raft_engine().write_batch();
        s.append(es, &mut wb).unwrap();
        s.write_raft_state(&mut wb).unwrap();
        s.raft_engine()
            .write(&wb, engines::WriteOptions::synced())
            .unwrap();
    }

    #[test]
    fn bootstrapped_region_starts_at_the_init_index() {
        let (raft, kv) = engines();
        let s = PeerStorage::new(raft, kv, region()).unwrap();
        assert_eq!(s.first_index(), RAFT_INIT_LOG_INDEX + 1);
        assert_eq!(s.last_index(), RAFT_INIT_LOG_INDEX);
        assert_eq!(s.term(RAFT_INIT_LOG_INDEX).unwrap(), RAFT_INIT_LOG_TERM);
        let state = s.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1, 2]);
        assert_eq!(state.hard_state.commit, RAFT_INIT_LOG_INDEX);
    }

    #[test]
    fn uninitialized_peer_starts_empty() {
        let (raft, kv) = engines();
        let s = PeerStorage::new(
            raft,
            kv,
            Region {
                id: 9,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((s.first_index(), s.last_index()), (1, 0));
        assert!(!s.is_initialized());
    }

    #[test]
    fn append_truncates_conflicts_and_survives_restart() {
        for cache_bytes in [0, 1 << 20] {
            append_truncates_conflicts_and_survives_restart_with(cache_bytes);
        }
    }

    fn append_truncates_conflicts_and_survives_restart_with(cache_bytes: u64) {
        let (raft, kv) = engines();
        let mut s = PeerStorage::new(raft.clone(), kv.clone(), region()).unwrap();
        s.set_entry_cache(cache_bytes, CacheBudget::new(u64::MAX));
        append(&mut s, &[ent(6, 6), ent(7, 6), ent(8, 6)]);
        assert_eq!(s.entries(6, 9, None).unwrap().len(), 3);
        append(&mut s, &[ent(7, 7)]);
        assert_eq!(s.last_index(), 7);
        assert_eq!(s.term(7).unwrap(), 7);
        assert_eq!(s.entries(8, 9, None), Err(StorageError::Unavailable));
        // The replaced suffix is gone from the engine, not just hidden.
        assert!(
            raft.get(CF_RAFT, &keys::raft_log_key(1, 8))
                .unwrap()
                .is_none()
        );

        let s = PeerStorage::new(raft, kv, region()).unwrap();
        assert_eq!(s.last_index(), 7);
        assert_eq!(s.term(7).unwrap(), 7);
        assert_eq!(s.entries(6, 8, None).unwrap(), vec![ent(6, 6), ent(7, 7)]);
    }

    #[test]
    fn entries_respect_bounds_and_size_limits() {
        for cache_bytes in [0, 1 << 20] {
            entries_respect_bounds_and_size_limits_with(cache_bytes);
        }
    }

    fn entries_respect_bounds_and_size_limits_with(cache_bytes: u64) {
        let (raft, kv) = engines();
        let mut s = PeerStorage::new(raft, kv, region()).unwrap();
        s.set_entry_cache(cache_bytes, CacheBudget::new(u64::MAX));
        append(&mut s, &(6..=15).map(|i| ent(i, 6)).collect::<Vec<_>>());
        assert_eq!(s.entries(5, 7, None), Err(StorageError::Compacted));
        assert_eq!(s.entries(6, 17, None), Err(StorageError::Unavailable));
        let one = raft_core::util::entry_size(&ent(6, 6));
        assert_eq!(s.entries(6, 16, Some(one * 3)).unwrap().len(), 3);
        assert_eq!(
            s.entries(6, 16, Some(0)).unwrap().len(),
            1,
            "at least one entry"
        );
        assert_eq!(s.term(4), Err(StorageError::Compacted));
    }

    #[test]
    fn cached_entries_are_served_without_the_engine_and_dropped_by_a_snapshot() {
        let (raft, kv) = engines();
        let mut s = PeerStorage::new(raft.clone(), kv, region()).unwrap();
        s.set_entry_cache(1 << 20, CacheBudget::new(u64::MAX));
        append(&mut s, &(6..=9).map(|i| ent(i, 6)).collect::<Vec<_>>());
        // Gone from the engine, still served: the read came from the cache.
        let mut wb = raft.write_batch();
        wb.delete(CF_RAFT, &keys::raft_log_key(1, 7)).unwrap();
        raft.write(&wb, engines::WriteOptions::synced()).unwrap();
        assert_eq!(s.entries(7, 9, None).unwrap(), vec![ent(7, 6), ent(8, 6)]);
        assert_eq!(s.term(7), Ok(6), "a term lookup is served by the cache too");
        assert_eq!(s.entries(5, 7, None), Err(StorageError::Compacted));
        // A snapshot empties the cache: the same read now goes to the engine, which
        // misses entry 7.
        s.set_snapshot_raft_state(20, 7);
        let missing = s.entries(7, 9, None).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("raft log has entry 8 where 7 belongs"),
            "{missing}"
        );
    }

    #[test]
    fn commit_lagging_applied_is_repaired_and_contradictions_rejected() {
        let (raft, kv) = engines();
        let mut s = PeerStorage::new(raft.clone(), kv.clone(), region()).unwrap();
        append(&mut s, &[ent(6, 6), ent(7, 6)]);
        let mut wb = kv.write_batch();
        let applied = RaftApplyState {
            applied_index: 7,
            applied_term: 6,
            ..*s.apply_state()
        };
        write_apply_state(&mut wb, 1, &applied).unwrap();
        kv.write(&wb, engines::WriteOptions::synced()).unwrap();
        let s = PeerStorage::new(raft.clone(), kv.clone(), region()).unwrap();
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 7);

        // An applied index past the last log index cannot be explained.
        let mut wb = kv.write_batch();
        write_apply_state(
            &mut wb,
            1,
            &RaftApplyState {
                applied_index: 50,
                ..applied
            },
        )
        .unwrap();
        kv.write(&wb, engines::WriteOptions::synced()).unwrap();
        assert!(matches!(
            PeerStorage::new(raft, kv, region()),
            Err(Error::Corruption(_))
        ));
    }

    #[test]
    fn joint_regions_map_to_joint_conf_states() {
        let mut r = region();
        r.peers.push(Peer {
            id: 3,
            store_id: 3,
            role: PeerRole::IncomingVoter as i32,
        });
        r.peers.push(Peer {
            id: 4,
            store_id: 4,
            role: PeerRole::DemotingVoter as i32,
        });
        r.peers.push(Peer {
            id: 5,
            store_id: 5,
            role: PeerRole::Learner as i32,
        });
        let cs = conf_state_from_region(&r);
        assert_eq!(cs.voters, vec![1, 2, 3]);
        assert_eq!(cs.voters_outgoing, vec![1, 2, 4]);
        assert_eq!(cs.learners, vec![5]);
        assert_eq!(cs.learners_next, vec![4]);
        // And back: the roles survive the round trip.
        let mut peers = region_peers_from_conf_state(&cs, &r.peers);
        peers.sort_by_key(|p| p.id);
        let mut expected = r.peers.clone();
        expected.sort_by_key(|p| p.id);
        assert_eq!(peers, expected);
    }

    #[test]
    fn removed_voter_in_joint_is_an_outgoing_voter() {
        let cs = ConfState {
            voters: vec![1, 2],
            voters_outgoing: vec![1, 2, 3],
            ..Default::default()
        };
        let known: Vec<Peer> = (1..=3)
            .map(|id| Peer {
                id,
                store_id: id,
                role: 0,
            })
            .collect();
        let peers = region_peers_from_conf_state(&cs, &known);
        assert_eq!(peers[2].role(), PeerRole::OutgoingVoter);
        let back = conf_state_from_region(&Region {
            peers,
            ..Default::default()
        });
        assert_eq!(back, cs);
    }
}
