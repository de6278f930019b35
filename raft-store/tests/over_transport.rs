//! Three stores on raft worker threads exchanging frames through the in-process channel
//! transport: the production send and receive paths end to end, including a partition.

#[path = "support/live.rs"]
mod live;

use std::sync::Arc;
use std::time::Duration;

use engines::MemoryEngine;
use live::{get, on_leader, put, region, request};
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::raft_log_gc::RaftLogGcRunner;
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::worker::Worker;
use raft_store::{
    Config, RaftWorker, SnapManager, Store, StoreFrameSink, StoreMailbox, TransportSender,
};
use transport::channel::ChannelNetwork;

#[test]
fn stores_replicate_over_the_channel_transport_and_survive_a_partition() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let network = rt.block_on(async { ChannelNetwork::new(7) });
    // A small GC limit so log compaction runs alongside the traffic (the GC worker itself
    // is checked deterministically in raft_log_gc's unit test).
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_log_gc_count_limit: 3,
        raft_log_gc_tick_ticks: 1,
        ..Config::default()
    };
    let mut workers = Vec::new();
    let mut gc_workers = Vec::new();
    let mut mailboxes = Vec::new();
    let snap_dir = tempfile::tempdir().unwrap();
    for id in 1..=3 {
        let raft = MemoryEngine::new(&[CF_RAFT]).unwrap();
        let kv = MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap();
        bootstrap_store(&kv, 1, id).unwrap();
        bootstrap_region(&raft, &kv, &region()).unwrap();
        let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
        let snap_mgr = SnapManager::open(snap_dir.path().join(id.to_string()), &cfg).unwrap();
        let sink = StoreFrameSink::new(mailbox.clone(), snap_mgr.clone());
        let transport = {
            let _guard = rt.enter();
            network.register(id, Arc::new(sink))
        };
        let sender = TransportSender::new(
            Arc::new(transport),
            rt.handle().clone(),
            mailbox.clone(),
            4 << 20,
            1 << 20,
            snap_mgr.clone(),
        );
        let mut store = Store::open(id, cfg.clone(), raft.clone(), kv, sender, snap_mgr).unwrap();
        let gc = Worker::start("raftlog-gc", 1024, RaftLogGcRunner::new(raft)).unwrap();
        store.set_log_gc_scheduler(gc.scheduler());
        gc_workers.push(gc);
        let tick = Duration::from_millis(cfg.raft_base_tick_ms);
        workers
            .push(RaftWorker::spawn(store, mailbox.clone(), rx, tick, cfg.max_batch_msgs).unwrap());
        mailboxes.push((id, mailbox));
    }
    rt.block_on(async {
        let (leader, _) = on_leader(&mailboxes, request(vec![put(b"a", b"1")])).await;
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
        let (_, resp) = on_leader(&mailboxes, request(vec![get(b"a"), get(b"b")])).await;
        assert_eq!(&resp.responses[0].get.as_ref().unwrap().value[..], b"1");
        assert_eq!(&resp.responses[1].get.as_ref().unwrap().value[..], b"2");
        assert!(network.delivered() > 0);
    });
    for worker in workers {
        worker.shutdown().unwrap();
    }
}
