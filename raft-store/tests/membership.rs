//! Membership changes and leadership transfer on the in-memory cluster (snapshots have
//! their own tests in `snapshot.rs`).
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

use conformance_tests::cluster::filter::{DropTypes, FilterId, MessageFilter as _, Partition};
use conformance_tests::cluster::{
    self, Cluster, EngineFactory, change_peer, test_config, transfer_leader,
};
use conformance_tests::on_every_engine;
use engines::Peekable;
use raft_core::eraftpb::{ConfChangeType, MessageType};
use raft_store::keys::{self, CF_DEFAULT, CF_META};

fn add_peer_on_a_new_store_receives_the_data<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"before", b"add");
    c.add_empty_store(4);
    let resp = c.must_admin(change_peer(ConfChangeType::AddNode, 4, 4));
    let region = resp
        .admin_response
        .unwrap()
        .change_peer
        .unwrap()
        .region
        .unwrap();
    assert_eq!(region.peers.len(), 4);
    assert_eq!(region.region_epoch.unwrap().conf_ver, 2);
    for _ in 0..30 {
        c.tick();
    }
    assert_eq!(
        c.kv(4).get(CF_DEFAULT, &keys::data_key(b"before")).unwrap(),
        Some(b"add".to_vec())
    );
    c.must_put(b"after", b"add");
    for _ in 0..5 {
        c.tick();
    }
    assert_eq!(
        c.kv(4).get(CF_DEFAULT, &keys::data_key(b"after")).unwrap(),
        Some(b"add".to_vec())
    );
    // The new peer survives a restart as an initialized member.
    c.stop(4);
    c.start(4);
    assert!(
        c.stores[&4]
            .peer(1)
            .unwrap()
            .raft_group()
            .store()
            .is_initialized()
    );
}

fn removed_peer_is_destroyed_and_its_data_deleted<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    c.must_admin(change_peer(ConfChangeType::RemoveNode, victim, victim));
    for _ in 0..10 {
        c.tick();
    }
    assert!(c.stores[&victim].peer(1).is_none(), "peer destroyed");
    assert_eq!(
        c.kv(victim).get(CF_DEFAULT, &keys::data_key(b"k")).unwrap(),
        None
    );
    let state = c
        .kv(victim)
        .get(CF_META, &keys::region_state_key(1))
        .unwrap()
        .unwrap();
    let state =
        <raft_store::pb::raft_serverpb::RegionLocalState as prost::Message>::decode(&state[..])
            .unwrap();
    assert_eq!(
        state.state(),
        raft_store::pb::raft_serverpb::PeerState::Tombstone
    );
    // The remaining two still serve writes.
    c.must_put(b"k2", b"v2");
    assert_eq!(c.must_get(b"k2"), Some(b"v2".to_vec()));
    // A restarted store keeps the peer destroyed.
    c.stop(victim);
    c.start(victim);
    assert!(c.stores[&victim].peer(1).is_none());
}

/// A store whose peer was removed can host the region again under a new peer id (found
/// by the conf-change scenario: the old peer's apply state survived its destruction and
/// made the new peer's state look corrupt, which stopped the store).
fn removed_store_hosts_the_region_again<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    c.must_admin(change_peer(ConfChangeType::RemoveNode, victim, victim));
    for _ in 0..10 {
        c.tick();
    }
    assert!(c.stores[&victim].peer(1).is_none(), "peer destroyed");
    c.must_admin(change_peer(ConfChangeType::AddNode, 10, victim));
    c.must_put(b"k2", b"v2");
    for _ in 0..20 {
        c.tick();
    }
    assert_eq!(c.stores[&victim].peer(1).unwrap().meta().id, 10);
    assert_eq!(
        c.kv(victim)
            .get(CF_DEFAULT, &keys::data_key(b"k2"))
            .unwrap(),
        Some(b"v2".to_vec())
    );
    c.stop(victim);
    c.start(victim);
    assert!(
        c.stores[&victim].peer(1).is_some(),
        "the new peer survives a restart"
    );
}

/// Three stores holding `k`, and a follower cut off from the others: the cluster, the
/// follower and its cut.
fn cut_off_follower<F: EngineFactory>(factory: F) -> (Cluster<F>, u64, FilterId) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    let cut = c.filters().add(Partition::new(&[&[victim], &others]));
    (c, victim, cut)
}

/// [`cut_off_follower`], and the follower removed from the region (it cannot learn of it).
fn remove_cut_off_follower<F: EngineFactory>(factory: F) -> (Cluster<F>, u64, FilterId) {
    let (mut c, victim, cut) = cut_off_follower(factory);
    c.must_admin(change_peer(ConfChangeType::RemoveNode, victim, victim));
    (c, victim, cut)
}

/// Heals `cut` and checks that the stale peer on `victim` gave way to peer `new_id`, which
/// caught up with `k2` written meanwhile.
fn heal_and_expect_replacement<F: EngineFactory>(
    c: &mut Cluster<F>,
    cut: FilterId,
    victim: u64,
    new_id: u64,
) {
    c.filters().remove(cut);
    for _ in 0..30 {
        c.tick();
    }
    assert_eq!(c.stores[&victim].peer(1).unwrap().meta().id, new_id);
    assert_eq!(
        c.kv(victim)
            .get(CF_DEFAULT, &keys::data_key(b"k2"))
            .unwrap(),
        Some(b"v2".to_vec())
    );
}

/// A peer removed while cut off never learns it; when its store is added back under a
/// new peer id, the stale peer gives way to the new one (found by the conf-change
/// scenario: the new peer's messages were dropped as "for another peer id" forever).
fn stale_peer_gives_way_to_a_newer_one<F: EngineFactory>(factory: F) {
    let (mut c, victim, cut) = remove_cut_off_follower(factory);
    c.must_admin(change_peer(ConfChangeType::AddNode, 10, victim));
    c.must_put(b"k2", b"v2");
    assert_eq!(
        c.stores[&victim].peer(1).unwrap().meta().id,
        victim,
        "still stale"
    );
    heal_and_expect_replacement(&mut c, cut, victim, 10);
}

/// Peer ids come from several allocators (operators, each store's allocator for split
/// peers), so a newer peer may have a smaller id than the stale one it replaces: the
/// newer region epoch alone decides (found by the deterministic simulation, seed 7: a
/// split-created peer, removed while cut off, blocked its smaller-id replacement forever).
fn stale_peer_gives_way_to_a_newer_one_with_a_smaller_id<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&id| id != victim).collect();
    c.must_admin(change_peer(ConfChangeType::RemoveNode, victim, victim));
    for _ in 0..10 {
        c.tick();
    }
    c.must_admin(change_peer(ConfChangeType::AddNode, 1000, victim));
    for _ in 0..30 {
        c.tick();
    }
    assert_eq!(c.stores[&victim].peer(1).unwrap().meta().id, 1000);
    let cut = c.filters().add(Partition::new(&[&[victim], &others]));
    c.must_admin(change_peer(ConfChangeType::RemoveNode, 1000, victim));
    c.must_admin(change_peer(ConfChangeType::AddNode, 10, victim));
    c.must_put(b"k2", b"v2");
    heal_and_expect_replacement(&mut c, cut, victim, 10);
}

/// A peer removed while cut off, whose store is not added back, learns of its removal
/// from the members it campaigns to (an `is_tombstone` reply) and is destroyed (found by
/// the conf-change scenario: such peers stayed forever, campaigning, with their data).
fn removed_peer_cut_off_is_told_and_destroyed<F: EngineFactory>(factory: F) {
    let (mut c, victim, cut) = remove_cut_off_follower(factory);
    c.must_put(b"k2", b"v2");
    for _ in 0..30 {
        c.tick();
    }
    assert!(
        c.stores[&victim].peer(1).is_some(),
        "cut off, the removed peer cannot know yet"
    );
    c.filters().remove(cut);
    for _ in 0..50 {
        c.tick();
    }
    assert!(
        c.stores[&victim].peer(1).is_none(),
        "the removed peer was told and destroyed"
    );
    assert_eq!(
        c.kv(victim).get(CF_DEFAULT, &keys::data_key(b"k")).unwrap(),
        None,
        "its data is deleted"
    );
    // The two members were not disturbed, and a restart keeps the peer destroyed.
    c.must_put(b"k3", b"v3");
    c.stop(victim);
    c.start(victim);
    assert!(c.stores[&victim].peer(1).is_none());
}

/// A store holds at most one peer of a region: adding a second one there is refused
/// (found by the conf-change scenario: a retried addition on a store that had meanwhile
/// got a peer made both members, and the store flip-flopped between them forever).
fn second_peer_on_a_store_is_refused<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.add_empty_store(4);
    c.must_admin(change_peer(ConfChangeType::AddNode, 10, 4));
    for (id, store) in [(11, 4), (10, 3)] {
        let leader = c.leader(1);
        let mut req = c.request(leader, Vec::new());
        req.admin_request = Some(Box::new(change_peer(ConfChangeType::AddNode, id, store)));
        let resp = c.call(leader, req);
        let error = resp.header.and_then(|h| h.error);
        assert!(
            error.is_some_and(|e| e.message.contains("cannot add peer")),
            "peer {id} on store {store} refused"
        );
    }
    for _ in 0..10 {
        c.tick();
    }
    for id in 1..=4 {
        let region = c.stores[&id].peer(1).unwrap().region().clone();
        let mut stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
        stores.sort_unstable();
        assert_eq!(stores, vec![1, 2, 3, 4], "store {id}: {region:?}");
    }
}

fn transfer_leader_moves_leadership<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    for _ in 0..3 {
        let leader = c.leader(1);
        let target = leader % 3 + 1;
        c.must_admin(transfer_leader(target, target));
        for _ in 0..10 {
            c.tick();
        }
        assert_eq!(c.current_leader(1), Some(target));
        assert_eq!(c.must_get(b"k"), Some(b"v".to_vec()));
    }
}

fn joint_change_promotes_a_learner_and_removes_a_voter<F: EngineFactory>(factory: F) {
    use raft_store::pb::metapb::PeerRole;
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    c.add_empty_store(4);
    c.must_admin(change_peer(ConfChangeType::AddLearnerNode, 4, 4));
    for _ in 0..20 {
        c.tick();
    }
    let leader = c.leader(1);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    // Two changes at once go through joint consensus, left automatically.
    c.must_admin(cluster::change_peers_v2(&[
        (ConfChangeType::AddNode, 4, 4),
        (ConfChangeType::RemoveNode, victim, victim),
    ]));
    for _ in 0..20 {
        c.tick();
    }
    let region = c.stores[&leader].peer(1).unwrap().region().clone();
    let mut ids: Vec<_> = region.peers.iter().map(|p| (p.id, p.role())).collect();
    ids.sort_unstable_by_key(|p| p.0);
    let mut expected: Vec<_> = (1..=4)
        .filter(|&id| id != victim)
        .map(|id| (id, PeerRole::Voter))
        .collect();
    expected.sort_unstable_by_key(|p| p.0);
    assert_eq!(
        ids, expected,
        "joint configuration left: only plain voters remain"
    );
    assert!(
        c.stores[&victim].peer(1).is_none(),
        "removed voter destroyed"
    );
    // The new configuration commits writes, and the promoted learner has the data.
    c.must_put(b"after", b"joint");
    for _ in 0..5 {
        c.tick();
    }
    assert_eq!(
        c.kv(4).get(CF_DEFAULT, &keys::data_key(b"after")).unwrap(),
        Some(b"joint".to_vec())
    );
}

/// A voter added while another is down leaves the group without a quorum until the new
/// peer exists; if the leader steps down before it has contacted the new store, only
/// candidates' vote requests reach it, and they create the peer (found by the simulation
/// combining splits and conf changes, seeds 47, 130 and 192: such a region never had a
/// leader again).
fn added_voter_is_created_by_a_vote_request<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let down = (1..=3).find(|&id| id != leader).unwrap();
    c.stop(down);
    c.add_empty_store(4);
    // Nothing a leader sends reaches the new store: the peer cannot be created that way.
    let leader_kinds = DropTypes::new(&[
        MessageType::MsgAppend,
        MessageType::MsgHeartbeat,
        MessageType::MsgSnapshot,
    ]);
    let from_leaders = c
        .filters()
        .add(move |from, to, m: &_| to == 4 && leader_kinds.drops(from, to, m));
    c.must_admin(change_peer(ConfChangeType::AddNode, 4, 4));
    assert!(
        c.stores[&4].peer(1).is_none(),
        "no leader message reached it"
    );
    // Two live voters of four: the leader loses its quorum and steps down.
    let mut ticks = 0;
    while c.current_leader(1).is_some() {
        assert!(ticks < 100, "the leader kept a quorum it does not have");
        c.tick();
        ticks += 1;
    }
    for _ in 0..30 {
        c.tick();
    }
    assert!(
        c.stores[&4].peer(1).is_some(),
        "a candidate's vote request created the new peer"
    );
    c.filters().remove(from_leaders);
    c.must_put(b"k2", b"v2");
    for _ in 0..30 {
        c.tick();
    }
    for key in [&b"k"[..], b"k2"] {
        assert!(
            c.kv(4)
                .get(CF_DEFAULT, &keys::data_key(key))
                .unwrap()
                .is_some(),
            "the new peer caught up"
        );
    }
}

/// A cut-off peer that missed configurations still naming it, then learned of its removal
/// from a tombstone reply, is not recreated (with an empty log, though it had voted and
/// acknowledged entries) by a message of one of those configurations, before or after a
/// restart: its tombstone records the configuration that proved the removal.
fn destroyed_stale_peer_is_not_recreated_by_a_configuration_it_missed<F: EngineFactory>(
    factory: F,
) {
    let (mut c, victim, cut) = cut_off_follower(factory);
    let leader = c.leader(1);
    // The victim misses a configuration that still names it, then its removal.
    c.add_empty_store(4);
    c.must_admin(change_peer(ConfChangeType::AddNode, 4, 4));
    let missed = c.stores[&leader]
        .peer(1)
        .unwrap()
        .region()
        .region_epoch
        .unwrap();
    c.must_admin(change_peer(ConfChangeType::RemoveNode, victim, victim));
    c.filters().remove(cut);
    for _ in 0..50 {
        c.tick();
    }
    assert!(c.stores[&victim].peer(1).is_none(), "told and destroyed");
    // A heartbeat as a leader still in the configuration before the removal would send.
    let stale = || raft_store::pb::raft_serverpb::RaftMessage {
        region_id: 1,
        from_peer: Some(raft_store::pb::metapb::Peer {
            id: leader,
            store_id: leader,
            ..Default::default()
        }),
        to_peer: Some(raft_store::pb::metapb::Peer {
            id: victim,
            store_id: victim,
            ..Default::default()
        }),
        region_epoch: Some(missed),
        message: Some(raft_core::eraftpb::Message {
            msg_type: MessageType::MsgHeartbeat as i32,
            from: leader,
            to: victim,
            term: 100,
            ..Default::default()
        }),
        ..Default::default()
    };
    for restart in [false, true] {
        if restart {
            c.stop(victim);
            c.start(victim);
        }
        let msg = raft_store::StoreMsg::RaftMessage(Box::new(stale()));
        c.stores
            .get_mut(&victim)
            .unwrap()
            .handle_msgs([msg])
            .unwrap();
        assert!(
            c.stores[&victim].peer(1).is_none(),
            "a message of a configuration the destroyed peer missed recreated it \
             (restarted: {restart})"
        );
    }
}

/// Adding a voter while another one is down and behind the leader's log would leave a
/// group whose quorum cannot be formed from the peers holding the log: it is refused
/// (TiKV's unsafe conf change check). Removing the down voter first makes room.
fn adding_a_voter_without_a_quorum_holding_the_log_is_refused<F: EngineFactory>(factory: F) {
    let cfg = raft_store::Config {
        raft_log_gc_count_limit: 5,
        raft_log_gc_tick_ticks: 1,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let down = (1..=3).find(|&id| id != leader).unwrap();
    c.stop(down);
    // The leader's log moves past everything the down voter has.
    for i in 0..30u32 {
        c.must_put(format!("k{i}").as_bytes(), b"v");
        c.tick();
    }
    c.add_empty_store(4);
    let leader = c.leader(1);
    let mut req = c.request(leader, Vec::new());
    req.admin_request = Some(Box::new(change_peer(ConfChangeType::AddNode, 4, 4)));
    let error = c.call(leader, req).header.and_then(|h| h.error);
    assert!(
        error
            .as_ref()
            .is_some_and(|e| e.message.contains("unsafe conf change")),
        "{error:?}"
    );
    assert_eq!(c.stores[&leader].peer(1).unwrap().region().peers.len(), 3);
    c.must_admin(change_peer(ConfChangeType::RemoveNode, down, down));
    c.must_admin(change_peer(ConfChangeType::AddNode, 4, 4));
    c.must_put(b"after", b"v");
    for _ in 0..30 {
        c.tick();
    }
    assert!(
        c.kv(4)
            .get(CF_DEFAULT, &keys::data_key(b"after"))
            .unwrap()
            .is_some()
    );
}

on_every_engine!(
    joint_change_promotes_a_learner_and_removes_a_voter,
    add_peer_on_a_new_store_receives_the_data,
    removed_peer_is_destroyed_and_its_data_deleted,
    removed_store_hosts_the_region_again,
    stale_peer_gives_way_to_a_newer_one,
    stale_peer_gives_way_to_a_newer_one_with_a_smaller_id,
    removed_peer_cut_off_is_told_and_destroyed,
    second_peer_on_a_store_is_refused,
    transfer_leader_moves_leadership,
    added_voter_is_created_by_a_vote_request,
    destroyed_stale_peer_is_not_recreated_by_a_configuration_it_missed,
    adding_a_voter_without_a_quorum_holding_the_log_is_refused
);
