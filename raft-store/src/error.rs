//! Errors of the store. Retryable errors (the client acts on them and tries again) are
//! kept apart from fatal ones (storage failure, corruption).

use thiserror::Error;

use crate::pb::{errorpb, metapb};

/// Errors of the store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// This peer is not the region's leader; `leader` is the one it knows of.
    #[error("region {region_id}: not leader (leader hint: {leader:?})")]
    NotLeader {
        /// The region.
        region_id: u64,
        /// The leader this peer knows of, if any.
        leader: Option<metapb::Peer>,
    },
    /// The command was superseded (leader change, entry overwritten) before it applied.
    #[error("stale command")]
    StaleCommand,
    /// The request's region epoch is stale.
    #[error("epoch not match: {message}")]
    EpochNotMatch {
        /// Why the epochs differ.
        message: String,
        /// The regions now covering the request's range.
        current_regions: Vec<metapb::Region>,
    },
    /// A key is outside the region's range.
    #[error("key {key:?} not in region {region_id}")]
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region_id: u64,
        /// The region's start key.
        start_key: Vec<u8>,
        /// The region's end key (empty: unbounded).
        end_key: Vec<u8>,
    },
    /// Whether the command applied is unknown: a snapshot covered its log entry before
    /// this peer saw it apply, and it carried no exactly-once session to tell. Retrying
    /// it may apply it twice.
    #[error("region {region_id}: the command's outcome is unknown (a snapshot covered it)")]
    OutcomeUnknown {
        /// The region.
        region_id: u64,
    },
    /// The store has no peer of this region.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// The store is overloaded; retry after backing off.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// The request was meant for another store.
    #[error("store not match: request for {request_store_id}, this is {actual_store_id}")]
    StoreNotMatch {
        /// The store the request named.
        request_store_id: u64,
        /// This store.
        actual_store_id: u64,
    },
    /// The entry would exceed the maximum entry size.
    #[error("region {region_id}: raft entry of {entry_size} bytes is too large")]
    RaftEntryTooLarge {
        /// The region.
        region_id: u64,
        /// The entry's size.
        entry_size: u64,
    },
    /// The client's session no longer holds this sequence's result (the client said it
    /// awaited nothing below `first_kept_sequence`, or its session expired and restarted):
    /// whether the command applied is unknown, so it is not retried.
    #[error(
        "client {client_id}: sequence {sequence} is forgotten (the session keeps sequences from {first_kept_sequence} on)"
    )]
    SequenceForgotten {
        /// The client.
        client_id: u64,
        /// The sequence of the request.
        sequence: u64,
        /// The lowest sequence the session still knows.
        first_kept_sequence: u64,
    },
    /// The storage engine failed (fatal for the store).
    #[error(transparent)]
    Engine(#[from] engines::Error),
    /// The Raft core failed.
    #[error(transparent)]
    Raft(#[from] raft_core::Error),
    /// A snapshot (descriptor, stream or staged data) was refused.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// Persisted or received bytes do not decode.
    #[error("corruption: {0}")]
    Corruption(String),
    /// The store is shutting down.
    #[error("store is stopped")]
    Stopped,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Corruption(e.to_string())
    }
}

impl Error {
    /// Whether a client should retry (possibly elsewhere) rather than give up.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotLeader { .. }
                | Error::StaleCommand
                | Error::EpochNotMatch { .. }
                | Error::ServerIsBusy(_)
                | Error::RegionNotFound(_)
        )
    }

    /// The wire form of this error, for responses.
    #[must_use]
    pub fn to_pb(&self) -> errorpb::Error {
        let mut e = errorpb::Error {
            message: self.to_string(),
            ..Default::default()
        };
        match self {
            Error::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader {
                    region_id: *region_id,
                    leader: *leader,
                });
            }
            Error::StaleCommand => e.stale_command = Some(errorpb::StaleCommand {}),
            Error::EpochNotMatch {
                current_regions, ..
            } => {
                e.epoch_not_match = Some(errorpb::EpochNotMatch {
                    current_regions: current_regions.clone(),
                });
            }
            Error::KeyNotInRegion {
                key,
                region_id,
                start_key,
                end_key,
            } => {
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key: key.clone().into(),
                    region_id: *region_id,
                    start_key: start_key.clone().into(),
                    end_key: end_key.clone().into(),
                });
            }
            Error::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound {
                    region_id: *region_id,
                });
            }
            Error::ServerIsBusy(reason) => {
                e.server_is_busy = Some(errorpb::ServerIsBusy {
                    reason: reason.clone(),
                    backoff_ms: 0,
                });
            }
            Error::StoreNotMatch {
                request_store_id,
                actual_store_id,
            } => {
                e.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id: *request_store_id,
                    actual_store_id: *actual_store_id,
                });
            }
            Error::RaftEntryTooLarge {
                region_id,
                entry_size,
            } => {
                e.raft_entry_too_large = Some(errorpb::RaftEntryTooLarge {
                    region_id: *region_id,
                    entry_size: *entry_size,
                });
            }
            Error::SequenceForgotten {
                client_id,
                sequence,
                first_kept_sequence,
            } => {
                e.sequence_forgotten = Some(errorpb::SequenceForgotten {
                    client_id: *client_id,
                    sequence: *sequence,
                    first_kept_sequence: *first_kept_sequence,
                });
            }
            _ => {}
        }
        e
    }
}

/// The result type of the store.
pub type Result<T> = std::result::Result<T, Error>;
