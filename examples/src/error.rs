//! Errors of the node and of the client library.

use thiserror::Error;

use bytes::Bytes;

use crate::proto::kvrpc::{RegionError, SplitKeyProblem};

/// What can go wrong starting a node or running a client request.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address is taken by another process.
    #[error("address {addr} is already in use (is another raftkv-server running?)")]
    AddrInUse {
        /// The address.
        addr: String,
    },
    /// The data directory belongs to another store.
    #[error(
        "data dir {dir} belongs to store {actual_store_id}, not store {store_id}; \
         use that node id or another data dir"
    )]
    StoreNotMatch {
        /// The data directory.
        dir: String,
        /// The id this node was started with.
        store_id: u64,
        /// The id recorded in the data directory.
        actual_store_id: u64,
    },
    /// The metrics endpoint cannot be served.
    #[error("cannot serve metrics on {addr}: {reason}")]
    Metrics {
        /// The metrics address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The data directory cannot be used (another engine, raft engine or cluster, a bad
    /// identity file).
    #[error("data dir {dir} cannot be used: {reason}")]
    DataDir {
        /// The data directory.
        dir: String,
        /// Why.
        reason: String,
    },
    /// An invalid configuration.
    #[error("invalid config: {0}")]
    Config(String),
    /// The store failed (engine, corruption, worker).
    #[error("store: {0}")]
    Store(#[from] raft_store::Error),
    /// The storage engine failed.
    #[error("engine: {0}")]
    Engine(#[from] engines::Error),
    /// An I/O failure (bind, data dir).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A region error that retrying cannot fix (e.g. key not in region).
    #[error("region error: {}", .0.message)]
    Region(Box<RegionError>),
    /// The cluster no longer remembers the answer of this write (its sequence was
    /// acknowledged, or the client's session expired): whether it applied is unknown.
    #[error(
        "client {client_id}: the answer of write {sequence} is forgotten (the cluster keeps sequences from {first_kept_sequence} on)"
    )]
    SequenceForgotten {
        /// The client.
        client_id: u64,
        /// The write's sequence.
        sequence: u64,
        /// The lowest sequence the cluster still remembers.
        first_kept_sequence: u64,
    },
    /// A region cannot be split at this key; nothing was split.
    #[error("cannot split region {region_id} at {key:?}: {problem:?}")]
    InvalidSplitKey {
        /// The region.
        region_id: u64,
        /// The key.
        key: Bytes,
        /// What is wrong with it.
        problem: SplitKeyProblem,
    },
    /// The server refused the request (bad request, storage failure).
    #[error("server error: {0}")]
    Server(String),
    /// The server does not implement the call.
    #[error("not implemented: {0}")]
    Unimplemented(String),
    /// No endpoint answered successfully before the deadline. A write may or may not have
    /// applied.
    #[error("request timed out after {attempts} attempts; last error: {last}")]
    Timeout {
        /// How many attempts were made.
        attempts: u32,
        /// The last error seen.
        last: String,
    },
    /// A bad endpoint address.
    #[error("invalid endpoint {0}")]
    InvalidEndpoint(String),
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
