//! The heed backend: LMDB through heed, one named database per column family (feature
//! `heed`).
//!
//! - **Atomicity**: every [`WriteBatch`](crate::WriteBatch) is one LMDB write transaction,
//!   applied in order; a range deletion deletes the keys in range inside that transaction.
//! - **Durability**: the environment runs with `MDB_NOMETASYNC`: a commit flushes its data
//!   pages but not the meta page, so an unsynced write survives a process crash and keeps
//!   the database consistent after a power loss, where it may be lost. A synced write (and
//!   [`Engine::sync`](crate::Engine::sync)) commits and then flushes the meta page too
//!   (`mdb_env_sync`). Dropping the last handle syncs.
//! - **Snapshots**: an LMDB read transaction opened without thread-local storage, so it is
//!   `Send`; a mutex makes it `Sync`. It keeps the environment open until dropped.
//! - **Map growth**: LMDB needs a fixed-size memory map. The engine starts with
//!   [`HeedOptions::initial_map_size_bytes`]; when a batch does not fit (`MDB_MAP_FULL`)
//!   its transaction is aborted, the map doubles, and the batch is retried, so no write is
//!   lost. Resizing requires that no transaction of the process is open: every transaction
//!   passes a gate, and a resize waits (up to [`HeedOptions::grow_wait`]) for open reads
//!   and snapshots to finish while new ones wait. The write fails with
//!   [`Error::NoSpace`] only when the disk is full or the map reached
//!   [`HeedOptions::max_map_size_bytes`], and with [`Error::Other`] if
//!   snapshots stayed open for the whole `grow_wait`; nothing of it is applied then.
//! - **Keys**: LMDB's key limit (511 bytes) is the crate-wide
//!   [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
//! - **Unsafe code**: heed marks `EnvOpenOptions::open` and `Env::resize` `unsafe`. They are
//!   called in two functions of `heed/engine.rs`, each with its safety argument; it is the
//!   only unsafe code of the crate, which forbids unsafe code when this feature is off.
//! - **One process**: an environment must be opened by one process at a time, and once per
//!   process (heed refuses a second open of the same path while one is alive, including
//!   through a snapshot).

mod engine;
mod grow_gate;
mod snapshot;
mod write_batch;

pub use engine::{HeedEngine, HeedOptions};
/// The heed crate this backend is built on, at the same version.
pub use heed as backend;
pub use snapshot::HeedSnapshot;
pub use write_batch::HeedWriteBatch;

use heed::MdbError;
use heed::types::Bytes;

use crate::{Direction, Error, KeyRange, Result, key_range};

/// A database of raw byte keys and values.
type RawDatabase = heed::Database<'static, Bytes, Bytes>;

/// Maps a heed error to the crate's error.
fn map_err(error: heed::Error) -> Error {
    match error {
        heed::Error::Io(error) => Error::from(error),
        heed::Error::Mdb(
            MdbError::Corrupted
            | MdbError::PageNotFound
            | MdbError::VersionMismatch
            | MdbError::Invalid
            | MdbError::Panic,
        ) => Error::Corruption(error.to_string()),
        heed::Error::EnvAlreadyOpened => Error::other(
            "the LMDB environment is already open in this process (an engine handle or a \
             snapshot of it is still alive)",
        ),
        other => Error::other(other),
    }
}

/// Point read inside a read transaction.
fn get_in<R>(
    db: RawDatabase,
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    key_range::check_key(key)?;
    Ok(db.get(txn, key).map_err(map_err)?.map(f))
}

/// Range scan inside a read transaction.
fn scan_in<F>(
    db: RawDatabase,
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
    range: KeyRange<'_>,
    direction: Direction,
    mut f: F,
) -> Result<()>
where
    F: FnMut(&[u8], &[u8]) -> bool,
{
    let Some(range) = key_range::normalize(range) else {
        return Ok(());
    };
    match direction {
        Direction::Forward => {
            for entry in db.range(txn, &range).map_err(map_err)? {
                let (key, value) = entry.map_err(map_err)?;
                if !f(key, value) {
                    break;
                }
            }
        }
        Direction::Reverse => {
            for entry in db.rev_range(txn, &range).map_err(map_err)? {
                let (key, value) = entry.map_err(map_err)?;
                if !f(key, value) {
                    break;
                }
            }
        }
    }
    Ok(())
}
