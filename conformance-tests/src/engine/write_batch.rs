//! Write batches: bookkeeping, order within a batch, atomicity and range deletion.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};

use engines::{Direction, Engine, Error, KeyRange, WriteBatch, WriteOptions};

use super::support::{get, model_scan, must, put, scan, scan_all};
use super::{Ctx, EngineFactory};

const CF: &str = "default";

/// `len`, `size_bytes`, `is_empty` and `clear`; a batch is unchanged by a write and may be
/// written again; empty batches write fine.
pub(crate) fn batch_bookkeeping<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    let mut batch = engine.write_batch();
    assert!(batch.is_empty());
    assert_eq!((batch.len(), batch.size_bytes()), (0, 0));
    must(
        engine.write(&batch, WriteOptions::unsynced()),
        "write of an empty batch",
    );
    must(
        engine.write(&batch, WriteOptions::synced()),
        "synced write of an empty batch",
    );

    must(batch.put(CF, b"key", b"value"), "put");
    assert_eq!((batch.len(), batch.size_bytes()), (1, 8));
    must(batch.delete(CF, b"gone"), "delete");
    assert_eq!((batch.len(), batch.size_bytes()), (2, 12));
    must(
        batch.delete_range(CF, &b"a"[..]..&b"bb"[..]),
        "delete_range",
    );
    assert_eq!((batch.len(), batch.size_bytes()), (3, 15));
    must(batch.put(CF, b"empty", b""), "put");
    assert_eq!((batch.len(), batch.size_bytes()), (4, 20));
    assert!(!batch.is_empty());

    must(engine.write(&batch, WriteOptions::synced()), "write");
    assert_eq!(batch.len(), 4, "a write must leave the batch unchanged");
    must(
        engine.write(&batch, WriteOptions::unsynced()),
        "second write of the same batch",
    );
    assert_eq!(get(&engine, CF, b"key").as_deref(), Some(&b"value"[..]));

    batch.clear();
    assert!(batch.is_empty());
    assert_eq!((batch.len(), batch.size_bytes()), (0, 0));
    must(batch.put(CF, b"after-clear", b"1"), "put after clear");
    must(
        engine.write(&batch, WriteOptions::unsynced()),
        "write after clear",
    );
    assert_eq!(
        scan_all(&engine, CF).len(),
        3,
        "key, empty and after-clear: the cleared operations must not be written again"
    );
}

/// Operations apply in the order they were added.
pub(crate) fn batch_order<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF, "other"]);
    put(&engine, CF, b"r1", b"old", false);
    put(&engine, CF, b"r2", b"old", false);
    put(&engine, "other", b"r1", b"other", false);

    let mut batch = engine.write_batch();
    // Put then delete: absent.
    must(batch.put(CF, b"put-delete", b"1"), "put");
    must(batch.delete(CF, b"put-delete"), "delete");
    // Delete then put: present.
    must(batch.delete(CF, b"delete-put"), "delete");
    must(batch.put(CF, b"delete-put", b"2"), "put");
    // Two puts: the last wins.
    must(batch.put(CF, b"put-put", b"first"), "put");
    must(batch.put(CF, b"put-put", b"second"), "put");
    // Keys going backwards and interleaved column families.
    must(batch.put(CF, b"z", b"z"), "put");
    must(batch.put("other", b"y", b"y"), "put");
    must(batch.put(CF, b"b", b"b"), "put");
    // A range delete removes earlier puts of the batch and stored keys, and a later put
    // re-creates its key.
    must(batch.put(CF, b"r0", b"new"), "put");
    must(batch.delete_range(CF, b"r"..b"s"), "delete_range");
    must(batch.put(CF, b"r2", b"recreated"), "put");
    must(engine.write(&batch, WriteOptions::synced()), "write");

    assert_eq!(
        get(&engine, CF, b"put-delete"),
        None,
        "put then delete in one batch"
    );
    assert_eq!(get(&engine, CF, b"delete-put").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        get(&engine, CF, b"put-put").as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(get(&engine, CF, b"z").as_deref(), Some(&b"z"[..]));
    assert_eq!(get(&engine, CF, b"b").as_deref(), Some(&b"b"[..]));
    assert_eq!(get(&engine, "other", b"y").as_deref(), Some(&b"y"[..]));
    assert_eq!(
        get(&engine, CF, b"r0"),
        None,
        "range delete after a put in the same batch"
    );
    assert_eq!(
        get(&engine, CF, b"r1"),
        None,
        "range delete of a stored key"
    );
    assert_eq!(get(&engine, CF, b"r2").as_deref(), Some(&b"recreated"[..]));
    assert_eq!(get(&engine, "other", b"r1").as_deref(), Some(&b"other"[..]));

    // The same after a reopen, i.e. as recovered from disk.
    drop(engine);
    let engine = ctx.open(&ctx.path("db"), &[CF, "other"]);
    assert_eq!(
        get(&engine, CF, b"put-delete"),
        None,
        "put then delete, after reopen"
    );
    assert_eq!(
        get(&engine, CF, b"put-put").as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(get(&engine, CF, b"r2").as_deref(), Some(&b"recreated"[..]));
    assert_eq!(get(&engine, CF, b"r1"), None);
}

/// A batch is invisible until complete to concurrent snapshots; a batch made for other
/// column families is refused whole.
pub(crate) fn batch_atomicity<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    const KEYS: usize = 1000;
    let cfs = [CF, "raft"];
    let engine = ctx.open(&ctx.path("db"), &cfs);
    let mut batch = engine.write_batch();
    for i in 0..KEYS {
        for cf in cfs {
            must(batch.put(cf, format!("key{i:05}").as_bytes(), b"v"), "put");
        }
    }
    let done = AtomicBool::new(false);
    let observed = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut observed = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let snapshot = must(engine.snapshot(), "snapshot");
                let counts: Vec<usize> =
                    cfs.iter().map(|cf| scan_all(&snapshot, cf).len()).collect();
                observed.push(counts);
                if finished {
                    return observed;
                }
            }
        });
        must(engine.write(&batch, WriteOptions::synced()), "write");
        done.store(true, Ordering::SeqCst);
        must(reader.join().map_err(|_| "reader panicked"), "reader")
    });
    for counts in &observed {
        assert!(
            counts.iter().all(|&n| n == 0) || counts.iter().all(|&n| n == KEYS),
            "a snapshot saw part of a batch: {counts:?} entries per column family"
        );
    }
    assert_eq!(
        observed.last().map(|c| c[0]),
        Some(KEYS),
        "the last snapshot sees the batch"
    );

    let other = ctx.open(&ctx.path("other"), &[CF, "raft", "extra"]);
    let mut foreign = other.write_batch();
    must(foreign.put(CF, b"foreign", b"v"), "put");
    let result = engine.write(&foreign, WriteOptions::synced());
    assert!(
        matches!(result, Err(Error::InvalidArgument(_))),
        "a batch made for other column families must be refused: {result:?}"
    );
    assert_eq!(get(&engine, CF, b"foreign"), None);
}

/// Range deletion with every bound kind, through a batch and `Engine::delete_range`,
/// checked against a model; bounds on absent keys, empty and inverted ranges, and other
/// column families stay untouched.
pub(crate) fn delete_range_edges<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let cfs = [CF, "other"];
    let path = ctx.path("db");
    let points: [&[u8]; 7] = [b"", b"a", b"b", b"bb", b"c", b"e", b"\xff"];
    let mut bounds = vec![Bound::Unbounded];
    for point in points {
        bounds.push(Bound::Included(point));
        bounds.push(Bound::Excluded(point));
    }
    let keys: [&[u8]; 8] = [
        b"a",
        b"a\x00",
        b"b",
        b"b\xff",
        b"c",
        b"d",
        b"e",
        b"\xff\xff",
    ];
    let model: BTreeMap<Vec<u8>, Vec<u8>> = keys
        .iter()
        .map(|key| (key.to_vec(), b"v".to_vec()))
        .collect();
    let engine = ctx.open(&path, &cfs);
    for (n, (start, end)) in bounds
        .iter()
        .flat_map(|s| bounds.iter().map(move |e| (*s, *e)))
        .enumerate()
    {
        let range = KeyRange::new(start, end);
        let mut fill = engine.write_batch();
        must(fill.delete_range(CF, ..), "delete_range");
        for key in keys {
            must(fill.put(CF, key, b"v"), "put");
            must(fill.put("other", key, b"v"), "put");
        }
        must(engine.write(&fill, WriteOptions::unsynced()), "write");
        if n % 2 == 0 {
            let mut batch = engine.write_batch();
            must(batch.delete_range(CF, range), "delete_range");
            must(engine.write(&batch, WriteOptions::unsynced()), "write");
        } else {
            must(engine.delete_range(CF, range), "Engine::delete_range");
        }
        let deleted = model_scan(&model, range, Direction::Forward);
        let expected: Vec<_> = model
            .iter()
            .filter(|entry| !deleted.contains(&(entry.0.clone(), entry.1.clone())))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            scan_all(&engine, CF),
            expected,
            "delete_range({start:?}, {end:?}) removed the wrong keys"
        );
        assert_eq!(
            scan_all(&engine, "other").len(),
            keys.len(),
            "other column family touched"
        );
    }
    // A range delete on an empty column family, and one covering nothing.
    must(engine.delete_range(CF, ..), "delete_range");
    must(
        engine.delete_range(CF, ..),
        "delete_range of an empty column family",
    );
    put(&engine, CF, b"m", b"v", true);
    must(engine.delete_range(CF, b"n"..b"z"), "delete_range");
    assert_eq!(scan(&engine, CF, .., Direction::Reverse).len(), 1);
}

/// A batch of 10,000 puts, then a batch deleting half of them by range, then a reopen.
pub(crate) fn large_batch<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    const KEYS: u32 = 10_000;
    let path = ctx.path("db");
    let engine = ctx.open(&path, &[CF]);
    let mut batch = engine.write_batch();
    for i in 0..KEYS {
        must(batch.put(CF, &i.to_be_bytes(), &[7u8; 100]), "put");
    }
    assert_eq!(batch.len(), KEYS as usize);
    must(engine.write(&batch, WriteOptions::synced()), "write");
    let mut batch = engine.write_batch();
    must(
        batch.delete_range(CF, ..&(KEYS / 2).to_be_bytes()[..]),
        "delete_range",
    );
    must(engine.write(&batch, WriteOptions::synced()), "write");
    drop(engine);
    let engine = ctx.open(&path, &[CF]);
    let entries = scan_all(&engine, CF);
    assert_eq!(entries.len(), (KEYS / 2) as usize);
    assert_eq!(
        entries.first().map(|e| e.0.clone()),
        Some((KEYS / 2).to_be_bytes().to_vec())
    );
    assert_eq!(
        get(&engine, CF, &(KEYS - 1).to_be_bytes()).as_deref(),
        Some(&[7u8; 100][..])
    );
}
