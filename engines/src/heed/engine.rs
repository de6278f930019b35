//! The engine of the heed backend.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use heed::types::Bytes;
use heed::{
    CommitOrAbort, CommitToken, Env, EnvFlags, EnvOpenOptions, MdbError, OnCommit, WithoutTls,
};

use super::grow_gate::GrowGate;
use super::{HeedSnapshot, HeedWriteBatch, RawDatabase, map_err};
use crate::batch_ops::{BatchOp, BatchOps};
use crate::column_families::ColumnFamilies;
use crate::key_range;
use crate::{
    Direction, Engine, Error, Iterable, KeyRange, MAX_KEY_BYTES, Peekable, Result, WriteOptions,
};

/// Map sizes are kept multiples of this (a multiple of every common page size).
const MAP_SIZE_GRANULE_BYTES: usize = 1 << 20;

/// Options of a [`HeedEngine`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeedOptions {
    /// Size of the memory map at open, rounded up to a MiB; it doubles whenever a batch
    /// does not fit. Default 64 MiB. A reopened environment keeps at least its data size.
    pub initial_map_size_bytes: usize,
    /// The map never grows past this; a batch that does not fit then fails with
    /// [`Error::NoSpace`]. Default 16 TiB (address space only: on Linux the file grows with
    /// the data, not with the map).
    pub max_map_size_bytes: usize,
    /// Most read transactions (reads in flight plus open snapshots) at once. Default 1024.
    pub max_readers: u32,
    /// How long a write that needs the map to grow waits for open reads and snapshots to
    /// finish before failing. Default 60 s.
    pub grow_wait: Duration,
}

impl Default for HeedOptions {
    fn default() -> Self {
        Self {
            initial_map_size_bytes: 64 << 20,
            max_map_size_bytes: 16 << 40,
            max_readers: 1024,
            grow_wait: Duration::from_secs(60),
        }
    }
}

/// An [`Engine`] on an LMDB environment, one named database per column family.
///
/// Clones share the environment. See the [module docs](crate::heed) for transactions,
/// durability, snapshots and map growth.
///
/// # Correctness
///
/// - Only this engine may open the directory: no other process, and no other handle in
///   this process (heed refuses a second open while one is alive).
/// - A thread that holds a [`HeedSnapshot`] should not write if the map may need to grow:
///   the growth waits for that snapshot, and the write fails after
///   [`HeedOptions::grow_wait`].
///
/// # Examples
///
/// ```
/// use engines::{Engine, HeedEngine, Peekable, WriteBatch, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let engine = HeedEngine::open(dir.path(), &["default", "raft"])?;
/// let mut batch = engine.write_batch();
/// batch.put("raft", b"log/1", b"entry")?;
/// engine.write(&batch, WriteOptions::synced())?;
/// drop(engine);
///
/// let engine = HeedEngine::open(dir.path(), &["default", "raft"])?;
/// assert_eq!(engine.get("raft", b"log/1")?, Some(b"entry".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct HeedEngine {
    inner: Arc<Inner>,
}

/// State shared by the handles and snapshots of one engine.
pub(super) struct Inner {
    env: Env<WithoutTls>,
    /// One database per column family, indexed like `cfs`.
    dbs: Vec<RawDatabase>,
    cfs: ColumnFamilies,
    /// Every transaction of `env` is opened and closed while holding a guard of it.
    gate: Arc<GrowGate>,
    options: HeedOptions,
    /// Set by a failed commit or sync; never cleared.
    poisoned: AtomicBool,
    /// Set by [`HeedEngine::fail_next_sync`].
    fail_next_sync: AtomicBool,
}

impl Inner {
    pub(super) fn database(&self, cf: &str) -> Result<RawDatabase> {
        Ok(self.dbs[self.cfs.index(cf)?])
    }
}

impl Drop for Inner {
    /// A clean shutdown makes unsynced writes durable; a failure here changes nothing
    /// (they were never promised durable).
    fn drop(&mut self) {
        if !self.poisoned.load(Ordering::SeqCst) {
            let _ = self.env.force_sync();
        }
    }
}

/// Where a write transaction failed.
enum CommitError {
    /// While applying an operation; the transaction was aborted.
    Apply(heed::Error),
    /// In `mdb_txn_commit`.
    Commit(heed::Error),
}

/// The databases created at open, converted to `'static` once their transaction commits.
struct Databases<'e>(Vec<heed::Database<'e, Bytes, Bytes>>);

impl OnCommit for Databases<'_> {
    type Committed = Vec<RawDatabase>;

    fn on_commit(self, token: &CommitToken) -> Vec<RawDatabase> {
        self.0.into_iter().map(|db| db.on_commit(token)).collect()
    }
}

impl fmt::Debug for HeedEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeedEngine")
            .field("path", &self.inner.env.path())
            .field("cfs", &self.inner.cfs.names())
            .finish_non_exhaustive()
    }
}

impl HeedEngine {
    /// Opens (creating if needed) the environment in directory `path` with default
    /// [`HeedOptions`]; see [`open_with`](HeedEngine::open_with).
    ///
    /// # Errors
    ///
    /// As for [`open_with`](HeedEngine::open_with).
    pub fn open(path: &Path, cfs: &[&str]) -> Result<Self> {
        Self::open_with(path, cfs, HeedOptions::default())
    }

    /// Opens (creating if needed) the environment in directory `path`, with one named
    /// database per column family of `cfs`; databases missing on disk are created.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for invalid column family names; [`Error::Io`] if `path`
    /// cannot be used as a directory (for example a regular file); [`Error::Other`] if the
    /// environment is already open in this process; [`Error::Corruption`] for a damaged
    /// or foreign data file.
    pub fn open_with(path: &Path, cfs: &[&str], options: HeedOptions) -> Result<Self> {
        let cfs = ColumnFamilies::new(cfs)?;
        std::fs::create_dir_all(path)?;
        let mut options = options;
        options.initial_map_size_bytes = options
            .initial_map_size_bytes
            .max(1)
            .div_ceil(MAP_SIZE_GRANULE_BYTES)
            .saturating_mul(MAP_SIZE_GRANULE_BYTES);
        options.max_map_size_bytes = (options.max_map_size_bytes / MAP_SIZE_GRANULE_BYTES
            * MAP_SIZE_GRANULE_BYTES)
            .max(options.initial_map_size_bytes);
        let max_dbs = u32::try_from(cfs.len())
            .map_err(|_| Error::InvalidArgument("too many column families".into()))?;
        let env = open_env(path, &options, max_dbs)?;
        if env.max_key_size() < MAX_KEY_BYTES {
            return Err(Error::other(format!(
                "LMDB was built with a key limit of {} bytes, below MAX_KEY_BYTES",
                env.max_key_size()
            )));
        }
        let wtxn = env.write_txn().map_err(map_err)?;
        let names = cfs.names();
        let created = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let dbs = names
                    .iter()
                    .map(|name| opener.create_database::<Bytes, Bytes>(wtxn, Some(name)))
                    .collect::<heed::Result<Vec<_>>>()?;
                Ok(CommitOrAbort::<_, ()>::Commit(Databases(dbs)))
            })
            .map_err(map_err)?;
        let Some(dbs) = created.commit() else {
            return Err(Error::other("creating the LMDB databases was aborted"));
        };
        Ok(Self {
            inner: Arc::new(Inner {
                env,
                dbs,
                cfs,
                gate: Arc::new(GrowGate::default()),
                options,
                poisoned: AtomicBool::new(false),
                fail_next_sync: AtomicBool::new(false),
            }),
        })
    }

    /// Makes the next sync (a synced write or [`sync`](Engine::sync)) fail as a failed
    /// fsync would: it returns [`Error::Io`], applies nothing, and poisons the engine.
    ///
    /// A test hook at the boundary between this wrapper and LMDB, which offers no fault
    /// injection; it checks that the wrapper refuses every later write.
    pub fn fail_next_sync(&self) {
        self.inner.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// Current size of the memory map, in bytes.
    #[must_use]
    pub fn map_size_bytes(&self) -> usize {
        let _gate = self.inner.gate.enter();
        self.inner.env.info().map_size
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

    /// Applies `ops` in one write transaction, inside the gate. On failure, also returns
    /// the map size the transaction ran with.
    fn try_commit(&self, ops: &BatchOps) -> std::result::Result<(), (CommitError, usize)> {
        let _gate = self.inner.gate.enter();
        let map_size_bytes = self.inner.env.info().map_size;
        let apply = || -> heed::Result<heed::RwTxn<'_>> {
            let mut wtxn = self.inner.env.write_txn()?;
            for op in &ops.ops {
                match op {
                    BatchOp::Put { cf, key, value } => {
                        self.inner.dbs[*cf].put(&mut wtxn, key, value)?;
                    }
                    BatchOp::Delete { cf, key } => {
                        self.inner.dbs[*cf].delete(&mut wtxn, key)?;
                    }
                    BatchOp::DeleteRange {
                        cf,
                        range: Some(range),
                    } => {
                        let range = key_range::as_borrowed(range);
                        self.inner.dbs[*cf].delete_range(&mut wtxn, &range)?;
                    }
                    BatchOp::DeleteRange { range: None, .. } => {}
                }
            }
            Ok(wtxn)
        };
        // A failed operation drops (aborts) the transaction: nothing is applied.
        let wtxn = apply().map_err(|error| (CommitError::Apply(error), map_size_bytes))?;
        wtxn.commit()
            .map_err(|error| (CommitError::Commit(error), map_size_bytes))
    }

    /// Doubles the map (up to the maximum) once no transaction is open, unless another
    /// writer already grew it past `full_size_bytes`.
    #[allow(unsafe_code)]
    fn grow_map(&self, full_size_bytes: usize) -> Result<()> {
        let inner = &self.inner;
        let max_bytes = inner.options.max_map_size_bytes;
        let grown = inner.gate.grow(inner.options.grow_wait, || {
            let current_bytes = inner.env.info().map_size;
            if current_bytes > full_size_bytes {
                return Ok(());
            }
            if current_bytes >= max_bytes {
                return Err(Error::NoSpace(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("the LMDB map reached max_map_size_bytes ({max_bytes} bytes)"),
                )));
            }
            let target_bytes = current_bytes
                .saturating_mul(2)
                .div_ceil(MAP_SIZE_GRANULE_BYTES)
                .saturating_mul(MAP_SIZE_GRANULE_BYTES)
                .min(max_bytes);
            // SAFETY: LMDB allows `mdb_env_set_mapsize` on an open environment only while
            // no transaction of the process is active. This closure runs inside
            // `GrowGate::grow`, which runs it only while the gate counts no open guard and
            // keeps new guards out until it returns; every transaction of `env` (reads in
            // `get_with`/`scan`, writes in `try_commit`, snapshots) is opened after
            // entering the gate and closed before leaving it, and `env` is not reachable
            // from outside this module. No other process uses the environment (a
            // documented requirement of `HeedEngine`).
            unsafe { inner.env.resize(target_bytes) }.map_err(map_err)
        });
        grown.unwrap_or_else(|| {
            Err(Error::other(format!(
                "the LMDB map is full and cannot grow: {} read transactions or snapshots \
                 stayed open for {:?}; nothing was written",
                inner.gate.open_count(),
                inner.options.grow_wait
            )))
        })
    }

    fn sync_env(&self) -> Result<()> {
        self.inner.env.force_sync().map_err(|error| {
            self.inner.poisoned.store(true, Ordering::SeqCst);
            map_err(error)
        })
    }
}

/// Opens the LMDB environment.
#[allow(unsafe_code)]
fn open_env(path: &Path, options: &HeedOptions, max_dbs: u32) -> Result<Env<WithoutTls>> {
    let mut env_options = EnvOpenOptions::new().read_txn_without_tls();
    env_options
        .map_size(options.initial_map_size_bytes)
        .max_dbs(max_dbs)
        .max_readers(options.max_readers);
    // SAFETY: `flags` is unsafe because some flags (NO_SYNC, NO_LOCK, ...) break LMDB's
    // guarantees. NO_META_SYNC is not one of them: LMDB documents that it keeps atomicity,
    // consistency and isolation and only defers durability to the next sync, which this
    // engine performs for every synced write. `open` is unsafe because the memory map
    // must not be modified outside LMDB's locking: the engine only opens directories it
    // owns, heed refuses a second open of one path in this process, and other processes
    // must not open it (a documented requirement of `HeedEngine`).
    let env = unsafe {
        env_options.flags(EnvFlags::NO_META_SYNC);
        env_options.open(path)
    };
    env.map_err(map_err)
}

impl Peekable for HeedEngine {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let db = self.inner.database(cf)?;
        key_range::check_key(key)?;
        let _gate = self.inner.gate.enter();
        let txn = self.inner.env.read_txn().map_err(map_err)?;
        super::get_in(db, &txn, key, f)
    }
}

impl Iterable for HeedEngine {
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
        let db = self.inner.database(cf)?;
        let _gate = self.inner.gate.enter();
        let txn = self.inner.env.read_txn().map_err(map_err)?;
        super::scan_in(db, &txn, range.into(), direction, f)
    }
}

impl Engine for HeedEngine {
    type WriteBatch = HeedWriteBatch;
    type Snapshot = HeedSnapshot;

    fn cf_names(&self) -> Vec<&str> {
        self.inner.cfs.names()
    }

    fn write_batch(&self) -> HeedWriteBatch {
        HeedWriteBatch {
            ops: BatchOps::new(self.inner.cfs.clone()),
        }
    }

    fn write(&self, batch: &HeedWriteBatch, options: WriteOptions) -> Result<()> {
        self.inner.cfs.check_same(&batch.ops.cfs)?;
        self.begin_write(options.sync)?;
        if !batch.ops.ops.is_empty() {
            loop {
                match self.try_commit(&batch.ops) {
                    Ok(()) => break,
                    Err((
                        CommitError::Apply(heed::Error::Mdb(MdbError::MapFull))
                        | CommitError::Commit(heed::Error::Mdb(MdbError::MapFull)),
                        map_size_bytes,
                    )) => self.grow_map(map_size_bytes)?,
                    Err((CommitError::Apply(error), _)) => return Err(map_err(error)),
                    Err((CommitError::Commit(error), _)) => {
                        let error = map_err(error);
                        if !matches!(error, Error::NoSpace(_)) {
                            // The commit failed part-way through its writes and syncs: the
                            // durability of the environment is unknown from here on. (A
                            // full disk fails before the meta page is written, which
                            // leaves the environment as it was.)
                            self.inner.poisoned.store(true, Ordering::SeqCst);
                        }
                        return Err(error);
                    }
                }
            }
        }
        if options.sync {
            self.sync_env()
        } else {
            Ok(())
        }
    }

    fn snapshot(&self) -> Result<HeedSnapshot> {
        let gate = self.inner.gate.enter_owned();
        let txn = self.inner.env.clone().static_read_txn().map_err(map_err)?;
        Ok(HeedSnapshot::new(txn, gate, Arc::clone(&self.inner)))
    }

    fn sync(&self) -> Result<()> {
        self.begin_write(true)?;
        self.sync_env()
    }
}
