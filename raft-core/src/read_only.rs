//! Linearizable reads without writing the log: ReadIndex (Raft thesis §6.4).

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;

use crate::eraftpb::Message;

/// How the leader confirms it is still the leader before serving a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// A heartbeat round acknowledged by a quorum confirms leadership (always safe).
    #[default]
    Safe,
    /// The leader trusts its lease (needs `check_quorum`); safe only while clock drift is
    /// bounded, but costs no round trip.
    LeaseBased,
}

/// A read that may be served once the state machine has applied `index`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadState {
    /// The commit index at the time the read was confirmed.
    pub index: u64,
    /// The context the application passed to `read_index`.
    pub request_ctx: Bytes,
}

/// A read waiting for a quorum of heartbeat acknowledgements.
#[derive(Debug, Clone)]
pub struct ReadIndexStatus {
    /// The original request (its `from` says who to answer).
    pub req: Message,
    /// The leader's commit index when the request arrived.
    pub index: u64,
    /// The peers that acknowledged the heartbeat carrying this read's context.
    pub acks: BTreeSet<u64>,
}

/// The leader's queue of pending ReadIndex requests, oldest first.
///
/// Invariant: `queue` holds exactly the keys of `pending`, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct ReadOnly {
    /// How leadership is confirmed.
    pub option: ReadOnlyOption,
    pending: HashMap<Bytes, ReadIndexStatus>,
    queue: VecDeque<Bytes>,
}

impl ReadOnly {
    /// An empty queue.
    #[must_use]
    pub fn new(option: ReadOnlyOption) -> Self {
        Self {
            option,
            ..Default::default()
        }
    }

    /// Queues a read at commit index `index`, counting the leader's own acknowledgement.
    /// A context already pending is ignored.
    pub fn add_request(&mut self, index: u64, req: Message, self_id: u64) {
        let ctx = req.context.clone();
        if self.pending.contains_key(&ctx) {
            return;
        }
        let acks = BTreeSet::from([self_id]);
        self.pending
            .insert(ctx.clone(), ReadIndexStatus { req, index, acks });
        self.queue.push_back(ctx);
    }

    /// Records `id`'s acknowledgement of the heartbeat carrying `ctx`; returns the acks so
    /// far, or `None` for an unknown context.
    pub fn recv_ack(&mut self, id: u64, ctx: &[u8]) -> Option<&BTreeSet<u64>> {
        let status = self.pending.get_mut(ctx)?;
        status.acks.insert(id);
        Some(&status.acks)
    }

    /// Removes and returns every read up to and including `ctx`: a quorum that confirmed
    /// a later heartbeat also confirms the earlier ones.
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| c[..] == *ctx) else {
            return Vec::new();
        };
        self.queue
            .drain(..=pos)
            .filter_map(|c| self.pending.remove(&c))
            .collect()
    }

    /// The context of the newest pending read, carried by the next heartbeat.
    #[must_use]
    pub fn last_pending_request_ctx(&self) -> Option<Bytes> {
        self.queue.back().cloned()
    }

    /// The number of pending reads.
    #[must_use]
    pub fn pending_read_count(&self) -> usize {
        self.queue.len()
    }
}
