//! [`SnapManager`]: the directory of staged snapshots, who holds them, and how many move
//! at once.
//!
//! Layout: one file per snapshot, `gen_{region}_{term}_{index}.snap` for snapshots this
//! store generated and `rcv_{…}.snap` for snapshots it received. A file is written as
//! `….{n}.tmp`, fsynced, then renamed, so a `.snap` file is always complete; leftover
//! `.tmp` files are deleted when the manager opens.
//!
//! Lifetime: a [`SnapRef`] (a send in flight, an apply reading the file) pins a file;
//! [`SnapManager::sweep`] deletes files that are neither pinned nor named by the store as
//! in use (a peer's cached snapshot, a peer applying one) on two sweeps in a row, so a
//! file received a moment before a sweep survives until its message is handled.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tracing::{debug, warn};

use super::chunk::{RecordOrder, StreamDecoder, StreamSummary};
use super::{SnapKey, SnapshotError};
use crate::config::Config;
use crate::keys::region_snapshot_ranges;
use crate::pb::raft_serverpb::SnapshotMeta;

/// Which side of a transfer a staged file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnapKind {
    /// Generated here, to be sent.
    Generated,
    /// Received here, to be applied.
    Received,
}

impl SnapKind {
    fn prefix(self) -> &'static str {
        match self {
            SnapKind::Generated => "gen",
            SnapKind::Received => "rcv",
        }
    }
}

/// A staged file the manager knows of.
#[derive(Debug, Default)]
struct Entry {
    /// Live [`SnapRef`]s; a pinned file is never deleted.
    refs: usize,
    /// Sweeps in a row that found the file unused.
    idle_sweeps: u32,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    chunk_bytes: usize,
    max_bytes: u64,
    max_in_flight: usize,
    sending: AtomicUsize,
    receiving: AtomicUsize,
    tmp_seq: AtomicU64,
    files: Mutex<BTreeMap<(SnapKind, SnapKey), Entry>>,
}

/// The staged snapshots of one store. Cheap to clone; clones share the directory and the
/// bookkeeping (the store, its region worker, its sender and its receiver each hold one).
#[derive(Debug, Clone)]
pub struct SnapManager {
    inner: Arc<Inner>,
}

/// Sweeps an unused file must survive before it is deleted.
const IDLE_SWEEPS_BEFORE_DELETE: u32 = 2;

impl SnapManager {
    /// Opens (creating it if needed) the snapshot directory `dir` with the limits of
    /// `cfg`: deletes unfinished `.tmp` files and registers the staged ones.
    ///
    /// # Errors
    /// When the directory cannot be created or listed.
    pub fn open(dir: impl Into<PathBuf>, cfg: &Config) -> Result<Self, SnapshotError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                debug!(file = name, "deleting an unfinished snapshot file");
                fs::remove_file(entry.path())?;
            } else if let Some(id) = parse_name(name) {
                files.insert(id, Entry::default());
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                // Validated to fit (≤ 64 MiB) by `Config::validate`.
                chunk_bytes: usize::try_from(cfg.snap_chunk_bytes).unwrap_or(1 << 20),
                max_bytes: cfg.snap_max_bytes,
                max_in_flight: cfg.max_concurrent_snapshots.max(1),
                sending: AtomicUsize::new(0),
                receiving: AtomicUsize::new(0),
                tmp_seq: AtomicU64::new(0),
                files: Mutex::new(files),
            }),
        })
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The frame payload size generation writes.
    #[must_use]
    pub fn chunk_bytes(&self) -> usize {
        self.inner.chunk_bytes
    }

    /// The path of a staged file.
    #[must_use]
    pub fn path(&self, kind: SnapKind, key: SnapKey) -> PathBuf {
        self.inner.dir.join(format!("{}_{key}.snap", kind.prefix()))
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<(SnapKind, SnapKey), Entry>> {
        // The map stays consistent whatever a panicking holder did: every update is one
        // insert, remove or counter change.
        self.inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the staged file exists.
    #[must_use]
    pub fn contains(&self, kind: SnapKind, key: SnapKey) -> bool {
        self.files().contains_key(&(kind, key)) && self.path(kind, key).is_file()
    }

    /// Every staged file, by kind and key.
    #[must_use]
    pub fn list(&self) -> Vec<(SnapKind, SnapKey)> {
        self.files().keys().copied().collect()
    }

    /// Pins a staged file against deletion while the returned reference lives; `None` if
    /// it is not staged.
    #[must_use]
    pub fn acquire(&self, kind: SnapKind, key: SnapKey) -> Option<SnapRef> {
        let mut files = self.files();
        let entry = files.get_mut(&(kind, key))?;
        entry.refs += 1;
        entry.idle_sweeps = 0;
        Some(SnapRef {
            mgr: self.clone(),
            kind,
            key,
        })
    }

    fn release(&self, kind: SnapKind, key: SnapKey) {
        if let Some(entry) = self.files().get_mut(&(kind, key)) {
            entry.refs = entry.refs.saturating_sub(1);
        }
    }

    /// Writes a staged file: `write` fills a temporary file, which is then fsynced and
    /// renamed into place (replacing an older copy of the same snapshot). On failure the
    /// temporary file is removed and nothing is staged.
    ///
    /// # Errors
    /// The error of `write`, or an I/O failure.
    pub fn stage<T, E: From<SnapshotError>>(
        &self,
        kind: SnapKind,
        key: SnapKey,
        write: impl FnOnce(&mut File) -> Result<T, E>,
    ) -> Result<T, E> {
        let seq = self.inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .inner
            .dir
            .join(format!("{}_{key}.{seq}.tmp", kind.prefix()));
        let result = File::create(&tmp)
            .map_err(|e| E::from(SnapshotError::Io(e)))
            .and_then(|mut file| {
                let value = write(&mut file)?;
                file.sync_all().map_err(|e| E::from(SnapshotError::Io(e)))?;
                Ok(value)
            })
            .and_then(|value| {
                fs::rename(&tmp, self.path(kind, key))
                    .map_err(|e| E::from(SnapshotError::Io(e)))?;
                // The rename itself must survive a crash.
                File::open(&self.inner.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| E::from(SnapshotError::Io(e)))?;
                Ok(value)
            });
        match result {
            Ok(value) => {
                self.files().entry((kind, key)).or_default().idle_sweeps = 0;
                Ok(value)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Receives the stream of the snapshot `meta` describes, pulling chunks from `next`
    /// until it returns `None`: every frame, record and total is verified while the bytes
    /// are staged, so a staged received file is always intact.
    ///
    /// # Errors
    /// [`SnapshotError::TooLarge`] when `meta` declares more than this store accepts; any
    /// stream error (then nothing is staged).
    pub fn receive(
        &self,
        meta: &SnapshotMeta,
        mut next: impl FnMut() -> Result<Option<Bytes>, SnapshotError>,
    ) -> Result<StreamSummary, SnapshotError> {
        if meta.size_bytes > self.inner.max_bytes {
            return Err(SnapshotError::TooLarge {
                size_bytes: meta.size_bytes,
                max_bytes: self.inner.max_bytes,
            });
        }
        let region = meta.region.clone().unwrap_or_default();
        let key = SnapKey::of(meta);
        self.stage(SnapKind::Received, key, |file| {
            let mut decoder = StreamDecoder::new(meta);
            let mut order = RecordOrder::new(region_snapshot_ranges(&region));
            let mut out = BufWriter::new(file);
            while let Some(chunk) = next()? {
                decoder.push(&chunk, &mut |r| order.check(&r))?;
                out.write_all(&chunk)?;
            }
            let summary = decoder.finish()?;
            summary.check_against(meta)?;
            out.flush()?;
            Ok(summary)
        })
    }

    /// Deletes a staged file unless it is pinned. Returns whether it is gone.
    pub fn delete(&self, kind: SnapKind, key: SnapKey) -> bool {
        let mut files = self.files();
        if files.get(&(kind, key)).is_some_and(|e| e.refs > 0) {
            return false;
        }
        files.remove(&(kind, key));
        drop(files);
        self.remove_file(kind, key)
    }

    fn remove_file(&self, kind: SnapKind, key: SnapKey) -> bool {
        match fs::remove_file(self.path(kind, key)) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => {
                warn!(%key, ?kind, "cannot delete a staged snapshot: {e}");
                false
            }
        }
    }

    /// One garbage-collection sweep: deletes every file that is neither pinned nor in
    /// `in_use` for the second sweep in a row. Returns how many were deleted.
    pub fn sweep(&self, in_use: &BTreeSet<(SnapKind, SnapKey)>) -> usize {
        let mut doomed = Vec::new();
        {
            let mut files = self.files();
            files.retain(|id, entry| {
                if entry.refs > 0 || in_use.contains(id) {
                    entry.idle_sweeps = 0;
                    return true;
                }
                entry.idle_sweeps += 1;
                if entry.idle_sweeps < IDLE_SWEEPS_BEFORE_DELETE {
                    return true;
                }
                doomed.push(*id);
                false
            });
        }
        for &(kind, key) in &doomed {
            debug!(%key, ?kind, "deleting an unused staged snapshot");
            self.remove_file(kind, key);
        }
        doomed.len()
    }

    /// A slot for one outgoing snapshot, if fewer than `max_concurrent_snapshots` are
    /// being sent.
    #[must_use]
    pub fn try_send_slot(&self) -> Option<SnapSlot> {
        SnapSlot::try_take(&self.inner, true)
    }

    /// A slot for one incoming snapshot, if fewer than `max_concurrent_snapshots` are
    /// being received.
    #[must_use]
    pub fn try_receive_slot(&self) -> Option<SnapSlot> {
        SnapSlot::try_take(&self.inner, false)
    }

    /// The limit of concurrent sends (and, separately, receives).
    #[must_use]
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight
    }
}

fn parse_name(name: &str) -> Option<(SnapKind, SnapKey)> {
    let stem = name.strip_suffix(".snap")?;
    let (prefix, rest) = stem.split_once('_')?;
    let kind = match prefix {
        "gen" => SnapKind::Generated,
        "rcv" => SnapKind::Received,
        _ => return None,
    };
    let mut parts = rest.split('_').map(str::parse::<u64>);
    let (Some(Ok(region_id)), Some(Ok(term)), Some(Ok(index)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some((
        kind,
        SnapKey {
            region_id,
            term,
            index,
        },
    ))
}

/// Pins a staged file (see [`SnapManager::acquire`]).
#[derive(Debug)]
pub struct SnapRef {
    mgr: SnapManager,
    kind: SnapKind,
    key: SnapKey,
}

impl SnapRef {
    /// The snapshot.
    #[must_use]
    pub fn key(&self) -> SnapKey {
        self.key
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.mgr.path(self.kind, self.key)
    }

    /// Opens the file for reading.
    ///
    /// # Errors
    /// [`SnapshotError::Missing`] when it was removed behind the manager's back; another
    /// I/O failure.
    pub fn open(&self) -> Result<File, SnapshotError> {
        File::open(self.path()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SnapshotError::Missing(self.key),
            _ => e.into(),
        })
    }

    /// The file's bytes in pieces of at most `piece_bytes`, read as they are pulled.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn pieces(&self, piece_bytes: usize) -> Result<Pieces, SnapshotError> {
        Ok(Pieces {
            file: self.open()?,
            piece_bytes: piece_bytes.max(1),
        })
    }
}

impl Drop for SnapRef {
    fn drop(&mut self) {
        self.mgr.release(self.kind, self.key);
    }
}

/// A staged file read piece by piece (see [`SnapRef::pieces`]).
#[derive(Debug)]
pub struct Pieces {
    file: File,
    piece_bytes: usize,
}

impl Iterator for Pieces {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<io::Result<Bytes>> {
        let mut buf = vec![0u8; self.piece_bytes];
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(e)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some(Ok(Bytes::from(buf)))
    }
}

/// One of the `max_concurrent_snapshots` slots for sending or receiving; freed on drop.
#[derive(Debug)]
pub struct SnapSlot {
    inner: Arc<Inner>,
    sending: bool,
}

impl SnapSlot {
    fn try_take(inner: &Arc<Inner>, sending: bool) -> Option<Self> {
        let counter = if sending {
            &inner.sending
        } else {
            &inner.receiving
        };
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.max_in_flight).then_some(n + 1)
            })
            .ok()?;
        Some(Self {
            inner: inner.clone(),
            sending,
        })
    }
}

impl Drop for SnapSlot {
    fn drop(&mut self) {
        let counter = if self.sending {
            &self.inner.sending
        } else {
            &self.inner.receiving
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Moves the staged data of the snapshot `meta` describes from the sender's manager to
/// the receiver's, through the receiver's verifying path: what a transport does, in one
/// thread (for deterministic clusters and simulators).
///
/// # Errors
/// [`SnapshotError::Missing`] when the sender has no such staged data; any receive error.
pub fn transfer(
    from: &SnapManager,
    to: &SnapManager,
    meta: &SnapshotMeta,
) -> Result<StreamSummary, SnapshotError> {
    let key = SnapKey::of(meta);
    let staged = from
        .acquire(SnapKind::Generated, key)
        .ok_or(SnapshotError::Missing(key))?;
    let _slot = to
        .try_receive_slot()
        .ok_or(SnapshotError::Busy(to.max_in_flight()))?;
    let mut pieces = staged.pieces(from.chunk_bytes())?;
    to.receive(meta, || pieces.next().transpose().map_err(Into::into))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::metapb::{Peer, Region};
    use crate::snapshot::chunk::ChunkWriter;

    fn manager(dir: &Path) -> SnapManager {
        let cfg = Config {
            max_concurrent_snapshots: 2,
            ..Config::default()
        };
        SnapManager::open(dir, &cfg).unwrap()
    }

    fn key(index: u64) -> SnapKey {
        SnapKey {
            region_id: 1,
            term: 2,
            index,
        }
    }

    /// Stages a generated snapshot of two keys at `index` and returns its descriptor.
    fn stage_generated(mgr: &SnapManager, index: u64) -> SnapshotMeta {
        let summary = mgr
            .stage::<_, SnapshotError>(SnapKind::Generated, key(index), |file| {
                let mut w = ChunkWriter::new(BufWriter::new(file), 16)?;
                w.put("default", b"za", b"1")?;
                w.put("default", b"zb", b"2")?;
                Ok(w.finish()?.1)
            })
            .unwrap();
        SnapshotMeta {
            region_id: 1,
            region: Some(Region {
                id: 1,
                peers: vec![Peer {
                    id: 1,
                    store_id: 1,
                    role: 0,
                }],
                ..Default::default()
            }),
            raft_meta: Some(raft_core::eraftpb::SnapshotMetadata {
                index,
                term: 2,
                conf_state: None,
            }),
            size_bytes: summary.size_bytes,
            checksum: summary.checksum,
            key_count: summary.key_count,
            frame_count: summary.frame_count,
            chunk_bytes: 16,
        }
    }

    #[test]
    fn transfer_verifies_and_stages_on_the_receiver() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (manager(a.path()), manager(b.path()));
        let meta = stage_generated(&from, 7);
        let summary = transfer(&from, &to, &meta).unwrap();
        assert_eq!(summary.key_count, 2);
        assert!(to.contains(SnapKind::Received, key(7)));
        assert_eq!(
            fs::read(to.path(SnapKind::Received, key(7))).unwrap(),
            fs::read(from.path(SnapKind::Generated, key(7))).unwrap()
        );
        // A descriptor that lies about the data stages nothing.
        let lying = SnapshotMeta {
            checksum: meta.checksum ^ 1,
            raft_meta: Some(raft_core::eraftpb::SnapshotMetadata {
                index: 8,
                term: 2,
                conf_state: None,
            }),
            ..meta.clone()
        };
        let _ = stage_generated(&from, 8);
        assert!(transfer(&from, &to, &lying).is_err());
        assert!(!to.contains(SnapKind::Received, key(8)));
        assert!(
            fs::read_dir(b.path()).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
            "no temporary file left behind"
        );
    }

    #[test]
    fn sweeps_delete_unused_files_on_the_second_pass_and_spare_pinned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        for index in [1, 2, 3] {
            stage_generated(&mgr, index);
        }
        let pinned = mgr.acquire(SnapKind::Generated, key(1)).unwrap();
        let in_use: BTreeSet<_> = [(SnapKind::Generated, key(2))].into();
        assert_eq!(mgr.sweep(&in_use), 0, "a first sweep only marks");
        assert_eq!(mgr.sweep(&in_use), 1);
        assert!(!mgr.contains(SnapKind::Generated, key(3)));
        assert!(mgr.contains(SnapKind::Generated, key(1)));
        assert!(!mgr.delete(SnapKind::Generated, key(1)), "pinned");
        drop(pinned);
        assert!(mgr.delete(SnapKind::Generated, key(1)));
        assert!(!mgr.path(SnapKind::Generated, key(1)).exists());
        // A reopened manager finds what is staged and drops unfinished files.
        fs::write(dir.path().join("rcv_1_2_9.0.tmp"), b"partial").unwrap();
        let reopened = manager(dir.path());
        assert_eq!(reopened.list(), vec![(SnapKind::Generated, key(2))]);
        assert!(!dir.path().join("rcv_1_2_9.0.tmp").exists());
    }

    #[test]
    fn slots_bound_concurrent_transfers() {
        let dir = tempfile::tempdir().unwrap();
        let mgr = manager(dir.path());
        let s1 = mgr.try_send_slot().unwrap();
        let _s2 = mgr.try_send_slot().unwrap();
        assert!(mgr.try_send_slot().is_none());
        assert!(mgr.try_receive_slot().is_some(), "counted separately");
        drop(s1);
        assert!(mgr.try_send_slot().is_some());
    }
}
