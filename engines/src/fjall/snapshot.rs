//! The snapshot of the fjall backend.

use std::fmt;
use std::sync::Arc;

use fjall::Readable as _;

use super::engine::Inner;
use crate::{Direction, Iterable, KeyRange, Peekable, Result, Snapshot, key_range};

/// A [`Snapshot`] of the fjall backend: a fjall cross-keyspace snapshot and a handle on the
/// database, which stays open until the snapshot is dropped.
pub struct FjallSnapshot {
    pub(super) inner: Arc<Inner>,
    pub(super) snapshot: fjall::Snapshot,
}

impl fmt::Debug for FjallSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallSnapshot")
            .field("seqno", &self.snapshot.seqno())
            .finish()
    }
}

impl Peekable for FjallSnapshot {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let keyspace = self.inner.keyspace(cf)?;
        key_range::check_key(key)?;
        let value = self.snapshot.get(keyspace, key).map_err(super::map_err)?;
        Ok(value.map(|value| f(&value)))
    }
}

impl Iterable for FjallSnapshot {
    fn scan<'k, F>(
        &self,
        cf: &str,
        range: impl Into<KeyRange<'k>>,
        direction: Direction,
        f: F,
    ) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> bool,
    {
        let keyspace = self.inner.keyspace(cf)?;
        let Some(range) = key_range::normalize(range.into()) else {
            return Ok(());
        };
        super::scan_iter(
            self.snapshot.range::<&[u8], _>(keyspace, range),
            direction,
            f,
        )
    }
}

impl Snapshot for FjallSnapshot {}
