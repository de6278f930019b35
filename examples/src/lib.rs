//! The raftkv KV service: the gRPC API ([`proto::kvrpc`]), a [`Node`] that hosts a store
//! with the KV, Admin and raft transport services on one gRPC server, the [`Client`]
//! library, `raftkv-server` and the embedded 3-node demo.
//!
//! See `examples/README.md` for the commands and the limits of this slice (no
//! compare-and-swap and no write deduplication yet).

pub mod client;
pub mod error;
pub mod fsync_probe;
pub mod kv_service;
pub mod node;

/// Wire types and gRPC stubs, generated from `proto/`.
pub mod proto {
    /// The KV and Admin services.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod kvrpc {
        include!(concat!(env!("OUT_DIR"), "/kvrpc.rs"));
    }
}

pub use client::Client;
pub use error::{Error, Result};
pub use node::{EngineKind, Node, NodeConfig};
