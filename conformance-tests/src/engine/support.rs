//! Helpers shared by the cases: short write and read calls that panic with context, and a
//! naive model (oracle) of range scans.

use std::collections::BTreeMap;
use std::fmt::Debug;

use engines::{Direction, Engine, Iterable, KeyRange, Peekable, WriteBatch, WriteOptions};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Ctx, EngineFactory};

/// A key-value pair as returned by scans.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Unwraps `result`, panicking with `what` and the error.
#[track_caller]
pub(crate) fn must<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what} failed: {error:?}"),
    }
}

/// Writes one batch holding a single put.
#[track_caller]
pub(crate) fn put<E: Engine>(engine: &E, cf: &str, key: &[u8], value: &[u8], sync: bool) {
    let mut batch = engine.write_batch();
    must(batch.put(cf, key, value), "WriteBatch::put");
    must(engine.write(&batch, WriteOptions { sync }), "Engine::write");
}

/// Writes one batch holding a single delete.
#[track_caller]
pub(crate) fn delete<E: Engine>(engine: &E, cf: &str, key: &[u8]) {
    let mut batch = engine.write_batch();
    must(batch.delete(cf, key), "WriteBatch::delete");
    must(
        engine.write(&batch, WriteOptions::unsynced()),
        "Engine::write",
    );
}

/// Reads `key`, panicking on error.
#[track_caller]
pub(crate) fn get<R: Peekable>(reader: &R, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
    must(reader.get(cf, key), "Peekable::get")
}

/// Collects a scan, panicking on error.
#[track_caller]
pub(crate) fn scan<'k, R: Iterable>(
    reader: &R,
    cf: &str,
    range: impl Into<KeyRange<'k>>,
    direction: Direction,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    must(
        reader.scan(cf, range, direction, |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            true
        }),
        "Iterable::scan",
    );
    entries
}

/// Collects every entry of `cf` in forward order.
#[track_caller]
pub(crate) fn scan_all<R: Iterable>(reader: &R, cf: &str) -> Vec<Entry> {
    scan(reader, cf, .., Direction::Forward)
}

/// What a scan of `range` over `model` must return: a naive filter, no `BTreeMap::range`.
pub(crate) fn model_scan(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    range: KeyRange<'_>,
    direction: Direction,
) -> Vec<Entry> {
    let mut entries: Vec<Entry> = model
        .iter()
        .filter(|(key, _)| range.contains(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if direction == Direction::Reverse {
        entries.reverse();
    }
    entries
}

/// A generator seeded from the suite seed and the case name, so cases do not share draws.
pub(crate) fn rng<F: EngineFactory>(ctx: &Ctx<'_, F>, case: &str) -> StdRng {
    let salt = case.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    StdRng::seed_from_u64(ctx.seed ^ salt)
}

/// Shows a key readably in failure messages.
pub(crate) fn show(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}
