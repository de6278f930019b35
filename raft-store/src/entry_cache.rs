//! The newest entries of a peer's log, kept in memory so that applying them and sending
//! them to followers does not read them back from the raft engine.
//!
//! Raft reads an entry from storage soon after it was persisted: to apply it once it
//! commits, and to send it to a follower that fell a little behind. Without a cache each
//! such read is an engine scan (for the log engine a `pread` and a decode per entry).
//!
//! Two budgets bound the memory: each peer's own ([`EntryCache::new`]'s `peer_bytes`)
//! and the store's ([`CacheBudget`], shared by every peer of a store). A leader keeps the
//! entries a lagging follower still lacks, so with a follower down every leader region
//! would keep a full peer budget; the store budget caps their sum, and a periodic sweep
//! ([`EntryCache::sweep`]) empties the caches of peers that appended nothing since the
//! previous one when the store's caches fill half of it, so busy regions get the room.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use raft_core::eraftpb::Entry;
use raft_core::util::{entry_size, limit_size};

/// The bytes of cached entries a store's peers may hold together, and how many they hold.
/// Clones share the count.
///
/// A peer whose append takes the sum past the limit evicts its own oldest entries until
/// the sum is back under it (never its newest entry), so the sum stays within the limit
/// plus one entry per peer.
#[derive(Debug, Clone)]
pub struct CacheBudget {
    used: Arc<AtomicU64>,
    limit: u64,
}

impl CacheBudget {
    /// A budget of `limit` bytes for all the caches sharing it.
    #[must_use]
    pub fn new(limit: u64) -> Self {
        Self {
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    /// The bytes the caches sharing this budget hold now.
    #[must_use]
    pub fn used(&self) -> u64 {
        // Relaxed: the count is only compared with the limit, never used to order
        // other memory; every cache of a store changes it on the same thread.
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the caches sharing this budget hold more than half of it: idle ones then
    /// make room at the next sweep.
    #[must_use]
    pub fn crowded(&self) -> bool {
        self.used() > self.limit / 2
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }

    fn take(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A contiguous run of the newest log entries, at most `peer_bytes` of them and within
/// the store's [`CacheBudget`] (always the newest one, if any). Invariant: when not
/// empty, the last cached entry is the last entry of the log, and the cached indexes are
/// consecutive; `bytes` is the sum of the sizes kept with `entries` and is counted in
/// the store budget.
#[derive(Debug)]
pub struct EntryCache {
    /// Each entry with its size, computed once on the way in.
    entries: VecDeque<(Entry, u64)>,
    bytes: u64,
    peer_bytes: u64,
    store: CacheBudget,
    /// Whether anything was appended since the last [`Self::sweep`].
    appended: bool,
}

impl EntryCache {
    /// An empty cache holding up to `peer_bytes` of entries (0 disables it), counted in
    /// `store`'s budget.
    #[must_use]
    pub fn new(peer_bytes: u64, store: CacheBudget) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            peer_bytes,
            store,
            appended: false,
        }
    }

    /// Records `entries`, just staged as the new end of the log: they replace any cached
    /// entries at or after their first index (a conflicting suffix), then the oldest are
    /// evicted past the peer's budget or while the store's is exceeded.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        if self.peer_bytes == 0 {
            return;
        }
        self.appended = true;
        match (self.front_index(), self.entries.back()) {
            // Extends the run or replaces a suffix of it: keep what comes before.
            (Some(front), Some((back, _)))
                if front < first.index && first.index <= back.index + 1 =>
            {
                let keep = usize::try_from(first.index - front)
                    .expect("a cached run is shorter than usize::MAX");
                let dropped: u64 = self.entries.drain(keep..).map(|(_, size)| size).sum();
                self.release(dropped);
            }
            // Replaces the whole run, or leaves a gap after it: start over.
            _ => self.clear(),
        }
        let mut added = 0;
        for e in entries {
            let size = entry_size(e);
            added += size;
            self.entries.push_back((e.clone(), size));
        }
        self.bytes += added;
        self.store.take(added);
        while self.entries.len() > 1 && (self.bytes > self.peer_bytes || self.store.over()) {
            let (_, size) = self
                .entries
                .pop_front()
                .expect("more than one entry cached");
            self.release(size);
        }
    }

    fn front_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.index)
    }

    /// The entries `[low, high)`, stopping before the one that would take their total
    /// size past `max_size` (the first is always returned), if all of them are cached.
    #[must_use]
    pub fn get(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let front = self.front_index()?;
        let back = self.entries.back()?.0.index;
        if low < front || high > back + 1 || low >= high {
            return None;
        }
        let start = usize::try_from(low - front).ok()?;
        let count = usize::try_from(high - low).ok()?;
        // Clones share the payloads (`Bytes`); cutting them afterwards is cheap.
        let mut out: Vec<Entry> = self
            .entries
            .range(start..start + count)
            .map(|(e, _)| e.clone())
            .collect();
        limit_size(&mut out, max_size);
        Some(out)
    }

    /// The term of the entry at `index`, if cached.
    #[must_use]
    pub fn term(&self, index: u64) -> Option<u64> {
        let offset = usize::try_from(index.checked_sub(self.front_index()?)?).ok()?;
        self.entries.get(offset).map(|(e, _)| e.term)
    }

    /// Drops the entries at or below `index`, which nobody will read again (applied,
    /// and on a leader also held by every follower).
    pub fn compact_to(&mut self, index: u64) {
        let mut dropped = 0;
        while self.front_index().is_some_and(|front| front <= index) {
            let (_, size) = self.entries.pop_front().expect("the front was just seen");
            dropped += size;
        }
        self.release(dropped);
    }

    /// One sweep: empties the cache if nothing was appended since the previous sweep and
    /// `crowded` (the store's caches hold much of its budget), and starts a new period.
    /// An idle peer's entries are still read when they are needed (a follower back after
    /// an outage), from the raft engine.
    pub fn sweep(&mut self, crowded: bool) {
        if crowded && !self.appended {
            self.clear();
        }
        self.appended = false;
    }

    /// Forgets every entry (the log was replaced by a snapshot, the cache starts over or
    /// gives its room to busier peers).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.release(self.bytes);
    }

    /// The bytes of entries held.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many entries are held.
    #[cfg(test)]
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn release(&mut self, bytes: u64) {
        if bytes > 0 {
            self.bytes -= bytes;
            self.store.give_back(bytes);
        }
    }
}

impl Drop for EntryCache {
    /// A destroyed or replaced peer's entries leave the store's budget.
    fn drop(&mut self) {
        self.store.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlimited() -> CacheBudget {
        CacheBudget::new(u64::MAX)
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 100].into(),
            ..Default::default()
        }
    }

    fn run(from: u64, to: u64, term: u64) -> Vec<Entry> {
        (from..=to).map(|i| entry(i, term)).collect()
    }

    fn indexes_terms(es: &[Entry]) -> Vec<(u64, u64)> {
        es.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let mut c = EntryCache::new(1 << 20, unlimited());
        assert_eq!(c.get(1, 2, None), None);
        c.append(&run(5, 9, 1));
        assert_eq!(
            indexes_terms(&c.get(5, 10, None).unwrap()),
            (5..10).map(|i| (i, 1)).collect::<Vec<_>>()
        );
        assert_eq!(indexes_terms(&c.get(7, 8, None).unwrap()), [(7, 1)]);
        assert_eq!(c.get(4, 6, None), None, "starts before the cache");
        assert_eq!(c.get(9, 11, None), None, "ends after the cache");
        assert_eq!(c.get(6, 6, None), None, "empty range");
    }

    #[test]
    fn conflicting_suffix_is_replaced_and_gap_starts_over() {
        let mut c = EntryCache::new(1 << 20, unlimited());
        c.append(&run(1, 10, 1));
        c.append(&run(7, 8, 2));
        let got = c.get(5, 9, None).unwrap();
        assert_eq!(indexes_terms(&got), [(5, 1), (6, 1), (7, 2), (8, 2)]);
        assert_eq!(c.get(9, 10, None), None, "the replaced suffix is gone");
        assert_eq!(
            (c.term(0), c.term(6), c.term(7), c.term(9)),
            (None, Some(1), Some(2), None)
        );
        c.append(&run(9, 9, 2));
        assert_eq!(
            indexes_terms(&c.get(8, 10, None).unwrap()),
            [(8, 2), (9, 2)]
        );
        // A gap: nothing older may be served around it.
        c.append(&run(20, 21, 3));
        assert_eq!(c.get(9, 10, None), None);
        assert_eq!(
            indexes_terms(&c.get(20, 22, None).unwrap()),
            [(20, 3), (21, 3)]
        );
        // Replacing from before the first cached entry drops the whole run.
        c.append(&run(15, 16, 4));
        assert_eq!(c.get(20, 21, None), None);
        assert_eq!(
            indexes_terms(&c.get(15, 17, None).unwrap()),
            [(15, 4), (16, 4)]
        );
    }

    #[test]
    fn budget_evicts_oldest_and_size_limit_keeps_one() {
        let one = entry_size(&entry(1, 1));
        let mut c = EntryCache::new(3 * one, unlimited());
        c.append(&run(1, 5, 1));
        assert_eq!(c.bytes(), 3 * one);
        assert_eq!(c.get(2, 4, None), None, "evicted");
        assert_eq!(
            indexes_terms(&c.get(3, 6, None).unwrap()),
            [(3, 1), (4, 1), (5, 1)]
        );
        assert_eq!(
            indexes_terms(&c.get(3, 6, Some(2 * one)).unwrap()),
            [(3, 1), (4, 1)]
        );
        assert_eq!(indexes_terms(&c.get(3, 6, Some(1)).unwrap()), [(3, 1)]);
        // An entry larger than the budget is still held alone: the newest is always kept.
        let mut small = EntryCache::new(1, unlimited());
        small.append(&run(1, 2, 1));
        assert_eq!(indexes_terms(&small.get(2, 3, None).unwrap()), [(2, 1)]);
        // Compaction empties the front, and the run resumes after it.
        c.compact_to(4);
        assert_eq!((c.get(4, 5, None), c.bytes()), (None, one));
        c.compact_to(9);
        assert_eq!((c.get(5, 6, None), c.bytes()), (None, 0));
        c.append(&run(6, 6, 1));
        assert_eq!(indexes_terms(&c.get(6, 7, None).unwrap()), [(6, 1)]);
        let mut off = EntryCache::new(0, unlimited());
        off.append(&run(1, 2, 1));
        assert_eq!(off.get(1, 2, None), None);
    }

    #[test]
    fn store_budget_caps_the_sum_and_is_given_back() {
        let one = entry_size(&entry(1, 1));
        let store = CacheBudget::new(5 * one);
        // A leader holding entries for a lagging follower keeps them while idle.
        let mut idle = EntryCache::new(1 << 20, store.clone());
        idle.append(&run(1, 4, 1));
        assert_eq!(store.used(), 4 * one);
        // A busy peer sharing the store's budget gets what is left, and evicts its own
        // oldest entries, never the idle peer's.
        let mut busy = EntryCache::new(1 << 20, store.clone());
        busy.append(&run(1, 3, 1));
        assert_eq!((busy.bytes(), store.used()), (one, 5 * one));
        assert_eq!(indexes_terms(&busy.get(3, 4, None).unwrap()), [(3, 1)]);
        assert_eq!(busy.get(2, 3, None), None, "evicted past the store budget");
        assert_eq!(
            idle.bytes(),
            4 * one,
            "other peers' entries are not evicted"
        );
        // Past the store budget, each peer still keeps its newest entry.
        let mut third = EntryCache::new(1 << 20, store.clone());
        third.append(&run(7, 8, 1));
        assert_eq!((third.bytes(), store.used()), (one, 6 * one));
        // Trimming, replacing a suffix and dropping a peer give their bytes back.
        idle.compact_to(2);
        assert_eq!(store.used(), 4 * one);
        busy.append(&run(3, 3, 2));
        assert_eq!((busy.bytes(), store.used()), (one, 4 * one));
        drop(idle);
        assert_eq!(store.used(), 2 * one);
        third.clear();
        drop(busy);
        assert_eq!(store.used(), 0);
    }

    mod model {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::super::*;

        #[derive(Debug, Clone)]
        enum Op {
            /// `len` entries of `term` on cache `cache`, starting `back` entries before
            /// the end of its log (a conflict) or `gap` after it.
            Append {
                cache: usize,
                back: u64,
                gap: u64,
                len: u64,
                term: u64,
                payload: usize,
            },
            Compact {
                cache: usize,
                back: u64,
            },
            Clear {
                cache: usize,
            },
            Sweep {
                cache: usize,
                crowded: bool,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0usize..2, 0u64..4, 0u64..2, 1u64..6, 1u64..4, 0usize..300).prop_map(
                    |(cache, back, gap, len, term, payload)| Op::Append {
                        cache,
                        back,
                        gap: u64::from(gap == 1 && back == 0),
                        len,
                        term,
                        payload,
                    }
                ),
                2 => (0usize..2, 0u64..8).prop_map(|(cache, back)| Op::Compact { cache, back }),
                1 => (0usize..2).prop_map(|cache| Op::Clear { cache }),
                2 => (0usize..2, any::<bool>())
                    .prop_map(|(cache, crowded)| Op::Sweep { cache, crowded }),
            ]
        }

        fn entry(index: u64, term: u64, payload: usize) -> Entry {
            Entry {
                index,
                term,
                data: vec![0; payload].into(),
                ..Default::default()
            }
        }

        proptest! {
            /// Two caches sharing a store budget, against the logs they were given: whatever
            /// they serve is the log's; they always hold their newest entry; their bytes
            /// are what the budget counts; past either budget only the newest is left.
            #[test]
            fn serves_only_the_log_and_keeps_both_budgets(
                peer_bytes in 1u64..2_000,
                store_bytes in 0u64..3_000,
                ops in prop::collection::vec(op(), 1..120),
            ) {
                let budget = CacheBudget::new(store_bytes);
                let mut caches = [
                    EntryCache::new(peer_bytes, budget.clone()),
                    EntryCache::new(peer_bytes, budget.clone()),
                ];
                let mut logs: [BTreeMap<u64, Entry>; 2] = [BTreeMap::new(), BTreeMap::new()];
                let mut appended = [false; 2];
                for op in ops {
                    match op {
                        Op::Append { cache, back, gap, len, term, payload } => {
                            let last = logs[cache].keys().next_back().copied().unwrap_or(0);
                            let first = (last + 1 + gap).saturating_sub(back).max(1);
                            let entries: Vec<Entry> =
                                (first..first + len).map(|i| entry(i, term, payload)).collect();
                            logs[cache].retain(|&i, _| i < first);
                            for e in &entries {
                                logs[cache].insert(e.index, e.clone());
                            }
                            caches[cache].append(&entries);
                            appended[cache] = true;
                            let newest = first + len - 1;
                            prop_assert_eq!(caches[cache].term(newest), Some(term), "newest kept");
                            let held = caches[cache].bytes();
                            prop_assert!(
                                caches[cache].len() == 1
                                    || (held <= peer_bytes && budget.used() <= store_bytes),
                                "over a budget with more than the newest entry: {} held", held
                            );
                            // Eviction stops as soon as both budgets are kept: a run that
                            // fits both by itself stays whole.
                            let run: u64 = entries.iter().map(entry_size).sum();
                            if run <= peer_bytes && budget.used() - held + run <= store_bytes {
                                prop_assert!(
                                    caches[cache].get(first, newest + 1, None).is_some(),
                                    "a run within both budgets was evicted"
                                );
                            }
                        }
                        Op::Compact { cache, back } => {
                            let last = logs[cache].keys().next_back().copied().unwrap_or(0);
                            caches[cache].compact_to(last.saturating_sub(back));
                        }
                        Op::Clear { cache } => caches[cache].clear(),
                        Op::Sweep { cache, crowded } => {
                            let before = caches[cache].len();
                            caches[cache].sweep(crowded);
                            let was_appended = std::mem::take(&mut appended[cache]);
                            let idle = crowded && !was_appended;
                            let want = if idle { 0 } else { before };
                            prop_assert_eq!(caches[cache].len(), want, "swept: idle {}", idle);
                        }
                    }
                    prop_assert_eq!(budget.used(), caches[0].bytes() + caches[1].bytes());
                    for (cache, log) in caches.iter().zip(&logs) {
                        // Past the log's end too: a stale tail must never be served.
                        let last = log.keys().next_back().copied().unwrap_or(0);
                        for low in 1..=last + 2 {
                            if let Some(t) = cache.term(low) {
                                prop_assert_eq!(Some(t), log.get(&low).map(|e| e.term));
                            }
                            for high in low + 1..=last + 3 {
                                if let Some(got) = cache.get(low, high, None) {
                                    let want: Vec<Entry> =
                                        (low..high).filter_map(|i| log.get(&i).cloned()).collect();
                                    prop_assert_eq!(got, want);
                                }
                            }
                        }
                    }
                }
                drop(caches);
                prop_assert_eq!(budget.used(), 0);
            }
        }
    }
}
