//! Three stores on raft worker threads exchanging frames through the in-process channel
//! transport: the production send and receive paths end to end, including a partition.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use conformance_tests::cluster::filter::Partition;
use conformance_tests::cluster::{ClientConfig, LiveCluster, MemoryFactory};
use conformance_tests::linearizability::{self, Budget, KvOutput, Outcome, Recorder};
use raft_store::Config;

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
