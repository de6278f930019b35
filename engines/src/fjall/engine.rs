//! The engine of the fjall backend.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable as _, Slice};
use parking_lot::RwLock;

use super::write_batch::FjallOp;
use super::{FjallSnapshot, FjallWriteBatch, map_err};
use crate::column_families::ColumnFamilies;
use crate::key_range;
use crate::{Direction, Engine, Error, Iterable, KeyRange, Peekable, Result, WriteOptions};

/// An [`Engine`] on a fjall database, one keyspace per column family.
///
/// Clones share the database. See the [module docs](crate::fjall) for how atomicity,
/// durability, range deletion and snapshots map onto fjall.
///
/// # Examples
///
/// ```
/// use engines::{Engine, FjallEngine, Peekable, WriteBatch, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let engine = FjallEngine::open(dir.path(), &["default", "raft"])?;
/// let mut batch = engine.write_batch();
/// batch.put("raft", b"log/1", b"entry")?;
/// engine.write(&batch, WriteOptions::synced())?;
/// drop(engine);
///
/// let engine = FjallEngine::open(dir.path(), &["default", "raft"])?;
/// assert_eq!(engine.get("raft", b"log/1")?, Some(b"entry".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct FjallEngine {
    inner: Arc<Inner>,
}

/// State shared by the handles and snapshots of one engine.
pub(super) struct Inner {
    db: Database,
    /// One keyspace per column family, indexed like `cfs`.
    keyspaces: Vec<Keyspace>,
    cfs: ColumnFamilies,
    /// Writes hold it shared; a batch with a range deletion holds it exclusively while it
    /// reads the keys to delete and commits, so no write slips in between.
    write_lock: RwLock<()>,
    /// Set by a failed commit or sync; never cleared.
    poisoned: AtomicBool,
    /// Set by [`FjallEngine::fail_next_sync`].
    fail_next_sync: AtomicBool,
}

impl Inner {
    pub(super) fn keyspace(&self, cf: &str) -> Result<&Keyspace> {
        Ok(&self.keyspaces[self.cfs.index(cf)?])
    }
}

impl fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallEngine")
            .field("cfs", &self.inner.cfs.names())
            .finish_non_exhaustive()
    }
}

impl FjallEngine {
    /// Opens (creating if needed) the database in directory `path`, with one keyspace per
    /// column family of `cfs`; keyspaces missing on disk are created.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for invalid column family names; [`Error::Io`] if `path`
    /// cannot be used as a directory (for example a regular file) or is locked by another
    /// open database; [`Error::Corruption`] if recovery finds damaged data.
    pub fn open(path: &Path, cfs: &[&str]) -> Result<Self> {
        let cfs = ColumnFamilies::new(cfs)?;
        if path.exists() && !path.is_dir() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} exists and is not a directory", path.display()),
            )));
        }
        let db = Database::builder(path).open().map_err(map_err)?;
        let keyspaces = cfs
            .names()
            .into_iter()
            .map(|name| {
                db.keyspace(name, KeyspaceCreateOptions::default)
                    .map_err(map_err)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                keyspaces,
                cfs,
                write_lock: RwLock::new(()),
                poisoned: AtomicBool::new(false),
                fail_next_sync: AtomicBool::new(false),
            }),
        })
    }

    /// Makes the next sync (a synced write or [`sync`](Engine::sync)) fail as a failed
    /// fsync would: it returns [`Error::Io`], applies nothing, and poisons the engine.
    ///
    /// A test hook at the boundary between this wrapper and fjall (fjall itself offers no
    /// fault injection); it checks that the wrapper refuses every later write.
    pub fn fail_next_sync(&self) {
        self.inner.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// The fjall database, for uses the traits do not cover (metrics, manual compaction).
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// Returns [`Error::Poisoned`] if poisoned; consumes an injected sync failure if `sync`.
    fn begin_write(&self, sync: bool) -> Result<()> {
        if self.inner.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Poisoned);
        }
        if sync && self.inner.fail_next_sync.swap(false, Ordering::SeqCst) {
            self.inner.poisoned.store(true, Ordering::SeqCst);
            return Err(Error::Io(io::Error::other("injected fsync failure")));
        }
        Ok(())
    }

    /// Poisons the engine and maps the error of a failed commit or persist.
    fn fail(&self, error: fjall::Error) -> Error {
        self.inner.poisoned.store(true, Ordering::SeqCst);
        map_err(error)
    }

    /// Builds and commits the fjall batch; the caller holds `write_lock` (exclusively if
    /// the batch has a range deletion).
    fn commit(&self, batch: &FjallWriteBatch, options: WriteOptions) -> Result<()> {
        self.begin_write(options.sync)?;
        let mut fjall_batch = self.inner.db.batch();
        if options.sync {
            fjall_batch = fjall_batch.durability(Some(PersistMode::SyncAll));
        }
        if batch.only_range_deletes_of_distinct_cfs() {
            // No key can repeat: stream the tombstones without merging (log GC, cleanup).
            for op in &batch.ops {
                if let FjallOp::DeleteRange {
                    cf,
                    range: Some(range),
                } = op
                {
                    let keyspace = &self.inner.keyspaces[*cf];
                    for guard in keyspace.range::<&[u8], _>(key_range::as_borrowed(range)) {
                        fjall_batch.remove(keyspace, guard.key().map_err(map_err)?);
                    }
                }
            }
        } else if batch.needs_merge {
            for ((cf, key), value) in self.merge(batch)? {
                let keyspace = &self.inner.keyspaces[cf];
                match value {
                    Some(value) => fjall_batch.insert(keyspace, key, value),
                    None => fjall_batch.remove(keyspace, key),
                }
            }
        } else {
            for op in &batch.ops {
                match op {
                    FjallOp::Put { cf, key, value } => {
                        fjall_batch.insert(&self.inner.keyspaces[*cf], key.clone(), value.clone());
                    }
                    FjallOp::Delete { cf, key } => {
                        fjall_batch.remove(&self.inner.keyspaces[*cf], key.clone());
                    }
                    FjallOp::DeleteRange { .. } => {
                        unreachable!("a batch with a range deletion always needs a merge")
                    }
                }
            }
        }
        if fjall_batch.is_empty() {
            // fjall skips empty batches entirely, including their persist.
            return if options.sync { self.persist() } else { Ok(()) };
        }
        fjall_batch.commit().map_err(|error| self.fail(error))
    }

    /// The net effect of `batch` per key (`None`: deleted), reading the keys that its range
    /// deletions cover.
    fn merge(&self, batch: &FjallWriteBatch) -> Result<BTreeMap<(usize, Slice), Option<Slice>>> {
        let mut merged = BTreeMap::new();
        for op in &batch.ops {
            match op {
                FjallOp::Put { cf, key, value } => {
                    merged.insert((*cf, key.clone()), Some(value.clone()));
                }
                FjallOp::Delete { cf, key } => {
                    merged.insert((*cf, key.clone()), None);
                }
                FjallOp::DeleteRange {
                    cf,
                    range: Some(range),
                } => {
                    let range = key_range::as_borrowed(range);
                    for ((key_cf, key), value) in &mut merged {
                        if key_cf == cf && key_range::contains(range, key) {
                            *value = None;
                        }
                    }
                    for guard in self.inner.keyspaces[*cf].range::<&[u8], _>(range) {
                        let key = guard.key().map_err(map_err)?;
                        merged.insert((*cf, key), None);
                    }
                }
                FjallOp::DeleteRange { range: None, .. } => {}
            }
        }
        Ok(merged)
    }

    fn persist(&self) -> Result<()> {
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|error| self.fail(error))
    }
}

impl Peekable for FjallEngine {
    /// Reads the newest value. A point read cannot tear a batch; it may see a batch whose
    /// `write` has not returned yet (its journal write has succeeded).
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let keyspace = self.inner.keyspace(cf)?;
        key_range::check_key(key)?;
        let value = keyspace.get(key).map_err(map_err)?;
        Ok(value.map(|value| f(&value)))
    }
}

impl Iterable for FjallEngine {
    fn scan<'k, F>(
        &self,
        cf: &str,
        range: impl Into<KeyRange<'k>>,
        direction: Direction,
        f: F,
    ) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> bool,
    {
        let keyspace = self.inner.keyspace(cf)?;
        let Some(range) = key_range::normalize(range.into()) else {
            return Ok(());
        };
        // `Keyspace::range` reads at the newest sequence number and could see part of a
        // batch being committed; a snapshot reads only published batches.
        let snapshot = self.inner.db.snapshot();
        super::scan_iter(snapshot.range::<&[u8], _>(keyspace, range), direction, f)
    }
}

impl Engine for FjallEngine {
    type WriteBatch = FjallWriteBatch;
    type Snapshot = FjallSnapshot;

    fn cf_names(&self) -> Vec<&str> {
        self.inner.cfs.names()
    }

    fn write_batch(&self) -> FjallWriteBatch {
        FjallWriteBatch::new(self.inner.cfs.clone())
    }

    fn write(&self, batch: &FjallWriteBatch, options: WriteOptions) -> Result<()> {
        self.inner.cfs.check_same(&batch.cfs)?;
        if batch.has_range_delete {
            let _exclusive = self.inner.write_lock.write();
            self.commit(batch, options)
        } else {
            let _shared = self.inner.write_lock.read();
            self.commit(batch, options)
        }
    }

    fn snapshot(&self) -> Result<FjallSnapshot> {
        Ok(FjallSnapshot {
            inner: Arc::clone(&self.inner),
            snapshot: self.inner.db.snapshot(),
        })
    }

    fn sync(&self) -> Result<()> {
        self.begin_write(true)?;
        self.persist()
    }
}
