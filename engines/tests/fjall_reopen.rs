//! Reopening a fjall engine with other column families.
#![cfg(feature = "fjall")]

use engines::{Engine, FjallEngine, Peekable, WriteBatch, WriteOptions};

#[test]
fn reopening_with_more_column_families_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FjallEngine::open(dir.path(), &["default"]).unwrap();
    let mut batch = engine.write_batch();
    batch.put("default", b"k", b"v").unwrap();
    engine.write(&batch, WriteOptions::synced()).unwrap();
    drop(engine);
    let engine = FjallEngine::open(dir.path(), &["raft", "default"]).unwrap();
    assert_eq!(engine.get("default", b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(engine.get("raft", b"k").unwrap(), None);
    drop(engine);
    let engine = FjallEngine::open(dir.path(), &["raft"]).unwrap();
    assert!(
        engine.get("default", b"k").is_err(),
        "a column family left out is not open"
    );
    drop(engine);
    let engine = FjallEngine::open(dir.path(), &["default"]).unwrap();
    assert_eq!(
        engine.get("default", b"k").unwrap(),
        Some(b"v".to_vec()),
        "but still on disk"
    );
}
