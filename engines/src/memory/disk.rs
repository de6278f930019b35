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
/// Opening a path a second time returns a live handle on the same data (after a
/// [`MemoryEngine::simulate_crash`], without the unsynced writes). Nothing is written to
/// the real file system, but a path that exists and is not a directory is refused, as disk
/// backends refuse it. The data lives as long as the `MemoryDisk`.
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
    /// [`Error::Io`] if `path` exists and is not a directory; [`Error::InvalidArgument`] if
    /// `cfs` is invalid or differs from the column families the engine was created with.
    pub fn open(&self, path: &Path, cfs: &[&str]) -> Result<MemoryEngine> {
        if path.exists() && !path.is_dir() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} exists and is not a directory", path.display()),
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
