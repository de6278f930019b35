//! Compare-and-swap decided in apply, and exactly-once client sessions, on the
//! deterministic cluster.
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

use conformance_tests::cluster::{
    self, Cluster, EngineFactory, cas, delete_range, put, split_at, test_config, transfer_leader,
};
use conformance_tests::on_every_engine;
use engines::Peekable;
use raft_store::keys::{self, CF_DEFAULT, CF_META};
use raft_store::pb::raft_cmdpb::{
    CompareAndSwapResponse, RaftCmdRequest, RaftCmdResponse, Request,
};

/// `req` as command `sequence` of `client`, awaiting nothing below `first_awaited`,
/// stamped at `timestamp_ms`.
fn as_client(
    mut req: RaftCmdRequest,
    client: u64,
    sequence: u64,
    first_awaited: u64,
    timestamp_ms: u64,
) -> RaftCmdRequest {
    let h = req.header.as_mut().unwrap();
    h.client_id = client;
    h.sequence = sequence;
    h.first_awaited_sequence = first_awaited;
    h.timestamp_ms = timestamp_ms;
    req
}

/// Sends command `sequence` of `client` with `requests` to region `region_id`'s leader.
fn call_as<F: EngineFactory>(
    c: &mut Cluster<F>,
    region_id: u64,
    client: u64,
    sequence: u64,
    requests: Vec<Request>,
) -> RaftCmdResponse {
    let leader = c.leader(region_id);
    let req = c.request_in(leader, region_id, requests);
    c.call(leader, as_client(req, client, sequence, sequence, 0))
}

fn cas_of(resp: &RaftCmdResponse) -> CompareAndSwapResponse {
    assert!(resp.header.is_none(), "{resp:?}");
    *resp.responses[0].cas.clone().unwrap()
}

fn value_on<F: EngineFactory>(c: &Cluster<F>, store: u64, key: &[u8]) -> Option<Vec<u8>> {
    c.kv(store).get(CF_DEFAULT, &keys::data_key(key)).unwrap()
}

fn cas_sees_the_writes_staged_before_it_in_one_entry<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"gone", b"x");
    let leader = c.leader(1);
    let applied_before = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .store()
        .applied_index();
    // Handed over in one loop iteration, these become one batch entry and one apply batch:
    // each compare-and-swap must see the writes before it, which are not in the engine yet.
    let reqs = vec![
        c.request(leader, vec![put(b"k", b"1")]),
        c.request(leader, vec![cas(b"k", Some(b"1"), Some(b"2"))]),
        c.request(leader, vec![cas(b"k", Some(b"1"), Some(b"3"))]),
        c.request(leader, vec![delete_range(b"a", b"h")]),
        c.request(leader, vec![cas(b"gone", None, Some(b"back"))]),
        c.request(leader, vec![cas(b"k", Some(b"2"), None)]),
        c.request(leader, vec![cas(b"k", None, Some(b"4"))]),
    ];
    let resps = c.call_many(leader, reqs);
    let applied_after = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .store()
        .applied_index();
    assert_eq!(
        applied_after,
        applied_before + 1,
        "one entry for the whole batch"
    );
    let swap = cas_of(&resps[1]);
    assert!(swap.succeeded && swap.previous_found && &swap.previous_value[..] == b"1");
    let stale = cas_of(&resps[2]);
    assert!(
        !stale.succeeded && &stale.previous_value[..] == b"2",
        "{stale:?}"
    );
    let revived = cas_of(&resps[4]);
    assert!(
        revived.succeeded && !revived.previous_found,
        "deleted by the range"
    );
    let deleted = cas_of(&resps[5]);
    assert!(deleted.succeeded && &deleted.previous_value[..] == b"2");
    let recreated = cas_of(&resps[6]);
    assert!(recreated.succeeded && !recreated.previous_found);
    for _ in 0..3 {
        c.tick();
    }
    for store in 1..=3 {
        assert_eq!(
            value_on(&c, store, b"k"),
            Some(b"4".to_vec()),
            "store {store}"
        );
        assert_eq!(value_on(&c, store, b"gone"), Some(b"back".to_vec()));
    }
}

fn a_retried_command_applies_once_and_returns_its_first_response<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    let swap = vec![cas(b"k", None, Some(b"a"))];
    let first = call_as(&mut c, 1, 7, 1, swap.clone());
    assert!(cas_of(&first).succeeded);
    // Applying again would fail (the key exists now): the retry gets the first answer.
    assert_eq!(call_as(&mut c, 1, 7, 1, swap.clone()), first);
    // Even after another client changed the key.
    c.must_put(b"k", b"other");
    assert_eq!(call_as(&mut c, 1, 7, 1, swap.clone()), first);
    assert_eq!(c.must_get(b"k"), Some(b"other".to_vec()));
    // Another client with the same sequence is another session.
    let theirs = call_as(&mut c, 1, 8, 1, swap.clone());
    assert!(!cas_of(&theirs).succeeded);
    // Sequence 2 says the client awaits nothing below 2: sequence 1 is forgotten.
    let leader = c.leader(1);
    let req = c.request(leader, vec![put(b"k2", b"v")]);
    let resp = c.call(leader, as_client(req, 7, 2, 2, 0));
    assert!(resp.header.is_none(), "{resp:?}");
    let resp = call_as(&mut c, 1, 7, 1, swap);
    let forgotten = resp
        .header
        .unwrap()
        .error
        .unwrap()
        .sequence_forgotten
        .unwrap();
    assert_eq!(
        (
            forgotten.client_id,
            forgotten.sequence,
            forgotten.first_kept_sequence
        ),
        (7, 1, 2)
    );
    assert_eq!(c.must_get(b"k"), Some(b"other".to_vec()));
}

fn deduplication_survives_a_leader_change_and_a_restart<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    let swap = vec![cas(b"k", None, Some(b"a"))];
    let first = call_as(&mut c, 1, 7, 1, swap.clone());
    assert!(cas_of(&first).succeeded);
    let old = c.leader(1);
    let new = (1..=3).find(|&id| id != old).unwrap();
    c.must_admin(transfer_leader(new, new));
    for _ in 0..10 {
        c.tick();
    }
    assert_eq!(c.leader(1), new);
    assert_eq!(call_as(&mut c, 1, 7, 1, swap.clone()), first);
    // Every store restarts from its engines: the sessions are loaded back.
    for id in 1..=3 {
        c.stop(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    assert_eq!(call_as(&mut c, 1, 7, 1, swap.clone()), first);
    for id in 1..=3 {
        let session = c.stores[&id]
            .peer(1)
            .unwrap()
            .client_sessions()
            .session(7)
            .cloned();
        assert_eq!(session.map(|s| s.results.len()), Some(1), "store {id}");
    }
    assert_eq!(c.must_get(b"k"), Some(b"a".to_vec()));
}

fn a_split_region_answers_retries_of_what_its_parent_applied<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    let swap = vec![cas(b"x", None, Some(b"1"))];
    let first = call_as(&mut c, 1, 7, 1, swap.clone());
    assert!(cas_of(&first).succeeded);
    let resp = c.must_admin(split_at(b"m"));
    let right = resp.admin_response.unwrap().splits.unwrap().regions[1].clone();
    for _ in 0..5 {
        c.tick();
    }
    // The retry reaches the region that holds the key now, which never applied it.
    assert_eq!(call_as(&mut c, right.id, 7, 1, swap), first);
    assert_eq!(
        c.must_call_in(right.id, vec![cluster::get(b"x")]).responses[0]
            .get
            .as_ref()
            .map(|g| g.value.to_vec()),
        Some(b"1".to_vec())
    );
    for id in 1..=3 {
        let peer = c.stores[&id].peer(right.id).unwrap();
        assert!(peer.client_sessions().session(7).is_some(), "store {id}");
    }
}

fn sessions_expire_alike_on_every_replica<F: EngineFactory>(factory: F) {
    let cfg = raft_store::Config {
        client_session_ttl_ms: 1_000,
        client_session_max_per_region: 2,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    let stamped = |c: &mut Cluster<F>, client: u64, seq: u64, ts: u64| {
        let leader = c.leader(1);
        let req = c.request(leader, vec![put(b"k", &client.to_be_bytes())]);
        let resp = c.call(leader, as_client(req, client, seq, seq, ts));
        assert!(resp.header.is_none(), "{resp:?}");
    };
    stamped(&mut c, 1, 1, 10_000);
    stamped(&mut c, 2, 1, 10_600);
    // Client 1 idled past the TTL at the region clock 11_001; client 2 did not.
    stamped(&mut c, 3, 1, 11_001);
    for _ in 0..3 {
        c.tick();
    }
    let present = |c: &Cluster<F>, store: u64| -> Vec<u64> {
        let sessions = c.stores[&store].peer(1).unwrap().client_sessions();
        (1..=4)
            .filter(|id| sessions.session(*id).is_some())
            .collect()
    };
    for store in 1..=3 {
        assert_eq!(present(&c, store), vec![2, 3], "store {store}");
    }
    // A third live session evicts the least recently used (client 2), everywhere.
    stamped(&mut c, 4, 1, 11_002);
    for _ in 0..3 {
        c.tick();
    }
    for store in 1..=3 {
        assert_eq!(present(&c, store), vec![3, 4], "store {store}");
    }
    // The same state comes back from the engines.
    c.stop(1);
    c.start(1);
    assert_eq!(present(&c, 1), vec![3, 4]);
    assert_eq!(
        c.stores[&1].peer(1).unwrap().client_sessions().clock_ms(),
        11_002
    );
}

/// A replica that caught up by snapshot (its log never held the command) still answers
/// a retry with the first response once it leads: sessions travel in snapshots.
fn sessions_travel_with_a_snapshot<F: EngineFactory>(factory: F) {
    let cfg = raft_store::Config {
        raft_log_gc_count_limit: 5,
        raft_log_gc_tick_ticks: 1,
        ..test_config()
    };
    let mut c = Cluster::with_factory(factory, 3, cfg, b"", b"");
    let leader = c.leader(1);
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    c.stop(lagging);
    let swap = vec![cas(b"k", None, Some(b"a"))];
    let first = call_as(&mut c, 1, 7, 1, swap.clone());
    assert!(cas_of(&first).succeeded);
    for i in 0..30u8 {
        c.must_put(&[b'p', i], b"v");
    }
    for _ in 0..3 {
        c.tick();
    }
    let truncated = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .store()
        .truncated_index();
    assert!(truncated > 5, "the leader compacted its log: {truncated}");
    c.start(lagging);
    for _ in 0..100 {
        if value_on(&c, lagging, &[b'p', 29]).is_some() {
            break;
        }
        c.tick();
    }
    assert_eq!(value_on(&c, lagging, b"k"), Some(b"a".to_vec()));
    assert!(
        c.kv(lagging)
            .get(CF_META, &keys::client_session_key(1, 7))
            .unwrap()
            .is_some(),
        "the snapshot carried client 7's session"
    );
    let lagging_peer = c.stores[&lagging].peer(1).unwrap().meta().id;
    c.must_admin(transfer_leader(lagging_peer, lagging));
    for _ in 0..50 {
        if c.current_leader(1) == Some(lagging) {
            break;
        }
        c.tick();
    }
    assert_eq!(c.current_leader(1), Some(lagging));
    c.must_put(b"k", b"other");
    // Applying again would fail (the key holds "other"): the retry gets the first answer.
    assert_eq!(call_as(&mut c, 1, 7, 1, swap), first);
    assert_eq!(c.must_get(b"k"), Some(b"other".to_vec()));
}

on_every_engine!(
    cas_sees_the_writes_staged_before_it_in_one_entry,
    a_retried_command_applies_once_and_returns_its_first_response,
    deduplication_survives_a_leader_change_and_a_restart,
    a_split_region_answers_retries_of_what_its_parent_applied,
    sessions_expire_alike_on_every_replica,
    sessions_travel_with_a_snapshot,
);
