//! The error type of every engine operation.

use std::io;

/// Errors returned by the engine traits and every backend.
///
/// Operating conditions (a full disk, an unknown column family, a bad key) are errors, never
/// panics. [`Error::Poisoned`] and [`Error::Corruption`] are fatal for the engine instance:
/// the process should stop using it and reopen it (restart) to recover.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error from the operating system or the backend's files.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),

    /// Stored data failed validation (checksum, format, or an impossible state).
    #[error("corruption: {0}")]
    Corruption(String),

    /// The column family was not named when the engine was opened.
    #[error("column family not found: {0:?}")]
    CfNotFound(String),

    /// An earlier sync failed, so durability of earlier writes is unknown; every later write
    /// and sync fails with this error rather than pretending to succeed.
    ///
    /// Reads still work. Reopen the engine (after a restart) to recover.
    #[error("engine is poisoned: an earlier sync failed, writes are refused until reopen")]
    Poisoned,

    /// The disk (or a configured size limit of the backend) is full. Nothing of the failed
    /// write was applied; the write may be retried once space is freed.
    #[error("no space left: {0}")]
    NoSpace(#[source] io::Error),

    /// The empty key was used in a point operation; see [the crate docs](crate#keys).
    #[error("the empty key is not a valid key")]
    EmptyKey,

    /// A key longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES) was used in a point
    /// operation.
    #[error("key of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len_bytes: usize,
        /// The limit, [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
        max_bytes: usize,
    },

    /// An argument was invalid: a bad column family name at open time, or a write batch
    /// made by an engine with other column families.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Any other backend failure.
    #[error("{0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps any error as [`Error::Other`].
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Other(error.into())
    }
}

impl From<io::Error> for Error {
    /// Classifies the error: a full disk becomes [`Error::NoSpace`], anything else
    /// [`Error::Io`].
    fn from(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::StorageFull {
            Self::NoSpace(error)
        } else {
            Self::Io(error)
        }
    }
}

/// The result type of the crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert!(matches!(Error::from(full), Error::NoSpace(_)));
        let other = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(Error::from(other), Error::Io(_)));
    }
}
