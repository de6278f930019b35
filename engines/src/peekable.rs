//! Point reads.

use crate::Result;

/// Point reads of single keys; implemented by every [`Engine`](crate::Engine) and
/// [`Snapshot`](crate::Snapshot).
///
/// # Correctness
///
/// An implementation must return the value of the most recent write of `key` visible to
/// this view (for an engine: every write that returned before the call started; for a
/// snapshot: every write that returned before the snapshot was taken, and nothing later).
///
/// # Errors
///
/// Every method returns [`Error::CfNotFound`](crate::Error::CfNotFound) for a column family
/// not named at open time, [`Error::EmptyKey`](crate::Error::EmptyKey) or
/// [`Error::KeyTooLarge`](crate::Error::KeyTooLarge) for an invalid key (see
/// [keys](crate#keys)), and an I/O or corruption error if the backend fails to read.
///
/// # Panics
///
/// Implementations never panic on I/O errors or bad input.
pub trait Peekable {
    /// Looks `key` up in `cf` and, if present, calls `f` with the value borrowed from the
    /// backend (no copy). Returns `Ok(None)` if the key is absent.
    ///
    /// `f` may run while the backend holds internal locks or a read transaction: it must
    /// not call back into the engine.
    ///
    /// # Errors
    ///
    /// See the [trait docs](Peekable#errors).
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>>;

    /// Returns a copy of the value of `key` in `cf`, or `None` if absent.
    ///
    /// # Errors
    ///
    /// See the [trait docs](Peekable#errors).
    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(cf, key, <[u8]>::to_vec)
    }
}
