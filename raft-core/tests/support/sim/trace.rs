//! The simulator's event trace: a hash of every event and the most recent ones.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use raft_core::eraftpb::MessageType;

use super::TRACE_RECENT_EVENTS;
use super::rng::Fnv;

/// Why a message did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Random loss.
    Random,
    /// Sender and receiver are on different sides of a partition.
    Partition,
    /// The receiver is down (or not in the pool).
    Down,
    /// The network was full.
    Overflow,
}

/// One thing the simulator did or observed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// Ticked a node.
    Tick { id: u64 },
    /// Delivered a message (leaving a copy in flight when `dup`).
    Deliver {
        from: u64,
        to: u64,
        ty: MessageType,
        term: u64,
        index: u64,
        n_ents: usize,
        commit: u64,
        reject: bool,
        dup: bool,
    },
    /// Lost a message.
    Lose {
        from: u64,
        to: u64,
        ty: MessageType,
        why: Loss,
    },
    /// Took a Ready.
    Ready {
        id: u64,
        number: u64,
        msgs: usize,
        persisted_msgs: usize,
        entries: (u64, u64),
        snapshot: u64,
        hard_state: Option<(u64, u64, u64)>,
        committed: (u64, u64),
    },
    /// Completed a disk write and confirmed it.
    Persist { id: u64, number: u64 },
    /// Applied entries up to `applied`.
    Apply { id: u64, applied: u64 },
    /// Installed a snapshot into the state machine.
    InstallSnapshot { id: u64, index: u64 },
    /// Proposed a value.
    Propose { id: u64, value: u64, accepted: bool },
    /// Proposed a conf change.
    ProposeConfChange {
        id: u64,
        change: String,
        accepted: bool,
    },
    /// Applied a committed conf change.
    ApplyConfChange { id: u64, index: u64, result: String },
    /// Told a node that a peer is unreachable.
    Unreachable { id: u64, to: u64 },
    /// Asked a node to transfer leadership.
    Transfer { id: u64, to: u64 },
    /// Made a snapshot and compacted the log.
    Compact { id: u64, snapshot: u64, first: u64 },
    /// Crashed a node.
    Crash { id: u64, lost_writes: usize },
    /// Restarted a node from its storage.
    Restart {
        id: u64,
        term: u64,
        commit: u64,
        applied: u64,
    },
    /// Split the pool into groups.
    Partition { groups: Vec<Vec<u64>> },
    /// Healed the partition.
    Heal,
    /// Observed a new leader.
    Leader { id: u64, term: u64 },
    /// Started the liveness phase.
    LivenessPhase,
}

/// The events of one run: a running hash of all of them and the most recent ones.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv,
    count: u64,
    pub recent: VecDeque<(u64, Event)>,
}

impl Trace {
    pub fn push(&mut self, step: u64, event: Event) {
        step.hash(&mut self.hash);
        event.hash(&mut self.hash);
        self.count += 1;
        if self.recent.len() == TRACE_RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back((step, event));
    }

    /// The hash of every event so far, in order.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for (step, e) in &self.recent {
            let _ = writeln!(s, "  [{step:>5}] {e:?}");
        }
        s
    }
}
