//! The [`Transport`] trait.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

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

    /// Whether [`send`](Transport::send) is *immediate*: its future completes at the first
    /// poll, whatever the outcome (the batch goes into an in-memory queue, or an error is
    /// known at once), as long as it is polled inside the runtime the transport runs on.
    ///
    /// A caller may then drive `send` on its own thread with [`send_now`] instead of
    /// handing the batch to a task that awaits it, which spares one thread wake-up on every
    /// hop between two stores. The default, `false`, is always correct; say `true` only if
    /// the `send_is_immediate` case of the conformance suite passes.
    fn send_is_immediate(&self) -> bool {
        false
    }

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

/// Polls `transport.send(to, frames)` once on the calling thread: `Some` with its outcome if
/// it completed, `None` if it would have had to wait. After `None` the batch's fate is
/// unknown (the future was dropped mid-way), so call this only on a transport whose
/// [`Transport::send_is_immediate`] is `true`, inside its runtime, where `None` means the
/// transport broke its promise.
pub fn send_now(transport: &dyn Transport, to: StoreId, frames: Vec<Bytes>) -> Option<Result<()>> {
    let send = pin!(transport.send(to, frames));
    match send.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}
