//! The validated, ordered list of column family names of one engine.

use std::sync::Arc;

use crate::{Error, Result};

/// Longest column family name, in bytes (fjall's keyspace name limit).
pub(crate) const MAX_CF_NAME_BYTES: usize = 255;

/// The column families of an engine, fixed at open time. A column family is addressed
/// internally by its index in this list.
///
/// Invariant: at least one name; every name is 1..=255 bytes of ASCII letters, digits,
/// `_`, `-` or `.`; no duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnFamilies(Arc<[String]>);

impl ColumnFamilies {
    /// Validates `names`.
    pub(crate) fn new(names: &[&str]) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::InvalidArgument(
                "at least one column family is required".into(),
            ));
        }
        for (i, name) in names.iter().enumerate() {
            let valid_chars = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if name.is_empty() || name.len() > MAX_CF_NAME_BYTES || !valid_chars {
                return Err(Error::InvalidArgument(format!(
                    "column family name {name:?} must be 1..={MAX_CF_NAME_BYTES} bytes of \
                     ASCII letters, digits, '_', '-' or '.'"
                )));
            }
            if names[..i].contains(name) {
                return Err(Error::InvalidArgument(format!(
                    "column family {name:?} named twice"
                )));
            }
        }
        Ok(Self(names.iter().map(|name| (*name).to_owned()).collect()))
    }

    /// The index of `name`.
    ///
    /// # Errors
    ///
    /// [`Error::CfNotFound`] if `name` was not given at open time.
    #[inline]
    pub(crate) fn index(&self, name: &str) -> Result<usize> {
        self.0
            .iter()
            .position(|cf| cf == name)
            .ok_or_else(|| Error::CfNotFound(name.to_owned()))
    }

    /// The names, in open order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }

    /// Number of column families.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Checks that a batch made for `other` may be written to an engine with `self`.
    pub(crate) fn check_same(&self, other: &Self) -> Result<()> {
        if Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0 {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "write batch made for column families {:?}, engine has {:?}",
                other.0, self.0
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        assert!(ColumnFamilies::new(&[]).is_err());
        assert!(ColumnFamilies::new(&[""]).is_err());
        assert!(ColumnFamilies::new(&["a b"]).is_err());
        assert!(ColumnFamilies::new(&["a", "a"]).is_err());
        assert!(ColumnFamilies::new(&[&"x".repeat(256)]).is_err());
        let cfs = ColumnFamilies::new(&["default", "raft", "meta.v1"]).unwrap();
        assert_eq!(cfs.index("raft").unwrap(), 1);
        assert!(matches!(cfs.index("nope"), Err(Error::CfNotFound(name)) if name == "nope"));
        assert_eq!(cfs.names(), ["default", "raft", "meta.v1"]);
    }

    #[test]
    fn batches_only_fit_engines_with_the_same_column_families() {
        let a = ColumnFamilies::new(&["default"]).unwrap();
        let b = ColumnFamilies::new(&["default"]).unwrap();
        let c = ColumnFamilies::new(&["raft"]).unwrap();
        assert!(a.check_same(&b).is_ok());
        assert!(a.check_same(&c).is_err());
    }
}
