//! Benchmarks of every backend in one run, plus the same workloads through fjall's and
//! heed's own APIs, to measure the overhead of the wrappers.
//!
//! Run with `cargo bench -p engines --all-features --bench engines`. Criterion reports time
//! per iteration; every iteration is one operation of the workload (one batch, one read,
//! one scan), so "1M random reads" is criterion's iteration count over a 1M-key table. At
//! the end a table of mean times, of log/fjall ratios and of wrapper/raw ratios is printed
//! (markdown, as copied into `BENCHMARKS.md`).
//!
//! Workloads: `synced_put` (individually synced one-put batches), `batch_1000` (batches of
//! 1,000 puts of 24-byte keys and 150-byte values, unsynced), `get_1t` / `get_2t` (random
//! point reads of a 1M-key table on 1 and 2 threads), `scan_10` (scans of 10 keys from a
//! random start), `raft_append_{1,16,256}` (synced batches of sequential u64-indexed
//! 256-byte log entries), `raft_gc` (range deletion of the oldest 1,024 log entries).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout, unsafe_code)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use engines::fjall::backend::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use engines::heed::backend as heed;
use engines::{
    Direction, Engine, FjallEngine, HeedEngine, LogEngine, MemoryEngine, WriteBatch, WriteOptions,
};
use heed::types::Bytes;
use heed::{EnvFlags, EnvOpenOptions, WithoutTls};

const TABLE_KEYS: u64 = 1_000_000;
const KEY_BYTES: usize = 24;
const VALUE_BYTES: usize = 150;
const LOG_VALUE_BYTES: usize = 256;
const GC_ENTRIES: u64 = 1024;
const CFS: [&str; 2] = ["default", "raft"];

/// splitmix64: a cheap, well-mixed function of a counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Key `i` of a table: 24 bytes, scattered (first 8 bytes mixed), `tag` at byte 8.
fn table_key(tag: u8, i: u64) -> [u8; KEY_BYTES] {
    let mut key = [b'.'; KEY_BYTES];
    key[..8].copy_from_slice(&mix(i).to_be_bytes());
    key[8] = tag;
    key[9..17].copy_from_slice(&i.to_be_bytes());
    key
}

fn log_key(index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&1u64.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// One implementation under test: a wrapper engine or a raw backend API.
trait Subject: Sync {
    /// Writes one batch of puts to `cf`.
    fn put_batch(&self, cf: usize, entries: &[(&[u8], &[u8])], sync: bool);
    /// Reads `key` from the default column family without copying; returns its length.
    fn get_len(&self, key: &[u8]) -> usize;
    /// Scans 10 entries from `start`; returns the bytes seen.
    fn scan_10(&self, start: &[u8]) -> usize;
    /// Deletes `[start, end)` from the raft column family, unsynced.
    fn delete_range(&self, start: &[u8], end: &[u8]);
}

struct Ours<E>(E);

impl<E: Engine> Subject for Ours<E> {
    fn put_batch(&self, cf: usize, entries: &[(&[u8], &[u8])], sync: bool) {
        let mut batch = self.0.write_batch();
        for (key, value) in entries {
            batch.put(CFS[cf], key, value).unwrap();
        }
        self.0.write(&batch, WriteOptions { sync }).unwrap();
    }

    fn get_len(&self, key: &[u8]) -> usize {
        self.0
            .get_with(CFS[0], key, <[u8]>::len)
            .unwrap()
            .unwrap_or(0)
    }

    fn scan_10(&self, start: &[u8]) -> usize {
        let (mut n, mut bytes) = (0, 0);
        self.0
            .scan(CFS[0], start.., Direction::Forward, |key, value| {
                bytes += key.len() + value.len();
                n += 1;
                n < 10
            })
            .unwrap();
        bytes
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) {
        self.0.delete_range(CFS[1], start..end).unwrap();
    }
}

struct RawFjall {
    db: Database,
    keyspaces: [Keyspace; 2],
}

impl RawFjall {
    fn open(path: &Path) -> Self {
        let db = Database::builder(path).open().unwrap();
        let keyspaces = CFS.map(|cf| db.keyspace(cf, KeyspaceCreateOptions::default).unwrap());
        Self { db, keyspaces }
    }
}

impl Subject for RawFjall {
    fn put_batch(&self, cf: usize, entries: &[(&[u8], &[u8])], sync: bool) {
        let mut batch = self.db.batch();
        if sync {
            batch = batch.durability(Some(PersistMode::SyncAll));
        }
        for (key, value) in entries {
            batch.insert(&self.keyspaces[cf], *key, *value);
        }
        batch.commit().unwrap();
    }

    fn get_len(&self, key: &[u8]) -> usize {
        self.keyspaces[0]
            .get(key)
            .unwrap()
            .map_or(0, |value| value.len())
    }

    fn scan_10(&self, start: &[u8]) -> usize {
        let mut bytes = 0;
        for guard in self.keyspaces[0].range(start..).take(10) {
            let (key, value) = guard.into_inner().unwrap();
            bytes += key.len() + value.len();
        }
        bytes
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) {
        let mut batch = self.db.batch();
        for guard in self.keyspaces[1].range(start..end) {
            batch.remove(&self.keyspaces[1], guard.key().unwrap());
        }
        batch.commit().unwrap();
    }
}

struct RawHeed {
    env: heed::Env<WithoutTls>,
    dbs: [heed::Database<'static, Bytes, Bytes>; 2],
}

impl RawHeed {
    fn open(path: &Path) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        // The raw baseline gets a map big enough for the whole run (no growth logic) and
        // the same flags as HeedEngine.
        options.map_size(8 << 30).max_dbs(2).max_readers(1024);
        // SAFETY: NO_META_SYNC keeps LMDB consistent; the directory is private to this run.
        let env = unsafe {
            options.flags(EnvFlags::NO_META_SYNC);
            options.open(path).unwrap()
        };
        let wtxn = env.write_txn().unwrap();
        let dbs = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let raw = opener.create_database::<Bytes, Bytes>(wtxn, Some(CFS[0]))?;
                let raft = opener.create_database::<Bytes, Bytes>(wtxn, Some(CFS[1]))?;
                Ok(heed::CommitOrAbort::<_, ()>::Commit([raw, raft]))
            })
            .unwrap()
            .unwrap_commit();
        Self { env, dbs }
    }
}

impl Subject for RawHeed {
    fn put_batch(&self, cf: usize, entries: &[(&[u8], &[u8])], sync: bool) {
        let mut wtxn = self.env.write_txn().unwrap();
        for (key, value) in entries {
            self.dbs[cf].put(&mut wtxn, key, value).unwrap();
        }
        wtxn.commit().unwrap();
        if sync {
            self.env.force_sync().unwrap();
        }
    }

    fn get_len(&self, key: &[u8]) -> usize {
        let rtxn = self.env.read_txn().unwrap();
        self.dbs[0].get(&rtxn, key).unwrap().map_or(0, <[u8]>::len)
    }

    fn scan_10(&self, start: &[u8]) -> usize {
        let rtxn = self.env.read_txn().unwrap();
        let range = (std::ops::Bound::Included(start), std::ops::Bound::Unbounded);
        let mut bytes = 0;
        for entry in self.dbs[0].range(&rtxn, &range).unwrap().take(10) {
            let (key, value) = entry.unwrap();
            bytes += key.len() + value.len();
        }
        bytes
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) {
        let mut wtxn = self.env.write_txn().unwrap();
        let range = (
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        );
        self.dbs[1].delete_range(&mut wtxn, &range).unwrap();
        wtxn.commit().unwrap();
    }
}

/// A subject with its name and its own counters.
struct Entry {
    name: &'static str,
    subject: Box<dyn Subject>,
    /// Next unique write key / log index.
    next_write: AtomicU64,
    next_log: AtomicU64,
    gc_from: AtomicU64,
}

/// Total time and operations per (workload, subject), measured inside the routines.
type Totals = BTreeMap<(String, &'static str), (Duration, u64)>;

/// The totals of this run.
static MEANS: Mutex<Totals> = Mutex::new(BTreeMap::new());

fn record(workload: &str, subject: &'static str, elapsed: Duration, iters: u64) {
    let mut means = MEANS.lock().unwrap();
    let entry = means.entry((workload.to_owned(), subject)).or_default();
    entry.0 += elapsed;
    entry.1 += iters;
}

fn fill(entry: &Entry) {
    let value = [7u8; VALUE_BYTES];
    let mut keys = Vec::with_capacity(10_000);
    for chunk in 0..TABLE_KEYS / 10_000 {
        keys.clear();
        keys.extend((chunk * 10_000..(chunk + 1) * 10_000).map(|i| table_key(b't', i)));
        let entries: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &value[..])).collect();
        entry.subject.put_batch(0, &entries, false);
    }
    entry.subject.put_batch(0, &[(b"~sync", b"")], true);
}

fn bench_group(
    c: &mut Criterion,
    workload: &str,
    elements: u64,
    measurement: Duration,
    entries: &[Entry],
    routine: impl Fn(&Entry, u64) -> Duration,
) {
    let mut group = c.benchmark_group(workload);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(measurement);
    group.throughput(Throughput::Elements(elements));
    for entry in entries {
        group.bench_function(entry.name, |b| {
            b.iter_custom(|iters| {
                let elapsed = routine(entry, iters);
                record(workload, entry.name, elapsed, iters);
                elapsed
            });
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion, entries: &[Entry]) {
    let value = [7u8; VALUE_BYTES];
    let log_value = [9u8; LOG_VALUE_BYTES];

    bench_group(
        c,
        "get_1t",
        1,
        Duration::from_secs(2),
        entries,
        |entry, iters| {
            let seed = mix(iters);
            let start = Instant::now();
            for i in 0..iters {
                let key = table_key(b't', mix(seed ^ i) % TABLE_KEYS);
                black_box(entry.subject.get_len(&key));
            }
            start.elapsed()
        },
    );
    bench_group(
        c,
        "get_2t",
        1,
        Duration::from_secs(2),
        entries,
        |entry, iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for thread in 0..2u64 {
                    scope.spawn(move || {
                        let seed = mix(iters ^ (thread << 40));
                        for i in 0..iters / 2 {
                            let key = table_key(b't', mix(seed ^ i) % TABLE_KEYS);
                            black_box(entry.subject.get_len(&key));
                        }
                    });
                }
            });
            start.elapsed()
        },
    );
    bench_group(
        c,
        "scan_10",
        10,
        Duration::from_secs(2),
        entries,
        |entry, iters| {
            let seed = mix(iters ^ 77);
            let start = Instant::now();
            for i in 0..iters {
                let key = table_key(b't', mix(seed ^ i) % TABLE_KEYS);
                black_box(entry.subject.scan_10(&key));
            }
            start.elapsed()
        },
    );
    bench_group(
        c,
        "synced_put",
        1,
        Duration::from_secs(3),
        entries,
        |entry, iters| {
            let first = entry.next_write.fetch_add(iters, Ordering::Relaxed);
            let keys: Vec<_> = (first..first + iters).map(|i| table_key(b'w', i)).collect();
            let start = Instant::now();
            for key in &keys {
                entry.subject.put_batch(0, &[(&key[..], &value[..])], true);
            }
            start.elapsed()
        },
    );
    bench_group(
        c,
        "batch_1000",
        1000,
        Duration::from_secs(3),
        entries,
        |entry, iters| {
            let first = entry.next_write.fetch_add(iters * 1000, Ordering::Relaxed);
            let keys: Vec<_> = (first..first + iters * 1000)
                .map(|i| table_key(b'b', i))
                .collect();
            let batches: Vec<Vec<(&[u8], &[u8])>> = keys
                .chunks(1000)
                .map(|chunk| chunk.iter().map(|k| (&k[..], &value[..])).collect())
                .collect();
            let start = Instant::now();
            for batch in &batches {
                entry.subject.put_batch(0, batch, false);
            }
            start.elapsed()
        },
    );
    for batch_len in [1u64, 16, 256] {
        let workload = format!("raft_append_{batch_len}");
        bench_group(
            c,
            &workload,
            batch_len,
            Duration::from_secs(3),
            entries,
            |entry, iters| {
                let first = entry
                    .next_log
                    .fetch_add(iters * batch_len, Ordering::Relaxed);
                let keys: Vec<_> = (first..first + iters * batch_len).map(log_key).collect();
                let batches: Vec<Vec<(&[u8], &[u8])>> = keys
                    .chunks(batch_len as usize)
                    .map(|chunk| chunk.iter().map(|k| (&k[..], &log_value[..])).collect())
                    .collect();
                let start = Instant::now();
                for batch in &batches {
                    entry.subject.put_batch(1, batch, true);
                }
                start.elapsed()
            },
        );
    }
    bench_group(
        c,
        "raft_gc",
        GC_ENTRIES,
        Duration::from_secs(2),
        entries,
        |entry, iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                // Untimed: append 1,024 entries past the log, in batches of 256.
                let first = entry.next_log.fetch_add(GC_ENTRIES, Ordering::Relaxed);
                let keys: Vec<_> = (first..first + GC_ENTRIES).map(log_key).collect();
                for chunk in keys.chunks(256) {
                    let batch: Vec<(&[u8], &[u8])> =
                        chunk.iter().map(|k| (&k[..], &log_value[..])).collect();
                    entry.subject.put_batch(1, &batch, false);
                }
                // Timed: delete the oldest 1,024 entries by range (the log prefix).
                let from = entry.gc_from.fetch_add(GC_ENTRIES, Ordering::Relaxed);
                let (start_key, end_key) = (log_key(from), log_key(from + GC_ENTRIES));
                let start = Instant::now();
                entry.subject.delete_range(&start_key, &end_key);
                elapsed += start.elapsed();
            }
            elapsed
        },
    );
}

fn print_summary() {
    let means = MEANS.lock().unwrap();
    let mean = |workload: &str, subject: &str| {
        means
            .iter()
            .find(|((w, s), _)| w == workload && *s == subject)
            .map(|(_, (elapsed, iters))| elapsed.as_secs_f64() / (*iters).max(1) as f64)
    };
    let mut workloads: Vec<&String> = means.keys().map(|(w, _)| w).collect();
    workloads.dedup();
    let order = [
        "synced_put",
        "batch_1000",
        "get_1t",
        "get_2t",
        "scan_10",
        "raft_append_1",
        "raft_append_16",
        "raft_append_256",
        "raft_gc",
    ];
    workloads.sort_by_key(|w| order.iter().position(|o| o == w));
    let show = |seconds: Option<f64>| match seconds {
        Some(s) if s >= 1e-3 => format!("{:.2} ms", s * 1e3),
        Some(s) => format!("{:.2} µs", s * 1e6),
        None => "-".to_owned(),
    };
    let ratio = |ours: Option<f64>, raw: Option<f64>| match (ours, raw) {
        (Some(ours), Some(raw)) => format!("{:.3}", ours / raw),
        _ => "-".to_owned(),
    };
    println!("\n## Mean time per operation (wrapper / raw ratio)\n");
    println!(
        "| workload | memory | log | log / fjall | fjall | fjall raw | fjall ratio | heed | heed raw | heed ratio |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for workload in workloads {
        let [memory, log, fjall, fjall_raw, heed, heed_raw] =
            ["memory", "log", "fjall", "fjall-raw", "heed", "heed-raw"].map(|s| mean(workload, s));
        println!(
            "| {workload} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            show(memory),
            show(log),
            ratio(log, fjall),
            show(fjall),
            show(fjall_raw),
            ratio(fjall, fjall_raw),
            show(heed),
            show(heed_raw),
            ratio(heed, heed_raw),
        );
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |name, subject: Box<dyn Subject>| Entry {
        name,
        subject,
        next_write: AtomicU64::new(0),
        next_log: AtomicU64::new(0),
        gc_from: AtomicU64::new(0),
    };
    let entries = vec![
        entry("memory", Box::new(Ours(MemoryEngine::new(&CFS).unwrap()))),
        entry(
            "log",
            Box::new(Ours(
                LogEngine::open(&dir.path().join("log"), &CFS).unwrap(),
            )),
        ),
        entry(
            "fjall",
            Box::new(Ours(
                FjallEngine::open(&dir.path().join("fjall"), &CFS).unwrap(),
            )),
        ),
        entry(
            "fjall-raw",
            Box::new(RawFjall::open(&dir.path().join("fjall-raw"))),
        ),
        entry(
            "heed",
            Box::new(Ours(
                HeedEngine::open(&dir.path().join("heed"), &CFS).unwrap(),
            )),
        ),
        entry(
            "heed-raw",
            Box::new(RawHeed::open(&dir.path().join("heed-raw"))),
        ),
    ];
    for entry in &entries {
        let start = Instant::now();
        fill(entry);
        println!(
            "filled {} with {TABLE_KEYS} keys in {:?}",
            entry.name,
            start.elapsed()
        );
    }
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion, &entries);
    criterion.final_summary();
    print_summary();
}
