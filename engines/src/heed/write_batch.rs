//! The write batch of the heed backend.

use crate::batch_ops::BatchOps;
use crate::{KeyRange, Result, WriteBatch};

/// A [`WriteBatch`] of the heed backend: the list of operations, applied in order inside
/// one LMDB write transaction.
#[derive(Debug, Clone)]
pub struct HeedWriteBatch {
    pub(super) ops: BatchOps,
}

impl WriteBatch for HeedWriteBatch {
    fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.ops.put(cf, key, value)
    }

    fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        self.ops.delete(cf, key)
    }

    fn delete_range<'k>(&mut self, cf: &str, range: impl Into<KeyRange<'k>>) -> Result<()> {
        self.ops.delete_range(cf, range)
    }

    fn len(&self) -> usize {
        self.ops.len()
    }

    fn size_bytes(&self) -> usize {
        self.ops.size_bytes()
    }

    fn clear(&mut self) {
        self.ops.clear();
    }
}
