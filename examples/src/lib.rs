//! The raftkv KV service: the gRPC API, the client library, `raftkv-server`, the `raftkv`
//! CLI and the embedded 3-node demo.
//!
//! It is empty until the KV service issue lands; until then the README's main command runs
//! raft-core's in-memory cluster example.
