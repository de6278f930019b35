//! A routing table of regions by key, shared by the KV service (routing to its store's
//! regions) and the client (routing to leaders).
//!
//! Regions only split, never merge, and a split raises the version of every region it
//! touches. So two regions whose ranges overlap are an older and a newer view of the same
//! keys, and the higher version is the truth. The cache keeps that invariant: it never
//! holds two overlapping regions, and a region older than an overlapping one it already
//! holds is ignored.
//!
//! That is also what makes splitting one exactly-once request over several regions safe:
//! a command that applies in region R carried every key of the request that R holds,
//! because routing can only send such a key to R (R's epoch was current, so no newer
//! overlapping region exists) or to an older view of R, whose command fails on its epoch.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use raft_store::pb::metapb;

use crate::proto::kvrpc::RegionInfo;

/// What the cache needs to know of a region.
pub trait RegionLike: Clone {
    /// The region id.
    fn id(&self) -> u64;
    /// The first key of the range.
    fn start_key(&self) -> &Bytes;
    /// The end of the range (exclusive; empty = unbounded).
    fn end_key(&self) -> &Bytes;
    /// The epoch's version (raised by every split).
    fn version(&self) -> u64;
    /// The epoch's conf version (raised by every membership change).
    fn conf_ver(&self) -> u64;
}

impl RegionLike for metapb::Region {
    fn id(&self) -> u64 {
        self.id
    }
    fn start_key(&self) -> &Bytes {
        &self.start_key
    }
    fn end_key(&self) -> &Bytes {
        &self.end_key
    }
    fn version(&self) -> u64 {
        self.region_epoch.map_or(0, |e| e.version)
    }
    fn conf_ver(&self) -> u64 {
        self.region_epoch.map_or(0, |e| e.conf_ver)
    }
}

impl RegionLike for RegionInfo {
    fn id(&self) -> u64 {
        self.id
    }
    fn start_key(&self) -> &Bytes {
        &self.start_key
    }
    fn end_key(&self) -> &Bytes {
        &self.end_key
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn conf_ver(&self) -> u64 {
        self.conf_ver
    }
}

/// Whether `key` is in `[start, end)` of `r`.
pub fn contains<R: RegionLike>(r: &R, key: &[u8]) -> bool {
    key >= &r.start_key()[..] && (r.end_key().is_empty() || key < &r.end_key()[..])
}

/// Whether `r` ends at or after `end` (empty = the end of the key space): a range ending
/// at `end` needs no region after `r`.
pub fn reaches<R: RegionLike>(r: &R, end: &[u8]) -> bool {
    r.end_key().is_empty() || (!end.is_empty() && end <= &r.end_key()[..])
}

/// `end` (empty = unbounded) clipped to the end of `r`.
pub fn clip_end<R: RegionLike>(end: &Bytes, r: &R) -> Bytes {
    if reaches(r, end) {
        end.clone()
    } else {
        r.end_key().clone()
    }
}

/// `start` raised to the start of `r`.
pub fn clip_start<R: RegionLike>(start: &Bytes, r: &R) -> Bytes {
    if start < r.start_key() {
        r.start_key().clone()
    } else {
        start.clone()
    }
}

/// Non-overlapping regions, by id and by start key.
///
/// Invariant: `by_start` maps each cached region's start key to its id, one entry per
/// region in `by_id`, and no two cached ranges overlap.
#[derive(Debug, Clone)]
pub struct RegionCache<R> {
    by_id: BTreeMap<u64, R>,
    by_start: BTreeMap<Bytes, u64>,
}

impl<R> Default for RegionCache<R> {
    fn default() -> Self {
        Self {
            by_id: BTreeMap::new(),
            by_start: BTreeMap::new(),
        }
    }
}

impl<R: RegionLike> RegionCache<R> {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or updates `region`, dropping the older regions it overlaps. Returns false
    /// (and changes nothing) when the cache holds a newer view of any of its keys, or of
    /// the region itself (a higher version, or the same version and a higher conf_ver).
    pub fn insert(&mut self, region: R) -> bool {
        let newer_self = self
            .by_id
            .get(&region.id())
            .is_some_and(|r| (r.version(), r.conf_ver()) > (region.version(), region.conf_ver()));
        if newer_self {
            return false;
        }
        let overlapping = self.overlapping(region.start_key(), region.end_key());
        if overlapping
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .any(|r| r.version() > region.version())
        {
            return false;
        }
        for id in overlapping {
            self.remove(id);
        }
        self.remove(region.id());
        self.by_start
            .insert(region.start_key().clone(), region.id());
        self.by_id.insert(region.id(), region);
        true
    }

    /// Forgets region `id`.
    pub fn remove(&mut self, id: u64) -> Option<R> {
        let r = self.by_id.remove(&id)?;
        if self.by_start.get(r.start_key()) == Some(&id) {
            self.by_start.remove(r.start_key());
        }
        Some(r)
    }

    /// Forgets every region.
    pub fn clear(&mut self) {
        self.by_id.clear();
        self.by_start.clear();
    }

    /// Region `id`, if cached.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<&R> {
        self.by_id.get(&id)
    }

    /// The cached region holding `key`.
    #[must_use]
    pub fn by_key(&self, key: &[u8]) -> Option<&R> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        self.by_id.get(id).filter(|r| contains(*r, key))
    }

    /// The cached region holding the largest key below `end` (empty `end` = the region
    /// that ends the key space): where a reverse scan ending at `end` continues.
    #[must_use]
    pub fn before(&self, end: &[u8]) -> Option<&R> {
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, upper))
            .next_back()?;
        let r = self.by_id.get(id)?;
        let reaches = if end.is_empty() {
            r.end_key().is_empty()
        } else {
            r.end_key().is_empty() || &r.end_key()[..] >= end
        };
        reaches.then_some(r)
    }

    /// Every cached region, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.by_start.values().filter_map(|id| self.by_id.get(id))
    }

    /// How many regions are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no region is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids of the cached regions overlapping `[start, end)` (empty end = unbounded).
    fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        let mut ids: Vec<u64> = self.by_key(start).map(|r| r.id()).into_iter().collect();
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        ids.extend(
            self.by_start
                .range::<[u8], _>((Bound::Included(start), upper))
                .map(|(_, id)| *id),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn region(id: u64, start: &str, end: &str, version: u64) -> RegionInfo {
        RegionInfo {
            id,
            start_key: Bytes::copy_from_slice(start.as_bytes()),
            end_key: Bytes::copy_from_slice(end.as_bytes()),
            version,
            conf_ver: 1,
            ..Default::default()
        }
    }

    fn id_of(c: &RegionCache<RegionInfo>, key: &str) -> Option<u64> {
        c.by_key(key.as_bytes()).map(|r| r.id)
    }

    #[test]
    fn keys_route_to_the_region_holding_them() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(1, "", "m", 2)));
        assert!(c.insert(region(5, "m", "", 2)));
        assert_eq!(id_of(&c, ""), Some(1));
        assert_eq!(id_of(&c, "lzz"), Some(1));
        assert_eq!(id_of(&c, "m"), Some(5));
        assert_eq!(id_of(&c, "zzz"), Some(5));
        assert_eq!(c.before(b"").map(|r| r.id), Some(5));
        assert_eq!(c.before(b"m").map(|r| r.id), Some(1));
        assert_eq!(c.before(b"n").map(|r| r.id), Some(5));
        let order: Vec<u64> = c.iter().map(|r| r.id).collect();
        assert_eq!(order, vec![1, 5]);
    }

    #[test]
    fn a_newer_region_replaces_the_older_views_it_overlaps_and_not_the_reverse() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(1, "", "", 1)));
        // Region 1 split: the new region 5 takes [m, end) at version 2.
        assert!(c.insert(region(5, "m", "", 2)));
        assert_eq!(
            id_of(&c, "a"),
            None,
            "the stale view of region 1 is dropped"
        );
        assert_eq!(id_of(&c, "x"), Some(5));
        // A late answer with region 1's old range changes nothing.
        assert!(!c.insert(region(1, "", "", 1)));
        assert_eq!(id_of(&c, "x"), Some(5));
        assert!(c.insert(region(1, "", "m", 2)));
        assert_eq!(id_of(&c, "a"), Some(1));
        assert_eq!(c.len(), 2);
        // A gap is a miss, not a wrong answer.
        c.remove(1);
        assert_eq!(id_of(&c, "a"), None);
        assert!(c.before(b"m").is_none());
    }

    #[test]
    fn an_updated_region_moves_its_start_key() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(5, "m", "", 2)));
        assert!(c.insert(region(5, "m", "t", 3)));
        assert!(c.insert(region(9, "t", "", 3)));
        assert_eq!(id_of(&c, "u"), Some(9));
        assert_eq!(id_of(&c, "n"), Some(5));
        assert_eq!(c.len(), 2);
        // A membership change keeps the range: the newer conf_ver wins either way round.
        let moved = RegionInfo {
            conf_ver: 2,
            store_ids: vec![1, 4],
            ..region(9, "t", "", 3)
        };
        assert!(c.insert(moved));
        assert!(!c.insert(region(9, "t", "", 3)));
        assert_eq!(c.get(9).unwrap().store_ids, vec![1, 4]);
    }

    #[test]
    fn ranges_are_clipped_to_a_region() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let bounded = region(1, "b", "d", 1);
        assert!(reaches(&bounded, b"c") && reaches(&bounded, b"d"));
        assert!(!reaches(&bounded, b"e") && !reaches(&bounded, b""));
        assert_eq!(clip_end(&b("c"), &bounded), b("c"));
        assert_eq!(clip_end(&b("e"), &bounded), b("d"));
        assert_eq!(clip_end(&b(""), &bounded), b("d"));
        assert_eq!(clip_start(&b("a"), &bounded), b("b"));
        assert_eq!(clip_start(&b("c"), &bounded), b("c"));
        let last = region(2, "d", "", 1);
        assert!(reaches(&last, b"") && reaches(&last, b"z"));
        assert_eq!(clip_end(&b(""), &last), b(""));
    }
}
