//! Storage engine traits of raftkv and their backends (memory, fjall, heed).
//!
//! A store keeps its state machine and its raft log in [`Engine`]s. The traits are small
//! and each holds one capability: [`Peekable`] (point reads), [`Iterable`] (range scans),
//! [`WriteBatch`] (atomic groups of writes), [`Snapshot`] (point-in-time views) and
//! [`Engine`] (all of them plus durability). [`Engines`] pairs the state machine engine with
//! the raft log engine. Every failure maps to [`Error`]; nothing panics on I/O errors.
//!
//! # Backends
//!
//! | backend | feature | type | storage |
//! | --- | --- | --- | --- |
//! | memory | always built | [`MemoryEngine`] | one `BTreeMap` per column family; crash simulation and fsync failure injection for tests |
//! | log | always built (Unix) | [`LogEngine`] | append-only segment files and an in-memory key index; for raft logs |
//! | fjall | `fjall` (default) | `FjallEngine` | LSM tree; one fjall keyspace per column family, one journal |
//! | heed | `heed` | `HeedEngine` | LMDB B+tree; one named database per column family; the map grows on demand |
//!
//! Features are additive: `--all-features` builds all four. Every backend passes the same
//! conformance suite (`conformance-tests::engine`).
//!
//! # Keys
//!
//! Keys and values are byte strings. Keys order lexicographically as unsigned bytes in
//! every backend (`[0x00] < [0x00, 0x00] < [0x01] < [0xff]`). Values may be empty or large.
//! Every backend treats keys the same way:
//! - The empty key is not a key: `get`, `put` and `delete` of it return
//!   [`Error::EmptyKey`]. As a range bound it is allowed: a start bound on it means "from
//!   the first key", an end bound on it makes the range empty.
//! - Keys longer than [`MAX_KEY_BYTES`] (511, LMDB's limit, applied to every backend so data
//!   can move between backends) are rejected by point operations with
//!   [`Error::KeyTooLarge`]. Range bounds may be longer.
//!
//! # Column families
//!
//! Column families are named when an engine is opened (1 to 255 bytes of ASCII letters,
//! digits, `_`, `-`, `.`); using any other name is [`Error::CfNotFound`]. A disk engine
//! reopened with more names creates the new ones; names left out stay on disk untouched.
//! [`CF_DEFAULT`], [`CF_RAFT`] and [`CF_META`] are the conventional names.
//!
//! # Example
//!
//! ```
//! use engines::{Direction, Engine, Iterable, MemoryEngine, Peekable, WriteBatch, WriteOptions};
//!
//! let engine = MemoryEngine::new(&[engines::CF_DEFAULT, engines::CF_RAFT])?;
//!
//! // Write a batch atomically and durably.
//! let mut batch = engine.write_batch();
//! batch.put("default", b"apple", b"red")?;
//! batch.put("default", b"banana", b"yellow")?;
//! batch.put("default", b"cherry", b"dark red")?;
//! batch.delete("default", b"banana")?;
//! engine.write(&batch, WriteOptions::synced())?;
//!
//! // Point reads.
//! assert_eq!(engine.get("default", b"apple")?, Some(b"red".to_vec()));
//! assert_eq!(engine.get("default", b"banana")?, None);
//! assert!(matches!(engine.get("nope", b"apple"), Err(engines::Error::CfNotFound(_))));
//!
//! // Scan a range backwards, stopping after the first entry.
//! let mut seen = Vec::new();
//! engine.scan("default", b"a"..b"z", Direction::Reverse, |key, value| {
//!     seen.push((key.to_vec(), value.to_vec()));
//!     false
//! })?;
//! assert_eq!(seen, [(b"cherry".to_vec(), b"dark red".to_vec())]);
//!
//! // A snapshot does not see later writes, and can move to another thread.
//! let snapshot = engine.snapshot()?;
//! engine.delete_range("default", ..)?;
//! let apple = std::thread::spawn(move || snapshot.get("default", b"apple")).join().unwrap()?;
//! assert_eq!(apple, Some(b"red".to_vec()));
//! assert_eq!(engine.get("default", b"apple")?, None);
//! # Ok::<(), engines::Error>(())
//! ```

#![cfg_attr(not(feature = "heed"), forbid(unsafe_code))]

mod batch_ops;
mod column_families;
mod engine;
mod engines;
mod error;
mod iterable;
mod key_range;
#[cfg(unix)]
pub mod log;
pub mod memory;
mod peekable;
mod snapshot;
mod write_batch;
mod write_options;

#[cfg(feature = "fjall")]
pub mod fjall;
#[cfg(feature = "heed")]
pub mod heed;

pub use crate::engine::Engine;
pub use crate::engines::Engines;
pub use crate::error::{Error, Result};
pub use crate::iterable::{Direction, Iterable};
pub use crate::key_range::KeyRange;
#[cfg(unix)]
pub use crate::log::{LogEngine, LogOptions, LogSnapshot, LogWriteBatch};
pub use crate::memory::{MemoryDisk, MemoryEngine, MemorySnapshot, MemoryWriteBatch};
pub use crate::peekable::Peekable;
pub use crate::snapshot::Snapshot;
pub use crate::write_batch::WriteBatch;
pub use crate::write_options::WriteOptions;

#[cfg(feature = "fjall")]
pub use crate::fjall::{FjallEngine, FjallSnapshot, FjallWriteBatch};
#[cfg(feature = "heed")]
pub use crate::heed::{HeedEngine, HeedOptions, HeedSnapshot, HeedWriteBatch};

/// Longest key accepted by point operations, in bytes: LMDB's default limit, applied to
/// every backend (see [keys](crate#keys)).
pub const MAX_KEY_BYTES: usize = 511;

/// Conventional name of the column family holding user data.
pub const CF_DEFAULT: &str = "default";
/// Conventional name of the column family holding raft log entries and raft state.
pub const CF_RAFT: &str = "raft";
/// Conventional name of the column family holding store and region metadata.
pub const CF_META: &str = "meta";
