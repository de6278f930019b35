//! [`Cluster`] over raft-core.

use bytes::Bytes;
use raft_core::eraftpb::{EntryType, Message};
use raft_core::{Config, MemStorage, RawNode, StateRole, Storage};

use crate::cluster::Cluster;
use crate::settings;

struct Node {
    raw: RawNode<MemStorage>,
    storage: MemStorage,
    applied: u64,
}

impl Node {
    /// The Ready loop of one node: send, persist, send after persisting, apply, advance.
    fn handle_readies(&mut self, outbox: &mut Vec<Message>) -> bool {
        let mut progressed = false;
        while self.raw.has_ready() {
            progressed = true;
            let mut rd = self.raw.ready().expect("ready");
            outbox.append(&mut rd.take_messages());
            assert!(
                rd.snapshot().is_none(),
                "the workload never sends snapshots"
            );
            {
                let mut store = self.storage.wl();
                store.append(rd.entries()).expect("append to MemStorage");
                if let Some(hs) = rd.hard_state() {
                    store.set_hard_state(*hs);
                }
            }
            outbox.append(&mut rd.take_persisted_messages());
            for entry in rd.take_committed_entries() {
                apply(&mut self.applied, entry.index, entry.entry_type());
            }
            self.raw.advance(rd).expect("advance");
        }
        progressed
    }
}

/// The state machine: it counts, so applying costs the same in both clusters.
fn apply(applied: &mut u64, index: u64, entry_type: EntryType) {
    debug_assert_eq!(entry_type, EntryType::EntryNormal);
    debug_assert_eq!(index, *applied + 1, "entries are applied in order");
    *applied = index;
}

/// A raft-core cluster; see [`Cluster`].
pub struct RaftkvCluster {
    nodes: Vec<Node>,
    outbox: Vec<Message>,
}

impl Cluster for RaftkvCluster {
    const NAME: &'static str = "raftkv";

    fn new(voters: u64) -> Self {
        let ids: Vec<u64> = (1..=voters).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let storage = MemStorage::new_with_conf_state((ids.clone(), vec![]));
                let mut cfg = Config::new(id);
                cfg.election_ticks = settings::ELECTION_TICKS;
                cfg.heartbeat_ticks = settings::HEARTBEAT_TICKS;
                cfg.max_msg_bytes = settings::MAX_MSG_BYTES;
                cfg.max_inflight_msgs = settings::MAX_INFLIGHT_MSGS;
                cfg.max_committed_bytes_per_ready = settings::MAX_COMMITTED_BYTES_PER_READY;
                cfg.max_uncommitted_bytes = settings::MAX_UNCOMMITTED_BYTES;
                cfg.pre_vote = true;
                cfg.check_quorum = true;
                let raw = RawNode::new(&cfg, storage.clone()).expect("valid config");
                Node {
                    raw,
                    storage,
                    applied: 0,
                }
            })
            .collect();
        let mut cluster = Self {
            nodes,
            outbox: Vec::new(),
        };
        cluster.nodes[0].raw.campaign().expect("campaign");
        cluster.run_until_quiet();
        assert_eq!(cluster.nodes[0].raw.raft().state(), StateRole::Leader);
        cluster
    }

    fn propose(&mut self, data: Bytes) -> u64 {
        let leader = &mut self.nodes[0].raw;
        leader.propose(Bytes::new(), data).expect("propose");
        leader.raft().raft_log().last_index()
    }

    fn round(&mut self) -> bool {
        let mut progressed = false;
        for node in &mut self.nodes {
            progressed |= node.handle_readies(&mut self.outbox);
        }
        progressed |= !self.outbox.is_empty();
        for m in self.outbox.drain(..) {
            let to = (m.to - 1) as usize;
            self.nodes[to].raw.step(m).expect("step");
        }
        progressed
    }

    fn applied(&self, id: u64) -> u64 {
        self.nodes[(id - 1) as usize].applied
    }

    fn ids(&self) -> std::ops::RangeInclusive<u64> {
        1..=self.nodes.len() as u64
    }

    fn compact(&mut self, id: u64, index: u64) {
        let node = &self.nodes[(id - 1) as usize];
        node.storage.wl().compact(index).expect("compact");
    }

    fn first_index(&self, id: u64) -> u64 {
        self.nodes[(id - 1) as usize].storage.first_index()
    }
}
