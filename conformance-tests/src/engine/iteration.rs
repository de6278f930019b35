//! Range scans: every bound kind in both directions, early stop, seeks, empty ranges and
//! scans that race with writes.

use std::collections::BTreeMap;
use std::ops::Bound;

use engines::{Direction, Engine, Iterable, KeyRange, WriteBatch, WriteOptions};

use super::support::{get, model_scan, must, put, scan, show};
use super::{Ctx, EngineFactory};

const CF: &str = "default";

/// Fills `CF` with `k00`, `k01`, ... `k19` (values `v00` ...) and returns the model.
fn fill<E: Engine>(engine: &E) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    let mut batch = engine.write_batch();
    for i in 0..20 {
        let (key, value) = (
            format!("k{i:02}").into_bytes(),
            format!("v{i:02}").into_bytes(),
        );
        must(batch.put(CF, &key, &value), "put");
        model.insert(key, value);
    }
    must(engine.write(&batch, WriteOptions::unsynced()), "write");
    model
}

/// Every combination of unbounded, included and excluded bounds, on present keys, absent
/// keys between them, before the first, after the last and the empty key, in both
/// directions, on the engine and on a snapshot, compared with a naive model.
pub(crate) fn every_bound_kind<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    let model = fill(&engine);
    let snapshot = must(engine.snapshot(), "snapshot");
    let points: [&[u8]; 8] = [b"", b"a", b"k00", b"k05", b"k055", b"k19", b"k2", b"\xff"];
    let mut bounds = vec![Bound::Unbounded];
    for point in points {
        bounds.push(Bound::Included(point));
        bounds.push(Bound::Excluded(point));
    }
    let mut checked = 0;
    for start in &bounds {
        for end in &bounds {
            let range = KeyRange::new(*start, *end);
            for direction in [Direction::Forward, Direction::Reverse] {
                let expected = model_scan(&model, range, direction);
                let on_engine = scan(&engine, CF, range, direction);
                assert!(
                    on_engine == expected,
                    "engine scan of {} {direction:?} returned {:?}, expected {:?}",
                    describe(range),
                    keys(&on_engine),
                    keys(&expected)
                );
                let on_snapshot = scan(&snapshot, CF, range, direction);
                assert!(
                    on_snapshot == expected,
                    "snapshot scan of {}",
                    describe(range)
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, bounds.len() * bounds.len() * 2);
    // The std range forms convert to the same ranges.
    assert_eq!(
        scan(&engine, CF, b"k03"..b"k06", Direction::Forward).len(),
        3
    );
    assert_eq!(
        scan(&engine, CF, b"k03"..=b"k06", Direction::Reverse).len(),
        4
    );
    assert_eq!(scan(&engine, CF, ..b"k03", Direction::Forward).len(), 3);
    assert_eq!(scan(&engine, CF, ..=b"k03", Direction::Forward).len(), 4);
    assert_eq!(scan(&engine, CF, b"k17".., Direction::Reverse).len(), 3);
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    entries.iter().map(|(key, _)| show(key)).collect()
}

fn describe(range: KeyRange<'_>) -> String {
    let bound = |bound: Bound<&[u8]>| match bound {
        Bound::Included(key) => format!("Included({})", show(key)),
        Bound::Excluded(key) => format!("Excluded({})", show(key)),
        Bound::Unbounded => "Unbounded".to_owned(),
    };
    format!("({}, {})", bound(range.start), bound(range.end))
}

/// A scan stops as soon as the callback returns `false`, in both directions.
pub(crate) fn scan_stops_when_asked<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    fill(&engine);
    for (direction, first) in [(Direction::Forward, "k00"), (Direction::Reverse, "k19")] {
        let mut seen = Vec::new();
        must(
            engine.scan(CF, .., direction, |key, _| {
                seen.push(key.to_vec());
                seen.len() < 3
            }),
            "scan",
        );
        assert_eq!(
            seen.len(),
            3,
            "{direction:?} scan must stop after the callback said so"
        );
        assert_eq!(seen[0], first.as_bytes());
    }
}

/// Seeks before the first key, past the last key, and to the last key of a prefix.
pub(crate) fn seek_past_the_end<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    assert_eq!(
        must(engine.seek(CF, .., Direction::Forward), "seek"),
        None,
        "empty cf"
    );
    assert_eq!(
        must(engine.seek(CF, .., Direction::Reverse), "seek"),
        None,
        "empty cf"
    );
    fill(&engine);
    let past_end = must(engine.seek(CF, &b"k20"[..].., Direction::Forward), "seek");
    assert_eq!(past_end, None, "nothing lies past the last key");
    let past_end = must(
        engine.seek(CF, &b"\xff\xff"[..].., Direction::Reverse),
        "seek",
    );
    assert_eq!(
        past_end, None,
        "nothing lies past the last key, in reverse either"
    );
    let before_start = must(engine.seek(CF, ..&b"k00"[..], Direction::Reverse), "seek");
    assert_eq!(before_start, None, "nothing lies before the first key");
    let last = must(engine.seek(CF, b"k1"..b"k2", Direction::Reverse), "seek");
    assert_eq!(
        last,
        Some((b"k19".to_vec(), b"v19".to_vec())),
        "last key of a prefix"
    );
    let first = must(engine.seek(CF, &b"k055"[..].., Direction::Forward), "seek");
    assert_eq!(
        first.map(|(key, _)| key),
        Some(b"k06".to_vec()),
        "seek between keys"
    );
    let last = must(engine.seek(CF, .., Direction::Reverse), "seek");
    assert_eq!(last.map(|(key, _)| key), Some(b"k19".to_vec()));
}

/// Empty and inverted ranges yield nothing, in both directions, without an error.
pub(crate) fn empty_and_inverted_ranges<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    fill(&engine);
    let k05: &[u8] = b"k05";
    let k10: &[u8] = b"k10";
    let ranges = [
        KeyRange::new(Bound::Included(k05), Bound::Excluded(k05)),
        KeyRange::new(Bound::Excluded(k05), Bound::Included(k05)),
        KeyRange::new(Bound::Excluded(k05), Bound::Excluded(k05)),
        KeyRange::new(Bound::Included(k10), Bound::Included(k05)),
        KeyRange::new(Bound::Excluded(k10), Bound::Excluded(k05)),
        KeyRange::new(Bound::Included(b"k055"), Bound::Excluded(b"k06")),
        KeyRange::new(Bound::Unbounded, Bound::Excluded(b"")),
        KeyRange::new(Bound::Unbounded, Bound::Included(b"")),
        KeyRange::new(Bound::Included(b"z"), Bound::Unbounded),
    ];
    for range in ranges {
        for direction in [Direction::Forward, Direction::Reverse] {
            let entries = scan(&engine, CF, range, direction);
            assert!(
                entries.is_empty(),
                "{} {direction:?}: {:?}",
                describe(range),
                keys(&entries)
            );
        }
    }
    let single = scan(&engine, CF, k05..=k05, Direction::Reverse);
    assert_eq!(
        single,
        vec![(b"k05".to_vec(), b"v05".to_vec())],
        "a one-key range"
    );
}

/// A scan sees the state of its start even when its own callback and another thread
/// write, delete and range-delete keys of the range meanwhile.
pub(crate) fn iteration_while_writing<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    fill(&engine);
    for direction in [Direction::Forward, Direction::Reverse] {
        // The state at the start of the scan; the scan must see exactly this.
        let expected = scan(&engine, CF, .., direction);
        let mut seen = Vec::new();
        let mut step = 0;
        must(
            engine.scan(CF, .., direction, |key, value| {
                seen.push((key.to_vec(), value.to_vec()));
                // Write from inside the callback ...
                put(
                    &engine,
                    CF,
                    format!("k{step:02}x").as_bytes(),
                    b"new",
                    false,
                );
                put(&engine, CF, b"k10", b"overwritten", false);
                // ... and from another thread, which must not wait for the scan.
                std::thread::scope(|scope| {
                    scope.spawn(|| {
                        let mut batch = engine.write_batch();
                        must(batch.delete(CF, b"k15"), "delete");
                        must(batch.delete_range(CF, b"k16"..b"k18"), "delete_range");
                        must(engine.write(&batch, WriteOptions::unsynced()), "write");
                    });
                });
                step += 1;
                true
            }),
            "scan",
        );
        assert!(
            seen == expected,
            "{direction:?} scan saw writes made during it: {:?}, expected {:?}",
            keys(&seen),
            keys(&expected)
        );
    }
    assert_eq!(
        get(&engine, CF, b"k10").as_deref(),
        Some(&b"overwritten"[..])
    );
    assert_eq!(get(&engine, CF, b"k15"), None);
    assert_eq!(get(&engine, CF, b"k17"), None);
    assert!(
        get(&engine, CF, b"k00x").is_some(),
        "writes made during a scan must land"
    );
}
