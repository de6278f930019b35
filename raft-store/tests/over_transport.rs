//! Three stores on raft worker threads exchanging frames through the in-process channel
//! transport: the production send and receive paths end to end, including a partition
//! and a snapshot streamed in chunks to a follower that fell behind the log.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use conformance_tests::cluster::filter::Partition;
use conformance_tests::cluster::{ClientConfig, LiveCluster, MemoryFactory};
use conformance_tests::linearizability::{self, Budget, KvOutput, Outcome, Recorder};
use engines::{Direction, Iterable};
use raft_store::Config;
use raft_store::keys::{self, CF_DEFAULT};
use raft_store::snapshot::SnapKind;

#[test]
fn stores_replicate_over_the_channel_transport_and_survive_a_partition() {
    // A small GC limit so log compaction runs alongside the traffic (the GC worker itself
    // is checked deterministically in raft_log_gc's unit test).
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_log_gc_count_limit: 3,
        raft_log_gc_tick_ticks: 1,
        ..Config::default()
    };
    let cluster = LiveCluster::new(MemoryFactory::default(), 3, cfg, 7);
    let recorder = Recorder::new();
    let mut client = cluster.client(1, &recorder, ClientConfig::default());
    let ok = Outcome::Ok(KvOutput::Put);
    let rt = cluster.runtime();
    assert_eq!(rt.block_on(client.put(b"a", b"1")), ok);
    let leader = cluster.leader_of(1).unwrap();

    // Cut the leader off: the others elect a new leader and keep serving.
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    cluster.filters().add(Partition::new(&[&[leader], &others]));
    cluster.wait_until("a new leader", Duration::from_secs(10), |c| {
        c.leader_of(1).is_some_and(|l| l != leader)
    });
    assert_eq!(rt.block_on(client.put(b"b", b"2")), ok);

    cluster.heal();
    let got =
        |key: &[u8], client: &mut conformance_tests::cluster::Client| rt.block_on(client.get(key));
    assert_eq!(
        got(b"a", &mut client),
        Outcome::Ok(KvOutput::Get(Some(b"1".to_vec())))
    );
    assert_eq!(
        got(b"b", &mut client),
        Outcome::Ok(KvOutput::Get(Some(b"2".to_vec())))
    );
    assert!(cluster.network().delivered() > 0);
    linearizability::check(&recorder.history(), Budget::default()).assert_linearizable();
}

fn data_keys(kv: &impl Iterable) -> usize {
    let mut n = 0;
    kv.scan(
        CF_DEFAULT,
        keys::DATA_MIN_KEY..keys::DATA_MAX_KEY,
        Direction::Forward,
        |_, _| {
            n += 1;
            true
        },
    )
    .unwrap();
    n
}

#[test]
fn a_follower_behind_the_log_catches_up_by_a_streamed_snapshot() {
    const KEYS: usize = 200;
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_log_gc_count_limit: 3,
        raft_log_gc_tick_ticks: 1,
        // Many small frames, streamed in transport chunks of the same size.
        snap_chunk_bytes: 256,
        snap_apply_batch_bytes: 2048,
        ..Config::default()
    };
    let cluster = LiveCluster::new(MemoryFactory::default(), 3, cfg, 11);
    let recorder = Recorder::new();
    let mut client = cluster.client(1, &recorder, ClientConfig::default());
    let ok = Outcome::Ok(KvOutput::Put);
    let rt = cluster.runtime();
    assert_eq!(rt.block_on(client.put(b"first", b"1")), ok);
    let leader = cluster.leader_of(1).unwrap();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let others: Vec<u64> = (1..=3).filter(|&id| id != follower).collect();
    cluster
        .filters()
        .add(Partition::new(&[&[follower], &others]));
    for i in 0..KEYS {
        let key = format!("key-{i:04}");
        assert_eq!(rt.block_on(client.put(key.as_bytes(), &[i as u8; 100])), ok);
    }
    cluster.heal();
    cluster.wait_until("the follower has every key", Duration::from_secs(30), |c| {
        c.kv(follower).is_some_and(|kv| data_keys(kv) == KEYS + 1)
    });
    // It came by snapshot: some leader staged one.
    let generated = (1..=3)
        .filter_map(|id| cluster.snap_mgr(id))
        .flat_map(|m| m.list())
        .filter(|(kind, _)| *kind == SnapKind::Generated)
        .count();
    assert!(generated > 0, "a leader generated a snapshot");
    linearizability::check(&recorder.history(), Budget::default()).assert_linearizable();
}
