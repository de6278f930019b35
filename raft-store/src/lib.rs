//! The multi-raft layer of raftkv.
//!
//! This crate will hold the Store that hosts many Peers (one per Region) over an
//! `Engine` and a `Transport`: PeerStorage (raft-core's `Storage` over the raft engine),
//! the raft worker with group commit, proposals with callbacks, apply with write batches,
//! the log GC worker, the region snapshot worker, conf change and region split.
//!
//! It is empty until the raft-store issue lands; see `DESIGN.md` for the plan.
