//! The raftkv KV service: the gRPC API ([`proto::kvrpc`]), a [`Node`] that hosts a store
//! with the KV, Admin and raft transport services on one gRPC server, the [`Client`]
//! and [`AdminClient`] libraries, `raftkv-server`, the `raftkv` CLI and the embedded 3-node
//! demo.
//!
//! See `examples/README.md` for the commands, compare-and-swap and exactly-once writes.

pub mod admin_client;
pub mod admission;
mod answer;
pub mod batch_commands;
pub mod client;
mod command_link;
pub mod data_dir;
pub mod endpoint;
pub mod error;
pub mod fsync_probe;
pub mod kv_service;
pub mod metrics_exporter;
pub mod node;
pub mod region_cache;
pub mod rpc_metrics;

/// Wire types and gRPC stubs, generated from `proto/`.
pub mod proto {
    /// The KV and Admin services.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod kvrpc {
        include!(concat!(env!("OUT_DIR"), "/kvrpc.rs"));
    }
}

pub use admin_client::AdminClient;
pub use admission::ServerLimits;
pub use client::Client;
pub use error::{Error, Result};
pub use node::{EngineKind, Node, NodeConfig, RaftEngineKind};
