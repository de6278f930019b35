//! A 3-node Raft cluster in one process, driven through the Ready loop: nodes exchange
//! messages in memory, elect a leader, replicate and apply proposals, survive the
//! leader's loss, elect another, and catch the old leader up when it returns.
//!
//! Run with `cargo run -p raft-core --example cluster`.
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, VecDeque};

use raft_core::eraftpb::{EntryType, Message};
use raft_core::{Config, MemStorage, RawNode, StateRole};

struct Node {
    raw: RawNode<MemStorage>,
    storage: MemStorage,
    applied: Vec<String>,
}

struct Cluster {
    nodes: BTreeMap<u64, Node>,
    inflight: VecDeque<Message>,
    down: Option<u64>,
}

impl Cluster {
    fn new(ids: &[u64]) -> Result<Self, raft_core::Error> {
        let mut nodes = BTreeMap::new();
        for &id in ids {
            let storage = MemStorage::new_with_conf_state((ids.to_vec(), vec![]));
            let mut cfg = Config::new(id);
            cfg.random_seed = 42;
            let raw = RawNode::new(&cfg, storage.clone())?;
            nodes.insert(
                id,
                Node {
                    raw,
                    storage,
                    applied: Vec::new(),
                },
            );
        }
        Ok(Self {
            nodes,
            inflight: VecDeque::new(),
            down: None,
        })
    }

    /// One round: tick every live node, deliver messages, handle every Ready.
    fn round(&mut self) -> Result<(), raft_core::Error> {
        for (&id, node) in self.nodes.iter_mut() {
            if Some(id) != self.down {
                node.raw.tick()?;
            }
        }
        loop {
            while let Some(m) = self.inflight.pop_front() {
                if Some(m.to) == self.down || Some(m.from) == self.down {
                    continue;
                }
                if let Some(node) = self.nodes.get_mut(&m.to) {
                    // A stale or dropped message is normal in a live cluster.
                    let _ = node.raw.step(m);
                }
            }
            let mut progressed = false;
            for (&id, node) in self.nodes.iter_mut() {
                if Some(id) == self.down {
                    continue;
                }
                while node.raw.has_ready() {
                    progressed = true;
                    handle_ready(id, node, &mut self.inflight)?;
                }
            }
            if !progressed && self.inflight.is_empty() {
                return Ok(());
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|(id, n)| Some(**id) != self.down && n.raw.raft().state() == StateRole::Leader)
            .map(|(id, _)| *id)
            .next()
    }

    fn wait_for_leader(&mut self) -> Result<u64, raft_core::Error> {
        for _ in 0..1000 {
            self.round()?;
            if let Some(id) = self.leader() {
                return Ok(id);
            }
        }
        Err(raft_core::Error::ProposalDropped)
    }
}

/// The Ready loop of one node: send, persist, send after persist, apply, advance.
fn handle_ready(
    id: u64,
    node: &mut Node,
    out: &mut VecDeque<Message>,
) -> Result<(), raft_core::Error> {
    let mut rd = node.raw.ready()?;
    if let Some(ss) = rd.soft_state()
        && ss.raft_state == StateRole::Leader
    {
        println!(
            "node {id}: became leader of term {}",
            node.raw.raft().term()
        );
    }
    out.extend(rd.take_messages());
    node.storage.wl().append(rd.entries())?;
    if let Some(hs) = rd.hard_state() {
        node.storage.wl().set_hard_state(*hs);
    }
    out.extend(rd.take_persisted_messages());
    for entry in rd.take_committed_entries() {
        if entry.entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
            node.applied
                .push(String::from_utf8_lossy(&entry.data).into_owned());
        }
    }
    node.raw.advance(rd)
}

fn main() -> Result<(), raft_core::Error> {
    let mut cluster = Cluster::new(&[1, 2, 3])?;
    let leader = cluster.wait_for_leader()?;
    for i in 0..5 {
        if let Some(n) = cluster.nodes.get_mut(&leader) {
            n.raw
                .propose(Default::default(), format!("put k{i}").into())?;
        }
        cluster.round()?;
    }
    println!(
        "committed and applied on every node: {:?}",
        cluster.nodes[&1].applied
    );

    println!("stopping leader {leader}");
    cluster.down = Some(leader);
    let new_leader = cluster.wait_for_leader()?;
    if let Some(n) = cluster.nodes.get_mut(&new_leader) {
        n.raw
            .propose(Default::default(), "put after-failover".into())?;
    }
    cluster.round()?;
    let follower = cluster
        .nodes
        .keys()
        .copied()
        .find(|&id| id != leader && id != new_leader);
    let follower = follower.unwrap_or(new_leader);
    println!(
        "node {follower} applied: {:?}",
        cluster.nodes[&follower].applied
    );

    println!("reconnecting node {leader}");
    cluster.down = None;
    for _ in 0..30 {
        cluster.round()?;
    }
    let caught_up = cluster.nodes[&leader].applied == cluster.nodes[&new_leader].applied;
    println!(
        "summary: first leader {leader}, new leader {new_leader}, {} entries applied, reconnected node caught up: {caught_up}",
        cluster.nodes[&new_leader].applied.len()
    );
    if !caught_up || cluster.nodes[&new_leader].applied.len() != 6 {
        return Err(raft_core::Error::ProposalDropped);
    }
    Ok(())
}
