//! [`Cluster`] over raft-rs (the `raft` crate), driven through its idiomatic synchronous
//! Ready loop: `ready`, send, persist, send persisted, apply, `advance` → `LightReady`
//! (commit index, more committed entries and messages), `advance_apply`.

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole, Storage};

use crate::cluster::Cluster;
use crate::settings;

struct Node {
    raw: RawNode<MemStorage>,
    storage: MemStorage,
    applied: u64,
}

impl Node {
    fn handle_readies(&mut self, outbox: &mut Vec<Message>) -> bool {
        let mut progressed = false;
        while self.raw.has_ready() {
            progressed = true;
            let mut rd = self.raw.ready();
            outbox.append(&mut rd.take_messages());
            assert!(
                rd.snapshot().get_metadata().index == 0,
                "the workload never sends snapshots"
            );
            {
                let mut store = self.storage.wl();
                store.append(rd.entries()).expect("append to MemStorage");
                if let Some(hs) = rd.hs() {
                    store.set_hardstate(hs.clone());
                }
            }
            outbox.append(&mut rd.take_persisted_messages());
            for entry in rd.take_committed_entries() {
                apply(&mut self.applied, entry.index, entry.get_entry_type());
            }
            let mut light = self.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                self.storage.wl().mut_hard_state().commit = commit;
            }
            outbox.append(&mut light.take_messages());
            for entry in light.take_committed_entries() {
                apply(&mut self.applied, entry.index, entry.get_entry_type());
            }
            self.raw.advance_apply();
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

/// A raft-rs cluster; see [`Cluster`].
pub struct RaftRsCluster {
    nodes: Vec<Node>,
    outbox: Vec<Message>,
}

impl Cluster for RaftRsCluster {
    const NAME: &'static str = "raft-rs";

    fn new(voters: u64) -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let ids: Vec<u64> = (1..=voters).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let storage = MemStorage::new_with_conf_state((ids.clone(), vec![]));
                let cfg = Config {
                    id,
                    election_tick: settings::ELECTION_TICKS,
                    heartbeat_tick: settings::HEARTBEAT_TICKS,
                    max_size_per_msg: settings::MAX_MSG_BYTES,
                    max_inflight_msgs: settings::MAX_INFLIGHT_MSGS,
                    max_committed_size_per_ready: settings::MAX_COMMITTED_BYTES_PER_READY,
                    max_uncommitted_size: settings::MAX_UNCOMMITTED_BYTES,
                    pre_vote: true,
                    check_quorum: true,
                    // Coalesce the appends of proposals made between two Readies into one
                    // message per follower, as raft-core always does.
                    batch_append: true,
                    ..Config::default()
                };
                let raw = RawNode::new(&cfg, storage.clone(), &logger).expect("valid config");
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
        assert_eq!(cluster.nodes[0].raw.raft.state, StateRole::Leader);
        cluster
    }

    fn propose(&mut self, data: Bytes) -> u64 {
        // What `RawNode::propose` does, minus its `Vec<u8>` payload: both libraries take
        // the same shared `Bytes`, so neither copies the payload.
        let leader = &mut self.nodes[0].raw;
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = leader.raft.id;
        m.entries.push(Entry {
            data,
            ..Entry::default()
        });
        leader.step(m).expect("propose");
        leader.raft.raft_log.last_index()
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
        self.nodes[(id - 1) as usize]
            .storage
            .first_index()
            .expect("MemStorage first_index")
    }
}
