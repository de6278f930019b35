//! Where a store's outgoing Raft messages go.

use crate::pb::raft_serverpb::RaftMessage;

/// Takes a store's outgoing Raft messages. The store calls [`send`](Self::send) for each
/// message while handling a batch and [`flush`](Self::flush) once at the end, so an
/// implementation can put every message for one store into one frame.
///
/// # Correctness
/// Implementations must never block the caller (the raft worker): when a destination is
/// slow or down they drop messages (Raft tolerates loss) and report the store as
/// unreachable through [`StoreMsg::StoreUnreachable`](crate::StoreMsg::StoreUnreachable).
/// Messages to one store must leave in the order given.
pub trait RaftMessageSender {
    /// Queues `msg` for `to_store`.
    fn send(&mut self, to_store: u64, msg: RaftMessage);
    /// Hands everything queued to the network.
    fn flush(&mut self);
}
