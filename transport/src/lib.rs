//! The raftkv transport: moves opaque, already-encoded frames and snapshots between stores.
//!
//! - [`Transport`]: the small async trait every transport implements (`send`,
//!   `send_snapshot`, `close`).
//! - [`FrameSink`]: what a store hands its transport to receive frames and snapshots.
//! - [`OutgoingSnapshot`] / [`IncomingSnapshot`]: a snapshot as metadata plus ordered chunks.
//! - [`StoreResolver`] / [`StaticResolver`]: store id → address.
//! - [`channel`]: in-process transport with seeded fault injection, for tests and simulation.
//! - `grpc` (feature `grpc`, on by default): tonic transport with one stream per peer,
//!   chunked checksummed snapshots, reconnect with backoff and frame limits.
//!
//! Queueing, batching and backpressure belong to raft-store; a transport only moves frames.
//! Custom transports should pass the `transport` suite of the `conformance-tests` crate.
//!
//! # Example
//!
//! Two stores exchanging a batch over the in-process network:
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use tokio::sync::mpsc;
//! use transport::channel::ChannelNetwork;
//! use transport::{FrameSink, IncomingSnapshot, StoreId, Transport};
//!
//! /// A store's sink: forwards into a bounded channel and never blocks.
//! struct Inbox(mpsc::Sender<(StoreId, Vec<Bytes>)>);
//!
//! impl FrameSink for Inbox {
//!     fn on_frames(&self, from: StoreId, frames: Vec<Bytes>) {
//!         let _ = self.0.try_send((from, frames)); // full: drop, raft retries
//!     }
//!     fn on_snapshot(&self, _from: StoreId, _snapshot: IncomingSnapshot) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> transport::Result<()> {
//! let network = ChannelNetwork::new(42);
//! let (tx, mut inbox) = mpsc::channel(16);
//! let store1 = network.register(1, Arc::new(Inbox(mpsc::channel(16).0)));
//! let _store2 = network.register(2, Arc::new(Inbox(tx)));
//!
//! store1.send(2, vec![Bytes::from_static(b"hello"), Bytes::from_static(b"raft")]).await?;
//! let (from, frames) = inbox.recv().await.expect("delivered");
//! assert_eq!(from, 1);
//! assert_eq!(frames, [Bytes::from_static(b"hello"), Bytes::from_static(b"raft")]);
//! assert_eq!(network.delivered(), 2);
//! # Ok(())
//! # }
//! ```

pub mod channel;
mod error;
mod frame_limit;
mod frame_sink;
#[cfg(feature = "grpc")]
pub mod grpc;
mod incoming_snapshot;
mod outgoing_snapshot;
mod static_resolver;
mod store_resolver;
mod transport;

pub use error::{Error, Result};
pub use frame_limit::check_frame_sizes;
pub use frame_sink::FrameSink;
pub use incoming_snapshot::{IncomingSnapshot, SnapshotWriter};
pub use outgoing_snapshot::{ChunkStream, OutgoingSnapshot};
pub use static_resolver::StaticResolver;
pub use store_resolver::StoreResolver;
pub use transport::Transport;

/// Identifies a store (one raftkv process and its engines) in the cluster.
pub type StoreId = u64;
