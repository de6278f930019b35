//! The storage engine trait.

use crate::{Iterable, KeyRange, Peekable, Result, Snapshot, WriteBatch, WriteOptions};

/// An ordered key-value store with named column families, atomic batches, snapshots and
/// explicit durability.
///
/// Handles are cheap to clone; clones share the same engine. All methods take `&self` and
/// are safe to call from many threads at once.
///
/// Reads come from [`Peekable`] (point reads) and [`Iterable`] (range scans), which
/// snapshots also implement.
///
/// # Correctness
///
/// An implementation must guarantee:
/// - Keys order lexicographically as unsigned bytes; the empty key and keys longer than
///   [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES) are rejected by point operations (see
///   [keys](crate#keys)); values of any length (including empty and ≥ 16 MiB) round-trip.
/// - Column families are fixed at open time and isolated from each other; an unknown one
///   is an error, never a panic.
/// - [`write`](Engine::write) is atomic (see [`WriteBatch`]) and, with
///   [`WriteOptions::sync`], returns only once the batch and everything acknowledged
///   before it survive power loss.
/// - After a failed sync the engine is poisoned: every later write and sync returns
///   [`Error::Poisoned`](crate::Error::Poisoned).
///
/// # Errors
///
/// Every method maps backend failures to [`Error`](crate::Error): I/O errors, corruption,
/// [`NoSpace`](crate::Error::NoSpace) on a full disk, [`Poisoned`](crate::Error::Poisoned)
/// after a failed sync. Nothing of a failed write is applied.
///
/// # Panics
///
/// Implementations never panic on I/O errors or bad input.
pub trait Engine: Peekable + Iterable + Clone + Send + Sync + 'static {
    /// The batch type written by [`write`](Engine::write).
    type WriteBatch: WriteBatch;

    /// The snapshot type returned by [`snapshot`](Engine::snapshot).
    type Snapshot: Snapshot;

    /// Names of the column families, in the order given at open time.
    fn cf_names(&self) -> Vec<&str>;

    /// Returns a new, empty batch for this engine.
    fn write_batch(&self) -> Self::WriteBatch;

    /// Applies `batch` atomically and, if `options.sync`, durably. The batch is left
    /// unchanged and may be written again or cleared for reuse. Writing an empty batch with
    /// `sync` is the same as [`sync`](Engine::sync).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if the batch was made by an
    /// engine with other column families; otherwise see the [trait docs](Engine#errors).
    fn write(&self, batch: &Self::WriteBatch, options: WriteOptions) -> Result<()>;

    /// Takes a consistent point-in-time view of every column family.
    ///
    /// # Errors
    ///
    /// A backend may fail to open a read transaction (for LMDB: too many readers).
    fn snapshot(&self) -> Result<Self::Snapshot>;

    /// Atomically deletes every key of `cf` within `range`, unsynced; the same as writing a
    /// batch holding only this [`WriteBatch::delete_range`].
    ///
    /// # Errors
    ///
    /// See the [trait docs](Engine#errors).
    fn delete_range<'k>(&self, cf: &str, range: impl Into<KeyRange<'k>>) -> Result<()> {
        let mut batch = self.write_batch();
        batch.delete_range(cf, range)?;
        self.write(&batch, WriteOptions::unsynced())
    }

    /// Makes every write acknowledged so far durable.
    ///
    /// # Errors
    ///
    /// An I/O error if the sync fails, after which the engine is poisoned.
    fn sync(&self) -> Result<()>;
}
