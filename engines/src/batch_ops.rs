//! The operation list behind the memory and heed write batches.

use crate::column_families::ColumnFamilies;
use crate::key_range::{self, OwnedRange};
use crate::{KeyRange, Result};

/// One operation of a batch; `cf` is an index into the engine's [`ColumnFamilies`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchOp {
    /// Write `value` to `key`.
    Put {
        cf: usize,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete { cf: usize, key: Vec<u8> },
    /// Delete every key in `range`; `None` for a range that is provably empty.
    DeleteRange {
        cf: usize,
        range: Option<OwnedRange>,
    },
}

/// A validated, ordered list of batch operations.
///
/// Invariant: `size_bytes` is the sum of the key, value and bound lengths in `ops`.
#[derive(Debug, Clone)]
pub(crate) struct BatchOps {
    pub(crate) cfs: ColumnFamilies,
    pub(crate) ops: Vec<BatchOp>,
    size_bytes: usize,
}

impl BatchOps {
    pub(crate) fn new(cfs: ColumnFamilies) -> Self {
        Self {
            cfs,
            ops: Vec::new(),
            size_bytes: 0,
        }
    }

    pub(crate) fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let cf = self.cfs.index(cf)?;
        key_range::check_key(key)?;
        self.size_bytes += key.len() + value.len();
        self.ops.push(BatchOp::Put {
            cf,
            key: key.to_vec(),
            value: value.to_vec(),
        });
        Ok(())
    }

    pub(crate) fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        let cf = self.cfs.index(cf)?;
        key_range::check_key(key)?;
        self.size_bytes += key.len();
        self.ops.push(BatchOp::Delete {
            cf,
            key: key.to_vec(),
        });
        Ok(())
    }

    pub(crate) fn delete_range<'k>(
        &mut self,
        cf: &str,
        range: impl Into<KeyRange<'k>>,
    ) -> Result<()> {
        let cf = self.cfs.index(cf)?;
        let range = key_range::normalize(range.into()).map(key_range::to_owned_range);
        self.size_bytes += range.as_ref().map_or(0, |range| {
            key_range::range_size_bytes(key_range::as_borrowed(range))
        });
        self.ops.push(BatchOp::DeleteRange { cf, range });
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    pub(crate) fn clear(&mut self) {
        self.ops.clear();
        self.size_bytes = 0;
    }
}
