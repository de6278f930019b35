//! The simulator's event queue: events ordered by (virtual time, sequence number), so
//! events due at the same instant run in the order they were scheduled.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use raft_store::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use raft_store::pb::raft_serverpb::RaftMessage;

use super::config::Micros;
use crate::cluster::filter::FilterId;

/// Something that happens at one instant of virtual time.
pub(crate) enum Event {
    /// A tick for a store (its next one is scheduled when this one runs).
    Tick { store: u64 },
    /// A Raft message arrives at `to`.
    Deliver {
        from: u64,
        to: u64,
        msg: Box<RaftMessage>,
    },
    /// A store runs one iteration over its mailbox (`incarnation`: the life of the store
    /// it was scheduled for; a crash makes it stale).
    Run { store: u64, incarnation: u64 },
    /// A store's region worker runs its next task.
    RegionTask { store: u64, incarnation: u64 },
    /// A client's timer fires (`token` tells current timers from superseded ones).
    ClientWake { client: usize, token: u64 },
    /// A client's request arrives at a store.
    ClientArrive {
        client: usize,
        token: u64,
        store: u64,
        req: Box<RaftCmdRequest>,
    },
    /// A store's answer arrives at a client.
    ClientReply {
        client: usize,
        token: u64,
        resp: Box<RaftCmdResponse>,
    },
    /// A client's request found its store down (connection refused).
    ClientRefused { client: usize, token: u64 },
    /// The fault injector acts.
    Fault,
    /// A partition ends.
    Heal { filter: FilterId },
    /// A crashed store restarts.
    Restart { store: u64 },
}

struct Scheduled {
    at: Micros,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so the max-heap pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Pending events and the current virtual time.
#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    next_seq: u64,
    now: Micros,
}

impl EventQueue {
    /// The current virtual time: that of the last event popped.
    pub(crate) fn now(&self) -> Micros {
        self.now
    }

    /// Schedules `event` `after` microseconds from now.
    pub(crate) fn after(&mut self, after: Micros, event: Event) {
        let at = self.now + after;
        self.next_seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.next_seq,
            event,
        });
    }

    /// Pops the next event due at or before `until`, advancing the clock to it.
    pub(crate) fn pop_until(&mut self, until: Micros) -> Option<Event> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let next = self.heap.pop()?;
        debug_assert!(next.at >= self.now, "virtual time never goes back");
        self.now = next.at;
        Some(next.event)
    }

    /// Moves the clock to `t` when nothing is due before it.
    pub(crate) fn advance_to(&mut self, t: Micros) {
        self.now = self.now.max(t);
    }
}
