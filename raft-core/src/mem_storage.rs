//! An in-memory [`Storage`], for tests and for users who need no persistence.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use crate::error::{StorageError, StorageResult};
use crate::storage::{RaftState, Storage};
use crate::util::limit_size;

/// The state behind a [`MemStorage`].
///
/// Invariant: `entries[i].index == dummy_index + 1 + i`; the dummy position
/// `dummy_index = first_index - 1` is the last compacted entry (or the applied snapshot)
/// and its term `dummy_term` is known.
#[derive(Debug, Default)]
pub struct MemStorageCore {
    hard_state: HardState,
    conf_state: ConfState,
    dummy_index: u64,
    dummy_term: u64,
    entries: Vec<Entry>,
    /// The latest snapshot created or applied; its index may trail `dummy_index`.
    snapshot: Snapshot,
}

impl MemStorageCore {
    fn first_index(&self) -> u64 {
        self.dummy_index + 1
    }

    fn last_index(&self) -> u64 {
        self.dummy_index + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> StorageResult<u64> {
        if index < self.dummy_index {
            return Err(StorageError::Compacted);
        }
        if index == self.dummy_index {
            return Ok(self.dummy_term);
        }
        self.entries
            .get((index - self.dummy_index - 1) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    /// The persisted hard state.
    #[must_use]
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Replaces the persisted hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Sets only the commit index of the hard state.
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// The persisted membership.
    #[must_use]
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Replaces the persisted membership (after applying a conf change).
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Appends entries, truncating any existing suffix that conflicts with them.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the entries would leave a hole after the last
    /// index. Entries that precede the first index are skipped.
    pub fn append(&mut self, entries: &[Entry]) -> StorageResult<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let first_index = self.first_index();
        let skip = first_index.saturating_sub(first.index) as usize;
        if skip >= entries.len() {
            return Ok(());
        }
        let entries = &entries[skip..];
        let offset = (entries[0].index - first_index) as usize;
        self.entries.truncate(offset);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Discards the entries before `compact_index`, which becomes the first index.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when `compact_index` is past `last_index + 1`.
    pub fn compact(&mut self, compact_index: u64) -> StorageResult<()> {
        if compact_index <= self.first_index() {
            return Ok(());
        }
        if compact_index > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let drop = (compact_index - self.first_index()) as usize;
        let new_dummy = &self.entries[drop - 1];
        self.dummy_index = new_dummy.index;
        self.dummy_term = new_dummy.term;
        self.entries.drain(..drop);
        Ok(())
    }

    /// Replaces the whole log with a snapshot received from the leader.
    ///
    /// # Errors
    /// [`StorageError::SnapshotOutOfDate`] when the snapshot is older than the log's
    /// dummy position.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        let meta = snapshot.metadata.clone().unwrap_or_default();
        if meta.index < self.dummy_index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.conf_state = meta.conf_state.unwrap_or_default();
        self.entries.clear();
        self.dummy_index = meta.index;
        self.dummy_term = meta.term;
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the state machine at `index` (which must be in the log),
    /// with the membership in force there (the current one when `None`).
    ///
    /// # Errors
    /// [`StorageError::SnapshotOutOfDate`] for an index before the latest snapshot,
    /// [`StorageError::Compacted`] / [`StorageError::Unavailable`] for one outside the log.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: Option<ConfState>,
        data: Bytes,
    ) -> StorageResult<&Snapshot> {
        if index < self.snapshot_index() {
            return Err(StorageError::SnapshotOutOfDate);
        }
        let term = self.term(index)?;
        let conf_state = conf_state.unwrap_or_else(|| self.conf_state.clone());
        self.snapshot = Snapshot {
            data,
            metadata: Some(SnapshotMetadata {
                conf_state: Some(conf_state),
                index,
                term,
            }),
        };
        Ok(&self.snapshot)
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.metadata.as_ref().map_or(0, |m| m.index)
    }

    /// All entries currently in the log (for tests).
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// A thread-safe, cloneable, in-memory [`Storage`]; clones share the same log.
///
/// `snapshot()` returns the last snapshot made with [`MemStorageCore::create_snapshot`]
/// (or applied), else a data-less snapshot at the commit index. Call `create_snapshot`
/// again after each membership change, or nodes added by it will refuse the old one.
///
/// The application writes through [`MemStorage::wl`] as it persists each `Ready`, and
/// the core reads through the [`Storage`] trait. `first_index` and `last_index`, which the
/// core asks for many times per `Ready`, are read without taking the lock.
///
/// ```
/// use raft_core::{MemStorage, Storage};
/// let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
/// assert_eq!(storage.first_index(), 1);
/// assert_eq!(storage.last_index(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct MemStorage {
    shared: Arc<Shared>,
}

/// The log and a lock-free copy of its bounds.
///
/// Invariant: while no writer holds `core`, `first_index` and `last_index` equal
/// `core`'s; a [`MemStorageWriteGuard`] stores them before it releases the lock.
#[derive(Debug)]
struct Shared {
    core: RwLock<MemStorageCore>,
    first_index: AtomicU64,
    last_index: AtomicU64,
}

impl Default for MemStorage {
    fn default() -> Self {
        let core = MemStorageCore::default();
        Self {
            shared: Arc::new(Shared {
                first_index: AtomicU64::new(core.first_index()),
                last_index: AtomicU64::new(core.last_index()),
                core: RwLock::new(core),
            }),
        }
    }
}

/// Write access to a [`MemStorage`]; it publishes the log's new bounds when dropped.
#[derive(Debug)]
pub struct MemStorageWriteGuard<'a> {
    core: RwLockWriteGuard<'a, MemStorageCore>,
    shared: &'a Shared,
}

impl Deref for MemStorageWriteGuard<'_> {
    type Target = MemStorageCore;

    fn deref(&self) -> &MemStorageCore {
        &self.core
    }
}

impl DerefMut for MemStorageWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut MemStorageCore {
        &mut self.core
    }
}

impl Drop for MemStorageWriteGuard<'_> {
    fn drop(&mut self) {
        // Still under the lock: a reader that sees these bounds and then locks sees the
        // log they describe.
        let shared = self.shared;
        shared
            .first_index
            .store(self.core.first_index(), Ordering::Release);
        shared
            .last_index
            .store(self.core.last_index(), Ordering::Release);
    }
}

impl MemStorage {
    /// An empty storage with no membership: the node waits to learn it from a leader.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A storage bootstrapped with the given `(voters, learners)`.
    #[must_use]
    pub fn new_with_conf_state(conf_state: impl Into<ConfState>) -> Self {
        let storage = Self::new();
        storage.wl().set_conf_state(conf_state.into());
        storage
    }

    /// Locks the storage for reading.
    ///
    /// # Panics
    /// If a thread panicked while holding the lock (the state may be torn).
    pub fn rl(&self) -> RwLockReadGuard<'_, MemStorageCore> {
        self.shared
            .core
            .read()
            .expect("MemStorage lock poisoned: a writer panicked mid-update")
    }

    /// Locks the storage for writing.
    ///
    /// # Panics
    /// If a thread panicked while holding the lock (the state may be torn).
    pub fn wl(&self) -> MemStorageWriteGuard<'_> {
        let core = self
            .shared
            .core
            .write()
            .expect("MemStorage lock poisoned: a writer panicked mid-update");
        MemStorageWriteGuard {
            core,
            shared: &self.shared,
        }
    }

    /// Panics as `rl` would if a writer panicked mid-update, for the lock-free reads.
    fn check_not_poisoned(&self) {
        assert!(
            !self.shared.core.is_poisoned(),
            "MemStorage lock poisoned: a writer panicked mid-update"
        );
    }
}

impl From<(Vec<u64>, Vec<u64>)> for ConfState {
    fn from((voters, learners): (Vec<u64>, Vec<u64>)) -> Self {
        ConfState {
            voters,
            learners,
            ..Default::default()
        }
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> StorageResult<RaftState> {
        let core = self.rl();
        Ok(RaftState::new(core.hard_state, core.conf_state.clone()))
    }

    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>> {
        let core = self.rl();
        if low <= core.dummy_index {
            return Err(StorageError::Compacted);
        }
        if high > core.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let lo = (low - core.dummy_index - 1) as usize;
        let hi = (high - core.dummy_index - 1) as usize;
        let mut entries = core.entries[lo..hi].to_vec();
        limit_size(&mut entries, max_size);
        Ok(entries)
    }

    fn term(&self, index: u64) -> StorageResult<u64> {
        self.rl().term(index)
    }

    fn first_index(&self) -> u64 {
        self.check_not_poisoned();
        self.shared.first_index.load(Ordering::Acquire)
    }

    fn last_index(&self) -> u64 {
        self.check_not_poisoned();
        self.shared.last_index.load(Ordering::Acquire)
    }

    fn snapshot(&self, request_index: u64) -> StorageResult<Snapshot> {
        let core = self.rl();
        let index = core.snapshot_index();
        if index >= request_index && index >= core.dummy_index && index > 0 {
            return Ok(core.snapshot.clone());
        }
        // No application snapshot is recent enough: describe the log position only, at the
        // commit index (never before the log's start). Applications with state to ship
        // call `create_snapshot` themselves.
        let index = core
            .hard_state
            .commit
            .max(core.dummy_index)
            .min(core.last_index());
        let term = core.term(index)?;
        Ok(Snapshot {
            data: Bytes::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(core.conf_state.clone()),
                index,
                term,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn storage_with(entries: &[(u64, u64)]) -> MemStorage {
        let s = MemStorage::new();
        let es: Vec<_> = entries.iter().map(|&(i, t)| ent(i, t)).collect();
        s.wl().append(&es).unwrap();
        s
    }

    #[test]
    fn lock_free_bounds_follow_every_write() {
        let s = MemStorage::new_with_conf_state((vec![1], vec![]));
        assert_eq!((s.first_index(), s.last_index()), (1, 0));
        s.wl().append(&[ent(1, 1), ent(2, 1), ent(3, 2)]).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (1, 3));
        s.wl().compact(3).unwrap();
        assert_eq!((s.first_index(), s.last_index()), (3, 3));
        let clone = s.clone();
        clone.wl().append(&[ent(4, 2)]).unwrap();
        assert_eq!(
            (s.first_index(), s.last_index()),
            (3, 4),
            "clones share the log"
        );
        let snap = Snapshot {
            metadata: Some(SnapshotMetadata {
                index: 10,
                term: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        s.wl().apply_snapshot(snap).unwrap();
        let core = s.rl();
        assert_eq!(
            (s.first_index(), s.last_index()),
            (core.first_index(), core.last_index())
        );
        assert_eq!((s.first_index(), s.last_index()), (11, 10));
    }

    #[test]
    fn term_and_bounds() {
        let s = storage_with(&[(1, 1), (2, 2), (3, 3)]);
        s.wl().compact(2).unwrap();
        assert_eq!(s.first_index(), 2);
        assert_eq!(s.last_index(), 3);
        assert_eq!(s.term(0), Err(StorageError::Compacted));
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(s.term(3).unwrap(), 3);
        assert_eq!(s.term(4), Err(StorageError::Unavailable));
        assert_eq!(s.entries(1, 3, None), Err(StorageError::Compacted));
        assert_eq!(s.entries(2, 5, None), Err(StorageError::Unavailable));
        assert_eq!(s.entries(2, 4, None).unwrap(), vec![ent(2, 2), ent(3, 3)]);
    }

    #[test]
    fn append_truncates_conflicts_and_rejects_holes() {
        let s = storage_with(&[(1, 1), (2, 1), (3, 1)]);
        s.wl().append(&[ent(2, 2)]).unwrap();
        assert_eq!(s.last_index(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.wl().append(&[ent(5, 2)]), Err(StorageError::Unavailable));
        s.wl().compact(2).unwrap();
        // Entries before the first index are skipped, the rest appended.
        s.wl().append(&[ent(1, 1), ent(2, 2), ent(3, 2)]).unwrap();
        assert_eq!(s.last_index(), 3);
    }

    #[test]
    fn snapshot_round_trip() {
        let s = storage_with(&[(1, 1), (2, 1), (3, 2)]);
        s.wl().set_conf_state((vec![1, 2], vec![]).into());
        s.wl()
            .create_snapshot(2, None, Bytes::from_static(b"sm"))
            .unwrap();
        let snap = s.snapshot(2).unwrap();
        assert_eq!(snap.metadata.as_ref().unwrap().index, 2);
        assert_eq!(&snap.data[..], b"sm");
        let other = MemStorage::new();
        other.wl().apply_snapshot(snap.clone()).unwrap();
        assert_eq!(other.first_index(), 3);
        assert_eq!(other.term(2).unwrap(), 1);
        assert_eq!(other.initial_state().unwrap().conf_state.voters, vec![1, 2]);
        // Applying an older snapshot after compaction is refused.
        s.wl().compact(4).unwrap();
        assert_eq!(
            s.wl().apply_snapshot(snap),
            Err(StorageError::SnapshotOutOfDate)
        );
    }
}
