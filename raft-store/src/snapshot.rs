//! Region snapshots: a small descriptor that travels through raft, and the data staged on
//! disk beside it.
//!
//! The path of a snapshot, leader to follower:
//! 1. raft asks the leader's `PeerStorage::snapshot`; it answers
//!    `SnapshotTemporarilyUnavailable` and records a request. At the end of the loop
//!    iteration the store takes an engine snapshot (point-in-time, at the applied index)
//!    and hands it to the region worker ([`crate::region_worker`]).
//! 2. The worker writes the region's ranges ([`crate::keys::region_snapshot_ranges`]) as a
//!    stream of checksummed frames ([`chunk`]) into a file of the [`SnapManager`]
//!    ([`generate`]), and returns the descriptor ([`SnapshotMeta`]) to the store as a
//!    `StoreMsg`. raft's next request gets a `Snapshot` whose `data` is the encoded
//!    descriptor: a few hundred bytes, whatever the region's size.
//! 3. The sender streams the staged file lazily after the descriptor; the receiver
//!    verifies every frame and the totals while staging them to its own file, and only
//!    then delivers the message to its store.
//! 4. A follower's Ready carrying the snapshot persists `RegionLocalState = Applying` (with
//!    the new region and the descriptor) and the raft state; the region worker clears the
//!    region's ranges and writes the staged data in bounded batches ([`apply`]), then the
//!    apply state and `Normal`, synced. A restart finds `Applying` and redoes the apply
//!    from the staged file, which is deleted only once the apply completed.

pub mod apply;
pub mod chunk;
pub mod generate;
pub mod snap_manager;

use std::fmt;

use prost::Message as _;
use raft_core::eraftpb::{Snapshot, SnapshotMetadata};
use thiserror::Error;

use crate::config::MAX_SNAP_CHUNK_BYTES;
use crate::pb::raft_serverpb::{RaftApplyState, RaftMessage, RaftTruncatedState, SnapshotMeta};
use crate::peer_storage::conf_state_from_region;

pub use snap_manager::{SnapKind, SnapManager, SnapRef};

/// Names the staged data of one snapshot: region and raft position. Two snapshots with
/// the same key hold the same data (the state applied at one index is unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapKey {
    /// The region.
    pub region_id: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The applied index the snapshot holds the state of.
    pub index: u64,
}

impl SnapKey {
    /// The key of the snapshot a descriptor describes.
    #[must_use]
    pub fn of(meta: &SnapshotMeta) -> Self {
        let raft = meta.raft_meta.as_ref();
        Self {
            region_id: meta.region_id,
            term: raft.map_or(0, |m| m.term),
            index: raft.map_or(0, |m| m.index),
        }
    }
}

impl fmt::Display for SnapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_{}", self.region_id, self.term, self.index)
    }
}

/// Why a snapshot (its descriptor, its stream or its staged file) was refused. Every
/// variant is an operating condition: the snapshot is dropped and raft sends another.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The descriptor does not decode or contradicts itself.
    #[error("bad snapshot descriptor: {0}")]
    BadDescriptor(String),
    /// The stream does not start with the format's magic bytes.
    #[error("not a snapshot stream (bad magic)")]
    BadMagic,
    /// A frame claims more payload than the descriptor allows.
    #[error("frame {frame} of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's position in the stream.
        frame: u64,
        /// Its claimed payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A frame's checksum does not match its bytes.
    #[error("frame {frame}: checksum mismatch")]
    FrameChecksum {
        /// The frame's position in the stream.
        frame: u64,
    },
    /// The stream ended inside a frame or a record, or before its declared size.
    #[error("snapshot stream truncated after {size_bytes} bytes")]
    Truncated {
        /// Bytes received.
        size_bytes: u64,
    },
    /// The stream is larger than its descriptor or this store accepts.
    #[error("snapshot of at least {size_bytes} bytes exceeds the limit of {max_bytes}")]
    TooLarge {
        /// Bytes received or declared.
        size_bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// The stream's totals (size, checksum, frames, records) differ from the descriptor.
    #[error("snapshot stream does not match its descriptor: {0}")]
    Mismatch(String),
    /// A record does not decode, or lies outside the region or out of order.
    #[error("bad snapshot record: {0}")]
    BadRecord(String),
    /// The sender or the link gave up midway.
    #[error("snapshot stream aborted: {0}")]
    Aborted(String),
    /// The staged data is not there.
    #[error("staged snapshot {0} not found")]
    Missing(SnapKey),
    /// Too many snapshots are in flight already.
    #[error("too many snapshots in flight ({0})")]
    Busy(usize),
    /// Reading or writing the staged file failed.
    #[error("snapshot file i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Wraps a descriptor into the `Snapshot` handed to raft.
#[must_use]
pub fn to_raft_snapshot(meta: &SnapshotMeta) -> Snapshot {
    Snapshot {
        data: meta.encode_to_vec().into(),
        metadata: meta.raft_meta.clone(),
    }
}

/// Decodes and checks the descriptor in a raft `Snapshot`: it must name a region with
/// members, agree with the raft metadata around it, and declare frames within
/// [`MAX_SNAP_CHUNK_BYTES`].
///
/// # Errors
/// [`SnapshotError::BadDescriptor`] naming the first contradiction.
pub fn decode_descriptor(snapshot: &Snapshot) -> Result<SnapshotMeta, SnapshotError> {
    let bad = |m: String| Err(SnapshotError::BadDescriptor(m));
    let meta = match SnapshotMeta::decode(snapshot.data.clone()) {
        Ok(m) => m,
        Err(e) => return bad(e.to_string()),
    };
    let Some(region) = meta.region.as_ref() else {
        return bad("no region".into());
    };
    if region.id != meta.region_id || region.peers.is_empty() {
        return bad(format!(
            "region {} (with {} peers) in a descriptor of region {}",
            region.id,
            region.peers.len(),
            meta.region_id
        ));
    }
    let outer: Option<&SnapshotMetadata> = snapshot.metadata.as_ref();
    let Some(raft) = meta.raft_meta.as_ref() else {
        return bad("no raft metadata".into());
    };
    if outer.map(|m| (m.index, m.term)) != Some((raft.index, raft.term)) || raft.index == 0 {
        return bad(format!(
            "raft position {:?} against ({}, {})",
            outer.map(|m| (m.index, m.term)),
            raft.index,
            raft.term
        ));
    }
    if raft.conf_state.as_ref() != Some(&conf_state_from_region(region)) {
        return bad("membership differs from the region's".into());
    }
    if meta.chunk_bytes == 0 || meta.chunk_bytes > MAX_SNAP_CHUNK_BYTES {
        return bad(format!("frame payload limit {}", meta.chunk_bytes));
    }
    Ok(meta)
}

/// The descriptor of the snapshot a `MsgSnapshot` carries (see [`decode_descriptor`]).
///
/// # Errors
/// [`SnapshotError::BadDescriptor`] when the message carries no snapshot or a bad one.
pub fn message_descriptor(msg: &RaftMessage) -> Result<SnapshotMeta, SnapshotError> {
    let snapshot = msg
        .message
        .as_ref()
        .and_then(|m| m.snapshot.as_deref())
        .ok_or_else(|| SnapshotError::BadDescriptor("the message carries no snapshot".into()))?;
    decode_descriptor(snapshot)
}

/// The apply state of a region right after the snapshot `meta` describes is applied:
/// applied and truncated at its index.
#[must_use]
pub fn apply_state_at(meta: &SnapshotMeta) -> RaftApplyState {
    let raft = meta.raft_meta.clone().unwrap_or_default();
    RaftApplyState {
        applied_index: raft.index,
        applied_term: raft.term,
        truncated_state: Some(RaftTruncatedState {
            index: raft.index,
            term: raft.term,
        }),
    }
}

/// The log index a raft `Snapshot` is taken at (0 without metadata).
#[must_use]
pub fn snapshot_index(snapshot: &Snapshot) -> u64 {
    snapshot.metadata.as_ref().map_or(0, |m| m.index)
}
