//! Entries and a snapshot that the node holds but has not yet persisted.

use crate::eraftpb::{Entry, Snapshot};

/// The not-yet-persisted tail of the log, and a snapshot waiting to be persisted.
///
/// Invariants:
/// - `entries[i].index == offset + i`;
/// - `offset <= offset_in_progress <= offset + entries.len()`: the entries before
///   `offset_in_progress` have been handed to the application in a `Ready` and are being
///   persisted; the rest have not been handed out yet;
/// - when `snapshot` is set, `offset == snapshot.index + 1` at the time it was restored;
///   `snapshot_in_progress` implies `snapshot.is_some()`;
/// - when `stable_term` is set, the entry at `offset - 1` was persisted with that term by
///   the last `stable_to`; it is cleared whenever `offset` moves any other way.
#[derive(Debug, Default)]
pub struct Unstable {
    /// The snapshot received from the leader and not yet persisted.
    pub snapshot: Option<Snapshot>,
    /// Entries not yet persisted, the first at index `offset`.
    pub entries: Vec<Entry>,
    /// The index of `entries[0]`.
    pub offset: u64,
    /// The first index not yet handed out for persistence.
    pub offset_in_progress: u64,
    /// Whether `snapshot` has been handed out for persistence.
    pub snapshot_in_progress: bool,
    /// The term of the entry at `offset - 1`, when it became stable through `stable_to`.
    /// Appends and acknowledgements almost always name that entry (it is the last one
    /// persisted); answering here spares a storage lookup each time. Storage still holds
    /// it: an application compacts only applied entries, and nothing past `offset - 1`
    /// is applied before it is persisted.
    stable_term: Option<u64>,
}

fn snapshot_index_term(snapshot: &Snapshot) -> (u64, u64) {
    snapshot
        .metadata
        .as_ref()
        .map_or((0, 0), |m| (m.index, m.term))
}

impl Unstable {
    /// An empty unstable log whose first entry will be at `offset`.
    #[must_use]
    pub fn new(offset: u64) -> Self {
        Self {
            offset,
            offset_in_progress: offset,
            ..Default::default()
        }
    }

    /// The first index of the log if a pending snapshot determines it.
    #[must_use]
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| snapshot_index_term(s).0 + 1)
    }

    /// The last index of the log if the unstable part determines it.
    #[must_use]
    pub fn maybe_last_index(&self) -> Option<u64> {
        if !self.entries.is_empty() {
            return Some(self.offset + self.entries.len() as u64 - 1);
        }
        self.snapshot.as_ref().map(|s| snapshot_index_term(s).0)
    }

    /// The term of the entry at `index` if the unstable part knows it.
    #[must_use]
    pub fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            if index + 1 == self.offset && self.stable_term.is_some() {
                return self.stable_term;
            }
            let (si, st) = self.snapshot.as_ref().map(snapshot_index_term)?;
            return (si == index).then_some(st);
        }
        self.entries
            .get((index - self.offset) as usize)
            .map(|e| e.term)
    }

    /// Entries not yet handed out for persistence.
    #[must_use]
    pub fn next_entries(&self) -> &[Entry] {
        let start = (self.offset_in_progress - self.offset) as usize;
        &self.entries[start..]
    }

    /// The snapshot if it has not been handed out for persistence.
    #[must_use]
    pub fn next_snapshot(&self) -> Option<&Snapshot> {
        self.snapshot
            .as_ref()
            .filter(|_| !self.snapshot_in_progress)
    }

    /// Marks everything currently held as handed out for persistence.
    pub fn accept_in_progress(&mut self) {
        self.offset_in_progress = self.offset + self.entries.len() as u64;
        self.snapshot_in_progress = self.snapshot.is_some();
    }

    /// Drops the entries up to `index` once they are persisted, if the entry at `index`
    /// still has `term` (it may have been overwritten since it was handed out).
    /// Returns whether anything was dropped.
    pub fn stable_to(&mut self, index: u64, term: u64) -> bool {
        if index < self.offset || self.maybe_term(index) != Some(term) {
            return false;
        }
        let count = (index + 1 - self.offset) as usize;
        self.entries.drain(..count);
        self.offset = index + 1;
        self.stable_term = Some(term);
        self.offset_in_progress = self.offset_in_progress.max(self.offset);
        // Release memory kept by a burst of entries once the queue is mostly empty.
        if self.entries.capacity() > 1024 && self.entries.len() * 8 < self.entries.capacity() {
            self.entries.shrink_to_fit();
        }
        true
    }

    /// Drops the snapshot once persisted, if it is still the one at `index`.
    pub fn stable_snap_to(&mut self, index: u64) -> bool {
        match &self.snapshot {
            Some(s) if snapshot_index_term(s).0 == index => {
                self.snapshot = None;
                self.snapshot_in_progress = false;
                true
            }
            _ => false,
        }
    }

    /// Replaces everything with a snapshot from the leader.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot_index_term(&snapshot).0 + 1;
        self.offset_in_progress = self.offset;
        self.stable_term = None;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }

    /// Appends entries, first truncating any held entries at or after the first new index.
    /// The caller guarantees `entries[0].index <= offset + entries.len()` (no hole) and
    /// that the entries are contiguous. The entries are moved in, not cloned.
    pub fn truncate_and_append(&mut self, mut entries: Vec<Entry>) {
        let Some(first) = entries.first() else { return };
        let from = first.index;
        let end = self.offset + self.entries.len() as u64;
        debug_assert!(from <= end, "unstable append leaves a hole: {from} > {end}");
        if from == end {
            self.entries.append(&mut entries);
        } else if from <= self.offset {
            // The new entries replace everything held, and possibly stable entries too.
            if from < self.offset {
                // The entry before the new offset is storage's, its term unknown here.
                self.stable_term = None;
            }
            self.offset = from;
            self.offset_in_progress = from;
            self.entries.clear();
            self.entries.append(&mut entries);
        } else {
            self.entries.truncate((from - self.offset) as usize);
            self.entries.append(&mut entries);
            self.offset_in_progress = self.offset_in_progress.min(from);
        }
    }

    /// The held entries in `[lo, hi)`; the caller checks the bounds.
    #[must_use]
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        debug_assert!(
            self.offset <= lo && lo <= hi,
            "unstable slice [{lo}, {hi}) out of range"
        );
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eraftpb::SnapshotMetadata;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn snap(index: u64, term: u64) -> Snapshot {
        Snapshot {
            metadata: Some(SnapshotMetadata {
                index,
                term,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn truncate_and_append_cases() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(vec![ent(5, 1)]);
        u.truncate_and_append(vec![ent(6, 1), ent(7, 1)]);
        assert_eq!(u.maybe_last_index(), Some(7));
        u.accept_in_progress();
        u.truncate_and_append(vec![ent(7, 2), ent(8, 2)]);
        assert_eq!(
            u.offset_in_progress, 7,
            "replaced entries go back to not-yet-handed-out"
        );
        assert_eq!(u.maybe_term(7), Some(2));
        u.truncate_and_append(vec![ent(4, 3)]);
        assert_eq!((u.offset, u.entries.len()), (4, 1));
    }

    #[test]
    fn stable_to_ignores_overwritten_entries() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(vec![ent(1, 1), ent(2, 1)]);
        u.accept_in_progress();
        u.truncate_and_append(vec![ent(2, 2)]);
        assert!(!u.stable_to(2, 1), "entry 2 was overwritten with term 2");
        assert!(u.stable_to(1, 1));
        assert_eq!(u.offset, 2);
        assert_eq!(u.next_entries(), &[ent(2, 2)]);
    }

    #[test]
    fn the_last_stable_entry_keeps_its_term_until_the_offset_moves_otherwise() {
        let mut u = Unstable::new(1);
        assert_eq!(u.maybe_term(0), None, "nothing stable yet");
        u.truncate_and_append(vec![ent(1, 1), ent(2, 1), ent(3, 2)]);
        u.accept_in_progress();
        assert!(u.stable_to(2, 1));
        assert_eq!(u.maybe_term(2), Some(1), "entry 2 just became stable");
        assert_eq!(u.maybe_term(1), None, "older stable entries are storage's");
        assert_eq!(u.maybe_term(3), Some(2));
        // Replacing entries from the offset on keeps entry 2 as it is.
        u.truncate_and_append(vec![ent(3, 3)]);
        assert_eq!(u.maybe_term(2), Some(1));
        // A conflict before the offset may rewrite entry 2: storage answers again.
        u.truncate_and_append(vec![ent(2, 4)]);
        assert_eq!((u.offset, u.maybe_term(1)), (2, None));
        assert!(u.stable_to(2, 4));
        assert_eq!(u.maybe_term(2), Some(4));
        u.restore(snap(10, 5));
        assert_eq!(u.maybe_term(2), None);
        assert_eq!(
            u.maybe_term(10),
            Some(5),
            "the snapshot answers for its index"
        );
    }

    #[test]
    fn snapshot_restore_and_stable() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(vec![ent(1, 1)]);
        u.restore(snap(10, 3));
        assert_eq!(u.maybe_first_index(), Some(11));
        assert_eq!(u.maybe_last_index(), Some(10));
        assert_eq!(u.maybe_term(10), Some(3));
        assert_eq!(u.maybe_term(9), None);
        assert!(u.next_snapshot().is_some());
        u.accept_in_progress();
        assert!(u.next_snapshot().is_none());
        assert!(!u.stable_snap_to(9));
        assert!(u.stable_snap_to(10));
        assert!(u.snapshot.is_none());
    }
}
