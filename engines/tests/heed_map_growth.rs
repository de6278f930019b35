//! The LMDB map of the heed backend grows on demand without losing writes.
#![cfg(feature = "heed")]

use std::time::Duration;

use engines::{
    Engine, Error, HeedEngine, HeedOptions, Iterable, Peekable, WriteBatch, WriteOptions,
};

const CF: &str = "default";
const MIB: usize = 1 << 20;

fn small_map() -> HeedOptions {
    let mut options = HeedOptions::default();
    options.initial_map_size_bytes = MIB;
    options
}

fn value(i: u32, len: usize) -> Vec<u8> {
    let mut value = vec![(i % 251) as u8; len];
    value[..4].copy_from_slice(&i.to_be_bytes());
    value
}

#[test]
fn map_grows_without_losing_writes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = HeedEngine::open_with(dir.path(), &[CF], small_map()).unwrap();
    let initial = engine.map_size_bytes();
    assert!(initial < 2 * MIB, "the map starts small: {initial}");
    for b in 0..40u32 {
        let mut batch = engine.write_batch();
        for k in 0..256u32 {
            let i = b * 256 + k;
            batch.put(CF, &i.to_be_bytes(), &value(i, 1024)).unwrap();
        }
        engine
            .write(&batch, WriteOptions { sync: b % 10 == 0 })
            .unwrap();
    }
    // One batch needing several doublings at once.
    let mut batch = engine.write_batch();
    batch.put(CF, b"big", &value(7, 24 * MIB)).unwrap();
    engine.write(&batch, WriteOptions::synced()).unwrap();
    assert!(
        engine.map_size_bytes() >= 32 * MIB,
        "map grew to {}",
        engine.map_size_bytes()
    );

    drop(engine);
    let engine = HeedEngine::open_with(dir.path(), &[CF], small_map()).unwrap();
    let mut count = 0u32;
    engine
        .scan(
            CF,
            ..b"big".as_slice(),
            engines::Direction::Forward,
            |_, _| {
                count += 1;
                true
            },
        )
        .unwrap();
    assert_eq!(
        count,
        40 * 256,
        "every write survived the growth and a reopen"
    );
    assert_eq!(
        engine.get(CF, &5000u32.to_be_bytes()).unwrap(),
        Some(value(5000, 1024))
    );
    assert_eq!(engine.get(CF, b"big").unwrap(), Some(value(7, 24 * MIB)));
}

#[test]
fn growth_waits_for_a_snapshot_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let engine = HeedEngine::open_with(dir.path(), &[CF], small_map()).unwrap();
    let mut batch = engine.write_batch();
    batch.put(CF, b"before", b"1").unwrap();
    engine.write(&batch, WriteOptions::unsynced()).unwrap();
    let snapshot = engine.snapshot().unwrap();

    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let mut batch = engine.write_batch();
            batch.put(CF, b"big", &vec![1u8; 4 * MIB]).unwrap();
            engine.write(&batch, WriteOptions::synced())
        })
    };
    // The snapshot stays readable while the writer waits for it, then is dropped.
    assert_eq!(snapshot.get(CF, b"before").unwrap(), Some(b"1".to_vec()));
    assert_eq!(snapshot.get(CF, b"big").unwrap(), None);
    drop(snapshot);
    writer.join().unwrap().unwrap();
    assert_eq!(
        engine.get(CF, b"big").unwrap().map(|v| v.len()),
        Some(4 * MIB)
    );
}

#[test]
fn growth_blocked_by_the_writers_own_snapshot_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_map();
    options.grow_wait = Duration::from_millis(50);
    let engine = HeedEngine::open_with(dir.path(), &[CF], options).unwrap();
    let snapshot = engine.snapshot().unwrap();
    let mut batch = engine.write_batch();
    batch.put(CF, b"small", b"s").unwrap();
    batch.put(CF, b"big", &vec![1u8; 4 * MIB]).unwrap();
    let result = engine.write(&batch, WriteOptions::synced());
    assert!(
        matches!(&result, Err(Error::Other(message)) if message.to_string().contains("cannot grow")),
        "{result:?}"
    );
    assert_eq!(
        engine.get(CF, b"small").unwrap(),
        None,
        "nothing of the batch was applied"
    );
    drop(snapshot);
    engine.write(&batch, WriteOptions::synced()).unwrap();
    assert_eq!(engine.get(CF, b"small").unwrap(), Some(b"s".to_vec()));
}

#[test]
fn reaching_the_maximum_map_size_is_no_space() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_map();
    options.max_map_size_bytes = 4 * MIB;
    let engine = HeedEngine::open_with(dir.path(), &[CF], options).unwrap();
    let mut batch = engine.write_batch();
    batch.put(CF, b"small", b"s").unwrap();
    batch.put(CF, b"too-big", &vec![1u8; 8 * MIB]).unwrap();
    let result = engine.write(&batch, WriteOptions::synced());
    assert!(matches!(result, Err(Error::NoSpace(_))), "{result:?}");
    assert_eq!(
        engine.get(CF, b"small").unwrap(),
        None,
        "nothing of the batch was applied"
    );
    let mut batch = engine.write_batch();
    batch.put(CF, b"fits", &vec![1u8; MIB]).unwrap();
    engine
        .write(&batch, WriteOptions::synced())
        .expect("not poisoned by a full map");
}

#[test]
fn reopening_with_more_column_families_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = HeedEngine::open(dir.path(), &[CF]).unwrap();
    let mut batch = engine.write_batch();
    batch.put(CF, b"k", b"v").unwrap();
    engine.write(&batch, WriteOptions::synced()).unwrap();
    drop(engine);
    let engine = HeedEngine::open(dir.path(), &["raft", CF]).unwrap();
    assert_eq!(engine.get(CF, b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(engine.get("raft", b"k").unwrap(), None);
}
