//! Errors of the transport crate.

use crate::StoreId;

/// The result type of every fallible transport operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a transport operation failed.
///
/// [`Error::Unreachable`] and [`Error::Disconnected`] are operating conditions: the caller
/// (raft-store's send path) reports the peer unreachable to raft and retries later. The
/// others mean the request itself is wrong ([`Error::FrameTooLarge`]), the transport is gone
/// ([`Error::Closed`]), or the bytes could not be trusted ([`Error::Corrupt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store has no known address, its link is down (reconnecting), or its send queue is
    /// full. Nothing was queued; the caller may retry later.
    #[error("store {0} is unreachable")]
    Unreachable(StoreId),
    /// The link to the store broke while an operation (e.g. a snapshot) was in flight.
    #[error("connection to store {0} was lost")]
    Disconnected(StoreId),
    /// A frame (or a whole batch) is larger than the transport accepts.
    #[error("frame of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLarge {
        /// Size of the offending frame or batch.
        size_bytes: usize,
        /// The configured limit.
        max_bytes: usize,
    },
    /// The transport (or the receiving end of a snapshot) has been closed.
    #[error("transport is closed")]
    Closed,
    /// Received bytes failed validation (checksum, framing, protocol order).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An I/O error, e.g. from the snapshot's chunk source or a socket.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Disconnected(_) | Self::Io(_)
        )
    }
}
