//! Snapshot isolation, snapshots on other threads and snapshots outliving the engine.

use std::sync::Arc;

use engines::{Direction, Engine, WriteBatch, WriteOptions};

use super::support::{delete, get, must, put, scan, scan_all};
use super::{Ctx, EngineFactory};

const CFS: [&str; 2] = ["default", "raft"];

/// Writes `a`, `b`, `c` to both column families.
fn fill<E: Engine>(engine: &E) {
    let mut batch = engine.write_batch();
    for cf in CFS {
        for key in [&b"a"[..], b"b", b"c"] {
            must(batch.put(cf, key, b"old"), "put");
        }
    }
    must(engine.write(&batch, WriteOptions::synced()), "write");
}

fn expect_old_state<S: engines::Snapshot>(snapshot: &S) {
    for cf in CFS {
        let entries = scan_all(snapshot, cf);
        let expected: Vec<(Vec<u8>, Vec<u8>)> = [&b"a"[..], b"b", b"c"]
            .iter()
            .map(|key| (key.to_vec(), b"old".to_vec()))
            .collect();
        assert_eq!(entries, expected, "snapshot of cf {cf} changed");
        let reverse = scan(snapshot, cf, .., Direction::Reverse);
        assert_eq!(reverse.len(), 3, "reverse scan of the snapshot of cf {cf}");
        assert_eq!(get(snapshot, cf, b"b").as_deref(), Some(&b"old"[..]));
        assert_eq!(get(snapshot, cf, b"new"), None, "snapshot sees a later put");
    }
}

/// Later puts, overwrites, deletes and range deletes are invisible to a snapshot.
pub(crate) fn snapshot_isolation<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &CFS);
    fill(&engine);
    let snapshot = must(engine.snapshot(), "snapshot");
    put(&engine, "default", b"a", b"overwritten", false);
    put(&engine, "default", b"new", b"new", true);
    delete(&engine, "default", b"b");
    must(engine.delete_range("raft", ..), "delete_range");
    let mut batch = engine.write_batch();
    must(batch.put("raft", b"new", b"new"), "put");
    must(batch.delete("default", b"c"), "delete");
    must(engine.write(&batch, WriteOptions::synced()), "write");

    expect_old_state(&snapshot);
    assert_eq!(
        get(&engine, "default", b"a").as_deref(),
        Some(&b"overwritten"[..])
    );
    assert_eq!(get(&engine, "default", b"b"), None);
    assert_eq!(
        scan_all(&engine, "raft"),
        vec![(b"new".to_vec(), b"new".to_vec())]
    );
    let later = must(engine.snapshot(), "snapshot");
    assert_eq!(
        scan_all(&later, "default").len(),
        2,
        "a new snapshot sees the new state"
    );
    expect_old_state(&snapshot);
}

/// A snapshot moves to another thread, and is shared by several threads at once.
pub(crate) fn snapshot_on_another_thread<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &CFS);
    fill(&engine);
    let snapshot = must(engine.snapshot(), "snapshot");
    let moved = std::thread::spawn(move || {
        expect_old_state(&snapshot);
        snapshot
    });
    put(&engine, "default", b"a", b"overwritten", true);
    let snapshot = must(moved.join().map_err(|_| "thread panicked"), "reader thread");
    let shared = Arc::new(snapshot);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let shared = Arc::clone(&shared);
            scope.spawn(move || {
                for _ in 0..50 {
                    expect_old_state(&*shared);
                }
            });
        }
        for i in 0..50u32 {
            put(&engine, "raft", b"a", &i.to_be_bytes(), false);
        }
    });
    expect_old_state(&*shared);
}

/// A snapshot stays readable, on another thread, after every engine handle was dropped;
/// once it is dropped too, the engine reopens with all its data.
pub(crate) fn snapshot_outlives_engine<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let path = ctx.path("db");
    let engine = ctx.open(&path, &CFS);
    fill(&engine);
    let snapshot = must(engine.snapshot(), "snapshot");
    let clone = engine.clone();
    put(&clone, "default", b"new", b"new", true);
    drop(engine);
    drop(clone);
    let reader = std::thread::spawn(move || {
        expect_old_state(&snapshot);
    });
    must(
        reader.join().map_err(|_| "thread panicked"),
        "reader thread",
    );
    let engine = ctx.open(&path, &CFS);
    assert_eq!(
        get(&engine, "default", b"new").as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(scan_all(&engine, "raft").len(), 3);
}
