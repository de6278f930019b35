//! The [`Transport`] trait.

use async_trait::async_trait;
use bytes::Bytes;

use crate::{OutgoingSnapshot, Result, StoreId};

/// Moves opaque, already-encoded frames and snapshots from this store to other stores.
///
/// A transport only moves bytes: raft-store owns encoding, batching, backpressure and
/// "peer unreachable" reporting. Inbound traffic is handed to the
/// [`FrameSink`](crate::FrameSink) the store gave the transport when it started it (how a
/// transport is started is up to each implementation, e.g. a constructor taking
/// `Arc<dyn FrameSink>`).
///
/// Every implementation should pass the `transport` suite of the `conformance-tests` crate.
///
/// # Correctness
///
/// An implementation must guarantee, for each ordered pair of stores (a *link*):
/// - **FIFO without faults**: frames sent by successive `send` calls that returned `Ok` are
///   delivered in order, unless the link broke in between (then a suffix may be lost, never
///   reordered or duplicated).
/// - **Whole batches**: the frames of one `send` reach the sink in one
///   [`FrameSink::on_frames`](crate::FrameSink::on_frames) call, in order, or not at all.
/// - **Never block the caller on the network**: `send` returns as soon as the batch is handed
///   to the link; if the link is down or its bounded queue is full it returns
///   [`Error::Unreachable`](crate::Error::Unreachable) at once. Delivery is best-effort:
///   raft tolerates loss.
/// - **Snapshots are byte-identical**: the concatenation of chunks the receiver yields equals
///   the concatenation sent (chunk boundaries may differ), and the receiver only reports
///   completion after verifying it.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `frames` to store `to`, in order, as one batch.
    ///
    /// Returns once the batch is handed to the link, not once delivered.
    ///
    /// # Errors
    ///
    /// - [`Error::Unreachable`](crate::Error::Unreachable) if `to` has no address, its link is
    ///   down, or its queue is full (nothing was queued).
    /// - [`Error::FrameTooLarge`](crate::Error::FrameTooLarge) if a frame or the batch is
    ///   over the transport's limit (nothing was queued).
    /// - [`Error::Closed`](crate::Error::Closed) after [`Transport::close`].
    async fn send(&self, to: StoreId, frames: Vec<Bytes>) -> Result<()>;

    /// Streams `snapshot` to store `to`: its metadata, then its chunks in order.
    ///
    /// Returns when the receiver has received and verified the whole snapshot. A receiver
    /// that reads slowly slows this call down (bounded buffers all the way); callers that
    /// need a deadline wrap it in `tokio::time::timeout`.
    ///
    /// # Errors
    ///
    /// - [`Error::Unreachable`](crate::Error::Unreachable) if `to` cannot be reached.
    /// - [`Error::Disconnected`](crate::Error::Disconnected) if the link broke or the receiver
    ///   rejected the snapshot midway.
    /// - [`Error::Io`](crate::Error::Io) if the snapshot's chunk source failed; the receiver
    ///   sees an aborted snapshot.
    /// - [`Error::Closed`](crate::Error::Closed) after [`Transport::close`].
    async fn send_snapshot(&self, to: StoreId, snapshot: OutgoingSnapshot) -> Result<()>;

    /// Stops sending and receiving: later calls return [`Error::Closed`](crate::Error::Closed),
    /// and the sink receives nothing more once `close` returns. Idempotent.
    async fn close(&self);
}
