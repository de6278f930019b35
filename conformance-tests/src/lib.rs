//! Conformance suites that any raftkv engine backend or transport must pass, and the
//! cluster test harness.
//!
//! Each suite is a library function taking a factory, so a third-party backend certifies
//! itself by calling one entry point from its own test. [`cluster`] runs stores together
//! (deterministically on one thread, or live over the `channel` transport with faults);
//! [`linearizability`] checks the histories its clients record; [`sim`] runs a whole
//! cluster, faults and clients on one thread under a seeded scheduler.

pub mod cluster;
pub mod engine;
pub mod env;
pub mod linearizability;
pub mod sim;
pub mod transport;
