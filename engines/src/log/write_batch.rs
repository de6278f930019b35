//! The write batch of the log backend: operations encoded as they are added.

use std::sync::Arc;

use super::format;
use crate::column_families::ColumnFamilies;
use crate::key_range;
use crate::{KeyRange, Result, WriteBatch};

/// A [`WriteBatch`] of a [`LogEngine`](super::LogEngine).
///
/// Operations are encoded into the record body as they are added, so writing the batch
/// is one checksum and one append, with no copy of keys or values in between.
#[derive(Debug, Clone)]
pub struct LogWriteBatch {
    pub(super) cfs: ColumnFamilies,
    /// The catalog id of each column family of `cfs`, in the engine that made the batch.
    pub(super) cf_ids: Arc<[u32]>,
    pub(super) body: Vec<u8>,
    ops: usize,
    size_bytes: usize,
}

impl LogWriteBatch {
    pub(super) fn new(cfs: ColumnFamilies, cf_ids: Arc<[u32]>) -> Self {
        Self {
            cfs,
            cf_ids,
            body: Vec::new(),
            ops: 0,
            size_bytes: 0,
        }
    }

    fn cf_id(&self, cf: &str) -> Result<u32> {
        Ok(self.cf_ids[self.cfs.index(cf)?])
    }
}

impl WriteBatch for LogWriteBatch {
    fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let cf = self.cf_id(cf)?;
        key_range::check_key(key)?;
        format::put_op(&mut self.body, cf, key, value);
        self.ops += 1;
        self.size_bytes += key.len() + value.len();
        Ok(())
    }

    fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        let cf = self.cf_id(cf)?;
        key_range::check_key(key)?;
        format::delete_op(&mut self.body, cf, key);
        self.ops += 1;
        self.size_bytes += key.len();
        Ok(())
    }

    fn delete_range<'k>(&mut self, cf: &str, range: impl Into<KeyRange<'k>>) -> Result<()> {
        let cf = self.cf_id(cf)?;
        // An empty or inverted range deletes nothing and is not written, but counts as an
        // operation like in every other backend.
        if let Some(range) = key_range::normalize(range.into()) {
            format::delete_range_op(&mut self.body, cf, range);
            self.size_bytes += key_range::range_size_bytes(range);
        }
        self.ops += 1;
        Ok(())
    }

    fn len(&self) -> usize {
        self.ops
    }

    fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    fn clear(&mut self) {
        self.body.clear();
        self.ops = 0;
        self.size_bytes = 0;
    }
}
