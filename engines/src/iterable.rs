//! Ordered range scans.

use crate::{KeyRange, Result};

/// Which end of a range a scan starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending key order, from the start bound to the end bound.
    Forward,
    /// Descending key order, from the end bound back to the start bound.
    Reverse,
}

/// Ordered range scans over one column family; implemented by every
/// [`Engine`](crate::Engine) and [`Snapshot`](crate::Snapshot).
///
/// Keys are ordered lexicographically as unsigned bytes (`memcmp` order; a key sorts before
/// every longer key it is a prefix of) in every backend.
///
/// A range is anything converting into a [`KeyRange`]: `..`, `a..b`, `a..=b`, `a..`, `..b`,
/// `..=b` with `&[u8]`, `&[u8; N]` or `&Vec<u8>` ends, or a `(Bound<&[u8]>, Bound<&[u8]>)`
/// pair. Every bound kind is
/// supported in both directions. An empty or inverted range (start after end) yields
/// nothing and is not an error. The empty key as a start bound means "from the first
/// key"; bounds may be longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
///
/// # Correctness
///
/// A scan sees one consistent point-in-time view: writes that complete while a scan runs,
/// including writes made by `f` itself, are not observed by that scan.
///
/// # Errors
///
/// [`Error::CfNotFound`](crate::Error::CfNotFound) for an unknown column family; an I/O or
/// corruption error if the backend fails while reading (the scan stops there; `f` may
/// already have seen some entries).
///
/// # Panics
///
/// Implementations never panic on I/O errors or on any range.
pub trait Iterable {
    /// Calls `f(key, value)` for each entry of `cf` within `range`, in `direction` order,
    /// until `f` returns `false` or the range is exhausted.
    ///
    /// # Errors
    ///
    /// See the [trait docs](Iterable#errors).
    fn scan<'k, F>(
        &self,
        cf: &str,
        range: impl Into<KeyRange<'k>>,
        direction: Direction,
        f: F,
    ) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> bool;

    /// Returns a copy of the first entry of `range` in `direction` order: the smallest key
    /// for [`Direction::Forward`], the largest for [`Direction::Reverse`].
    ///
    /// # Errors
    ///
    /// See the [trait docs](Iterable#errors).
    fn seek<'k>(
        &self,
        cf: &str,
        range: impl Into<KeyRange<'k>>,
        direction: Direction,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut first = None;
        self.scan(cf, range, direction, |key, value| {
            first = Some((key.to_vec(), value.to_vec()));
            false
        })?;
        Ok(first)
    }
}
