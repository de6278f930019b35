//! Several writer and reader threads at once: no reader sees part of a batch.

use std::sync::atomic::{AtomicUsize, Ordering};

use engines::{Direction, Engine, Iterable, WriteBatch, WriteOptions};

use super::support::{must, scan};
use super::{Ctx, EngineFactory};

const CFS: [&str; 2] = ["data", "raft"];
const WRITERS: usize = 2;
const READERS: usize = 2;
const BATCHES_PER_WRITER: u64 = 150;
const KEYS_PER_BATCH: usize = 16;

/// What one column family shows of one writer's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No key: the last batch was a range deletion (or none ran yet).
    Absent,
    /// Every key, all with this version.
    Version(u64),
}

/// Checks that `reader` shows writer `writer`'s keys in `cf` as one whole batch.
fn seen<R: Iterable>(reader: &R, cf: &str, writer: usize) -> Seen {
    let prefix = format!("w{writer}/");
    let end = format!("w{writer}0");
    let entries = scan(
        reader,
        cf,
        prefix.as_bytes()..end.as_bytes(),
        Direction::Forward,
    );
    if entries.is_empty() {
        return Seen::Absent;
    }
    assert_eq!(
        entries.len(),
        KEYS_PER_BATCH,
        "torn read of writer {writer} in cf {cf}"
    );
    let version = &entries[0].1;
    assert!(
        entries.iter().all(|(_, value)| value == version),
        "torn read of writer {writer} in cf {cf}: mixed versions"
    );
    Seen::Version(u64::from_be_bytes(must(
        version[..].try_into(),
        "an 8-byte version",
    )))
}

/// Writes batch `version` of `writer`: every key at `version` in both column families, or
/// every 7th batch a range deletion of them all.
fn write_version<E: Engine>(engine: &E, writer: usize, version: u64) {
    let mut batch = engine.write_batch();
    let prefix = format!("w{writer}/");
    let end = format!("w{writer}0");
    for cf in CFS {
        if version % 7 == 6 {
            must(
                batch.delete_range(cf, prefix.as_bytes()..end.as_bytes()),
                "delete_range",
            );
        } else {
            for i in 0..KEYS_PER_BATCH {
                let key = format!("{prefix}{i:02}");
                must(batch.put(cf, key.as_bytes(), &version.to_be_bytes()), "put");
            }
        }
    }
    let options = WriteOptions {
        sync: version.is_multiple_of(10),
    };
    must(engine.write(&batch, options), "write");
}

/// Two writers and two readers run at once; readers check snapshots (both column families
/// show the same whole batch, versions never go back) and direct scans (one whole batch).
pub(crate) fn concurrent_writers_and_readers<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &CFS);
    let writers_done = AtomicUsize::new(0);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (engine, writers_done) = (&engine, &writers_done);
            scope.spawn(move || {
                for version in 0..BATCHES_PER_WRITER {
                    write_version(engine, writer, version);
                }
                writers_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        for _ in 0..READERS {
            let (engine, writers_done, reads) = (&engine, &writers_done, &reads);
            scope.spawn(move || {
                let mut last_version = [0u64; WRITERS];
                loop {
                    let finished = writers_done.load(Ordering::SeqCst) == WRITERS;
                    let snapshot = must(engine.snapshot(), "snapshot");
                    for (writer, last) in last_version.iter_mut().enumerate() {
                        let data = seen(&snapshot, CFS[0], writer);
                        let raft = seen(&snapshot, CFS[1], writer);
                        assert_eq!(data, raft, "a snapshot saw part of a cross-cf batch");
                        if let Seen::Version(version) = data {
                            assert!(version >= *last, "versions went back: {version} < {last}");
                            *last = version;
                        }
                        seen(engine, CFS[writer % 2], writer);
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                    if finished {
                        return;
                    }
                }
            });
        }
    });
    assert!(
        reads.load(Ordering::SeqCst) >= READERS,
        "every reader made at least one pass"
    );
    let last = BATCHES_PER_WRITER - 1;
    for writer in 0..WRITERS {
        for cf in CFS {
            assert_eq!(
                seen(&engine, cf, writer),
                Seen::Version(last),
                "final state"
            );
        }
    }
}
