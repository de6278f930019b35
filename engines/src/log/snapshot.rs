//! The snapshot of the log backend.

use std::sync::Arc;

use super::index::{self, Files, Map};
use crate::column_families::ColumnFamilies;
use crate::{Direction, Iterable, KeyRange, Peekable, Result, Snapshot};

/// A point-in-time view of a [`LogEngine`](super::LogEngine): the index maps of the moment
/// it was taken and handles on the segment files they point into.
///
/// It holds no lock and outlives the engine; a segment deleted meanwhile stays readable
/// through the open handle.
#[derive(Debug, Clone)]
pub struct LogSnapshot {
    pub(super) cfs: ColumnFamilies,
    /// The map of each opened column family, indexed like `cfs`.
    pub(super) maps: Vec<Map>,
    pub(super) files: Arc<Files>,
}

impl Peekable for LogSnapshot {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let cf = self.cfs.index(cf)?;
        index::get_in(&self.maps[cf], &self.files, key, f)
    }
}

impl Iterable for LogSnapshot {
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
        let cf = self.cfs.index(cf)?;
        index::scan_in(&self.maps[cf], &self.files, range.into(), direction, f)
    }
}

impl Snapshot for LogSnapshot {}
