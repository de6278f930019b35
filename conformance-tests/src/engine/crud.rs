//! Point writes and reads, keys, values and column families.

use engines::{Direction, Engine, Error, MAX_KEY_BYTES, Peekable, WriteBatch, WriteOptions};
use rand::seq::SliceRandom;

use super::support::{delete, get, must, put, rng, scan, scan_all, show};
use super::{Ctx, EngineFactory};

const CF: &str = "default";

/// Put, overwrite, get, delete, and reads of missing keys.
pub(crate) fn crud<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    assert_eq!(
        get(&engine, CF, b"missing"),
        None,
        "a missing key must read as None"
    );
    put(&engine, CF, b"k1", b"v1", false);
    put(&engine, CF, b"k2", b"v2", true);
    assert_eq!(get(&engine, CF, b"k1").as_deref(), Some(&b"v1"[..]));
    assert_eq!(get(&engine, CF, b"k2").as_deref(), Some(&b"v2"[..]));
    put(&engine, CF, b"k1", b"v1-overwritten", false);
    assert_eq!(
        get(&engine, CF, b"k1").as_deref(),
        Some(&b"v1-overwritten"[..])
    );
    let length = must(engine.get_with(CF, b"k1", <[u8]>::len), "get_with");
    assert_eq!(
        length,
        Some(b"v1-overwritten".len()),
        "get_with must see the value"
    );
    delete(&engine, CF, b"k1");
    assert_eq!(
        get(&engine, CF, b"k1"),
        None,
        "a deleted key must read as None"
    );
    delete(&engine, CF, b"never-written");
    assert_eq!(get(&engine, CF, b"never-written"), None);
    assert_eq!(get(&engine, CF, b"k2").as_deref(), Some(&b"v2"[..]));
    assert_eq!(
        scan_all(&engine, CF),
        vec![(b"k2".to_vec(), b"v2".to_vec())]
    );
}

/// Empty values are stored and distinguished from absent keys.
pub(crate) fn empty_values<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    put(&engine, CF, b"empty", b"", true);
    assert_eq!(
        get(&engine, CF, b"empty"),
        Some(Vec::new()),
        "empty value must be Some(empty)"
    );
    assert_eq!(scan_all(&engine, CF), vec![(b"empty".to_vec(), Vec::new())]);
    let snapshot = must(engine.snapshot(), "snapshot");
    assert_eq!(get(&snapshot, CF, b"empty"), Some(Vec::new()));
}

/// The empty key is rejected by point operations; keys up to `MAX_KEY_BYTES` work and
/// longer ones are rejected; rejected operations are not added to a batch.
pub(crate) fn key_validation<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    let mut batch = engine.write_batch();
    let result = batch.put(CF, b"", b"v");
    assert!(
        matches!(result, Err(Error::EmptyKey)),
        "put of the empty key: {result:?}"
    );
    let result = batch.delete(CF, b"");
    assert!(
        matches!(result, Err(Error::EmptyKey)),
        "delete of the empty key: {result:?}"
    );
    let result = engine.get(CF, b"");
    assert!(
        matches!(result, Err(Error::EmptyKey)),
        "get of the empty key: {result:?}"
    );
    assert!(
        batch.is_empty(),
        "rejected operations must not be added to the batch"
    );

    let longest = vec![0xab; MAX_KEY_BYTES];
    must(
        batch.put(CF, &longest, b"longest"),
        "put of a key of MAX_KEY_BYTES",
    );
    must(engine.write(&batch, WriteOptions::synced()), "write");
    assert_eq!(get(&engine, CF, &longest).as_deref(), Some(&b"longest"[..]));

    let too_long = vec![0xab; MAX_KEY_BYTES + 1];
    let mut batch = engine.write_batch();
    let result = batch.put(CF, &too_long, b"v");
    assert!(
        matches!(result, Err(Error::KeyTooLarge { len_bytes, .. }) if len_bytes == MAX_KEY_BYTES + 1),
        "put of a key over MAX_KEY_BYTES: {result:?}"
    );
    let result = engine.get(CF, &too_long);
    assert!(
        matches!(result, Err(Error::KeyTooLarge { .. })),
        "get of a long key: {result:?}"
    );
    assert!(batch.is_empty());
    // Range bounds may be longer than a key and may be empty.
    let from_long = scan(&engine, CF, &too_long[..].., Direction::Forward);
    assert!(
        from_long.is_empty(),
        "no key is above a bound of 0xab * 512"
    );
    assert_eq!(scan(&engine, CF, &b""[..].., Direction::Forward).len(), 1);
    assert_eq!(
        scan(&engine, CF, ..&too_long[..], Direction::Reverse).len(),
        1
    );
}

/// Keys with 0x00 and 0xFF bytes order lexicographically as unsigned bytes.
pub(crate) fn binary_key_order<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let engine = ctx.open(&ctx.path("db"), &[CF]);
    let mut keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x00, 0x00, 0x00],
        vec![0x00, 0x01],
        vec![0x00, 0xff],
        vec![0x01],
        vec![0x7f],
        vec![0x7f, 0xff],
        vec![0x80],
        vec![0x80, 0x00],
        vec![0xfe, 0xff],
        vec![0xff],
        vec![0xff, 0x00],
        vec![0xff, 0xff],
        vec![0xff, 0xff, 0xff],
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"a\x00b".to_vec(),
        b"ab".to_vec(),
        b"b".to_vec(),
    ];
    let mut expected = keys.clone();
    expected.sort();
    keys.shuffle(&mut rng(ctx, "binary_key_order"));
    let mut batch = engine.write_batch();
    for key in &keys {
        must(batch.put(CF, key, key), "put");
    }
    must(engine.write(&batch, WriteOptions::synced()), "write");

    let forward: Vec<Vec<u8>> = scan_all(&engine, CF)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        forward.iter().map(|k| show(k)).collect::<Vec<_>>(),
        expected.iter().map(|k| show(k)).collect::<Vec<_>>(),
        "forward scan must return keys in unsigned lexicographic order"
    );
    let mut reverse: Vec<Vec<u8>> = scan(&engine, CF, .., Direction::Reverse)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    reverse.reverse();
    assert_eq!(
        reverse, expected,
        "reverse scan must return keys in the reverse order"
    );
    for key in &expected {
        assert_eq!(
            get(&engine, CF, key).as_ref(),
            Some(key),
            "get {}",
            show(key)
        );
    }
    // Bounds between binary keys.
    let between = scan(
        &engine,
        CF,
        &[0x00, 0x00][..]..&[0x01][..],
        Direction::Forward,
    );
    let between: Vec<Vec<u8>> = between.into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        between,
        vec![
            vec![0x00, 0x00],
            vec![0x00, 0x00, 0x00],
            vec![0x00, 0x01],
            vec![0x00, 0xff]
        ]
    );
    let top = scan(&engine, CF, &[0xff][..].., Direction::Reverse);
    let top: Vec<Vec<u8>> = top.into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        top,
        vec![
            vec![0xff, 0xff, 0xff],
            vec![0xff, 0xff],
            vec![0xff, 0x00],
            vec![0xff]
        ]
    );
}

/// A value of 16 MiB + 1 byte round-trips through get, scan, a snapshot and a reopen.
pub(crate) fn large_values<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    const LEN_BYTES: usize = 16 * 1024 * 1024 + 1;
    let path = ctx.path("db");
    let value: Vec<u8> = (0..LEN_BYTES).map(|i| (i % 251) as u8).collect();
    {
        let engine = ctx.open(&path, &[CF]);
        put(&engine, CF, b"big", &value, true);
        put(&engine, CF, b"small", b"s", true);
        let read = get(&engine, CF, b"big");
        assert!(
            read.as_ref() == Some(&value),
            "16 MiB value differs after get"
        );
        let snapshot = must(engine.snapshot(), "snapshot");
        let entries = scan(&snapshot, CF, .., Direction::Forward);
        assert_eq!(entries.len(), 2);
        assert!(entries[0].1 == value, "16 MiB value differs in a scan");
    }
    let engine = ctx.open(&path, &[CF]);
    let read = get(&engine, CF, b"big");
    assert!(
        read.as_ref() == Some(&value),
        "16 MiB value differs after reopen"
    );
}

/// Eight column families hold the same keys independently.
pub(crate) fn many_column_families<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let cfs = [
        "default", "raft", "meta", "lock", "write", "cf-5", "cf_6", "cf.7",
    ];
    let engine = ctx.open(&ctx.path("db"), &cfs);
    let mut names = engine.cf_names();
    names.sort_unstable();
    let mut expected = cfs.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "cf_names must list the column families");

    let mut batch = engine.write_batch();
    for (i, cf) in cfs.iter().enumerate() {
        for key in [&b"a"[..], b"b", b"c"] {
            must(batch.put(cf, key, format!("{cf}-{i}").as_bytes()), "put");
        }
    }
    must(engine.write(&batch, WriteOptions::synced()), "write");
    for (i, cf) in cfs.iter().enumerate() {
        assert_eq!(
            get(&engine, cf, b"b"),
            Some(format!("{cf}-{i}").into_bytes()),
            "cf {cf}"
        );
    }
    delete(&engine, "raft", b"b");
    must(engine.delete_range("meta", ..), "delete_range");
    for (i, cf) in cfs.iter().enumerate() {
        let expected_len = match *cf {
            "raft" => 2,
            "meta" => 0,
            _ => 3,
        };
        let entries = scan_all(&engine, cf);
        assert_eq!(entries.len(), expected_len, "entries of cf {cf}");
        assert!(
            entries
                .iter()
                .all(|(_, value)| value == format!("{cf}-{i}").as_bytes()),
            "cf {cf} sees values of another column family: {entries:?}"
        );
    }
    assert_eq!(get(&engine, "raft", b"b"), None);
    assert!(
        get(&engine, "default", b"b").is_some(),
        "a delete leaked across column families"
    );
}
