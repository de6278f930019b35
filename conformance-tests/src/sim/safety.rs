//! [`SafetyMonitor`]: the Raft safety properties, checked on what the stores expose after
//! every store iteration.

use std::collections::{BTreeMap, HashMap};

use engines::{Iterable, MemoryEngine, Peekable};
use prost::Message as _;
use raft_store::keys::{self, CF_META};
use raft_store::pb::raft_serverpb::RaftApplyState;

use super::node::SimStore;

/// What the monitor has seen so far, and the first violations found.
#[derive(Debug, Default)]
pub(crate) struct SafetyMonitor {
    /// The peer that led each (region, term).
    leaders: HashMap<(u64, u64), u64>,
    /// The term of each applied entry, by (region, index): applied entries are committed,
    /// and a committed entry is the same on every store forever.
    committed: HashMap<(u64, u64), u64>,
    /// The applied index last seen of each (store, peer).
    applied: BTreeMap<(u64, u64), u64>,
    /// Violations, in the order found.
    pub(crate) violations: Vec<String>,
}

impl SafetyMonitor {
    /// Checks store `store_id` as it is now.
    pub(crate) fn observe(&mut self, store_id: u64, store: &SimStore) {
        for peer in store.peers() {
            let region_id = peer.region_id();
            let peer_id = peer.meta().id;
            let raft = peer.raft_group().raft();
            if peer.is_leader() {
                let leader = *self
                    .leaders
                    .entry((region_id, raft.term()))
                    .or_insert(peer_id);
                if leader != peer_id {
                    self.violations.push(format!(
                        "two leaders of region {region_id} in term {}: peers {leader} and \
                         {peer_id} (store {store_id})",
                        raft.term()
                    ));
                }
            }
            let log = raft.raft_log();
            let applied = log.applied;
            let last = self.applied.insert((store_id, peer_id), applied);
            match last {
                Some(last) if applied < last => self.violations.push(format!(
                    "applied index of peer {peer_id} (region {region_id}, store {store_id}) \
                     went back from {last} to {applied} without a crash"
                )),
                _ => {}
            }
            // The entries applied since the last look that the log still holds (a
            // snapshot skips the ones before it).
            let from = last
                .unwrap_or(applied)
                .max(log.first_index().saturating_sub(1));
            for index in from + 1..=applied {
                let Ok(term) = log.term(index) else {
                    continue;
                };
                let known = *self.committed.entry((region_id, index)).or_insert(term);
                if known != term {
                    self.violations.push(format!(
                        "committed entry {index} of region {region_id} has term {term} on \
                         store {store_id}, {known} elsewhere"
                    ));
                }
            }
        }
    }

    /// Store `store_id` crashed: its peers' applied indexes may go back to what was
    /// durable. Returns the durable applied index of each region, read from the engine
    /// after the crash, for [`Self::restarted`].
    pub(crate) fn crashed(&mut self, store_id: u64, kv: &MemoryEngine) -> BTreeMap<u64, u64> {
        self.applied.retain(|(s, _), _| *s != store_id);
        let mut durable = BTreeMap::new();
        let (lo, hi) = keys::region_state_range();
        let mut region_ids = Vec::new();
        let _ = kv.scan(
            CF_META,
            lo.as_slice()..hi.as_slice(),
            engines::Direction::Forward,
            |k, _| {
                region_ids.extend(keys::region_state_region_id(k));
                true
            },
        );
        for region_id in region_ids {
            if let Ok(Some(bytes)) = kv.get(CF_META, &keys::apply_state_key(region_id))
                && let Ok(state) = RaftApplyState::decode(bytes.as_slice())
            {
                durable.insert(region_id, state.applied_index);
            }
        }
        durable
    }

    /// Store `store_id` restarted: each peer's applied index must be at least the durable
    /// one of its region.
    pub(crate) fn restarted(
        &mut self,
        store_id: u64,
        store: &SimStore,
        durable: &BTreeMap<u64, u64>,
    ) {
        for peer in store.peers() {
            let applied = peer.raft_group().raft().raft_log().applied;
            if let Some(&d) = durable.get(&peer.region_id())
                && applied < d
            {
                self.violations.push(format!(
                    "after a crash, peer {} of region {} on store {store_id} restarted \
                         at applied index {applied}, below the durable {d}",
                    peer.meta().id,
                    peer.region_id()
                ));
            }
        }
        self.observe(store_id, store);
    }
}
