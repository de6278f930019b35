//! [`GrpcConfig`]: limits and timings of the gRPC transport.

use std::time::Duration;

/// Limits and timings of a [`GrpcTransport`](super::GrpcTransport).
///
/// Both ends of a link should use the same limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcConfig {
    /// Largest single frame; checked by the sender (`FrameTooLarge`) and by the receiver
    /// (which closes the stream).
    pub max_frame_bytes: usize,
    /// Largest gRPC message: one encoded batch, or one snapshot chunk. Larger batches are
    /// refused with `FrameTooLarge`; larger incoming messages close the stream.
    pub max_message_bytes: usize,
    /// Capacity of each peer's send queue, in batches. A send to a full queue is shed with
    /// `Unreachable` instead of blocking.
    pub send_queue_batches_max: usize,
    /// Snapshot body chunks are split to at most this size.
    pub snapshot_chunk_bytes: usize,
    /// First reconnect delay after a failure.
    pub backoff_initial: Duration,
    /// Reconnect delays double up to this bound.
    pub backoff_max: Duration,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// HTTP/2 flow-control window per stream (both ends); large windows keep snapshots fast.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window per connection (both ends).
    pub connection_window_bytes: u32,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 64 << 20,
            send_queue_batches_max: 1024,
            snapshot_chunk_bytes: 1 << 20,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            stream_window_bytes: 4 << 20,
            connection_window_bytes: 16 << 20,
        }
    }
}
