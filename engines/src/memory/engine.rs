//! The engine of the memory backend.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use parking_lot::RwLock;

use super::{Map, MemorySnapshot, MemoryWriteBatch};
use crate::batch_ops::{BatchOp, BatchOps};
use crate::column_families::ColumnFamilies;
use crate::key_range;
use crate::{Direction, Engine, Error, Iterable, KeyRange, Peekable, Result, WriteOptions};

/// An [`Engine`] holding one `BTreeMap` per column family in memory.
///
/// Clones share the same data. The engine remembers which writes are durable: a write with
/// [`WriteOptions::sync`] `false` stays unsynced until a later synced write or
/// [`sync`](Engine::sync), and [`simulate_crash`](MemoryEngine::simulate_crash) drops every
/// unsynced write, as a power loss would drop what a disk engine had not fsynced.
///
/// # Examples
///
/// ```
/// use engines::{Engine, MemoryEngine, Peekable, WriteBatch, WriteOptions};
///
/// let engine = MemoryEngine::new(&["default"])?;
/// let mut batch = engine.write_batch();
/// batch.put("default", b"synced", b"1")?;
/// engine.write(&batch, WriteOptions::synced())?;
/// batch.clear();
/// batch.put("default", b"unsynced", b"2")?;
/// engine.write(&batch, WriteOptions::unsynced())?;
///
/// engine.simulate_crash();
/// let engine = engine.reopen();
/// assert_eq!(engine.get("default", b"synced")?, Some(b"1".to_vec()));
/// assert_eq!(engine.get("default", b"unsynced")?, None);
/// # Ok::<(), engines::Error>(())
/// ```
#[derive(Clone)]
pub struct MemoryEngine {
    shared: Arc<Shared>,
    /// The crash generation this handle belongs to; it is dead once the shared generation
    /// has moved past it.
    generation: u64,
}

struct Shared {
    cfs: ColumnFamilies,
    state: RwLock<State>,
}

/// Everything behind the engine's lock.
struct State {
    /// One map per column family, indexed like `cfs`; copied on write while a snapshot or
    /// a scan shares it.
    maps: Vec<Arc<Map>>,
    /// For every (column family, key) written since the last sync, its durable value
    /// (`None`: absent). Invariant: empty right after a successful sync.
    undo: HashMap<(usize, Vec<u8>), Option<Vec<u8>>>,
    /// Bumped by every simulated crash and reopen.
    generation: u64,
    /// Set by a failed sync; cleared by a simulated crash or a reopen (a restart).
    poisoned: bool,
    /// Set by [`MemoryEngine::fail_next_sync`].
    fail_next_sync: bool,
}

impl fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEngine")
            .field("cfs", &self.shared.cfs.names())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl MemoryEngine {
    /// Creates an empty engine with the column families `cfs`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `cfs` is empty, has duplicates, or a name is not 1..=255
    /// bytes of ASCII letters, digits, `_`, `-` or `.`.
    pub fn new(cfs: &[&str]) -> Result<Self> {
        let cfs = ColumnFamilies::new(cfs)?;
        let state = State {
            maps: (0..cfs.len()).map(|_| Arc::new(Map::new())).collect(),
            undo: HashMap::new(),
            generation: 0,
            poisoned: false,
            fail_next_sync: false,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                cfs,
                state: RwLock::new(state),
            }),
            generation: 0,
        })
    }

    /// Simulates a power loss: every write not yet synced is dropped, and every existing
    /// handle of this engine (this one and its clones) becomes dead: its operations return
    /// [`Error::Other`]. Snapshots taken before stay readable. Use
    /// [`reopen`](MemoryEngine::reopen) to get a live handle, as a restarted process would.
    ///
    /// Atomic with respect to writes: a concurrent batch is either entirely before the
    /// crash or fails.
    pub fn simulate_crash(&self) {
        let mut state = self.shared.state.write();
        for ((cf, key), durable) in std::mem::take(&mut state.undo) {
            let map = Arc::make_mut(&mut state.maps[cf]);
            match durable {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        state.generation += 1;
        state.poisoned = false;
        state.fail_next_sync = false;
    }

    /// Returns a live handle on the same data, as reopening the engine after a restart
    /// would: every other handle of the engine becomes dead (its operations return
    /// [`Error::Other`]), and the new handle is not poisoned. Unsynced writes are kept
    /// unless a crash was simulated before.
    #[must_use]
    pub fn reopen(&self) -> Self {
        let mut state = self.shared.state.write();
        state.generation += 1;
        state.poisoned = false;
        state.fail_next_sync = false;
        Self {
            shared: Arc::clone(&self.shared),
            generation: state.generation,
        }
    }

    /// Makes the next sync (a synced write or [`sync`](Engine::sync)) fail as a failed
    /// fsync would: it returns [`Error::Io`], applies nothing, and poisons the engine so
    /// that every later write and sync returns [`Error::Poisoned`].
    pub fn fail_next_sync(&self) {
        self.shared.state.write().fail_next_sync = true;
    }

    /// `true` if two handles share the same data.
    #[must_use]
    pub fn same_engine(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    fn check_alive(&self, state: &State) -> Result<()> {
        if state.generation == self.generation {
            Ok(())
        } else {
            Err(Error::other(
                "memory engine handle is dead after simulate_crash; reopen the engine",
            ))
        }
    }

    /// Checks poisoning and the injected fsync failure before a sync.
    fn begin_sync(state: &mut State) -> Result<()> {
        if state.poisoned {
            return Err(Error::Poisoned);
        }
        if state.fail_next_sync {
            state.fail_next_sync = false;
            state.poisoned = true;
            return Err(Error::Io(io::Error::other("injected fsync failure")));
        }
        Ok(())
    }

    /// Applies `ops` in order; records durable values for a later crash unless `synced`.
    fn apply(state: &mut State, ops: &BatchOps, synced: bool) {
        let State { maps, undo, .. } = state;
        for op in &ops.ops {
            match op {
                BatchOp::Put { cf, key, value } => {
                    let old = Arc::make_mut(&mut maps[*cf]).insert(key.clone(), value.clone());
                    if !synced {
                        undo.entry((*cf, key.clone())).or_insert(old);
                    }
                }
                BatchOp::Delete { cf, key } => {
                    let old = Arc::make_mut(&mut maps[*cf]).remove(key);
                    if !synced {
                        undo.entry((*cf, key.clone())).or_insert(old);
                    }
                }
                BatchOp::DeleteRange {
                    cf,
                    range: Some(range),
                } => {
                    let map = Arc::make_mut(&mut maps[*cf]);
                    let keys: Vec<Vec<u8>> = map
                        .range::<[u8], _>(key_range::as_borrowed(range))
                        .map(|(key, _)| key.clone())
                        .collect();
                    for key in keys {
                        let old = map.remove(&key);
                        if !synced {
                            undo.entry((*cf, key)).or_insert(old);
                        }
                    }
                }
                BatchOp::DeleteRange { range: None, .. } => {}
            }
        }
        if synced {
            undo.clear();
        }
    }
}

impl Peekable for MemoryEngine {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let state = self.shared.state.read();
        self.check_alive(&state)?;
        super::get_in(&self.shared.cfs, &state.maps, cf, key, f)
    }
}

impl Iterable for MemoryEngine {
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
        let cf = self.shared.cfs.index(cf)?;
        // Share the map and release the lock, so `f` may write to the engine.
        let map = {
            let state = self.shared.state.read();
            self.check_alive(&state)?;
            Arc::clone(&state.maps[cf])
        };
        super::scan_in(&map, range.into(), direction, f);
        Ok(())
    }
}

impl Engine for MemoryEngine {
    type WriteBatch = MemoryWriteBatch;
    type Snapshot = MemorySnapshot;

    fn cf_names(&self) -> Vec<&str> {
        self.shared.cfs.names()
    }

    fn write_batch(&self) -> MemoryWriteBatch {
        MemoryWriteBatch {
            ops: BatchOps::new(self.shared.cfs.clone()),
        }
    }

    fn write(&self, batch: &MemoryWriteBatch, options: WriteOptions) -> Result<()> {
        self.shared.cfs.check_same(&batch.ops.cfs)?;
        let mut state = self.shared.state.write();
        self.check_alive(&state)?;
        if state.poisoned {
            return Err(Error::Poisoned);
        }
        if options.sync {
            Self::begin_sync(&mut state)?;
        }
        Self::apply(&mut state, &batch.ops, options.sync);
        Ok(())
    }

    fn snapshot(&self) -> Result<MemorySnapshot> {
        let state = self.shared.state.read();
        self.check_alive(&state)?;
        Ok(MemorySnapshot {
            cfs: self.shared.cfs.clone(),
            maps: state.maps.clone(),
        })
    }

    fn sync(&self) -> Result<()> {
        let mut state = self.shared.state.write();
        self.check_alive(&state)?;
        Self::begin_sync(&mut state)?;
        state.undo.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WriteBatch;

    fn put(engine: &MemoryEngine, key: &[u8], sync: bool) {
        let mut batch = engine.write_batch();
        batch.put("default", key, b"v").unwrap();
        engine.write(&batch, WriteOptions { sync }).unwrap();
    }

    #[test]
    fn crash_drops_only_unsynced_writes_and_kills_old_handles() {
        let engine = MemoryEngine::new(&["default"]).unwrap();
        put(&engine, b"a", true);
        put(&engine, b"b", false);
        put(&engine, b"c", false);
        engine.sync().unwrap();
        put(&engine, b"d", false);
        let mut batch = engine.write_batch();
        batch.delete("default", b"a").unwrap();
        engine.write(&batch, WriteOptions::unsynced()).unwrap();

        engine.simulate_crash();
        assert!(matches!(engine.get("default", b"a"), Err(Error::Other(_))));
        let engine = engine.reopen();
        for (key, present) in [(b"a", true), (b"b", true), (b"c", true), (b"d", false)] {
            assert_eq!(
                engine.get("default", key).unwrap().is_some(),
                present,
                "{key:?}"
            );
        }
    }

    #[test]
    fn failed_sync_poisons_until_restart() {
        let engine = MemoryEngine::new(&["default"]).unwrap();
        put(&engine, b"a", false);
        engine.fail_next_sync();
        assert!(matches!(engine.sync(), Err(Error::Io(_))));
        let mut batch = engine.write_batch();
        batch.put("default", b"b", b"v").unwrap();
        assert!(matches!(
            engine.write(&batch, WriteOptions::unsynced()),
            Err(Error::Poisoned)
        ));
        assert!(matches!(engine.sync(), Err(Error::Poisoned)));
        // Reads still work; the unsynced write is visible until the crash drops it.
        assert!(engine.get("default", b"a").unwrap().is_some());
        engine.simulate_crash();
        let engine = engine.reopen();
        assert!(engine.get("default", b"a").unwrap().is_none());
        engine.write(&batch, WriteOptions::synced()).unwrap();
    }
}
