//! The multi-raft layer of raftkv.
//!
//! A Store hosts many Peers (one per Region) over an `Engine` and a `Transport`:
//! PeerStorage (raft-core's `Storage` over the raft engine), the raft worker with group
//! commit, proposals with callbacks, apply with write batches, the log GC worker, the
//! region snapshot worker, conf change and region split.

mod apply_overlay;
pub mod bootstrap;
pub mod client_session;
mod command_batch;
pub mod config;
mod entry_cache;
pub mod error;
pub mod id_alloc;
pub mod keys;
pub mod msg;
pub mod peer;
pub mod peer_storage;
pub mod raft_log_gc;
mod raft_log_writer;
pub mod raft_worker;
pub mod region_check;
pub mod region_worker;
pub mod sender;
pub mod snapshot;
pub mod store;
pub mod store_frame_sink;
pub mod store_metrics;
pub mod transport_sender;
pub mod worker;

/// Wire types, generated from `proto/`.
pub mod pb {
    /// Stores, peers and regions.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod metapb {
        include!(concat!(env!("OUT_DIR"), "/metapb.rs"));
    }
    /// Errors a client can act on.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod errorpb {
        include!(concat!(env!("OUT_DIR"), "/errorpb.rs"));
    }
    /// Messages between stores and the persisted state of a peer.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod raft_serverpb {
        include!(concat!(env!("OUT_DIR"), "/raft_serverpb.rs"));
    }
    /// Commands proposed to a region and their responses.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod raft_cmdpb {
        include!(concat!(env!("OUT_DIR"), "/raft_cmdpb.rs"));
    }
}

pub use config::Config;
pub use entry_cache::CacheBudget;
pub use error::{Error, Result};
pub use msg::{Callback, RegionStatus, RegionsCallback, StoreMsg};
pub use peer::Peer;
pub use raft_log_writer::WrittenNotifier;
pub use raft_worker::{RaftWorker, StoreMailbox};
pub use sender::RaftMessageSender;
pub use snapshot::SnapManager;
pub use store::Store;
pub use store_frame_sink::StoreFrameSink;
pub use transport_sender::TransportSender;
