//! The fault injector: at random virtual times it partitions the network (into groups,
//! or one way), crashes a store (restarting it later), adds or removes a peer, or splits
//! a region. Conf changes and splits are admin commands sent to the region's leader, as
//! an operator would; whether they succeed is up to the cluster.

use raft_core::eraftpb::ConfChangeType;
use raft_store::StoreMsg;
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{AdminRequest, RaftCmdRequest, RequestHeader};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::client::key;
use super::simulator::Simulator;
use crate::cluster::filter::{OneWay, Partition};
use crate::cluster::{change_peer, split_at};

/// Stores down at once, at most (a majority of three voters stays up).
const MAX_DOWN: usize = 1;

impl Simulator {
    /// Injects one random fault among the enabled kinds.
    pub(super) fn inject_fault(&mut self) {
        let mut kinds: Vec<&'static str> = Vec::new();
        if self.cfg.partitions {
            kinds.extend(["partition", "one-way"]);
        }
        if self.cfg.crashes {
            kinds.push("crash");
        }
        if self.cfg.conf_changes {
            kinds.push("conf change");
        }
        if self.cfg.splits {
            kinds.push("split");
        }
        let Some(&kind) = kinds.choose(&mut self.rng) else {
            return;
        };
        let injected = match kind {
            "partition" => self.partition(),
            "one-way" => self.one_way(),
            "crash" => self.crash(),
            "conf change" => self.conf_change(),
            _ => self.split(),
        };
        if injected {
            self.trace.record((self.queue.now(), "fault", kind));
            *self.faults.entry(kind).or_default() += 1;
        }
    }

    /// A heal after a random while.
    fn heal_later(&mut self, filter: crate::cluster::filter::FilterId) {
        let after = self.rng.random_range(200_000..2_000_000);
        self.queue
            .after(after, super::events::Event::Heal { filter });
    }

    fn partition(&mut self) -> bool {
        let mut stores: Vec<u64> = self.nodes.keys().copied().collect();
        stores.shuffle(&mut self.rng);
        let cut = self.rng.random_range(1..stores.len());
        let (a, b) = stores.split_at(cut);
        let filter = self.network.filters.add(Partition::new(&[a, b]));
        self.heal_later(filter);
        true
    }

    fn one_way(&mut self) -> bool {
        let stores: Vec<u64> = self.nodes.keys().copied().collect();
        let from = *stores.choose(&mut self.rng).expect("stores");
        let to = *stores.choose(&mut self.rng).expect("stores");
        if from == to {
            return false;
        }
        let filter = self.network.filters.add(OneWay { from, to });
        self.heal_later(filter);
        true
    }

    fn crash(&mut self) -> bool {
        let running = self.stores(true);
        if self.nodes.len() - running.len() >= MAX_DOWN {
            return false;
        }
        let Some(&id) = running.choose(&mut self.rng) else {
            return false;
        };
        self.crash_store(id);
        let after = self.rng.random_range(100_000..3_000_000);
        self.queue
            .after(after, super::events::Event::Restart { store: id });
        true
    }

    /// A random region as its leader (in the highest term) sees it, with that leader.
    fn random_led_region(&mut self) -> Option<(u64, Region)> {
        let mut led: std::collections::BTreeMap<u64, (u64, u64, Region)> = Default::default();
        for (&id, node) in &self.nodes {
            let Some(store) = node.store() else {
                continue;
            };
            for status in store.region_statuses() {
                if status.is_leader
                    && led
                        .get(&status.region.id)
                        .is_none_or(|(term, _, _)| *term < status.term)
                {
                    led.insert(status.region.id, (status.term, id, status.region));
                }
            }
        }
        let regions: Vec<_> = led.into_values().collect();
        let (_, leader, region) = regions.choose(&mut self.rng)?.clone();
        Some((leader, region))
    }

    fn admin(&mut self, leader: u64, region: &Region, admin: AdminRequest) -> bool {
        let req = RaftCmdRequest {
            header: Some(RequestHeader {
                region_id: region.id,
                region_epoch: region.region_epoch,
                timestamp_ms: self.queue.now() / 1000,
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(Box::new(admin)),
        };
        self.deliver_local(
            leader,
            StoreMsg::Command {
                request: Box::new(req),
                // The outcome shows in the regions the stores report.
                callback: Box::new(|_| {}),
            },
        )
    }

    /// Removes a random peer (keeping three) or adds one on a store without a peer.
    fn conf_change(&mut self) -> bool {
        let Some((leader, region)) = self.random_led_region() else {
            return false;
        };
        let members: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
        let change = if members.len() > 3 && self.rng.random_bool(0.5) {
            let peer = *region.peers.choose(&mut self.rng).expect("peers");
            change_peer(ConfChangeType::RemoveNode, peer.id, peer.store_id)
        } else {
            let free: Vec<u64> = self
                .nodes
                .keys()
                .copied()
                .filter(|s| !members.contains(s))
                .collect();
            let Some(&store) = free.choose(&mut self.rng) else {
                return false;
            };
            self.next_peer_id += 1;
            change_peer(ConfChangeType::AddNode, self.next_peer_id, store)
        };
        self.admin(leader, &region, change)
    }

    /// Splits a random region at a random shared key strictly inside it.
    fn split(&mut self) -> bool {
        let Some((leader, region)) = self.random_led_region() else {
            return false;
        };
        let inside: Vec<Vec<u8>> = (1..self.cfg.keys)
            .map(key)
            .filter(|k| {
                raft_store::region_check::key_in_region(k, &region) && region.start_key[..] != k[..]
            })
            .collect();
        let Some(at) = inside.choose(&mut self.rng).cloned() else {
            return false;
        };
        self.admin(leader, &region, split_at(&at))
    }
}
