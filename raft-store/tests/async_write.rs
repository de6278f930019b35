//! Raft batches written asynchronously (`raft_async_write`; a store driven by hand
//! writes them at the start of its next iteration): what promises durability waits for
//! the write.

#![allow(clippy::unwrap_used)] // a test

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use conformance_tests::cluster::{Cluster, test_config};
use engines::Peekable;
use raft_core::eraftpb::MessageType;
use raft_store::Config;
use raft_store::keys::{self, CF_RAFT};

#[test]
fn an_append_is_acknowledged_only_once_the_entry_is_in_the_raft_engine() {
    let cfg = Config {
        raft_async_write: true,
        ..test_config()
    };
    let mut c = Cluster::new(3, cfg, b"", b"");
    let raft_engines: HashMap<u64, _> = (1..=3).map(|id| (id, c.raft_engine(id).clone())).collect();
    let acks = Arc::new(AtomicU64::new(0));
    let early = Arc::new(AtomicU64::new(0));
    let (acks_seen, early_seen) = (acks.clone(), early.clone());
    // Filters run as the store hands a message to its sender: look at the sender's raft
    // engine at that moment.
    c.filters().add(
        move |from, _to, msg: &raft_store::pb::raft_serverpb::RaftMessage| {
            let Some(m) = msg.message.as_ref() else {
                return false;
            };
            if m.msg_type == MessageType::MsgAppendResponse as i32 && !m.reject && m.index > 0 {
                acks_seen.fetch_add(1, Ordering::Relaxed);
                let key = keys::raft_log_key(msg.region_id, m.index);
                if raft_engines[&from].get(CF_RAFT, &key).unwrap().is_none() {
                    early_seen.fetch_add(1, Ordering::Relaxed);
                }
            }
            false
        },
    );
    for i in 0..20u32 {
        c.must_put(format!("k{i}").as_bytes(), b"v");
    }
    assert_eq!(c.must_get(b"k19"), Some(b"v".to_vec()));
    assert!(
        acks.load(Ordering::Relaxed) >= 20,
        "appends were acknowledged"
    );
    assert_eq!(
        early.load(Ordering::Relaxed),
        0,
        "an append was acknowledged before its entry was written"
    );
    for id in 1..=3 {
        assert!(!c.stores[&id].has_unwritten_rounds(), "store {id} settled");
    }
}
