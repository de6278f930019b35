//! The engine of the log backend: recovery, appends, rotation and segment purging.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use super::format::{self, HEADER_BYTES, KIND_BATCH, KIND_CATALOG, Op, Ops};
use super::index::{self, Files, Index, Map};
use super::prefill::{self, Prefill};
use super::{LogSnapshot, LogWriteBatch};
use crate::column_families::ColumnFamilies;
use crate::{Direction, Engine, Error, Iterable, KeyRange, Peekable, Result, WriteOptions};

/// Suffix of segment file names; the stem is the segment id, zero-padded.
const SEGMENT_SUFFIX: &str = ".rlog";
/// The lock file that keeps a second process from opening the directory.
const LOCK_FILE: &str = "LOCK";
/// Largest record the purge writes when it moves live values forward.
const REWRITE_RECORD_BYTES: usize = 8 << 20;

/// Options of a [`LogEngine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment that has grown past this many bytes is sealed and a new one started
    /// before the next write. Purging works a segment at a time, so this is also the
    /// grain at which space comes back. Default: 64 MiB.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
        }
    }
}

/// An [`Engine`] that appends every write batch to a log file and keeps only an index of
/// keys in memory, for data written once and deleted in order, such as raft logs.
///
/// See the [module docs](crate::log) for the format, recovery and space reclamation.
///
/// # Examples
///
/// ```
/// use engines::{Engine, LogEngine, Peekable, WriteBatch, WriteOptions};
///
/// let dir = tempfile::tempdir()?;
/// let engine = LogEngine::open(dir.path(), &["raft"])?;
/// let mut batch = engine.write_batch();
/// batch.put("raft", b"log/1", b"entry")?;
/// engine.write(&batch, WriteOptions::synced())?;
/// drop(engine);
///
/// let engine = LogEngine::open(dir.path(), &["raft"])?;
/// assert_eq!(engine.get("raft", b"log/1")?, Some(b"entry".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LogEngine {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    cfs: ColumnFamilies,
    /// The catalog id of each opened column family, indexed like `cfs`.
    cf_ids: Arc<[u32]>,
    /// Held by every append, so records reach the file and the index in the same order.
    writer: Arc<Mutex<Writer>>,
    index: RwLock<Index>,
    /// Set when the file or the index may no longer match what was acknowledged.
    poisoned: AtomicBool,
    /// Set by [`LogEngine::fail_next_sync`].
    fail_next_sync: AtomicBool,
    /// Writes zeros ahead of the appends. Declared before `_lock`: dropping it joins the
    /// thread, which must not touch a segment once another open may own the directory.
    prefill: Prefill,
    /// Holds the directory's lock for as long as a handle lives.
    _lock: File,
}

/// The segment being appended to, and what the purge needs to know of the others.
pub(super) struct Writer {
    file: Arc<File>,
    pub(super) segment: u32,
    /// Where the next record goes. Invariant: the file holds whole records up to here.
    pub(super) end: u64,
    /// Up to where the active segment holds written blocks (records, then zeros of the
    /// prefill); at least `end` once the prefill has run.
    pub(super) filled: u64,
    /// Every column family name the directory holds, in catalog id order.
    catalog: Vec<String>,
    /// The length of every sealed segment, oldest first.
    sealed: BTreeMap<u32, u64>,
    /// [`LogOptions::segment_bytes`]: the length a segment is given when it starts (see
    /// [`preallocate`]), and past which it is sealed.
    pub(super) segment_bytes: u64,
}

impl fmt::Debug for LogEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEngine")
            .field("dir", &self.inner.dir)
            .field("cfs", &self.inner.cfs.names())
            .finish_non_exhaustive()
    }
}

impl LogEngine {
    /// Opens (creating if needed) the log in directory `path` with default options.
    ///
    /// # Errors
    ///
    /// See [`open_with`](LogEngine::open_with).
    pub fn open(path: &Path, cfs: &[&str]) -> Result<Self> {
        Self::open_with(path, cfs, LogOptions::default())
    }

    /// Opens (creating if needed) the log in directory `path`, replaying its segments to
    /// rebuild the index. Column families missing on disk are created; those on disk but
    /// not named are kept untouched.
    ///
    /// A damaged tail of the newest segment (a record torn by a crash) is cut off: no
    /// acknowledged synced write can lie after it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for invalid column family names or a zero segment size;
    /// [`Error::Io`] if `path` cannot be used as a directory or another process has it
    /// open; [`Error::Corruption`] if a sealed segment or a checksummed record is damaged.
    pub fn open_with(path: &Path, cfs: &[&str], options: LogOptions) -> Result<Self> {
        let cfs = ColumnFamilies::new(cfs)?;
        if options.segment_bytes == 0 {
            return Err(Error::InvalidArgument(
                "log segment size must be positive".into(),
            ));
        }
        if path.exists() && !path.is_dir() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} exists and is not a directory", path.display()),
            )));
        }
        fs::create_dir_all(path)?;
        let lock = lock_dir(path)?;

        let mut index = Index::default();
        let mut catalog = Vec::new();
        let mut sealed = BTreeMap::new();
        let segments = list_segments(path)?;
        let mut active = None;
        for (position, &id) in segments.iter().enumerate() {
            let file = open_segment(&segment_path(path, id), false)?;
            let last = position + 1 == segments.len();
            let end = replay(&file, id, last, &mut catalog, &mut index)
                .map_err(|e| in_segment(e, &segment_path(path, id)))?;
            let file = Arc::new(file);
            index.add_file(id, Arc::clone(&file));
            if last {
                // Cut a torn tail so that new records follow the last whole one, and
                // allocate the rest of the segment again.
                preallocate(&file, end, options.segment_bytes)?;
                active = Some((id, file, end));
            } else {
                sealed.insert(id, end);
            }
        }

        let mut cf_ids = Vec::with_capacity(cfs.len());
        for name in cfs.names() {
            let id = match catalog.iter().position(|known| known == name) {
                Some(id) => id,
                None => {
                    catalog.push(name.to_owned());
                    catalog.len() - 1
                }
            };
            cf_ids
                .push(u32::try_from(id).map_err(|_| {
                    Error::InvalidArgument("more than 2^32 column families".into())
                })?);
        }
        index.ensure_cfs(catalog.len());

        let (segment, file, end) = match active {
            Some(active) => active,
            None => {
                let file = open_segment(&segment_path(path, 1), true)?;
                preallocate(&file, 0, options.segment_bytes)?;
                let file = Arc::new(file);
                sync_dir(path)?;
                index.add_file(1, Arc::clone(&file));
                (1, file, 0)
            }
        };
        let mut writer = Writer {
            file,
            segment,
            end,
            filled: end,
            catalog,
            sealed,
            segment_bytes: options.segment_bytes,
        };
        // Record the catalog (it may have grown) where the next records can rely on it;
        // `sync_all`, as the segment's length may have changed.
        writer.append_catalog()?;
        writer.file.sync_all()?;
        let writer = Arc::new(Mutex::new(writer));
        let prefill = Prefill::start(path.to_path_buf(), Arc::clone(&writer))?;

        let engine = Self {
            inner: Arc::new(Inner {
                dir: path.to_path_buf(),
                cfs,
                cf_ids: cf_ids.into(),
                writer,
                index: RwLock::new(index),
                poisoned: AtomicBool::new(false),
                fail_next_sync: AtomicBool::new(false),
                prefill,
                _lock: lock,
            }),
        };
        {
            let mut writer = engine.inner.writer.lock();
            engine.purge_or_warn(&mut writer)?;
            engine.prefill_if_low(&writer);
        }
        Ok(engine)
    }

    /// Makes the next sync (a synced write or [`sync`](Engine::sync)) fail as a failed
    /// fsync would: it returns [`Error::Io`], applies nothing, and poisons the engine.
    pub fn fail_next_sync(&self) {
        self.inner.fail_next_sync.store(true, Ordering::SeqCst);
    }

    /// The number of segment files, sealed and active: a measure of the space the log
    /// holds on to.
    #[must_use]
    pub fn segment_count(&self) -> usize {
        self.inner.writer.lock().sealed.len() + 1
    }

    /// Waits until the prefill thread has served every request made so far.
    #[cfg(test)]
    pub(super) fn wait_for_prefill(&self) {
        self.inner.prefill.wait_idle();
    }

    /// Wakes the prefill if the zeros ahead of the end run short.
    fn prefill_if_low(&self, writer: &Writer) {
        if writer.filled < writer.segment_bytes
            && writer.filled < writer.end + prefill::LOW_WATER_BYTES
        {
            self.inner.prefill.request();
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.inner.poisoned.load(Ordering::SeqCst) {
            Err(Error::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison(&self) {
        self.inner.poisoned.store(true, Ordering::SeqCst);
    }

    /// Fdatasyncs the active segment. A failure poisons the engine: what reached the disk
    /// is unknown, so every later write is refused until reopen.
    fn sync_data(&self, writer: &Writer) -> Result<()> {
        writer.file.sync_data().inspect_err(|_| self.poison())?;
        Ok(())
    }

    /// The map of column family `cf` and the files it points into, shared (O(1)) so the
    /// caller reads after the lock is released: a read from disk must not hold up the
    /// appends, which take the lock to index what they wrote, and a scan's callback may
    /// write to the engine.
    fn view(&self, cf: &str) -> Result<(Map, Arc<Files>)> {
        let cf = self.inner.cf_ids[self.inner.cfs.index(cf)?] as usize;
        let index = self.inner.index.read();
        Ok((index.maps[cf].clone(), Arc::clone(&index.files)))
    }

    /// Consumes an injected sync failure, poisoning the engine.
    fn injected_sync_failure(&self) -> Result<()> {
        if self.inner.fail_next_sync.swap(false, Ordering::SeqCst) {
            self.poison();
            return Err(Error::Io(io::Error::other("injected fsync failure")));
        }
        Ok(())
    }

    /// Appends a batch body and applies it to the index; on failure nothing is applied
    /// and the file is cut back to its last whole record (or the engine is poisoned).
    fn append_batch(&self, writer: &mut Writer, body: &[u8], sync: bool) -> Result<()> {
        let start = match writer.append(KIND_BATCH, body) {
            Ok(start) => start,
            Err(e) => {
                if writer.cut_back().is_err() {
                    self.poison();
                }
                return Err(e.into());
            }
        };
        if sync {
            self.sync_data(writer)?;
        }
        let body_offset = start + (HEADER_BYTES + 1) as u64;
        if let Err(e) = self
            .inner
            .index
            .write()
            .apply(body, writer.segment, body_offset)
        {
            // Our own batches always decode; an index half-updated is not to be trusted.
            self.poison();
            return Err(e);
        }
        self.prefill_if_low(writer);
        Ok(())
    }

    /// Seals the active segment and starts the next one.
    fn rotate(&self, writer: &mut Writer) -> Result<()> {
        // Later syncs only cover the new segment, so the sealed one must be whole on disk,
        // and end with its last record: replay reads a sealed segment to its end.
        writer
            .file
            .set_len(writer.end)
            .and_then(|()| writer.file.sync_all())
            .inspect_err(|_| self.poison())?;
        let id = writer.segment + 1;
        let path = segment_path(&self.inner.dir, id);
        let started = open_segment(&path, true).and_then(|file| {
            preallocate(&file, 0, writer.segment_bytes)?;
            let end = append_record(&file, KIND_CATALOG, &format::catalog(&writer.catalog))?;
            file.sync_all()?;
            sync_dir(&self.inner.dir)?;
            Ok((file, end))
        });
        let (file, end) = match started {
            Ok(started) => started,
            Err(e) => {
                // Keep appending to the old segment; a stray new file only holds a catalog.
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let file = Arc::new(file);
        self.inner.index.write().add_file(id, Arc::clone(&file));
        writer.sealed.insert(writer.segment, writer.end);
        writer.file = file;
        writer.segment = id;
        writer.end = end;
        writer.filled = end;
        Ok(())
    }

    /// Deletes the oldest sealed segments while that is worth it: a segment with no live
    /// value goes at once; one that is mostly dead, or any while the log holds far more
    /// than its live data, first has its live values appended anew.
    ///
    /// Only the oldest segment is ever deleted, so a deletion recorded in a deleted
    /// segment can only have hidden values in segments already gone: replay never brings
    /// a deleted key back.
    fn purge(&self, writer: &mut Writer) -> Result<()> {
        let segment_bytes = writer.segment_bytes;
        while let Some((&oldest, &size)) = writer.sealed.first_key_value() {
            let (live, total_live) = {
                let index = self.inner.index.read();
                (index.live_bytes(oldest), index.total_live_bytes())
            };
            let total_size = writer.sealed.values().sum::<u64>() + writer.end;
            let mostly_dead = live.saturating_mul(2) < size;
            let bloated = total_size > total_live.saturating_mul(4) + segment_bytes * 4;
            if live > 0 && !mostly_dead && !bloated {
                break;
            }
            if live > 0 {
                self.rewrite(writer, oldest)?;
            }
            self.inner.index.write().remove_file(oldest);
            writer.sealed.remove(&oldest);
            fs::remove_file(segment_path(&self.inner.dir, oldest))?;
            sync_dir(&self.inner.dir)?;
        }
        Ok(())
    }

    /// [`purge`](Self::purge) as housekeeping: a failure is logged and the next rotation (or
    /// open) tries again; only a failure that poisoned the engine is returned.
    fn purge_or_warn(&self, writer: &mut Writer) -> Result<()> {
        if let Err(e) = self.purge(writer) {
            tracing::warn!(dir = %self.inner.dir.display(), "log segment purge failed: {e}");
            self.check_writable()?;
        }
        Ok(())
    }

    /// Appends the live values of `segment` to the active one, durably.
    fn rewrite(&self, writer: &mut Writer, segment: u32) -> Result<()> {
        let (live, files) = {
            let index = self.inner.index.read();
            (index.live_in(segment), Arc::clone(&index.files))
        };
        let mut body = Vec::new();
        let mut value = Vec::new();
        for (cf, key, location) in live {
            index::read_value(&files, location, &mut value)?;
            format::put_op(&mut body, cf, &key, &value);
            if body.len() >= REWRITE_RECORD_BYTES {
                self.append_batch(writer, &body, false)?;
                body.clear();
            }
        }
        if !body.is_empty() {
            self.append_batch(writer, &body, false)?;
        }
        self.sync_data(writer)
    }

    /// The batch body re-encoded with this engine's catalog ids, if `batch` was made by
    /// another engine whose catalog numbers the same column families differently.
    fn translated(&self, batch: &LogWriteBatch) -> Result<Option<Vec<u8>>> {
        if batch.cf_ids == self.inner.cf_ids {
            return Ok(None);
        }
        let ours = |cf: u32| -> Result<u32> {
            let position = batch
                .cf_ids
                .iter()
                .position(|id| *id == cf)
                .ok_or_else(|| {
                    Error::InvalidArgument("batch names an unknown column family".into())
                })?;
            Ok(self.inner.cf_ids[position])
        };
        let mut body = Vec::with_capacity(batch.body.len());
        for op in Ops::new(&batch.body) {
            match op? {
                Op::Put {
                    cf,
                    key,
                    value_at,
                    value_len,
                } => format::put_op(
                    &mut body,
                    ours(cf)?,
                    key,
                    &batch.body[value_at..value_at + value_len],
                ),
                Op::Delete { cf, key } => format::delete_op(&mut body, ours(cf)?, key),
                Op::DeleteRange { cf, range } => {
                    format::delete_range_op(&mut body, ours(cf)?, range);
                }
            }
        }
        Ok(Some(body))
    }
}

impl Writer {
    /// Appends one record at `end` and returns where it starts.
    fn append(&mut self, kind: u8, body: &[u8]) -> io::Result<u64> {
        let start = self.end;
        self.end += append_record(&self.file, kind, body)?;
        Ok(start)
    }

    /// Drops whatever a failed append left after the last whole record.
    fn cut_back(&mut self) -> io::Result<()> {
        // The cut drops the prefilled zeros too.
        self.filled = self.end;
        preallocate(&self.file, self.end, self.segment_bytes)
    }

    fn append_catalog(&mut self) -> io::Result<()> {
        let body = format::catalog(&self.catalog);
        self.append(KIND_CATALOG, &body).map(|_| ())
    }
}

/// Writes one record at `file`'s position and returns its length in bytes.
fn append_record(file: &File, kind: u8, body: &[u8]) -> io::Result<u64> {
    let len = u32::try_from(body.len() + 1)
        .ok()
        .filter(|len| *len < u32::MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
    let head = format::header(len, format::checksum(kind, body));
    let kind = [kind];
    let mut slices = [IoSlice::new(&head), IoSlice::new(&kind), IoSlice::new(body)];
    let mut slices = &mut slices[..];
    let mut file = file;
    while !slices.is_empty() {
        let written = file.write_vectored(slices)?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(HEADER_BYTES as u64 + u64::from(len))
}

impl Peekable for LogEngine {
    fn get_with<R>(&self, cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let (map, files) = self.view(cf)?;
        index::get_in(&map, &files, key, f)
    }
}

impl Iterable for LogEngine {
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
        let (map, files) = self.view(cf)?;
        index::scan_in(&map, &files, range.into(), direction, f)
    }
}

impl Engine for LogEngine {
    type WriteBatch = LogWriteBatch;
    type Snapshot = LogSnapshot;

    fn cf_names(&self) -> Vec<&str> {
        self.inner.cfs.names()
    }

    fn write_batch(&self) -> LogWriteBatch {
        LogWriteBatch::new(self.inner.cfs.clone(), Arc::clone(&self.inner.cf_ids))
    }

    fn write(&self, batch: &LogWriteBatch, options: WriteOptions) -> Result<()> {
        self.inner.cfs.check_same(&batch.cfs)?;
        let translated = self.translated(batch)?;
        let body = translated.as_deref().unwrap_or(&batch.body);
        let mut writer = self.inner.writer.lock();
        self.check_writable()?;
        if options.sync {
            self.injected_sync_failure()?;
        }
        if body.is_empty() {
            return if options.sync {
                self.sync_data(&writer)
            } else {
                Ok(())
            };
        }
        if writer.end >= writer.segment_bytes {
            self.rotate(&mut writer)?;
            self.purge_or_warn(&mut writer)?;
        }
        self.append_batch(&mut writer, body, options.sync)
    }

    fn snapshot(&self) -> Result<LogSnapshot> {
        let index = self.inner.index.read();
        Ok(LogSnapshot {
            cfs: self.inner.cfs.clone(),
            maps: self
                .inner
                .cf_ids
                .iter()
                .map(|id| index.maps[*id as usize].clone())
                .collect(),
            files: Arc::clone(&index.files),
        })
    }

    fn sync(&self) -> Result<()> {
        let writer = self.inner.writer.lock();
        self.check_writable()?;
        self.injected_sync_failure()?;
        self.sync_data(&writer)
    }
}

/// Replays the records of one segment into `index` and returns where its last whole
/// record ends. A damaged record ends the newest segment (a torn append); anywhere else
/// it is corruption.
///
/// In the newest segment, whole records *after* a damaged one are cut as well, and that
/// loses nothing acknowledged: an fdatasync makes every earlier write of the file durable
/// with it, so a record synced after the damaged one would have kept it whole. A later
/// record can still be whole after a crash because the pages of unsynced writes reach
/// the disk in any order; neither of them was acknowledged. (Only media corruption of a
/// synced record can look the same, and no file-level check tells the two apart.)
fn replay(
    file: &File,
    segment: u32,
    last: bool,
    catalog: &mut Vec<String>,
    index: &mut Index,
) -> Result<u64> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = 0u64;
    let mut record = Vec::new();
    loop {
        if offset == file_len {
            return Ok(offset);
        }
        let mut head = [0; HEADER_BYTES];
        let whole =
            offset + HEADER_BYTES as u64 <= file_len && reader.read_exact(&mut head).is_ok();
        let (len, crc) = format::parse_header(head);
        let fits = whole && len > 0 && offset + (HEADER_BYTES as u64) + u64::from(len) <= file_len;
        let read = fits && {
            record.resize(len as usize, 0);
            reader.read_exact(&mut record).is_ok()
        };
        if !read || format::checksum(record[0], &record[1..]) != crc {
            if last {
                return Ok(offset);
            }
            return Err(Error::Corruption(format!(
                "damaged record at offset {offset} of a sealed segment"
            )));
        }
        let body = &record[1..];
        match record[0] {
            KIND_CATALOG => {
                let names = format::parse_catalog(body)?;
                if !names.starts_with(catalog) {
                    return Err(Error::Corruption(format!(
                        "catalog at offset {offset} renumbers column families: {names:?} after {catalog:?}"
                    )));
                }
                *catalog = names;
                index.ensure_cfs(catalog.len());
            }
            KIND_BATCH => {
                index.apply(body, segment, offset + (HEADER_BYTES + 1) as u64)?;
            }
            other => {
                return Err(Error::Corruption(format!(
                    "record of unknown kind {other} at offset {offset}"
                )));
            }
        }
        offset += HEADER_BYTES as u64 + u64::from(len);
    }
}

fn in_segment(error: Error, path: &Path) -> Error {
    match error {
        Error::Corruption(what) => Error::Corruption(format!("{}: {what}", path.display())),
        other => other,
    }
}

pub(super) fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}{SEGMENT_SUFFIX}"))
}

/// The ids of the segment files in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        let id = stem.parse::<u32>().map_err(|_| {
            Error::Corruption(format!(
                "unexpected segment file name {}",
                name.to_string_lossy()
            ))
        })?;
        ids.push(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Opens a segment for reading and writing, positioned at its start; `create` makes a
/// new, empty one.
fn open_segment(path: &Path, create: bool) -> Result<File> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)?)
}

fn lock_dir(dir: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Io(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is in use by another open log engine", dir.display()),
        ))),
        Err(fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Cuts `file` at `end`, then extends it with zeros to `size` (if larger) and positions it
/// at `end`.
///
/// Appends inside the file's length leave its size alone, so the `fdatasync` of a synced
/// write has no size change to commit, only the data (fjall's journal does the same).
/// Replay reads the zeros as the end of the records: no record has length zero.
fn preallocate(file: &File, end: u64, size: u64) -> io::Result<()> {
    file.set_len(end)?;
    if size > end {
        file.set_len(size)?;
    }
    let mut file = file;
    file.seek(SeekFrom::Start(end))?;
    Ok(())
}

/// Makes file creations and deletions in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}
