//! Atomic groups of writes.

use crate::{KeyRange, Result};

/// A group of writes applied atomically by [`Engine::write`](crate::Engine::write).
///
/// A batch is created by [`Engine::write_batch`](crate::Engine::write_batch) and may only be
/// written to an engine with the same column families. It can be written several times and
/// reused after [`clear`](WriteBatch::clear).
///
/// # Correctness
///
/// An implementation must guarantee:
/// - **Atomicity**: after `write` returns, and after a crash at any moment, either every
///   operation of the batch is visible or none is; a concurrent reader or a snapshot never
///   sees part of a batch.
/// - **Order**: operations take effect in the order they were added; a `put` followed by a
///   `delete` of the same key leaves the key absent, a `delete_range` removes keys put
///   earlier in the same batch, a `put` after it re-creates its key.
/// - A `delete_range` removes the keys in its range at the time the batch is applied.
///
/// # Errors
///
/// `put`, `delete` and `delete_range` validate their arguments immediately:
/// [`Error::CfNotFound`](crate::Error::CfNotFound) for an unknown column family,
/// [`Error::EmptyKey`](crate::Error::EmptyKey) or
/// [`Error::KeyTooLarge`](crate::Error::KeyTooLarge) for an invalid key. A rejected
/// operation is not added to the batch.
///
/// # Panics
///
/// Implementations never panic on bad input.
pub trait WriteBatch: Send + 'static {
    /// Adds a write of `value` (which may be empty) to `key` in `cf`.
    ///
    /// # Errors
    ///
    /// See the [trait docs](WriteBatch#errors).
    fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()>;

    /// Adds a deletion of `key` in `cf` (a no-op if the key is absent).
    ///
    /// # Errors
    ///
    /// See the [trait docs](WriteBatch#errors).
    fn delete(&mut self, cf: &str, key: &[u8]) -> Result<()>;

    /// Adds a deletion of every key of `cf` within `range` (any bound kind, as for
    /// [`Iterable::scan`](crate::Iterable::scan); an empty or inverted range deletes
    /// nothing).
    ///
    /// Backends without native range tombstones (fjall, LMDB) delete the keys one by one
    /// when the batch is applied, so the cost grows with the number of live keys in range.
    ///
    /// # Errors
    ///
    /// See the [trait docs](WriteBatch#errors).
    fn delete_range<'k>(&mut self, cf: &str, range: impl Into<KeyRange<'k>>) -> Result<()>;

    /// Number of operations added since creation or the last [`clear`](WriteBatch::clear).
    fn len(&self) -> usize;

    /// `true` if the batch holds no operation.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the lengths of the keys, values and range bounds held, in bytes.
    fn size_bytes(&self) -> usize;

    /// Removes every operation, keeping allocated capacity where the backend can.
    fn clear(&mut self);
}
