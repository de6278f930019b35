//! Errors: unknown column families, bad names, poisoning after a failed sync, and a path
//! that is a regular file. None of them may panic.

use engines::{Direction, Engine, Error, Iterable, Peekable, WriteBatch, WriteOptions};

use super::support::{get, must, put};
use super::{Ctx, EngineFactory};

const CF: &str = "default";

fn expect_cf_not_found<T: std::fmt::Debug>(result: engines::Result<T>, what: &str) {
    assert!(
        matches!(&result, Err(Error::CfNotFound(name)) if name == "missing"),
        "{what} on an unknown column family must be CfNotFound(\"missing\"), got {result:?}"
    );
}

/// Every operation naming an unknown column family returns `CfNotFound`.
pub(crate) fn unknown_column_family<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    put(&engine, CF, b"k", b"v", false);
    expect_cf_not_found(engine.get("missing", b"k"), "get");
    expect_cf_not_found(engine.get_with("missing", b"k", |_| ()), "get_with");
    expect_cf_not_found(
        engine.scan("missing", .., Direction::Forward, |_, _| true),
        "scan",
    );
    expect_cf_not_found(engine.seek("missing", .., Direction::Reverse), "seek");
    expect_cf_not_found(engine.delete_range("missing", ..), "Engine::delete_range");
    let mut batch = engine.write_batch();
    expect_cf_not_found(batch.put("missing", b"k", b"v"), "WriteBatch::put");
    expect_cf_not_found(batch.delete("missing", b"k"), "WriteBatch::delete");
    expect_cf_not_found(
        batch.delete_range("missing", ..),
        "WriteBatch::delete_range",
    );
    assert!(batch.is_empty(), "rejected operations must not be added");
    let snapshot = must(engine.snapshot(), "snapshot");
    expect_cf_not_found(snapshot.get("missing", b"k"), "Snapshot get");
    expect_cf_not_found(
        snapshot.scan("missing", .., Direction::Forward, |_, _| true),
        "Snapshot scan",
    );
    assert_eq!(get(&engine, CF, b"k").as_deref(), Some(&b"v"[..]));
}

/// Opening with no column family, an empty name, a duplicate or an odd character fails.
pub(crate) fn invalid_column_family_names<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let cases: [&[&str]; 4] = [&[], &[""], &["a", "a"], &["has space"]];
    for (i, cfs) in cases.into_iter().enumerate() {
        let result = ctx.factory.open(&ctx.path(&format!("db{i}")), cfs);
        assert!(
            matches!(result, Err(Error::InvalidArgument(_))),
            "opening with column families {cfs:?} must fail with InvalidArgument"
        );
    }
}

/// After a failed sync every write and sync fails with `Poisoned`, nothing of the failed
/// batch is applied, reads still work, and a reopen recovers the synced data.
pub(crate) fn poisoned_after_failed_sync<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let path = ctx.path("db");
    let engine = ctx.open(&path, &[CF]);
    put(&engine, CF, b"durable", b"1", true);
    ctx.factory.fail_next_sync(&engine);
    let mut batch = engine.write_batch();
    must(batch.put(CF, b"failed", b"2"), "put");
    let result = engine.write(&batch, WriteOptions::synced());
    assert!(
        result.is_err(),
        "a synced write whose fsync fails must return an error"
    );
    assert!(
        !matches!(result, Err(Error::Poisoned)),
        "the failing write reports the I/O error"
    );
    assert_eq!(
        get(&engine, CF, b"failed"),
        None,
        "the failed batch must not be applied"
    );

    let mut later = engine.write_batch();
    must(later.put(CF, b"later", b"3"), "put");
    for options in [WriteOptions::unsynced(), WriteOptions::synced()] {
        let result = engine.write(&later, options);
        assert!(
            matches!(result, Err(Error::Poisoned)),
            "write after poisoning: {result:?}"
        );
    }
    let result = engine.delete_range(CF, ..);
    assert!(
        matches!(result, Err(Error::Poisoned)),
        "delete_range after poisoning: {result:?}"
    );
    let result = engine.sync();
    assert!(
        matches!(result, Err(Error::Poisoned)),
        "sync after poisoning: {result:?}"
    );
    assert_eq!(get(&engine, CF, b"later"), None);
    assert_eq!(
        get(&engine, CF, b"durable").as_deref(),
        Some(&b"1"[..]),
        "reads still work"
    );
    let clone = engine.clone();
    let result = clone.write(&later, WriteOptions::unsynced());
    assert!(
        matches!(result, Err(Error::Poisoned)),
        "a clone is poisoned too: {result:?}"
    );
    drop((engine, clone));

    let engine = ctx.open(&path, &[CF]);
    assert_eq!(get(&engine, CF, b"durable").as_deref(), Some(&b"1"[..]));
    must(
        engine.write(&later, WriteOptions::synced()),
        "write after reopening",
    );
    assert_eq!(get(&engine, CF, b"later").as_deref(), Some(&b"3"[..]));
}

/// Opening a path that is a regular file, or lies below one, returns an error.
pub(crate) fn path_is_a_regular_file<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let file = ctx.path("file");
    must(
        std::fs::write(&file, b"not an engine"),
        "writing a regular file",
    );
    let result = ctx.factory.open(&file, &[CF]);
    assert!(
        result.is_err(),
        "opening a regular file as an engine must fail"
    );
    let result = ctx.factory.open(&file.join("below"), &[CF]);
    assert!(
        result.is_err(),
        "opening a path below a regular file must fail"
    );
    let content = must(std::fs::read(&file), "reading the file back");
    assert_eq!(content, b"not an engine", "the file must be left untouched");
}
