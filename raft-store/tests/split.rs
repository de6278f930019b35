//! Region split on the in-memory cluster.
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

use conformance_tests::cluster::{Cluster, EngineFactory, get, put, split_at, test_config};
use conformance_tests::on_every_engine;

fn split_creates_a_region_that_serves_its_keys<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    for k in [b"a", b"f", b"m", b"t", b"z"] {
        c.must_put(k, k);
    }
    let resp = c.must_admin(split_at(b"m"));
    let regions = resp.admin_response.unwrap().splits.unwrap().regions;
    assert_eq!(regions.len(), 2);
    let (left, right) = (&regions[0], &regions[1]);
    assert_eq!(
        (&left.start_key[..], &left.end_key[..]),
        (&b""[..], &b"m"[..])
    );
    assert_eq!(
        (&right.start_key[..], &right.end_key[..]),
        (&b"m"[..], &b""[..])
    );
    assert_eq!(
        right.region_epoch.unwrap().version,
        left.region_epoch.unwrap().version
    );
    assert!(right.id > 1 << 20, "allocated id");
    for _ in 0..5 {
        c.tick();
    }
    // Every store routes keys to the right region and the new region has a leader.
    for id in 1..=3 {
        assert_eq!(c.stores[&id].region_for_key(b"c").unwrap().id, 1);
        assert_eq!(c.stores[&id].region_for_key(b"x").unwrap().id, right.id);
    }
    let resp = c.must_call_in(right.id, vec![get(b"t")]);
    assert_eq!(&resp.responses[0].get.as_ref().unwrap().value[..], b"t");
    c.must_call_in(right.id, vec![put(b"w", b"new")]);
    let resp = c.must_call_in(right.id, vec![get(b"w")]);
    assert_eq!(&resp.responses[0].get.as_ref().unwrap().value[..], b"new");

    // The left region no longer accepts the right's keys, and an old epoch is stale.
    let leader = c.leader(1);
    let resp = c.call(leader, c.request(leader, vec![put(b"x", b"1")]));
    assert!(
        resp.header
            .unwrap()
            .error
            .unwrap()
            .key_not_in_region
            .is_some()
    );
    let mut req = c.request(leader, vec![put(b"b", b"1")]);
    req.header.as_mut().unwrap().region_epoch = left.region_epoch.map(|mut e| {
        e.version -= 1;
        e
    });
    let resp = c.call(leader, req);
    let err = resp.header.unwrap().error.unwrap();
    assert!(err.epoch_not_match.is_some());

    // Both regions survive a restart of every store.
    for id in 1..=3 {
        c.stop(id);
        c.start(id);
    }
    let resp = c.must_call_in(right.id, vec![get(b"w")]);
    assert_eq!(&resp.responses[0].get.as_ref().unwrap().value[..], b"new");
    assert_eq!(c.must_get(b"a"), Some(b"a".to_vec()));
}

fn regions_split_automatically_by_size<F: EngineFactory>(factory: F) {
    let cfg = raft_store::Config {
        region_max_size_bytes: 2048,
        region_split_size_bytes: 1024,
        split_check_tick_ticks: 1,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    for i in 0..60u32 {
        let key = format!("key{i:04}");
        c.must_put_routed(key.as_bytes(), &[7u8; 100]);
        c.tick();
    }
    for _ in 0..10 {
        c.tick();
    }
    let count = c.stores[&1].peers().count();
    assert!(
        count >= 3,
        "60 × ~108 bytes over a 2 KiB limit: expected ≥ 3 regions, got {count}"
    );
    // Ranges are contiguous and cover the key space.
    let mut regions: Vec<_> = c.stores[&1].peers().map(|p| p.region().clone()).collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    assert!(regions[0].start_key.is_empty());
    assert!(regions.last().unwrap().end_key.is_empty());
    for pair in regions.windows(2) {
        assert_eq!(pair[0].end_key, pair[1].start_key);
    }
}

/// Commits are not broadcast by default (`raft_skip_bcast_commit`), but a split's is:
/// every follower applies it, and so routes the right half to the new region, before any
/// heartbeat (no tick) carries the commit index. An ordinary write after it is not
/// applied on the followers until then.
fn split_commit_reaches_followers_without_a_heartbeat<F: EngineFactory>(factory: F) {
    let cfg = test_config();
    assert!(cfg.raft_skip_bcast_commit, "the default this test is about");
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    c.must_put(b"a", b"1");
    let resp = c.must_admin(split_at(b"m"));
    let right = resp.admin_response.unwrap().splits.unwrap().regions[1].id;
    c.run();
    for id in 1..=3 {
        assert_eq!(
            c.stores[&id].region_for_key(b"x").unwrap().id,
            right,
            "store {id} applied the split"
        );
    }
    let leader = c.leader(1);
    let applied = |c: &Cluster<F>, id: u64| {
        c.stores[&id]
            .region_statuses()
            .into_iter()
            .find(|s| s.region.id == 1)
            .map(|s| s.applied_index)
    };
    let before: Vec<_> = (1..=3).map(|id| applied(&c, id)).collect();
    c.must_put(b"b", b"2");
    c.run();
    let followers_moved = (1..=3)
        .filter(|&id| id != leader && applied(&c, id) != before[id as usize - 1])
        .count();
    assert_eq!(
        followers_moved, 0,
        "an ordinary commit waits for the next message"
    );
}

on_every_engine!(
    split_creates_a_region_that_serves_its_keys,
    regions_split_automatically_by_size,
    split_commit_reaches_followers_without_a_heartbeat
);
