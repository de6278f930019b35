//! The [`FrameSink`] trait.

use bytes::Bytes;

use crate::{IncomingSnapshot, StoreId};

/// Receives what other stores send to this store; provided by the store when it starts its
/// transport.
///
/// # Correctness
///
/// A transport calls the sink from its own tasks (its network runtime). Implementations must
/// return quickly and never block on the store: push into a bounded channel and drop (or
/// count) what does not fit, since raft tolerates message loss. Calls for one link arrive in
/// order; calls for different links may be concurrent.
pub trait FrameSink: Send + Sync + 'static {
    /// One whole batch of frames sent by store `from`, in the order they were sent.
    fn on_frames(&self, from: StoreId, frames: Vec<Bytes>);

    /// A snapshot from store `from` has started to arrive.
    ///
    /// The sink takes ownership of `snapshot` and reads its chunks, typically on a snapshot
    /// worker. The transport pushes chunks into it through a bounded buffer, so a slow reader
    /// slows the sender instead of buffering the whole snapshot. Dropping `snapshot` rejects
    /// it: the sender's [`send_snapshot`](crate::Transport::send_snapshot) fails.
    fn on_snapshot(&self, from: StoreId, snapshot: IncomingSnapshot);
}
