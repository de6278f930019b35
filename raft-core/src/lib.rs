//! The Raft consensus state machine of raftkv.
//!
//! A pure state machine in the style of etcd's raft library: no I/O, no threads, no
//! clocks. The application feeds it ticks, messages and proposals through [`RawNode`] and
//! carries out every effect it asks for in a [`Ready`]: persist entries and hard state,
//! send messages, apply committed entries. The protocol is complete: elections with
//! PreVote and CheckQuorum, pipelined replication with flow control and fast
//! backtracking, snapshots, single-step and joint membership changes with learners,
//! leadership transfer and ReadIndex (safe and lease-based).
//!
//! # Example: a one-node cluster's Ready loop
//!
//! ```
//! use raft_core::{Config, MemStorage, RawNode, StateRole};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = MemStorage::new_with_conf_state((vec![1], vec![]));
//! let mut node = RawNode::new(&Config::new(1), storage.clone())?;
//! node.campaign()?;
//!
//! let mut applied = Vec::new();
//! node.propose(Default::default(), "hello".into())?;
//! while node.has_ready() {
//!     let mut rd = node.ready()?;
//!     // 1. Messages for peers that may leave now (none: there are no peers).
//!     assert!(rd.take_messages().is_empty());
//!     // 2. Persist entries and hard state (here: to memory).
//!     storage.wl().append(rd.entries())?;
//!     if let Some(hs) = rd.hard_state() {
//!         storage.wl().set_hard_state(hs.clone());
//!     }
//!     // 3. Messages that had to wait for persistence would be sent here.
//!     // 4. Apply committed entries.
//!     for entry in rd.take_committed_entries() {
//!         if !entry.data.is_empty() {
//!             applied.push(entry.data);
//!         }
//!     }
//!     // 5. Tell the node it was all done.
//!     node.advance(rd)?;
//!     // Proposing after election: the first Ready made us leader.
//!     if node.raft().state() == StateRole::Leader && applied.is_empty() && !node.has_ready() {
//!         node.propose(Default::default(), "hello".into())?;
//!     }
//! }
//! assert_eq!(node.raft().state(), StateRole::Leader);
//! assert_eq!(applied, vec![bytes::Bytes::from("hello")]);
//! # Ok(())
//! # }
//! ```

pub mod conf_change;
pub mod confchange;
pub mod config;
pub mod error;
pub mod mem_storage;
pub mod quorum;
pub mod raft;
pub mod raft_log;
pub mod raw_node;
pub mod read_only;
pub mod ready;
pub mod status;
pub mod storage;
pub mod tracker;
pub mod unstable;
pub mod util;

/// The wire types, generated from `proto/eraftpb.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod eraftpb {
    include!(concat!(env!("OUT_DIR"), "/eraftpb.rs"));
}

pub use conf_change::ConfChangeI;
pub use config::Config;
pub use error::{Error, Result, StorageError, StorageResult};
pub use mem_storage::{MemStorage, MemStorageCore, MemStorageWriteGuard};
pub use raft::{INVALID_ID, Raft, SoftState, StateRole};
pub use raft_log::RaftLog;
pub use raw_node::{RawNode, SnapshotStatus};
pub use read_only::{ReadOnlyOption, ReadState};
pub use ready::Ready;
pub use status::Status;
pub use storage::{RaftState, Storage};
