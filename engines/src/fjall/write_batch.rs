//! The write batch of the fjall backend.

use fjall::Slice;

use crate::column_families::ColumnFamilies;
use crate::key_range::{self, OwnedRange};
use crate::{KeyRange, Result, WriteBatch};

/// One operation of a [`FjallWriteBatch`]; `cf` indexes the engine's column families.
#[derive(Debug, Clone)]
pub(super) enum FjallOp {
    Put {
        cf: usize,
        key: Slice,
        value: Slice,
    },
    Delete {
        cf: usize,
        key: Slice,
    },
    DeleteRange {
        cf: usize,
        range: Option<OwnedRange>,
    },
}

/// A [`WriteBatch`] of the fjall backend.
///
/// Keys and values are copied once, into fjall's own byte type, when they are added.
///
/// Invariants: `size_bytes` is the sum of the key, value and bound lengths in `ops`;
/// `needs_merge` is `true` if a key of some column family is not strictly greater than the
/// previous key of that column family in `ops`, or if `ops` holds a range deletion
/// (`has_range_delete`).
#[derive(Debug, Clone)]
pub struct FjallWriteBatch {
    pub(super) cfs: ColumnFamilies,
    pub(super) ops: Vec<FjallOp>,
    size_bytes: usize,
    /// Per column family, the index in `ops` of its last point operation (`usize::MAX`:
    /// none yet).
    last_point_op: Vec<usize>,
    pub(super) needs_merge: bool,
    pub(super) has_range_delete: bool,
}

impl FjallWriteBatch {
    pub(super) fn new(cfs: ColumnFamilies) -> Self {
        let last_point_op = vec![usize::MAX; cfs.len()];
        Self {
            cfs,
            ops: Vec::new(),
            size_bytes: 0,
            last_point_op,
            needs_merge: false,
            has_range_delete: false,
        }
    }

    /// Records a point operation on `key`, noting whether keys still strictly increase.
    fn push_point(&mut self, cf: usize, key: &[u8], op: FjallOp) {
        let last = self.last_point_op[cf];
        if let Some(FjallOp::Put { key: last_key, .. } | FjallOp::Delete { key: last_key, .. }) =
            self.ops.get(last)
            && key <= &last_key[..]
        {
            self.needs_merge = true;
        }
        self.last_point_op[cf] = self.ops.len();
        self.ops.push(op);
    }
}

impl FjallWriteBatch {
    /// `true` if every operation is a range deletion and no two name the same column
    /// family, so the keys they delete are all distinct.
    pub(super) fn only_range_deletes_of_distinct_cfs(&self) -> bool {
        self.ops.iter().enumerate().all(|(i, op)| match op {
            FjallOp::DeleteRange { cf, .. } => !self.ops[..i]
                .iter()
                .any(|earlier| matches!(earlier, FjallOp::DeleteRange { cf: c, .. } if c == cf)),
            FjallOp::Put { .. } | FjallOp::Delete { .. } => false,
        })
    }
}

impl WriteBatch for FjallWriteBatch {
    fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let cf = self.cfs.index(cf)?;
        key_range::check_key(key)?;
        self.size_bytes += key.len() + value.len();
        self.push_point(
            cf,
            key,
            FjallOp::Put {
                cf,
                key: key.into(),
                value: value.into(),
            },
        );
        Ok(())
    }

    fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        let cf = self.cfs.index(cf)?;
        key_range::check_key(key)?;
        self.size_bytes += key.len();
        self.push_point(
            cf,
            key,
            FjallOp::Delete {
                cf,
                key: key.into(),
            },
        );
        Ok(())
    }

    fn delete_range<'k>(&mut self, cf: &str, range: impl Into<KeyRange<'k>>) -> Result<()> {
        let cf = self.cfs.index(cf)?;
        let range = key_range::normalize(range.into()).map(key_range::to_owned_range);
        self.size_bytes += range.as_ref().map_or(0, |range| {
            key_range::range_size_bytes(key_range::as_borrowed(range))
        });
        self.ops.push(FjallOp::DeleteRange { cf, range });
        self.needs_merge = true;
        self.has_range_delete = true;
        Ok(())
    }

    fn len(&self) -> usize {
        self.ops.len()
    }

    fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.size_bytes = 0;
        self.last_point_op.fill(usize::MAX);
        self.needs_merge = false;
        self.has_range_delete = false;
    }
}
