//! Three stores on raft worker threads exchanging frames through the in-process channel
//! transport: the production send and receive paths end to end, including a partition.

#[path = "support/live.rs"]
mod live;
#[path = "support/transport_cluster.rs"]
mod transport_cluster;

use live::{get, on_leader, put, region, request};
use raft_store::Config;
use transport_cluster::TransportCluster;

#[test]
fn stores_replicate_over_the_channel_transport_and_survive_a_partition() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A small GC limit so log compaction runs alongside the traffic (the GC worker itself
    // is checked deterministically in raft_log_gc's unit test).
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_log_gc_count_limit: 3,
        raft_log_gc_tick_ticks: 1,
        ..Config::default()
    };
    let cluster = TransportCluster::start(&rt, &cfg, &region());
    let (network, mailboxes) = (&cluster.network, &cluster.mailboxes);
    rt.block_on(async {
        let (leader, _) = on_leader(mailboxes, request(vec![put(b"a", b"1")])).await;
        // Cut the leader off: the others elect a new leader and keep serving.
        let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        network.partition(&[&[leader], &others]);
        let majority: Vec<_> = mailboxes
            .iter()
            .filter(|(id, _)| *id != leader)
            .cloned()
            .collect();
        let (new_leader, _) = on_leader(&majority, request(vec![put(b"b", b"2")])).await;
        assert_ne!(new_leader, leader);
        network.heal();
        let (_, resp) = on_leader(mailboxes, request(vec![get(b"a"), get(b"b")])).await;
        assert_eq!(&resp.responses[0].get.as_ref().unwrap().value[..], b"1");
        assert_eq!(&resp.responses[1].get.as_ref().unwrap().value[..], b"2");
        assert!(network.delivered() > 0);
    });
    cluster.shutdown();
}
