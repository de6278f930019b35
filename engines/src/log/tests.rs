//! Recovery and space reclamation of the log backend, beyond the conformance suite.

#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::{LogEngine, LogOptions};
use crate::{Engine, Error, Iterable, Peekable, WriteBatch, WriteOptions};

const SMALL: LogOptions = LogOptions {
    segment_bytes: 4096,
};

fn put(engine: &LogEngine, cf: &str, key: &[u8], value: &[u8]) {
    let mut batch = engine.write_batch();
    batch.put(cf, key, value).unwrap();
    engine.write(&batch, WriteOptions::synced()).unwrap();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rlog"))
        .collect();
    files.sort();
    files
}

fn count(engine: &LogEngine, cf: &str) -> usize {
    let mut n = 0;
    engine
        .scan(cf, .., crate::Direction::Forward, |_, _| {
            n += 1;
            true
        })
        .unwrap();
    n
}

#[test]
fn a_torn_tail_is_cut_and_writes_go_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), &["raft"]).unwrap();
    put(&engine, "raft", b"a", b"1");
    put(&engine, "raft", b"b", b"2");
    drop(engine);
    // A crash in the middle of an append: after the last record (which ends with the value
    // "2"; zeros of the preallocated segment follow), a header promising more than what
    // follows it.
    let newest = segments(dir.path()).pop().unwrap();
    let end = fs::read(&newest)
        .unwrap()
        .iter()
        .rposition(|b| *b == b'2')
        .unwrap()
        + 1;
    let file = OpenOptions::new().write(true).open(&newest).unwrap();
    file.write_all_at(&[200, 0, 0, 0, 1, 2, 3, 4, 2, 1], end as u64)
        .unwrap();
    drop(file);

    let engine = LogEngine::open(dir.path(), &["raft"]).unwrap();
    assert_eq!(engine.get("raft", b"b").unwrap(), Some(b"2".to_vec()));
    assert_ne!(
        &fs::read(&newest).unwrap()[end..end + 8],
        &[200, 0, 0, 0, 1, 2, 3, 4],
        "the torn record is cut (the open's catalog record takes its place)"
    );
    put(&engine, "raft", b"c", b"3");
    drop(engine);
    let engine = LogEngine::open(dir.path(), &["raft"]).unwrap();
    for (key, value) in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")] {
        assert_eq!(engine.get("raft", key).unwrap(), Some(value.to_vec()));
    }
}

#[test]
fn a_damaged_sealed_segment_is_corruption_not_a_silent_cut() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open_with(dir.path(), &["raft"], SMALL).unwrap();
    for i in 0..64u32 {
        put(&engine, "raft", &i.to_be_bytes(), &[7; 200]);
    }
    drop(engine);
    let oldest = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&oldest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&oldest, bytes).unwrap();
    let err = LogEngine::open_with(dir.path(), &["raft"], SMALL).unwrap_err();
    assert!(
        matches!(&err, Error::Corruption(what) if what.contains("sealed")),
        "{err}"
    );
}

#[test]
fn deleted_segments_give_space_back_and_deleted_keys_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open_with(dir.path(), &["raft", "state"], SMALL).unwrap();
    // A value that never changes (it must be carried forward as segments go) and a log
    // that is appended to and truncated from the front, as a raft log is.
    put(&engine, "state", b"keep", b"forever");
    for round in 0..200u32 {
        let mut batch = engine.write_batch();
        batch
            .put("raft", &round.to_be_bytes(), &[round as u8; 300])
            .unwrap();
        batch.put("state", b"hard", &round.to_be_bytes()).unwrap();
        if round >= 10 {
            let first = (round - 10).to_be_bytes();
            batch.delete_range("raft", ..&first[..]).unwrap();
        }
        engine.write(&batch, WriteOptions::unsynced()).unwrap();
    }
    engine.sync().unwrap();
    assert!(
        engine.segment_count() <= 6,
        "{} segments for ~4 KiB of live data",
        engine.segment_count()
    );
    drop(engine);

    let engine = LogEngine::open_with(dir.path(), &["raft", "state"], SMALL).unwrap();
    assert_eq!(count(&engine, "raft"), 11, "entries 189..=199 are live");
    assert_eq!(engine.get("raft", &0u32.to_be_bytes()).unwrap(), None);
    assert_eq!(
        engine.get("raft", &199u32.to_be_bytes()).unwrap(),
        Some(vec![199; 300])
    );
    assert_eq!(
        engine.get("state", b"keep").unwrap(),
        Some(b"forever".to_vec())
    );
    assert_eq!(
        engine.get("state", b"hard").unwrap(),
        Some(199u32.to_be_bytes().to_vec())
    );
}

#[test]
fn column_families_left_out_of_an_open_survive_its_purges() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open_with(dir.path(), &["a", "b"], SMALL).unwrap();
    put(&engine, "b", b"hidden", b"value");
    drop(engine);

    let engine = LogEngine::open_with(dir.path(), &["a"], SMALL).unwrap();
    for i in 0..200u32 {
        put(&engine, "a", b"churn", &[i as u8; 500]);
    }
    assert!(engine.segment_count() <= 4, "{}", engine.segment_count());
    drop(engine);

    let engine = LogEngine::open_with(dir.path(), &["b", "a"], SMALL).unwrap();
    assert_eq!(engine.get("b", b"hidden").unwrap(), Some(b"value".to_vec()));
    assert_eq!(engine.get("a", b"churn").unwrap(), Some(vec![199; 500]));
}

#[test]
fn a_batch_from_an_engine_numbering_column_families_otherwise_lands_in_the_right_ones() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    // The same names, opened in the same order, but numbered differently on disk.
    drop(LogEngine::open(second.path(), &["y"]).unwrap());
    let source = LogEngine::open(first.path(), &["x", "y"]).unwrap();
    let target = LogEngine::open(second.path(), &["x", "y"]).unwrap();
    let mut batch = source.write_batch();
    batch.put("x", b"k", b"in x").unwrap();
    batch.put("y", b"k", b"in y").unwrap();
    batch.delete_range("y", b"a"..b"b").unwrap();
    target.write(&batch, WriteOptions::synced()).unwrap();
    assert_eq!(target.get("x", b"k").unwrap(), Some(b"in x".to_vec()));
    assert_eq!(target.get("y", b"k").unwrap(), Some(b"in y".to_vec()));
}

#[test]
fn a_second_open_of_a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), &["raft"]).unwrap();
    let err = LogEngine::open(dir.path(), &["raft"]).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
    drop(engine);
    LogEngine::open(dir.path(), &["raft"]).unwrap();
}

#[test]
fn the_prefill_writes_zeros_ahead_of_the_records_and_never_over_them() {
    use std::os::unix::fs::MetadataExt as _;

    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 8 << 20,
    };
    let engine = LogEngine::open_with(dir.path(), &["raft"], options).unwrap();
    put(&engine, "raft", b"first", b"1");
    engine.wait_for_prefill();
    let newest = segments(dir.path()).pop().unwrap();
    let allocated = fs::metadata(&newest).unwrap().blocks() * 512;
    assert!(
        allocated >= super::prefill::AHEAD_BYTES,
        "only {allocated} bytes of the segment are allocated"
    );

    // Appends racing the prefill, across a rotation: every record must survive a reopen.
    let value = [7u8; 300];
    for i in 0u32..40_000 {
        let mut batch = engine.write_batch();
        batch.put("raft", &i.to_be_bytes(), &value).unwrap();
        engine.write(&batch, WriteOptions::default()).unwrap();
    }
    assert!(
        engine.segment_count() > 1,
        "the appends should have rotated"
    );
    engine.sync().unwrap();
    drop(engine);
    let engine = LogEngine::open_with(dir.path(), &["raft"], options).unwrap();
    assert_eq!(count(&engine, "raft"), 40_001);
    for i in (0u32..40_000).step_by(997) {
        assert_eq!(
            engine.get("raft", &i.to_be_bytes()).unwrap().as_deref(),
            Some(&value[..])
        );
    }
}
