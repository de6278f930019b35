//! What arrives in a store's mailbox.

use crate::pb::metapb::Region;
use crate::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use crate::pb::raft_serverpb::RaftMessage;
use crate::region_worker::RegionTaskResult;

/// Answers one command. Called exactly once, from the raft worker: it must not block.
pub type Callback = Box<dyn FnOnce(RaftCmdResponse) + Send>;

/// One region as this store sees it, for routing and observability.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionStatus {
    /// The region (range, epoch, peers).
    pub region: Region,
    /// The store of the leader this peer knows of (0 = none known).
    pub leader_store_id: u64,
    /// Whether this store's peer leads the region.
    pub is_leader: bool,
    /// The peer's current term.
    pub term: u64,
    /// The peer's commit index (invariant: `applied_index <= commit_index`).
    pub commit_index: u64,
    /// The peer's applied index.
    pub applied_index: u64,
}

/// Answers a [`StoreMsg::QueryRegions`]. Called once, from the raft worker: it must not
/// block.
pub type RegionsCallback = Box<dyn FnOnce(Vec<RegionStatus>) + Send>;

/// A message for the store's raft worker.
pub enum StoreMsg {
    /// One logical clock tick for every peer.
    Tick,
    /// A Raft message from another store.
    RaftMessage(Box<RaftMessage>),
    /// A client command for a region; the callback answers it.
    Command {
        /// The command.
        request: Box<RaftCmdRequest>,
        /// Called with the response (or a typed error in its header).
        callback: Callback,
    },
    /// Messages to this store could not be delivered.
    StoreUnreachable(u64),
    /// The outcome of streaming a snapshot to `to_peer` of `region_id`.
    SnapshotStatus {
        /// The region.
        region_id: u64,
        /// The peer the snapshot went to.
        to_peer: u64,
        /// Whether the receiver acknowledged it.
        delivered: bool,
    },
    /// Asks for the status of every region on this store, in region id order.
    QueryRegions(RegionsCallback),
    /// The region worker finished a task.
    RegionTaskDone(Box<RegionTaskResult>),
    /// The raft log writer finished a batch (a wake-up: the store takes every
    /// completion at the start of each iteration).
    RaftLogWritten,
}

impl std::fmt::Debug for StoreMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreMsg::Tick => f.write_str("Tick"),
            StoreMsg::RaftMessage(m) => write!(f, "RaftMessage(region {})", m.region_id),
            StoreMsg::Command { request, .. } => write!(
                f,
                "Command(region {})",
                request.header.as_ref().map_or(0, |h| h.region_id)
            ),
            StoreMsg::StoreUnreachable(id) => write!(f, "StoreUnreachable({id})"),
            StoreMsg::QueryRegions(_) => f.write_str("QueryRegions"),
            StoreMsg::RegionTaskDone(r) => write!(f, "RegionTaskDone({r:?})"),
            StoreMsg::RaftLogWritten => f.write_str("RaftLogWritten"),
            StoreMsg::SnapshotStatus {
                region_id,
                to_peer,
                delivered,
            } => {
                write!(
                    f,
                    "SnapshotStatus(region {region_id}, peer {to_peer}, {delivered})"
                )
            }
        }
    }
}
