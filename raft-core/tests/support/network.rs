//! A network of in-memory RawNodes for protocol tests: synchronous persistence, FIFO
//! delivery, and filters to drop, cut, isolate or ignore messages.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use prost::Message as _;
use raft_core::eraftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot, SnapshotMetadata,
};
use raft_core::{ConfChangeI, Config, MemStorage, Raft, RawNode, ReadState, StateRole};

/// One node of the network with its storage and what it applied.
pub struct Node {
    pub raw: RawNode<MemStorage>,
    pub storage: MemStorage,
    /// Every non-empty normal entry applied, in order.
    pub applied: Vec<Entry>,
    /// The membership after the last applied conf change.
    pub conf_state: ConfState,
    /// Every read confirmed to this node, in order.
    pub read_states: Vec<ReadState>,
}

/// A message filter: return false to drop the message.
pub type Hook = Box<dyn FnMut(&Message) -> bool>;

/// A deterministic in-memory network of nodes.
pub struct Network {
    pub nodes: BTreeMap<u64, Node>,
    configs: BTreeMap<u64, Config>,
    /// Drop probability per directed link.
    drops: HashMap<(u64, u64), f64>,
    ignored: HashSet<MessageType>,
    hook: Option<Hook>,
    rng: u64,
    /// Messages delivered (after filters), for assertions.
    pub delivered: Vec<Message>,
}

/// The configuration etcd's tests use: election 10 ticks, heartbeat 1, no PreVote or
/// CheckQuorum unless a test turns them on.
pub fn test_config(id: u64) -> Config {
    let mut c = Config::new(id);
    c.election_ticks = 10;
    c.heartbeat_ticks = 1;
    c.pre_vote = false;
    c.check_quorum = false;
    c.max_inflight_msgs = 256;
    c.random_seed = 7;
    c
}

impl Network {
    /// Voters `ids`, with the test config adjusted by `tweak`.
    pub fn with_config(ids: &[u64], tweak: impl Fn(&mut Config)) -> Self {
        let mut net = Self {
            nodes: BTreeMap::new(),
            configs: BTreeMap::new(),
            drops: HashMap::new(),
            ignored: HashSet::new(),
            hook: None,
            rng: 0x5EED,
            delivered: Vec::new(),
        };
        for &id in ids {
            let mut cfg = test_config(id);
            tweak(&mut cfg);
            let storage = MemStorage::new_with_conf_state((ids.to_vec(), vec![]));
            net.add_node(cfg, storage);
        }
        net
    }

    /// Voters `ids` with the test config.
    pub fn new(ids: &[u64]) -> Self {
        Self::with_config(ids, |_| {})
    }

    /// Nodes `ids` over the storages `storage(id)` (e.g. preloaded logs), with the test
    /// config adjusted by `tweak`.
    pub fn with_storages(
        ids: &[u64],
        storage: impl Fn(u64) -> MemStorage,
        tweak: impl Fn(&mut Config),
    ) -> Self {
        let mut net = Self::with_config(&[], |_| {});
        for &id in ids {
            let mut cfg = test_config(id);
            tweak(&mut cfg);
            net.add_node(cfg, storage(id));
        }
        net
    }

    /// Campaigns on `id` and asserts that it won.
    pub fn elect(&mut self, id: u64) {
        self.campaign(id);
        assert_eq!(
            self.state(id),
            StateRole::Leader,
            "node {id} should have won"
        );
    }

    /// Asserts Raft's safety properties across every pair of nodes: logs agree on every
    /// index both have committed (Log Matching + Leader Completeness), and the applied
    /// sequences never disagree at an index (State Machine Safety). Also checks each
    /// node's `applied <= committed <= last_index`.
    pub fn assert_safety(&self) {
        for (&a, na) in &self.nodes {
            let la = na.raw.raft().raft_log();
            assert!(
                la.applied <= la.committed,
                "node {a}: applied past committed"
            );
            assert!(
                la.committed <= la.last_index(),
                "node {a}: committed past last index"
            );
            for (&b, nb) in &self.nodes {
                if a >= b {
                    continue;
                }
                let lb = nb.raw.raft().raft_log();
                let upto = la.committed.min(lb.committed);
                let from = la.first_index().max(lb.first_index());
                for i in from..=upto {
                    let (ta, tb) = (la.term(i), lb.term(i));
                    if let (Ok(ta), Ok(tb)) = (ta, tb) {
                        assert_eq!(
                            ta, tb,
                            "nodes {a} and {b} committed different entries at {i}"
                        );
                    }
                }
                let applied_b: HashMap<u64, &Entry> =
                    nb.applied.iter().map(|e| (e.index, e)).collect();
                for e in &na.applied {
                    if let Some(o) = applied_b.get(&e.index) {
                        assert_eq!(
                            (e.term, &e.data),
                            (o.term, &o.data),
                            "nodes {a} and {b} applied different entries at {}",
                            e.index
                        );
                    }
                }
            }
        }
    }

    /// The (index, term) of every entry of `id`'s log that is still held.
    pub fn log_of(&self, id: u64) -> Vec<(u64, u64)> {
        let log = self.raft(id).raft_log();
        log.slice(log.first_index(), log.last_index() + 1, None)
            .expect("log readable")
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }

    /// The payloads `id` applied, in order.
    pub fn applied_data(&self, id: u64) -> Vec<Vec<u8>> {
        self.nodes[&id]
            .applied
            .iter()
            .map(|e| e.data.to_vec())
            .collect()
    }

    /// Adds a node (e.g. one joining through a conf change, with empty storage).
    pub fn add_node(&mut self, cfg: Config, storage: MemStorage) {
        let conf_state = storage.rl().conf_state().clone();
        let raw = RawNode::new(&cfg, storage.clone()).expect("valid test config");
        self.configs.insert(cfg.id, cfg.clone());
        self.nodes.insert(
            cfg.id,
            Node {
                raw,
                storage,
                applied: Vec::new(),
                conf_state,
                read_states: Vec::new(),
            },
        );
    }

    /// Restarts `id` from what its storage holds: everything not persisted is lost.
    pub fn restart(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("node exists");
        let mut cfg = self.configs[&id].clone();
        cfg.applied = node.raw.raft().raft_log().applied;
        let raw = RawNode::new(&cfg, node.storage.clone()).expect("restart from storage");
        self.nodes.insert(id, Node { raw, ..node });
    }

    pub fn raft(&self, id: u64) -> &Raft<MemStorage> {
        self.nodes[&id].raw.raft()
    }

    pub fn raw(&mut self, id: u64) -> &mut RawNode<MemStorage> {
        &mut self.nodes.get_mut(&id).expect("node exists").raw
    }

    pub fn state(&self, id: u64) -> StateRole {
        self.raft(id).state()
    }

    /// The node that is leader in the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raw.raft().state() == StateRole::Leader)
            .max_by_key(|(_, n)| n.raw.raft().term())
            .map(|(&id, _)| id)
    }

    /// Starts an election on `id` and runs the network until quiet.
    pub fn campaign(&mut self, id: u64) {
        self.raw(id).campaign().expect("campaign");
        self.drain();
    }

    /// Proposes `data` on `id` and runs the network until quiet.
    pub fn propose(&mut self, id: u64, data: &[u8]) -> raft_core::Result<()> {
        let res = self
            .raw(id)
            .propose(Default::default(), data.to_vec().into());
        self.drain();
        res
    }

    /// Proposes a membership change on `id` and runs the network until quiet.
    pub fn propose_conf_change(&mut self, id: u64, cc: &impl ConfChangeI) -> raft_core::Result<()> {
        let res = self.raw(id).propose_conf_change(Default::default(), cc);
        self.drain();
        res
    }

    /// Adds node `id` about to join, with an empty log and the current membership
    /// `voters` (the membership is not in the log, so a joining node is bootstrapped
    /// with it, or learns it from a snapshot).
    pub fn add_joining_node(&mut self, id: u64, voters: &[u64]) {
        let storage = MemStorage::new_with_conf_state((voters.to_vec(), vec![]));
        self.add_node(test_config(id), storage);
    }

    /// Ticks `id` `n` times, running the network after each tick.
    pub fn tick(&mut self, id: u64, n: usize) {
        for _ in 0..n {
            self.raw(id).tick().expect("tick");
            self.drain();
        }
    }

    /// Ticks every node once, then runs the network.
    pub fn tick_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.raw(id).tick().expect("tick");
        }
        self.drain();
    }

    /// Delivers `msgs` (through the filters) and runs the network until quiet.
    pub fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: VecDeque<Message> = msgs.into();
        let mut budget = 100_000usize;
        loop {
            while let Some(m) = queue.pop_front() {
                budget = budget
                    .checked_sub(1)
                    .unwrap_or_else(|| panic!("the network does not quiesce; last: {m:?}"));
                if !self.passes(&m) {
                    continue;
                }
                self.delivered.push(m.clone());
                if let Some(node) = self.nodes.get_mut(&m.to) {
                    // Errors (dropped proposals, stale responses) are part of the protocol.
                    let _ = node.raw.step(m);
                }
            }
            let out = self.collect_all();
            if out.is_empty() {
                return;
            }
            queue.extend(out);
        }
    }

    /// Runs the network until no node has anything to do.
    pub fn drain(&mut self) {
        self.send(Vec::new());
    }

    /// Handles every node's Ready (persisting synchronously) and returns the messages.
    fn collect_all(&mut self) -> Vec<Message> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.handle_ready(id));
        }
        out
    }

    /// Handles one node's Readies until it has none, like an application would.
    pub fn handle_ready(&mut self, id: u64) -> Vec<Message> {
        let node = self.nodes.get_mut(&id).expect("node exists");
        let mut out = Vec::new();
        while node.raw.has_ready() {
            let mut rd = node.raw.ready().expect("ready");
            out.extend(rd.take_messages());
            node.read_states.extend(rd.take_read_states());
            if let Some(snap) = rd.take_snapshot() {
                node.storage
                    .wl()
                    .apply_snapshot(snap.clone())
                    .expect("apply snapshot");
                node.conf_state = snap.metadata.and_then(|m| m.conf_state).unwrap_or_default();
            }
            node.storage.wl().append(rd.entries()).expect("append");
            if let Some(hs) = rd.hard_state() {
                node.storage.wl().set_hard_state(*hs);
            }
            out.extend(rd.take_persisted_messages());
            for entry in rd.take_committed_entries() {
                apply_entry(node, entry);
            }
            node.raw.advance(rd).expect("advance");
        }
        out
    }

    fn passes(&mut self, m: &Message) -> bool {
        if self.ignored.contains(&m.msg_type()) {
            return false;
        }
        if let Some(&p) = self.drops.get(&(m.from, m.to))
            && (p >= 1.0 || self.next_f64() < p)
        {
            return false;
        }
        self.hook.as_mut().is_none_or(|hook| hook(m))
    }

    fn next_f64(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Drops messages from `from` to `to` with probability `p`.
    pub fn drop_link(&mut self, from: u64, to: u64, p: f64) {
        self.drops.insert((from, to), p);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.drop_link(a, b, 1.0);
        self.drop_link(b, a, 1.0);
    }

    /// Cuts `id` from every other node.
    pub fn isolate(&mut self, id: u64) {
        let ids: Vec<u64> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        for other in ids {
            self.cut(id, other);
        }
    }

    /// Drops every message of type `t`.
    pub fn ignore(&mut self, t: MessageType) {
        self.ignored.insert(t);
    }

    /// Installs a hook that sees every message and drops those it returns false for.
    pub fn set_hook(&mut self, hook: impl FnMut(&Message) -> bool + 'static) {
        self.hook = Some(Box::new(hook));
    }

    /// Removes every filter.
    pub fn recover(&mut self) {
        self.drops.clear();
        self.ignored.clear();
        self.hook = None;
    }
}

/// Applies one committed entry to a node's toy state machine.
fn apply_entry(node: &mut Node, entry: Entry) {
    match entry.entry_type() {
        EntryType::EntryNormal => {
            if !entry.data.is_empty() {
                node.applied.push(entry);
            }
        }
        EntryType::EntryConfChange => {
            let cc = ConfChange::decode(entry.data.clone()).expect("valid ConfChange");
            if let Ok(cs) = node.raw.apply_conf_change(&cc) {
                node.storage.wl().set_conf_state(cs.clone());
                node.conf_state = cs;
            }
        }
        EntryType::EntryConfChangeV2 => {
            let cc = ConfChangeV2::decode(entry.data.clone()).expect("valid ConfChangeV2");
            if let Ok(cs) = node.raw.apply_conf_change(&cc) {
                node.storage.wl().set_conf_state(cs.clone());
                node.conf_state = cs;
            }
        }
    }
}

// ----- helpers for driving a bare `Raft` -------------------------------------------------

/// An entry at `index` in `term`, without payload.
pub fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// An entry at `index` in `term` with `data`.
pub fn ent_data(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

/// A message of type `t` from `from` to `to` in `term`.
pub fn msg(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    Message {
        msg_type: t as i32,
        from,
        to,
        term,
        ..Default::default()
    }
}

/// A storage for `voters` whose log holds entries with the given terms at indexes 1, 2, ...
/// and whose hard state is in `term`.
pub fn storage_with_log(voters: &[u64], terms: &[u64], term: u64) -> MemStorage {
    let storage = MemStorage::new_with_conf_state((voters.to_vec(), vec![]));
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| ent(i as u64 + 1, t))
        .collect();
    storage.wl().append(&entries).expect("append");
    storage.wl().set_hard_state(HardState {
        term,
        ..Default::default()
    });
    storage
}

/// A bare `Raft` with the test config (adjusted by `tweak`) over `storage`.
pub fn new_raft(id: u64, storage: MemStorage, tweak: impl Fn(&mut Config)) -> Raft<MemStorage> {
    let mut cfg = test_config(id);
    tweak(&mut cfg);
    Raft::new(&cfg, storage).expect("valid test config")
}

/// A bare `Raft` for voters `peers` with an empty log.
pub fn new_raft_peers(id: u64, peers: &[u64]) -> Raft<MemStorage> {
    new_raft(
        id,
        MemStorage::new_with_conf_state((peers.to_vec(), vec![])),
        |_| {},
    )
}

/// Writes the unstable snapshot and entries and the hard state of `r` to its storage and
/// reports them persisted, as an application handling a `Ready` would.
pub fn persist(r: &mut Raft<MemStorage>) {
    let store = r.store().clone();
    if let Some(snap) = r.raft_log().unstable.snapshot.clone() {
        let index = snap.metadata.as_ref().map_or(0, |m| m.index);
        store.wl().apply_snapshot(snap).expect("apply snapshot");
        r.on_persist_snapshot(index);
    }
    let entries = r.raft_log().unstable.entries.clone();
    store.wl().append(&entries).expect("append");
    store.wl().set_hard_state(r.hard_state());
    if let Some(last) = entries.last() {
        r.on_persist_entries(last.index, last.term)
            .expect("persist entries");
    }
}

/// Persists `r` (see [`persist`]) and takes its outgoing messages.
pub fn read_messages(r: &mut Raft<MemStorage>) -> Vec<Message> {
    persist(r);
    r.take_messages().expect("take messages")
}

/// Makes a bare `Raft` the leader of the next term, persisting its empty entry, and
/// discards the messages of the election.
pub fn make_leader(r: &mut Raft<MemStorage>) {
    r.become_candidate();
    r.become_leader();
    read_messages(r);
}

/// A snapshot at `(index, term)` of a configuration with `voters`, carrying a small
/// opaque state.
pub fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    Snapshot {
        data: Bytes::from_static(b"state"),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            }),
            index,
            term,
        }),
    }
}
