//! Deterministic simulation: a whole cluster on one thread under a seeded scheduler with
//! virtual time, so a run, faults included, replays exactly from its seed.
//!
//! Everything that can happen is an [`events::Event`] in one queue ordered by (virtual
//! time, sequence number): Raft message deliveries (with seeded delay, loss, duplication
//! and so reordering), a tick per store per tick interval (with jitter), one iteration of
//! a store over its mailbox, one region-worker task (snapshot generation, apply, cleanup)
//! at a time, client requests and replies, and faults: partitions (groups and one-way),
//! crashes (unsynced engine writes dropped, mailbox and queued region tasks lost) and
//! restarts, conf changes and splits through admin commands. Nothing reads a real clock
//! or an unseeded random source, and every map iterated is ordered, so the trace of a
//! seed is the same on every run ([`SimReport::trace_digest`]).
//!
//! While the run goes, [`safety`] checks what the stores expose after every store
//! iteration: at most one leader per (region, term), committed entries never change
//! across stores, applied indexes never go back (except to the durable one across a crash
//! restart). At the end the faults are healed, the cluster must converge (every member of
//! every region applied to its leader's commit index, replicas holding identical data),
//! final reads are recorded, and the history of the simulated clients must be
//! linearizable (an undecided check fails) with no acknowledged write lost.
//!
//! [`run_seed`] runs one seed; `tests/simulation.rs` runs many.
#![allow(clippy::unwrap_used)] // a test harness: a failed setup step is a test failure

mod client;
mod config;
mod convergence;
mod events;
mod faults;
mod network;
mod node;
mod safety;
mod simulator;
mod trace;

pub use config::SimConfig;
pub use simulator::{SimFailure, SimReport, run_seed};
