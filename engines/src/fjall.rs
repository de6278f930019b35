//! The fjall backend: an LSM tree, one fjall keyspace per column family (feature `fjall`,
//! on by default).
//!
//! - **Atomicity**: every [`WriteBatch`](crate::WriteBatch) becomes one fjall batch, which
//!   fjall writes to its journal as one unit across keyspaces, so a crash keeps all of it or
//!   none of it.
//! - **Durability**: unsynced writes are flushed to the OS (they survive a process crash);
//!   synced writes and [`Engine::sync`](crate::Engine::sync) persist the journal with
//!   `PersistMode::SyncAll`.
//! - **Order within a batch**: fjall gives all items of a batch one sequence number, so a
//!   batch in which a key repeats, or which holds a range deletion, is first merged into its
//!   net effect (last write wins per key).
//! - **Range deletion**: fjall 3 has no range tombstones; the keys in range are read and
//!   deleted one by one in the same fjall batch, while writes of this engine wait, so the
//!   deletion is atomic.
//! - **Snapshots**: a fjall cross-keyspace snapshot (a sequence number) plus a handle on the
//!   database, so it outlives the engine handle.
//! - **Poisoning**: fjall refuses writes after a failed journal write or fsync; this engine
//!   additionally refuses them after any failed commit or sync.

mod engine;
mod snapshot;
mod write_batch;

pub use engine::FjallEngine;
/// The fjall crate this backend is built on, for code that needs fjall's own types at the
/// same version (such as [`FjallEngine::database`]).
pub use fjall as backend;
pub use snapshot::FjallSnapshot;
pub use write_batch::FjallWriteBatch;

use std::error::Error as _;
use std::io;

use crate::{Direction, Error, Result};

/// Maps a fjall error to the crate's error.
fn map_err(error: fjall::Error) -> Error {
    match error {
        fjall::Error::Io(error) => Error::from(error),
        fjall::Error::Poisoned => Error::Poisoned,
        fjall::Error::Storage(inner) => {
            match inner
                .source()
                .and_then(|source| source.downcast_ref::<io::Error>())
            {
                Some(io_error) => Error::from(io::Error::new(io_error.kind(), inner.to_string())),
                None => Error::Corruption(inner.to_string()),
            }
        }
        fjall::Error::JournalRecovery(_)
        | fjall::Error::InvalidVersion(_)
        | fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)
        | fjall::Error::Unrecoverable => Error::Corruption(error.to_string()),
        other => Error::other(other),
    }
}

/// Feeds a fjall iterator to a scan callback.
fn scan_iter<F>(iter: fjall::Iter, direction: Direction, mut f: F) -> Result<()>
where
    F: FnMut(&[u8], &[u8]) -> bool,
{
    let mut visit = |guard: fjall::Guard| -> Result<bool> {
        let (key, value) = guard.into_inner().map_err(map_err)?;
        Ok(f(&key, &value))
    };
    match direction {
        Direction::Forward => {
            for guard in iter {
                if !visit(guard)? {
                    break;
                }
            }
        }
        Direction::Reverse => {
            for guard in iter.rev() {
                if !visit(guard)? {
                    break;
                }
            }
        }
    }
    Ok(())
}
