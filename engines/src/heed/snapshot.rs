//! The snapshot of the heed backend.

use std::fmt;
use std::sync::Arc;

use heed::{RoTxn, WithoutTls};
use parking_lot::Mutex;

use super::engine::Inner;
use super::grow_gate::OwnedGateGuard;
use crate::{Direction, Iterable, KeyRange, Peekable, Result, Snapshot};

/// A [`Snapshot`] of the heed backend: an LMDB read transaction.
///
/// The transaction is opened without thread-local storage, so it may move between threads;
/// the mutex serializes its use, as LMDB requires. While it is alive the map cannot grow
/// (see the [module docs](crate::heed)).
pub struct HeedSnapshot {
    // Field order is drop order: the transaction closes before the gate guard is released.
    txn: Mutex<RoTxn<'static, WithoutTls>>,
    _gate: OwnedGateGuard,
    inner: Arc<Inner>,
}

impl HeedSnapshot {
    pub(super) fn new(
        txn: RoTxn<'static, WithoutTls>,
        gate: OwnedGateGuard,
        inner: Arc<Inner>,
    ) -> Self {
        Self {
            txn: Mutex::new(txn),
            _gate: gate,
            inner,
        }
    }
}

impl fmt::Debug for HeedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeedSnapshot").finish_non_exhaustive()
    }
}

impl Peekable for HeedSnapshot {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let db = self.inner.database(cf)?;
        super::get_in(db, &self.txn.lock(), key, f)
    }
}

impl Iterable for HeedSnapshot {
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
        let db = self.inner.database(cf)?;
        super::scan_in(db, &self.txn.lock(), range.into(), direction, f)
    }
}

impl Snapshot for HeedSnapshot {}
