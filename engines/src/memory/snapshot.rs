//! The snapshot of the memory backend.

use std::sync::Arc;

use super::Map;
use crate::column_families::ColumnFamilies;
use crate::{Direction, Iterable, KeyRange, Peekable, Result, Snapshot};

/// A [`Snapshot`] of the memory backend: shared references to the maps as they were when
/// it was taken. The engine copies a map on its next write while a snapshot shares it.
#[derive(Debug, Clone)]
pub struct MemorySnapshot {
    pub(super) cfs: ColumnFamilies,
    pub(super) maps: Vec<Arc<Map>>,
}

impl Peekable for MemorySnapshot {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        super::get_in(&self.cfs, &self.maps, cf, key, f)
    }
}

impl Iterable for MemorySnapshot {
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
        super::scan_in(&self.maps[cf], range.into(), direction, f);
        Ok(())
    }
}

impl Snapshot for MemorySnapshot {}
