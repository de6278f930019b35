//! The node's view of the log: stable storage plus the unstable tail.

use crate::eraftpb::{Entry, Snapshot};
use crate::error::{Error, Result, StorageError, StorageResult};
use crate::storage::Storage;
use crate::unstable::Unstable;
use crate::util::limit_size;

/// The log as the Raft core sees it: entries in stable storage followed by the unstable
/// tail, and the indexes that track how far each has progressed.
///
/// Invariants:
/// - `first_index() - 1 <= applied <= applying <= committed <= last_index()`;
/// - `persisted <= last_index()`, and every entry at or before `persisted` is in stable
///   storage with the term this log has for it;
/// - entries handed out for applying never exceed `min(committed, persisted)`, so a
///   state machine never applies an entry its own node might lose in a crash;
/// - `last_index() < u64::MAX`, so `last_index() + 1` never overflows: an entry or a
///   snapshot at index `u64::MAX` is refused as malformed.
#[derive(Debug)]
pub struct RaftLog<S: Storage> {
    /// Stable storage, written by the application as it persists each `Ready`.
    pub store: S,
    /// Entries and a snapshot not yet persisted.
    pub unstable: Unstable,
    /// The highest index known to be committed on a quorum.
    pub committed: u64,
    /// The highest index known to be persisted locally with the term this log has.
    pub persisted: u64,
    /// The highest index handed out to the application for applying.
    pub applying: u64,
    /// The highest index the application reported as applied.
    pub applied: u64,
    /// The maximum bytes of committed entries handed out in one `Ready`.
    pub max_applying_bytes: u64,
}

impl<S: Storage> RaftLog<S> {
    /// A log over `store`, positioned after its last entry.
    pub fn new(store: S, max_applying_bytes: u64) -> Self {
        let first = store.first_index();
        let last = store.last_index();
        Self {
            store,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            persisted: last,
            applying: first - 1,
            applied: first - 1,
            max_applying_bytes,
        }
    }

    /// The first index still in the log.
    #[must_use]
    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.store.first_index())
    }

    /// The last index in the log.
    #[must_use]
    pub fn last_index(&self) -> u64 {
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.store.last_index())
    }

    /// The term of the entry at `index`.
    ///
    /// # Errors
    /// [`StorageError::Compacted`] before the dummy position, [`StorageError::Unavailable`]
    /// past the last index, or a storage failure.
    pub fn term(&self, index: u64) -> StorageResult<u64> {
        // Fast paths, equivalent to the checks below: an entry the unstable part holds is
        // inside the log; and without a pending snapshot, an index before the unstable
        // part is answered by storage alone, with the same Compacted / Unavailable bounds
        // (its dummy position is the log's, and past its last index nothing follows).
        if let Some(term) = self.unstable.maybe_term(index) {
            return Ok(term);
        }
        if self.unstable.snapshot.is_none() && index < self.unstable.offset {
            return self.store.term(index);
        }
        // Past the end first: the common miss (a follower checking entries it lacks), and
        // cheaper to rule out. The two ranges cannot overlap (the dummy is <= the last).
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if index < self.first_index() - 1 {
            return Err(StorageError::Compacted);
        }
        match self.unstable.maybe_term(index) {
            Some(term) => Ok(term),
            None => self.store.term(index),
        }
    }

    /// The term at `index`, or 0 when the index is compacted or not in the log.
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn term_or_zero(&self, index: u64) -> Result<u64> {
        match self.term(index) {
            Ok(term) => Ok(term),
            Err(StorageError::Compacted | StorageError::Unavailable) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// The term of the last entry.
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn last_term(&self) -> Result<u64> {
        self.term_or_zero(self.last_index())
    }

    /// Whether the entry at `index` has `term`.
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn match_term(&self, index: u64, term: u64) -> Result<bool> {
        match self.term(index) {
            Ok(t) => Ok(t == term),
            Err(StorageError::Compacted | StorageError::Unavailable) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a log ending at `(last_index, term)` is at least as up to date as this
    /// one (§5.4.1).
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> Result<bool> {
        let our_term = self.last_term()?;
        Ok(term > our_term || (term == our_term && last_index >= self.last_index()))
    }

    /// The index of the first entry in `entries` that is missing here or has another
    /// term; 0 when all are present.
    fn find_conflict(&self, entries: &[Entry]) -> Result<u64> {
        for e in entries {
            if !self.match_term(e.index, e.term)? {
                return Ok(e.index);
            }
        }
        Ok(0)
    }

    /// The fast-backtracking hint (thesis §4.2.1 refined as in etcd): the largest index
    /// `i <= index` whose term is `<= term`, with that term. A leader whose log has
    /// `term` at `index` can skip straight past every entry with a larger term.
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> Result<(u64, u64)> {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > 0 => i -= 1,
                Ok(t) => return Ok((i, t)),
                Err(StorageError::Compacted | StorageError::Unavailable) => return Ok((i, 0)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends the leader's entries after `(index, log_term)` if this log matches there,
    /// truncating a conflicting suffix, and advances the commit index. Returns the last
    /// new index, or `None` when the log does not match at `index`.
    ///
    /// # Errors
    /// [`Error::InvalidMessage`] when the entries would overwrite a committed entry (a
    /// corrupt or forged message), or a storage failure.
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        mut entries: Vec<Entry>,
    ) -> Result<Option<u64>> {
        if !self.match_term(index, log_term)? {
            return Ok(None);
        }
        for (i, e) in entries.iter().enumerate() {
            // The last index must stay below u64::MAX (see the invariants above).
            let expected = index.checked_add(1 + i as u64).filter(|&x| x < u64::MAX);
            if expected != Some(e.index) {
                return Err(Error::InvalidMessage(format!(
                    "append after {index} carries entry {} at position {i}",
                    e.index
                )));
            }
        }
        let last_new = index + entries.len() as u64;
        let conflict = self.find_conflict(&entries)?;
        if conflict != 0 {
            if conflict <= self.committed {
                return Err(Error::InvalidMessage(format!(
                    "entry {conflict} conflicts with committed entry (committed {})",
                    self.committed
                )));
            }
            let start = (conflict - (index + 1)) as usize;
            entries.drain(..start);
            self.append(entries);
        }
        self.commit_to(committed.min(last_new));
        Ok(Some(last_new))
    }

    /// Appends entries (which must follow the committed prefix) and returns the new last
    /// index. The entries are moved into the unstable tail, not cloned.
    pub fn append(&mut self, entries: Vec<Entry>) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        let after = first.index - 1;
        assert!(
            after >= self.committed,
            "append after {after} would overwrite committed entries up to {}",
            self.committed
        );
        self.unstable.truncate_and_append(entries);
        self.persisted = self.persisted.min(after);
        self.last_index()
    }

    /// Raises the commit index to `to_commit` (never lowers it).
    ///
    /// # Panics
    /// If `to_commit` is past the last index: callers validate indexes from the network.
    pub fn commit_to(&mut self, to_commit: u64) {
        if to_commit > self.committed {
            assert!(
                to_commit <= self.last_index(),
                "commit index {to_commit} is past the last index {}",
                self.last_index()
            );
            self.committed = to_commit;
        }
    }

    /// Commits `max_index` if its entry is from `term` (§5.4.2: a leader commits only
    /// entries of its own term by counting replicas). Returns whether it advanced.
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> Result<bool> {
        if max_index > self.committed && self.term_or_zero(max_index)? == term {
            self.commit_to(max_index);
            return Ok(true);
        }
        Ok(false)
    }

    /// Records that the application applied everything handed out up to `index`.
    pub fn applied_to(&mut self, index: u64) {
        if index <= self.applied {
            return;
        }
        debug_assert!(
            index <= self.applying,
            "applied {index} past applying {}",
            self.applying
        );
        let index = index.min(self.applying);
        self.applied = index;
    }

    /// Records that the entries up to `(index, term)` are persisted, unless they were
    /// overwritten in the meantime.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if self.unstable.stable_to(index, term) || self.is_stable_match(index, term) {
            self.persisted = self.persisted.max(index);
        }
    }

    fn is_stable_match(&self, index: u64, term: u64) -> bool {
        index < self.unstable.offset && self.store.term(index).ok() == Some(term)
    }

    /// Records that the snapshot at `index` is persisted (and applied).
    ///
    /// A newer snapshot from the leader may have replaced it while it was being persisted;
    /// the state machine holds it all the same, so `applied` moves to `index` either way
    /// (the application may report it through `applied_to`), while `persisted` waits for
    /// the newer snapshot.
    pub fn stable_snap_to(&mut self, index: u64) {
        if self.unstable.stable_snap_to(index) {
            self.persisted = self.persisted.max(index);
        }
        if index <= self.committed {
            self.applying = self.applying.max(index);
            self.applied = self.applied.max(index);
        }
    }

    /// Whether a snapshot waits to be persisted or is being persisted.
    #[must_use]
    pub fn has_pending_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some()
    }

    /// The highest index that may be handed out for applying.
    fn max_appliable_index(&self) -> u64 {
        self.committed.min(self.persisted)
    }

    /// Whether committed entries wait to be handed out for applying.
    #[must_use]
    pub fn has_next_committed_entries(&self) -> bool {
        !self.has_pending_snapshot() && self.applying < self.max_appliable_index()
    }

    /// The next committed entries to apply, at most `max_applying_bytes` (at least one).
    ///
    /// # Errors
    /// Only real storage failures.
    pub fn next_committed_entries(&self) -> Result<Vec<Entry>> {
        if !self.has_next_committed_entries() {
            return Ok(Vec::new());
        }
        let lo = (self.applying + 1).max(self.first_index());
        let hi = self.max_appliable_index() + 1;
        self.slice(lo, hi, Some(self.max_applying_bytes))
    }

    /// Marks entries up to `index` as handed out for applying.
    pub fn accept_applying(&mut self, index: u64) {
        debug_assert!(index <= self.committed, "applying {index} past committed");
        self.applying = self.applying.max(index);
    }

    /// Entries from `index` to the end, at most `max_bytes` (at least one).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] when `index` was compacted, or a storage failure.
    pub fn entries(&self, index: u64, max_bytes: Option<u64>) -> StorageResult<Vec<Entry>> {
        let last = self.last_index();
        if index > last {
            return Ok(Vec::new());
        }
        self.slice(index, last + 1, max_bytes).map_err(|e| match e {
            Error::Store(e) => e,
            other => StorageError::Other(Box::new(other)),
        })
    }

    /// Entries in `[lo, hi)`, at most `max_bytes` (at least one when not empty).
    ///
    /// # Errors
    /// [`StorageError::Compacted`] / [`StorageError::Unavailable`] for an out-of-range
    /// request, or a storage failure.
    pub fn slice(&self, lo: u64, hi: u64, max_bytes: Option<u64>) -> Result<Vec<Entry>> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(StorageError::Compacted.into());
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable.into());
        }
        let offset = self.unstable.offset;
        let mut entries = Vec::new();
        if lo < offset {
            let stable_hi = hi.min(offset);
            entries = self.store.entries(lo, stable_hi, max_bytes)?;
            if (entries.len() as u64) < stable_hi - lo {
                // The byte limit cut the stable part short: the unstable part is not needed.
                return Ok(entries);
            }
        }
        if hi > offset {
            let from = lo.max(offset);
            entries.extend_from_slice(self.unstable.slice(from, hi));
            limit_size(&mut entries, max_bytes);
        }
        Ok(entries)
    }

    /// The snapshot to send to a follower: the pending one if any, else one from storage
    /// at least as new as `request_index`.
    ///
    /// # Errors
    /// [`StorageError::SnapshotTemporarilyUnavailable`] while one is built, or a failure.
    pub fn snapshot(&self, request_index: u64) -> StorageResult<Snapshot> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.store.snapshot(request_index),
        }
    }

    /// Replaces the log with a snapshot from the leader.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.as_ref().map_or(0, |m| m.index);
        self.committed = index;
        self.persisted = self.persisted.min(index);
        self.unstable.restore(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_storage::MemStorage;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemStorage> {
        let store = MemStorage::new();
        let es: Vec<_> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| ent(i as u64 + 1, t))
            .collect();
        store.wl().append(&es).unwrap();
        RaftLog::new(store, u64::MAX)
    }

    #[test]
    fn find_conflict_by_term_skips_larger_terms() {
        // Figure-7-like follower log: terms 1 1 1 4 4 5 5 6 6 6.
        let log = log_with(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
        assert_eq!(log.find_conflict_by_term(10, 3).unwrap(), (3, 1));
        assert_eq!(log.find_conflict_by_term(10, 5).unwrap(), (7, 5));
        assert_eq!(log.find_conflict_by_term(12, 6).unwrap(), (10, 6));
        assert_eq!(log.find_conflict_by_term(1, 0).unwrap(), (0, 0));
    }

    #[test]
    fn maybe_append_truncates_conflicts_and_commits() {
        let mut log = log_with(&[1, 2, 3]);
        assert_eq!(
            log.maybe_append(3, 2, 3, vec![ent(4, 4)]).unwrap(),
            None,
            "term mismatch"
        );
        assert_eq!(
            log.maybe_append(1, 1, 2, vec![ent(2, 4), ent(3, 4)])
                .unwrap(),
            Some(3)
        );
        assert_eq!(log.term(3).unwrap(), 4);
        assert_eq!(log.committed, 2);
        assert_eq!(
            log.persisted, 1,
            "overwritten entries are no longer persisted"
        );
        assert!(
            log.maybe_append(0, 0, 2, vec![ent(1, 9)]).is_err(),
            "overwrites committed"
        );
    }

    #[test]
    fn committed_entries_wait_for_persistence() {
        let mut log = log_with(&[1, 1]);
        log.append(vec![ent(3, 1), ent(4, 1)]);
        log.commit_to(4);
        assert_eq!(log.next_committed_entries().unwrap().len(), 2);
        let unstable = log.unstable.entries.clone();
        log.store.wl().append(&unstable).unwrap();
        log.stable_to(4, 1);
        let ents = log.next_committed_entries().unwrap();
        assert_eq!(
            ents.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        log.accept_applying(4);
        assert!(!log.has_next_committed_entries());
    }

    #[test]
    fn a_replaced_snapshot_still_counts_as_applied_once_persisted() {
        let snap = |index, term| Snapshot {
            metadata: Some(crate::eraftpb::SnapshotMetadata {
                index,
                term,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut log = log_with(&[1, 1, 1]);
        log.restore(snap(5, 1));
        log.unstable.accept_in_progress();
        // A newer snapshot arrives while the first one is being persisted.
        log.restore(snap(14, 2));
        log.stable_snap_to(5);
        assert_eq!((log.applying, log.applied), (5, 5));
        assert!(
            log.has_pending_snapshot(),
            "snapshot 14 is still to persist"
        );
        log.applied_to(5);
        log.unstable.accept_in_progress();
        log.stable_snap_to(14);
        assert_eq!((log.persisted, log.applied, log.committed), (14, 14, 14));
    }

    #[test]
    fn slice_spans_stable_and_unstable() {
        let mut log = log_with(&[1, 1, 1]);
        log.append(vec![ent(4, 2), ent(5, 2)]);
        let idx: Vec<_> = log
            .slice(2, 6, None)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(idx, vec![2, 3, 4, 5]);
        assert!(matches!(
            log.slice(0, 2, None),
            Err(Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            log.slice(2, 7, None),
            Err(Error::Store(StorageError::Unavailable))
        ));
    }
}
