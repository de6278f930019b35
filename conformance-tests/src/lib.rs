//! Conformance suites that any raftkv engine backend or transport must pass.
//!
//! Each suite is a library function taking a factory, so a third-party backend certifies
//! itself by calling one entry point from its own test.

pub mod engine;
pub mod linearizability;
pub mod transport;
