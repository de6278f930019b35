//! The store-wide entry cache budget: leaders keep the entries a stopped follower lacks,
//! in every region, and the store's budget caps their sum.
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

use conformance_tests::cluster::{Cluster, EngineFactory, split_at, test_config};
use conformance_tests::on_every_engine;
use engines::Peekable;
use raft_store::keys::{self, CF_DEFAULT};

const PEER_BUDGET: u64 = 64 << 10;
const STORE_BUDGET: u64 = 64 << 10;
const VALUE_BYTES: usize = 1024;
const PUTS_PER_REGION: u8 = 40;
/// One key in each of the four regions `["", f)`, `[f, m)`, `[m, t)`, `[t, "")`.
const REGION_KEYS: [u8; 4] = [b'a', b'g', b'n', b'u'];

/// Four regions on three stores, store 3 stopped while every region takes
/// `PUTS_PER_REGION` puts of 1 KiB: every region's leader keeps the entries store 3 lacks.
fn four_regions_with_store_3_down<F: EngineFactory>(factory: F, store_budget: u64) -> Cluster<F> {
    let mut cfg = test_config();
    cfg.raft_entry_cache_bytes = PEER_BUDGET;
    cfg.raft_entry_cache_store_bytes = store_budget;
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    // Region 1 keeps the left part of each split, so split from the right.
    for key in [b"t", b"m", b"f"] {
        c.must_admin(split_at(key));
    }
    c.stop(3);
    let value = vec![7u8; VALUE_BYTES];
    for i in 0..PUTS_PER_REGION {
        for k in REGION_KEYS {
            c.must_put_routed(&[k, i], &value);
        }
    }
    c
}

/// [`four_regions_with_store_3_down`], then store 3 comes back and must catch up. Returns
/// the most bytes one store caches after the puts (while store 3 is down the leaders'
/// caches only grow, so this is their peak).
fn most_cached_with_a_follower_down<F: EngineFactory>(factory: F, store_budget: u64) -> u64 {
    let mut c = four_regions_with_store_3_down(factory, store_budget);
    let value = vec![7u8; VALUE_BYTES];
    let most_cached = [1, 2]
        .iter()
        .map(|id| c.stores[id].entry_cache_bytes())
        .max()
        .unwrap();

    // Entries evicted from the cache are read back from the raft engine.
    c.start(3);
    let last = [*REGION_KEYS.last().unwrap(), PUTS_PER_REGION - 1];
    let last_key = keys::data_key(&last);
    for _ in 0..100 {
        if c.kv(3).get(CF_DEFAULT, &last_key).unwrap().is_some() {
            break;
        }
        c.tick();
    }
    for i in 0..PUTS_PER_REGION {
        for k in REGION_KEYS {
            assert_eq!(
                c.kv(3).get(CF_DEFAULT, &keys::data_key(&[k, i])).unwrap(),
                Some(value.clone()),
                "store 3 caught up on key {:?}",
                [k, i]
            );
        }
    }
    most_cached
}

fn store_budget_caps_the_entries_leaders_keep_for_a_stopped_follower<F: EngineFactory>(factory: F) {
    let most_cached = most_cached_with_a_follower_down(factory, STORE_BUDGET);
    // Each peer may keep its newest entry past the budget: four regions' worth.
    let slack = 4 * (VALUE_BYTES as u64 + 256);
    assert!(
        most_cached <= STORE_BUDGET + slack,
        "a store cached {most_cached} bytes, budget {STORE_BUDGET} + {slack}"
    );
}

/// Without the store budget the same run caches more than it on some store (two of the
/// four leaders share a store), so the test above measures the budget, not the load.
fn without_a_store_budget_the_leaders_cache_more<F: EngineFactory>(factory: F) {
    let most_cached = most_cached_with_a_follower_down(factory, u64::MAX);
    assert!(
        most_cached > STORE_BUDGET + 4 * (VALUE_BYTES as u64 + 256),
        "a store cached only {most_cached} bytes"
    );
}

/// The cached bytes of region `region_id`'s leader.
fn leader_cache_bytes<F: EngineFactory>(c: &mut Cluster<F>, region_id: u64) -> u64 {
    let leader = c.leader(region_id);
    c.stores[&leader]
        .peer(region_id)
        .unwrap()
        .raft_group()
        .store()
        .entry_cache_bytes()
}

/// With the store's caches crowded by regions that went idle, the periodic sweep empties
/// theirs and the one region still written to gets the room.
fn idle_regions_give_their_cache_to_a_busy_one<F: EngineFactory>(factory: F) {
    let mut c = four_regions_with_store_3_down(factory, STORE_BUDGET);
    let busy = c.region_for_key(b"a");
    let idle: Vec<u64> = REGION_KEYS[1..]
        .iter()
        .map(|k| c.region_for_key(&[*k]))
        .collect();
    assert!(
        idle.iter().any(|&r| leader_cache_bytes(&mut c, r) > 0),
        "the idle regions' leaders cache entries for store 3"
    );
    let value = vec![8u8; VALUE_BYTES];
    for i in 0..3 * PUTS_PER_REGION {
        c.must_put_routed(&[b'a', b'x', i], &value);
        // A sweep every `raft_log_gc_tick_ticks` (10).
        for _ in 0..4 {
            c.tick();
        }
    }
    for &region in &idle {
        assert_eq!(
            leader_cache_bytes(&mut c, region),
            0,
            "idle region {region} dropped its cache"
        );
    }
    let held = leader_cache_bytes(&mut c, busy);
    assert!(
        held >= 20 * VALUE_BYTES as u64,
        "the busy region caches only {held} bytes"
    );
}

on_every_engine!(
    store_budget_caps_the_entries_leaders_keep_for_a_stopped_follower,
    without_a_store_budget_the_leaders_cache_more,
    idle_regions_give_their_cache_to_a_busy_one,
);
