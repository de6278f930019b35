//! A stand-in for a file system holding memory engines.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::MemoryEngine;
use crate::column_families::ColumnFamilies;
use crate::{Engine, Error, Result};

/// Memory engines by path, so that code written for disk engines ("open the engine at this
/// path, drop it, open it again") runs unchanged on the memory backend.
///
/// Opening a path a second time is a restart: it returns a new handle on the same data
/// (see [`MemoryEngine::reopen`]; after a [`MemoryEngine::simulate_crash`], without the
/// unsynced writes) and handles from before become dead. Nothing is written to
/// the real file system, but a path that is (or lies below) a regular file is refused, as
/// disk backends refuse it. The data lives as long as the `MemoryDisk`.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use engines::{Engine, MemoryDisk, Peekable, WriteBatch, WriteOptions};
///
/// let disk = MemoryDisk::new();
/// let engine = disk.open(Path::new("/store-1"), &["default"])?;
/// let mut batch = engine.write_batch();
/// batch.put("default", b"k", b"v")?;
/// engine.write(&batch, WriteOptions::synced())?;
/// drop(engine);
/// let engine = disk.open(Path::new("/store-1"), &["default"])?;
/// assert_eq!(engine.get("default", b"k")?, Some(b"v".to_vec()));
/// # Ok::<(), engines::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryDisk {
    engines: Mutex<HashMap<PathBuf, MemoryEngine>>,
}

impl MemoryDisk {
    /// An empty disk.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the engine at `path`, creating it with `cfs` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `path`, or its nearest existing ancestor, is not a directory; [`Error::InvalidArgument`] if
    /// `cfs` is invalid or differs from the column families the engine was created with.
    pub fn open(&self, path: &Path, cfs: &[&str]) -> Result<MemoryEngine> {
        // As a disk backend would fail to create it: the nearest existing ancestor (or the
        // path itself) must be a directory.
        if let Some(existing) = path.ancestors().find(|ancestor| ancestor.exists())
            && !existing.is_dir()
        {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} exists and is not a directory", existing.display()),
            )));
        }
        let mut engines = self.engines.lock();
        if let Some(engine) = engines.get(path) {
            let wanted = ColumnFamilies::new(cfs)?;
            if engine.cf_names() != wanted.names() {
                return Err(Error::InvalidArgument(format!(
                    "memory engine at {} has column families {:?}, not {:?}",
                    path.display(),
                    engine.cf_names(),
                    cfs
                )));
            }
            return Ok(engine.reopen());
        }
        let engine = MemoryEngine::new(cfs)?;
        engines.insert(path.to_path_buf(), engine.clone());
        Ok(engine)
    }

    /// Forgets the engine at `path`, as deleting its directory would.
    pub fn remove(&self, path: &Path) {
        self.engines.lock().remove(path);
    }
}
