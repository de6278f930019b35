//! The `grpc` transport: tonic, one long-lived stream per peer, chunked snapshots.
//!
//! - [`GrpcTransport`] implements [`Transport`](crate::Transport): a bounded send queue and
//!   a connection task per peer (reconnecting with exponential backoff and jitter); a
//!   separate `Snapshot` call per snapshot, in checksummed chunks.
//! - [`GrpcTransport::service`] is the tonic service receiving from peers; mount it in any
//!   tonic server (the KV server hosts it beside its own services), or run it alone with
//!   [`GrpcTransport::serve`].
//! - Frame and message limits are enforced on both ends: a sender gets
//!   [`Error::FrameTooLarge`](crate::Error::FrameTooLarge); a receiver closes the offending
//!   stream with an error and a `warn!` log line and keeps serving everyone else.
//!
//! The wire format is `proto/transport.proto`.

mod backoff;
mod grpc_config;
mod grpc_service;
mod grpc_transport;
mod peer;
mod snapshot_sender;

pub use backoff::Backoff;
pub use grpc_config::GrpcConfig;
pub use grpc_service::GrpcService;
pub use grpc_transport::GrpcTransport;

/// Wire types and tonic stubs generated from `proto/transport.proto`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("raftkv.transport");
}
