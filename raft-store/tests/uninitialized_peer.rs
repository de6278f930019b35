//! Peers that never got their data: added, then removed before their snapshot arrived.
//! Such a peer never campaigns and no leader contacts it again; it asks the stores it
//! knows whether it is still a member, and goes once one says it is not.
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

use conformance_tests::cluster::filter::{DropTypes, MessageFilter as _};
use conformance_tests::cluster::{Cluster, EngineFactory, change_peer, test_config};
use conformance_tests::on_every_engine;
use engines::Peekable;
use prost::Message as _;
use raft_core::eraftpb::{ConfChangeType, MessageType};
use raft_store::keys::{self, CF_META};
use raft_store::pb::raft_serverpb::{PeerState, RegionLocalState};

const CHECK_TICKS: usize = 5;
/// Ticks run after each membership change: four checks.
const TICKS: usize = 4 * CHECK_TICKS;

/// Adds peer 4 on a new store that snapshots never reach, then removes it; returns the
/// cluster and whether peer 4 still exists on store 4 after `TICKS` more ticks.
fn add_then_remove_before_the_snapshot<F: EngineFactory>(
    factory: F,
    check_ticks: usize,
) -> (Cluster<F>, bool) {
    let mut cfg = test_config();
    cfg.uninitialized_peer_check_ticks = check_ticks;
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    c.must_put(b"k", b"v");
    c.add_empty_store(4);
    let snapshots = DropTypes::new(&[MessageType::MsgSnapshot]);
    c.filters()
        .add(move |from, to, m: &_| to == 4 && snapshots.drops(from, to, m));
    c.must_admin(change_peer(ConfChangeType::AddNode, 4, 4));
    for _ in 0..TICKS {
        c.tick();
    }
    let peer = c.stores[&4]
        .peer(1)
        .expect("the leader's append created the peer");
    assert!(!peer.raft_group().store().is_initialized());
    assert_eq!(
        peer.member_at_conf_ver(),
        2,
        "addressed by the leader of the configuration that added it"
    );
    c.must_admin(change_peer(ConfChangeType::RemoveNode, 4, 4));
    for _ in 0..TICKS {
        c.tick();
    }
    let remains = c.stores[&4].peer(1).is_some();
    (c, remains)
}

fn uninitialized_peer_stays_while_a_member_and_goes_once_removed<F: EngineFactory>(factory: F) {
    // While it is a member its checks get no answer (asserted inside: it still exists
    // after four checks, uninitialized).
    let (mut c, remains) = add_then_remove_before_the_snapshot(factory, CHECK_TICKS);
    assert!(
        !remains,
        "the removed uninitialized peer was told and destroyed"
    );
    // Its tombstone is durable and records the configuration that proved the removal
    // (what keeps messages of the one that named it from recreating the peer, as
    // `membership.rs` tests for cut-off peers); a restart keeps the peer destroyed.
    let state = c.kv(4).get(CF_META, &keys::region_state_key(1)).unwrap();
    let state = RegionLocalState::decode(&state.expect("a tombstone was written")[..]).unwrap();
    assert_eq!(state.state(), PeerState::Tombstone);
    assert_eq!(state.region.unwrap().region_epoch.unwrap().conf_ver, 3);
    c.stop(4);
    c.start(4);
    for _ in 0..TICKS {
        c.tick();
    }
    assert!(c.stores[&4].peer(1).is_none());
    c.must_put(b"k2", b"v2");
}

/// Without the checks (an interval longer than the test) the same peer stays: what
/// destroys it above is its own check, not the removal reaching it some other way.
fn without_checks_the_removed_uninitialized_peer_stays<F: EngineFactory>(factory: F) {
    let (_c, remains) = add_then_remove_before_the_snapshot(factory, 1_000_000);
    assert!(remains);
}

on_every_engine!(
    uninitialized_peer_stays_while_a_member_and_goes_once_removed,
    without_checks_the_removed_uninitialized_peer_stays,
);
