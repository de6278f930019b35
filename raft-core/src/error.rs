//! Errors of the Raft core.

use thiserror::Error;

/// Errors returned by [`Storage`](crate::Storage) implementations.
///
/// The first four variants are conditions the core knows how to handle (it falls back
/// to a snapshot, retries later, or ignores a stale snapshot); `Other` is a storage
/// failure the core cannot recover from and passes up to the caller.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The requested index precedes the first available entry: it was compacted away.
    #[error("log index is compacted")]
    Compacted,
    /// The requested index is past the last available entry.
    #[error("log index is unavailable")]
    Unavailable,
    /// The requested snapshot is older than the latest one already applied.
    #[error("snapshot is out of date")]
    SnapshotOutOfDate,
    /// A snapshot is being generated; ask again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// Any other storage failure (I/O, corruption, ...).
    #[error("storage failure: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Errors returned by the Raft core.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading stable storage failed.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// The configuration is invalid; the message says which setting and why.
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
    /// A local-only message (`MsgHup`, `MsgBeat`, ...) arrived through `step`.
    #[error("raft: cannot step a local message received from the network")]
    StepLocalMsg,
    /// A response arrived from a peer that is not in the configuration.
    #[error("raft: cannot step a response from an unknown peer")]
    StepPeerNotFound,
    /// The proposal was not appended: there is no leader, a leadership transfer is in
    /// progress, the node is not a voter, or the uncommitted log is over its size limit.
    /// Retrying later (or on the leader) may succeed.
    #[error("raft: proposal dropped")]
    ProposalDropped,
    /// The message is malformed (unknown type, missing fields).
    #[error("raft: invalid message: {0}")]
    InvalidMessage(String),
    /// A configuration change is not valid against the current configuration.
    #[error("raft: invalid conf change: {0}")]
    ConfChangeInvalid(String),
}

/// The result type of the Raft core.
pub type Result<T> = std::result::Result<T, Error>;

/// The result type of [`Storage`](crate::Storage) methods.
pub type StorageResult<T> = std::result::Result<T, StorageError>;

impl PartialEq for StorageError {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Self::Compacted, Self::Compacted)
                | (Self::Unavailable, Self::Unavailable)
                | (Self::SnapshotOutOfDate, Self::SnapshotOutOfDate)
                | (
                    Self::SnapshotTemporarilyUnavailable,
                    Self::SnapshotTemporarilyUnavailable
                )
        )
    }
}
