//! Key ranges, key validation and range normalization shared by the backends.

use std::ops::{
    Bound, Range, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive,
};

use crate::{Error, MAX_KEY_BYTES, Result};

/// A range of keys with borrowed bounds, as taken by [`Iterable::scan`](crate::Iterable::scan)
/// and [`WriteBatch::delete_range`](crate::WriteBatch::delete_range).
///
/// Every std range over `&[u8]` or `&[u8; N]` converts into it (`..`, `a..b`, `a..=b`,
/// `a..`, `..b`, `..=b`), and so does a `(Bound<&[u8]>, Bound<&[u8]>)` pair, so callers
/// rarely name this type:
///
/// ```
/// use std::ops::Bound;
/// use engines::KeyRange;
///
/// let all: KeyRange<'_> = (..).into();
/// let half_open: KeyRange<'_> = (b"a"..b"m").into();
/// let from: KeyRange<'_> = (&b"log/"[..]..).into();
/// let excluded_start: KeyRange<'_> =
///     (Bound::Excluded(&b"a"[..]), Bound::Included(&b"zz"[..])).into();
/// assert!(all.contains(b"\xff"));
/// assert!(!half_open.contains(b"m"));
/// assert!(from.contains(b"log/7"));
/// assert!(!excluded_start.contains(b"a"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRange<'a> {
    /// The start bound.
    pub start: Bound<&'a [u8]>,
    /// The end bound.
    pub end: Bound<&'a [u8]>,
}

impl<'a> KeyRange<'a> {
    /// A range from `start` to `end`.
    #[must_use]
    pub const fn new(start: Bound<&'a [u8]>, end: Bound<&'a [u8]>) -> Self {
        Self { start, end }
    }

    /// Every key.
    #[must_use]
    pub const fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// `true` if `key` lies within the range.
    #[must_use]
    pub fn contains(&self, key: &[u8]) -> bool {
        contains((self.start, self.end), key)
    }
}

impl<'a> From<(Bound<&'a [u8]>, Bound<&'a [u8]>)> for KeyRange<'a> {
    fn from((start, end): (Bound<&'a [u8]>, Bound<&'a [u8]>)) -> Self {
        Self { start, end }
    }
}

impl From<RangeFull> for KeyRange<'_> {
    fn from(_: RangeFull) -> Self {
        Self::all()
    }
}

/// Implements `From` for every std range over the reference type `$key`.
macro_rules! key_range_from_std_ranges {
    ($({$($generics:tt)*} $key:ty),* $(,)?) => {$(
        impl<'a, $($generics)*> From<Range<$key>> for KeyRange<'a> {
            fn from(range: Range<$key>) -> Self {
                Self::new(Bound::Included(&range.start[..]), Bound::Excluded(&range.end[..]))
            }
        }
        impl<'a, $($generics)*> From<RangeInclusive<$key>> for KeyRange<'a> {
            fn from(range: RangeInclusive<$key>) -> Self {
                let (start, end) = range.into_inner();
                Self::new(Bound::Included(&start[..]), Bound::Included(&end[..]))
            }
        }
        impl<'a, $($generics)*> From<RangeFrom<$key>> for KeyRange<'a> {
            fn from(range: RangeFrom<$key>) -> Self {
                Self::new(Bound::Included(&range.start[..]), Bound::Unbounded)
            }
        }
        impl<'a, $($generics)*> From<RangeTo<$key>> for KeyRange<'a> {
            fn from(range: RangeTo<$key>) -> Self {
                Self::new(Bound::Unbounded, Bound::Excluded(&range.end[..]))
            }
        }
        impl<'a, $($generics)*> From<RangeToInclusive<$key>> for KeyRange<'a> {
            fn from(range: RangeToInclusive<$key>) -> Self {
                Self::new(Bound::Unbounded, Bound::Included(&range.end[..]))
            }
        }
    )*};
}

key_range_from_std_ranges!({} &'a [u8], {const N: usize} &'a [u8; N], {} &'a Vec<u8>);

impl RangeBounds<[u8]> for KeyRange<'_> {
    fn start_bound(&self) -> Bound<&[u8]> {
        self.start
    }

    fn end_bound(&self) -> Bound<&[u8]> {
        self.end
    }
}

/// Checks a key of a point operation (see [keys](crate#keys)).
#[inline]
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        Err(Error::EmptyKey)
    } else if key.len() > MAX_KEY_BYTES {
        Err(Error::KeyTooLarge {
            len_bytes: key.len(),
            max_bytes: MAX_KEY_BYTES,
        })
    } else {
        Ok(())
    }
}

/// A range with borrowed bounds.
pub(crate) type BorrowedRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A range with owned bounds, as stored in write batches.
pub(crate) type OwnedRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Normalizes a range, or returns `None` if it is provably empty.
///
/// A start bound on the empty key becomes unbounded (no key is empty, so every key is
/// greater than it); an end bound on the empty key makes the range empty. The returned
/// bounds are never inverted, so they are safe to pass to `BTreeMap::range` and to the
/// backends.
#[inline]
pub(crate) fn normalize(range: KeyRange<'_>) -> Option<BorrowedRange<'_>> {
    let start = match range.start {
        Bound::Included(key) | Bound::Excluded(key) if key.is_empty() => Bound::Unbounded,
        bound => bound,
    };
    let end = range.end;
    match end {
        Bound::Included(key) | Bound::Excluded(key) if key.is_empty() => return None,
        _ => {}
    }
    if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
        (start, end)
    {
        let both_included = matches!((start, end), (Bound::Included(_), Bound::Included(_)));
        if s > e || (s == e && !both_included) {
            return None;
        }
    }
    Some((start, end))
}

/// Copies normalized bounds.
pub(crate) fn to_owned_range(range: BorrowedRange<'_>) -> OwnedRange {
    (range.0.map(<[u8]>::to_vec), range.1.map(<[u8]>::to_vec))
}

/// Borrows owned bounds.
pub(crate) fn as_borrowed(range: &OwnedRange) -> BorrowedRange<'_> {
    (
        range.0.as_ref().map(Vec::as_slice),
        range.1.as_ref().map(Vec::as_slice),
    )
}

/// Number of bytes held by the bounds of a range.
pub(crate) fn range_size_bytes(range: BorrowedRange<'_>) -> usize {
    let len = |bound: &Bound<&[u8]>| match bound {
        Bound::Included(key) | Bound::Excluded(key) => key.len(),
        Bound::Unbounded => 0,
    };
    len(&range.0) + len(&range.1)
}

/// `true` if `key` lies within `range`.
pub(crate) fn contains(range: BorrowedRange<'_>, key: &[u8]) -> bool {
    let after_start = match range.0 {
        Bound::Included(start) => key >= start,
        Bound::Excluded(start) => key > start,
        Bound::Unbounded => true,
    };
    let before_end = match range.1 {
        Bound::Included(end) => key <= end,
        Bound::Excluded(end) => key < end,
        Bound::Unbounded => true,
    };
    after_start && before_end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(key: &[u8]) -> &[u8] {
        key
    }

    fn n<'a>(range: impl Into<KeyRange<'a>>) -> Option<BorrowedRange<'a>> {
        normalize(range.into())
    }

    #[test]
    fn keys_are_checked() {
        assert!(matches!(check_key(b""), Err(Error::EmptyKey)));
        assert!(check_key(&[0u8; MAX_KEY_BYTES]).is_ok());
        assert!(matches!(
            check_key(&[0u8; MAX_KEY_BYTES + 1]),
            Err(Error::KeyTooLarge { len_bytes, max_bytes: MAX_KEY_BYTES })
                if len_bytes == MAX_KEY_BYTES + 1
        ));
    }

    #[test]
    fn empty_and_inverted_ranges_are_none() {
        assert!(n(b(b"b")..b(b"a")).is_none());
        assert!(n(b(b"a")..b(b"a")).is_none());
        assert!(n((Bound::Excluded(b(b"a")), Bound::Included(b(b"a")))).is_none());
        assert!(n(b(b"a")..=b(b"a")).is_some());
        assert!(n(..b(b"")).is_none());
        assert!(n(..=b(b"")).is_none());
    }

    #[test]
    fn empty_start_means_from_the_first_key() {
        let range = n(b(b"")..).unwrap();
        assert_eq!(range, (Bound::Unbounded, Bound::Unbounded));
        let range = n((Bound::Excluded(b(b"")), Bound::Excluded(b(b"z")))).unwrap();
        assert_eq!(range, (Bound::Unbounded, Bound::Excluded(b(b"z"))));
    }

    #[test]
    fn contains_respects_every_bound_kind() {
        let range = (Bound::Excluded(b(b"a")), Bound::Included(b(b"c")));
        assert!(!contains(range, b"a"));
        assert!(contains(range, b"a\x00"));
        assert!(contains(range, b"c"));
        assert!(!contains(range, b"c\x00"));
        assert!(contains((Bound::Unbounded, Bound::Unbounded), b"\xff"));
    }
}
