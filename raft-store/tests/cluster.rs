//! Three stores over in-memory queues on the memory engine: the basic life of a region.
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

use conformance_tests::cluster::filter::Partition;
use conformance_tests::cluster::{
    Cluster, EngineFactory, change_peer, delete, get, put, scan, test_config, transfer_leader,
};
use conformance_tests::on_every_engine;
use engines::Peekable;
use raft_core::eraftpb::ConfChangeType;
use raft_store::keys::{self, CF_DEFAULT, CF_RAFT};

fn put_get_delete_scan<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k1", b"v1");
    c.must_put(b"k2", b"v2");
    c.must_put(b"k3", b"v3");
    assert_eq!(c.must_get(b"k2"), Some(b"v2".to_vec()));
    c.must_call(vec![delete(b"k2")]);
    assert_eq!(c.must_get(b"k2"), None);
    let resp = c.must_call(vec![scan(b"k", b"", 10, false)]);
    let keys: Vec<_> = resp.responses[0]
        .scan
        .as_ref()
        .unwrap()
        .pairs
        .iter()
        .map(|p| p.key.to_vec())
        .collect();
    assert_eq!(keys, vec![b"k1".to_vec(), b"k3".to_vec()]);
    let resp = c.must_call(vec![scan(b"", b"", 1, true)]);
    assert_eq!(
        &resp.responses[0].scan.as_ref().unwrap().pairs[0].key[..],
        b"k3"
    );
    // Every replica applied the same data.
    c.tick();
    for id in 1..=3 {
        assert_eq!(
            c.kv(id).get(CF_DEFAULT, &keys::data_key(b"k1")).unwrap(),
            Some(b"v1".to_vec())
        );
        assert_eq!(
            c.kv(id).get(CF_DEFAULT, &keys::data_key(b"k2")).unwrap(),
            None
        );
    }
}

fn followers_answer_not_leader_with_a_hint<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    let leader = c.leader(1);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let resp = c.call(follower, c.request(follower, vec![put(b"a", b"1")]));
    let err = resp.header.unwrap().error.unwrap();
    assert_eq!(err.not_leader.unwrap().leader.unwrap().store_id, leader);
}

fn typed_errors_for_bad_requests<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"b", b"m");
    let leader = c.leader(1);
    // A key outside [b, m).
    let resp = c.call(leader, c.request(leader, vec![put(b"z", b"1")]));
    assert!(
        resp.header
            .unwrap()
            .error
            .unwrap()
            .key_not_in_region
            .is_some()
    );
    // A stale epoch.
    let mut req = c.request(leader, vec![put(b"c", b"1")]);
    req.header
        .as_mut()
        .unwrap()
        .region_epoch
        .as_mut()
        .unwrap()
        .version = 0;
    let resp = c.call(leader, req);
    assert!(
        resp.header
            .unwrap()
            .error
            .unwrap()
            .epoch_not_match
            .is_some()
    );
    // An unknown region.
    let mut req = c.request(leader, vec![get(b"c")]);
    req.header.as_mut().unwrap().region_id = 42;
    let resp = c.call(leader, req);
    assert_eq!(
        resp.header
            .unwrap()
            .error
            .unwrap()
            .region_not_found
            .unwrap()
            .region_id,
        42
    );
    // An entry over the size limit.
    c.cfg.raft_entry_max_bytes = 1024;
    for id in 1..=3 {
        c.stop(id);
        c.start(id);
    }
    let leader = c.leader(1);
    let resp = c.call(leader, c.request(leader, vec![put(b"c", &[0u8; 2048])]));
    assert!(
        resp.header
            .unwrap()
            .error
            .unwrap()
            .raft_entry_too_large
            .is_some()
    );
}

fn leader_failover_keeps_acknowledged_writes<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    for i in 0..20u8 {
        c.must_put(&[i], &[i]);
    }
    let old = c.leader(1);
    c.stop(old);
    let new = c.leader(1);
    assert_ne!(old, new);
    for i in 0..20u8 {
        assert_eq!(c.must_get(&[i]), Some(vec![i]), "key {i} after failover");
    }
    c.must_put(b"after", b"failover");
    c.start(old);
    for _ in 0..30 {
        c.tick();
    }
    assert_eq!(
        c.kv(old)
            .get(CF_DEFAULT, &keys::data_key(b"after"))
            .unwrap(),
        Some(b"failover".to_vec())
    );
}

fn restart_of_every_store_recovers_from_the_engines<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"durable", b"yes");
    for id in 1..=3 {
        c.stop(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    assert_eq!(c.must_get(b"durable"), Some(b"yes".to_vec()));
}

fn minority_cannot_write_and_catches_up_after_heal<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    let leader = c.leader(1);
    let isolated = (1..=3).find(|&id| id != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&id| id != isolated).collect();
    let partition = c.filters().add(Partition::new(&[&[isolated], &others]));
    c.must_put(b"while", b"partitioned");
    assert_eq!(
        c.kv(isolated)
            .get(CF_DEFAULT, &keys::data_key(b"while"))
            .unwrap(),
        None
    );
    c.filters().remove(partition);
    for _ in 0..30 {
        c.tick();
    }
    assert_eq!(
        c.kv(isolated)
            .get(CF_DEFAULT, &keys::data_key(b"while"))
            .unwrap(),
        Some(b"partitioned".to_vec())
    );
}

fn log_gc_truncates_and_deletes_the_log<F: EngineFactory>(factory: F) {
    let cfg = raft_store::Config {
        raft_log_gc_count_limit: 10,
        raft_log_gc_tick_ticks: 1,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    for i in 0..50u8 {
        c.must_put(&[i], b"v");
    }
    for _ in 0..5 {
        c.tick();
    }
    for id in 1..=3 {
        let peer = c.stores[&id].peer(1).unwrap();
        let storage = peer.raft_group().store();
        let truncated = storage.truncated_index();
        assert!(truncated > 30, "store {id}: truncated {truncated}");
        assert!(
            storage.applied_index() - truncated <= 2 * 10,
            "log stays bounded"
        );
        // The truncated entries are gone from the raft engine.
        assert!(
            c.raft_engine(id)
                .get(CF_RAFT, &keys::raft_log_key(1, truncated))
                .unwrap()
                .is_none()
        );
        assert!(
            c.raft_engine(id)
                .get(CF_RAFT, &keys::raft_log_key(1, truncated + 1))
                .unwrap()
                .is_some()
        );
    }
    assert_eq!(c.must_get(&[7]), Some(b"v".to_vec()));
}

/// A leader whose own log was truncated by a snapshot still compacts its followers' logs
/// (found by the conf-change scenario: a new peer caught up by snapshot became leader,
/// its own log was short so it never proposed a compaction, and the old members' logs
/// never shrank). Stores 1–3 run with a GC limit out of reach, so only store 4 (added
/// with a limit of 10) ever proposes a compaction.
fn a_leader_installed_by_snapshot_compacts_the_followers_logs<F: EngineFactory>(factory: F) {
    let gc = |limit| raft_store::Config {
        raft_log_gc_count_limit: limit,
        raft_log_gc_tick_ticks: 1,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, gc(1000), b"", b"");
    for i in 0..30u8 {
        c.must_put(&[i], b"v");
    }
    c.cfg = gc(10);
    c.add_empty_store(4);
    c.must_admin(change_peer(ConfChangeType::AddNode, 4, 4));
    for _ in 0..20 {
        c.tick();
    }
    let storage = c.stores[&4].peer(1).unwrap().raft_group().store();
    assert!(
        storage.truncated_index() > 30,
        "store 4 caught up by snapshot"
    );
    c.must_admin(transfer_leader(4, 4));
    for _ in 0..10 {
        c.tick();
    }
    assert_eq!(c.current_leader(1), Some(4));
    c.must_put(b"after", b"v");
    for _ in 0..10 {
        c.tick();
    }
    for id in 1..=4 {
        let storage = c.stores[&id].peer(1).unwrap().raft_group().store();
        let (applied, truncated) = (storage.applied_index(), storage.truncated_index());
        assert!(
            applied - truncated <= 2 * 10,
            "store {id}: applied {applied}, truncated {truncated}"
        );
    }
}

fn lease_reads_serve_linearizable_values<F: EngineFactory>(factory: F) {
    let cfg = raft_store::Config {
        lease_read: true,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    for i in 0..10u8 {
        c.must_put(b"k", &[i]);
        assert_eq!(
            c.must_get(b"k"),
            Some(vec![i]),
            "a read sees the write before it"
        );
    }
    // After a failover the new leader's lease serves the latest value too.
    let old = c.leader(1);
    c.stop(old);
    assert_eq!(c.must_get(b"k"), Some(vec![9]));
}

fn writes_of_one_iteration_share_one_log_entry<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"warm", b"up");
    let leader = c.leader(1);
    let last_before = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .raft()
        .raft_log()
        .last_index();
    let reqs: Vec<_> = (0..20u8)
        .map(|i| c.request(leader, vec![put(&[b'b', i], &[i])]))
        .collect();
    let resps = c.call_many(leader, reqs);
    assert!(
        resps
            .iter()
            .all(|r| r.header.as_ref().and_then(|h| h.error.as_ref()).is_none())
    );
    let last_after = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .raft()
        .raft_log()
        .last_index();
    assert_eq!(last_after, last_before + 1, "twenty writes, one entry");
    for i in 0..20u8 {
        assert_eq!(c.must_get(&[b'b', i]), Some(vec![i]));
    }
}

on_every_engine!(
    writes_of_one_iteration_share_one_log_entry,
    lease_reads_serve_linearizable_values,
    put_get_delete_scan,
    followers_answer_not_leader_with_a_hint,
    typed_errors_for_bad_requests,
    leader_failover_keeps_acknowledged_writes,
    restart_of_every_store_recovers_from_the_engines,
    minority_cannot_write_and_catches_up_after_heal,
    log_gc_truncates_and_deletes_the_log,
    a_leader_installed_by_snapshot_compacts_the_followers_logs
);
