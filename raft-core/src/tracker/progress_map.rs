//! The leader's per-peer progress, keyed by node id.

use std::fmt;
use std::ops::Index;

use super::Progress;

/// Progress of every member, keyed by id and ordered by id, so iteration (and thus the
/// order of broadcast messages) is deterministic.
///
/// Two parallel sorted `Vec`s rather than a `BTreeMap`: a membership is a handful of
/// nodes, and the leader looks a peer up several times per message it handles. Scanning
/// a few contiguous ids costs a fraction of a tree walk, and walking every peer
/// (broadcasts, the commit index) touches two allocations.
///
/// Invariant: `ids` ascends strictly, and `prs[i]` is the progress of `ids[i]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProgressMap {
    ids: Vec<u64>,
    prs: Vec<Progress>,
}

/// Up to this many members, a lookup scans the ids instead of bisecting them.
const SCAN_MEMBERS: usize = 16;

impl ProgressMap {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of members.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no members.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Where `id` is (`Ok`) or would be inserted (`Err`).
    #[inline]
    fn position(&self, id: u64) -> Result<usize, usize> {
        if self.ids.len() <= SCAN_MEMBERS {
            match self.ids.iter().position(|&k| k >= id) {
                Some(pos) if self.ids[pos] == id => Ok(pos),
                Some(pos) => Err(pos),
                None => Err(self.ids.len()),
            }
        } else {
            self.ids.binary_search(&id)
        }
    }

    /// The progress of `id`.
    #[inline]
    #[must_use]
    pub fn get(&self, id: &u64) -> Option<&Progress> {
        let pos = self.position(*id).ok()?;
        self.prs.get(pos)
    }

    /// The progress of `id`, mutably.
    #[inline]
    pub fn get_mut(&mut self, id: &u64) -> Option<&mut Progress> {
        let pos = self.position(*id).ok()?;
        self.prs.get_mut(pos)
    }

    /// Whether `id` has progress.
    #[inline]
    #[must_use]
    pub fn contains_key(&self, id: &u64) -> bool {
        self.position(*id).is_ok()
    }

    /// Sets the progress of `id`; returns the progress it replaced.
    pub fn insert(&mut self, id: u64, progress: Progress) -> Option<Progress> {
        match self.position(id) {
            Ok(pos) => Some(std::mem::replace(&mut self.prs[pos], progress)),
            Err(pos) => {
                self.ids.insert(pos, id);
                self.prs.insert(pos, progress);
                None
            }
        }
    }

    /// Removes `id`; returns its progress.
    pub fn remove(&mut self, id: &u64) -> Option<Progress> {
        let pos = self.position(*id).ok()?;
        self.ids.remove(pos);
        Some(self.prs.remove(pos))
    }

    /// Every `(id, progress)`, by ascending id.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&u64, &Progress)> + ExactSizeIterator {
        self.ids.iter().zip(&self.prs)
    }

    /// Every `(id, progress)` with the progress mutable, by ascending id.
    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&u64, &mut Progress)> + ExactSizeIterator {
        self.ids.iter().zip(&mut self.prs)
    }

    /// Every id, ascending.
    #[must_use]
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Every id, ascending.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &u64> + ExactSizeIterator {
        self.ids.iter()
    }

    /// Every progress, by ascending id.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Progress> + ExactSizeIterator {
        self.prs.iter()
    }
}

impl Index<&u64> for ProgressMap {
    type Output = Progress;

    /// # Panics
    /// When `id` has no progress, as `BTreeMap` indexing does.
    fn index(&self, id: &u64) -> &Progress {
        self.get(id)
            .unwrap_or_else(|| panic!("no progress for node {id}"))
    }
}

impl fmt::Debug for ProgressMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(u64, Progress)> for ProgressMap {
    fn from_iter<I: IntoIterator<Item = (u64, Progress)>>(iter: I) -> Self {
        let mut map = Self::new();
        for (id, pr) in iter {
            map.insert(id, pr);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn pr(matched: u64) -> Progress {
        let mut p = Progress::new(matched + 1, 4, u64::MAX);
        p.matched = matched;
        p
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
        Bump(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..12, 0u64..100).prop_map(|(id, m)| Op::Insert(id, m)),
            (0u64..12).prop_map(Op::Remove),
            (0u64..12).prop_map(Op::Bump),
        ]
    }

    proptest! {
        /// The map behaves as the `BTreeMap` it replaced, operation for operation.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec(op(), 0..60)) {
            let mut ours = ProgressMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(id, m) => prop_assert_eq!(ours.insert(id, pr(m)), model.insert(id, pr(m))),
                    Op::Remove(id) => prop_assert_eq!(ours.remove(&id), model.remove(&id)),
                    Op::Bump(id) => {
                        if let Some(p) = ours.get_mut(&id) {
                            p.matched += 1;
                        }
                        if let Some(p) = model.get_mut(&id) {
                            p.matched += 1;
                        }
                    }
                }
                prop_assert_eq!(ours.len(), model.len());
                prop_assert!(ours.iter().eq(model.iter()));
                for id in 0..12 {
                    prop_assert_eq!(ours.get(&id), model.get(&id));
                    prop_assert_eq!(ours.contains_key(&id), model.contains_key(&id));
                }
            }
        }
    }

    #[test]
    fn iter_mut_reaches_every_member_in_order() {
        let mut map: ProgressMap = [(3, pr(1)), (1, pr(1)), (2, pr(1))].into_iter().collect();
        for (&id, p) in map.iter_mut() {
            p.matched = id * 10;
        }
        let seen: Vec<(u64, u64)> = map.iter().map(|(&id, p)| (id, p.matched)).collect();
        assert_eq!(seen, vec![(1, 10), (2, 20), (3, 30)]);
        assert_eq!(map[&2].matched, 20);
        assert_eq!(format!("{map:?}").matches("matched").count(), 3);
    }
}
