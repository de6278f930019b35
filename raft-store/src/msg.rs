//! What arrives in a store's mailbox.

use crate::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use crate::pb::raft_serverpb::RaftMessage;

/// Answers one command. Called exactly once, from the raft worker: it must not block.
pub type Callback = Box<dyn FnOnce(RaftCmdResponse) + Send>;

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
