//! [`EngineFactory`]: where a cluster's stores keep their engines, so that a stopped store
//! can be reopened from the same data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engines::{Engine, MemoryEngine};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};

/// Opens the (raft, kv) engines of a store: the same data every time for one id.
///
/// # Panics
/// Implementations panic when an engine cannot be opened (a test setup failure).
pub trait EngineFactory: Send + 'static {
    /// The engine type of both the raft and the kv engine.
    type Engine: Engine;

    /// Opens (creating on first use) the engines of store `store_id`.
    fn open(&mut self, store_id: u64) -> (Self::Engine, Self::Engine);

    /// The directory where store `store_id` stages snapshots: the same every time for one
    /// id.
    fn snap_dir(&mut self, store_id: u64) -> PathBuf;
}

/// Memory engines, kept across stop and start as a disk would be (a clean stop: what was
/// written stays, synced or not).
#[derive(Debug, Default)]
pub struct MemoryFactory {
    engines: BTreeMap<u64, (MemoryEngine, MemoryEngine)>,
    /// Staged snapshots live on disk even for memory engines.
    snap_root: Option<tempfile::TempDir>,
}

impl EngineFactory for MemoryFactory {
    type Engine = MemoryEngine;

    fn snap_dir(&mut self, store_id: u64) -> PathBuf {
        let root = self
            .snap_root
            .get_or_insert_with(|| tempfile::tempdir().expect("a temporary directory"));
        store_dir(root.path(), store_id)
    }

    fn open(&mut self, store_id: u64) -> (MemoryEngine, MemoryEngine) {
        self.engines
            .entry(store_id)
            .or_insert_with(|| {
                (
                    MemoryEngine::new(&[CF_RAFT]).expect("a memory engine opens"),
                    MemoryEngine::new(&[CF_DEFAULT, CF_META]).expect("a memory engine opens"),
                )
            })
            .clone()
    }
}

/// The directory of store `store_id` under `root`.
fn store_dir(root: &Path, store_id: u64) -> PathBuf {
    root.join(format!("store-{store_id}"))
}

/// fjall engines in a temporary directory (or a given one), reopened from disk on every
/// start.
#[cfg(feature = "fjall")]
#[derive(Debug)]
pub struct FjallFactory {
    /// Removed when the factory is dropped, unless `fixed` is set.
    dir: tempfile::TempDir,
    fixed: Option<PathBuf>,
}

#[cfg(feature = "fjall")]
impl Default for FjallFactory {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "fjall")]
impl FjallFactory {
    /// Engines in a fresh temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            fixed: None,
        }
    }

    /// Engines under `path`, which outlives the factory (for crash tests).
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn at(path: &Path) -> Self {
        Self {
            fixed: Some(path.to_path_buf()),
            ..Self::new()
        }
    }
}

#[cfg(feature = "fjall")]
impl EngineFactory for FjallFactory {
    type Engine = engines::FjallEngine;

    fn snap_dir(&mut self, store_id: u64) -> PathBuf {
        let root = self.fixed.as_deref().unwrap_or(self.dir.path());
        store_dir(root, store_id).join("snap")
    }

    fn open(&mut self, store_id: u64) -> (Self::Engine, Self::Engine) {
        let root = self.fixed.as_deref().unwrap_or(self.dir.path());
        let base = store_dir(root, store_id);
        let open = |name: &str, cfs: &[&str]| {
            engines::FjallEngine::open(&base.join(name), cfs)
                .unwrap_or_else(|e| panic!("fjall engine {name} of store {store_id}: {e}"))
        };
        (open("raft", &[CF_RAFT]), open("kv", &[CF_DEFAULT, CF_META]))
    }
}

/// heed (LMDB) engines in a temporary directory, reopened from disk on every start.
#[cfg(feature = "heed")]
#[derive(Debug)]
pub struct HeedFactory {
    dir: tempfile::TempDir,
}

#[cfg(feature = "heed")]
impl Default for HeedFactory {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "heed")]
impl HeedFactory {
    /// Engines in a fresh temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
}

#[cfg(feature = "heed")]
impl EngineFactory for HeedFactory {
    type Engine = engines::HeedEngine;

    fn snap_dir(&mut self, store_id: u64) -> PathBuf {
        store_dir(self.dir.path(), store_id).join("snap")
    }

    fn open(&mut self, store_id: u64) -> (Self::Engine, Self::Engine) {
        let base = store_dir(self.dir.path(), store_id);
        let open = |name: &str, cfs: &[&str]| {
            engines::HeedEngine::open(&base.join(name), cfs)
                .unwrap_or_else(|e| panic!("heed engine {name} of store {store_id}: {e}"))
        };
        (open("raft", &[CF_RAFT]), open("kv", &[CF_DEFAULT, CF_META]))
    }
}
