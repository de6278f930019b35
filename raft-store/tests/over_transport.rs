//! Three stores on raft worker threads exchanging frames through the in-process channel
//! transport: the production send and receive paths end to end, including a partition
//! and a snapshot streamed in chunks to a follower that fell behind the log.
#![allow(clippy::unwrap_used)] // the setup helper is test code too

#[path = "support/live.rs"]
mod live;

use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::{Direction, Iterable, MemoryEngine};
use live::{get, on_leader, put, region, request};
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{self, CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::raft_log_gc::RaftLogGcRunner;
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::snapshot::SnapKind;
use raft_store::worker::Worker;
use raft_store::{
    Config, RaftWorker, SnapManager, Store, StoreFrameSink, StoreMailbox, TransportSender,
};
use transport::channel::ChannelNetwork;

/// Three stores on threads over one channel network.
struct LiveCluster {
    rt: tokio::runtime::Runtime,
    network: ChannelNetwork,
    workers: Vec<RaftWorker>,
    _gc_workers: Vec<Worker<raft_store::raft_log_gc::RaftLogGcTask>>,
    mailboxes: Vec<(u64, StoreMailbox)>,
    kvs: Vec<MemoryEngine>,
    snap_mgrs: Vec<SnapManager>,
    _snap_dir: tempfile::TempDir,
}

impl LiveCluster {
    /// Starts stores 1..=3; snapshots stream in transport chunks of `chunk_bytes`.
    fn start(cfg: &Config, chunk_bytes: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let network = rt.block_on(async { ChannelNetwork::new(7) });
        let snap_dir = tempfile::tempdir().unwrap();
        let mut c = Self {
            rt,
            network,
            workers: Vec::new(),
            _gc_workers: Vec::new(),
            mailboxes: Vec::new(),
            kvs: Vec::new(),
            snap_mgrs: Vec::new(),
            _snap_dir: snap_dir,
        };
        for id in 1..=3 {
            let raft = MemoryEngine::new(&[CF_RAFT]).unwrap();
            let kv = MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap();
            bootstrap_store(&kv, 1, id).unwrap();
            bootstrap_region(&raft, &kv, &region()).unwrap();
            let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
            let snap_mgr = SnapManager::open(c._snap_dir.path().join(id.to_string()), cfg).unwrap();
            let sink = StoreFrameSink::new(mailbox.clone(), snap_mgr.clone());
            let transport = {
                let _guard = c.rt.enter();
                c.network.register(id, Arc::new(sink))
            };
            let sender = TransportSender::new(
                Arc::new(transport),
                c.rt.handle().clone(),
                mailbox.clone(),
                4 << 20,
                chunk_bytes,
                snap_mgr.clone(),
            );
            let mut store = Store::open(
                id,
                cfg.clone(),
                raft.clone(),
                kv.clone(),
                sender,
                snap_mgr.clone(),
            )
            .unwrap();
            let gc = Worker::start("raftlog-gc", 1024, RaftLogGcRunner::new(raft)).unwrap();
            store.set_log_gc_scheduler(gc.scheduler());
            c._gc_workers.push(gc);
            let tick = Duration::from_millis(cfg.raft_base_tick_ms);
            c.workers.push(
                RaftWorker::spawn(store, mailbox.clone(), rx, tick, cfg.max_batch_msgs).unwrap(),
            );
            c.mailboxes.push((id, mailbox));
            c.kvs.push(kv);
            c.snap_mgrs.push(snap_mgr);
        }
        c
    }

    fn shutdown(self) {
        for worker in self.workers {
            worker.shutdown().unwrap();
        }
    }
}

fn data_keys(kv: &MemoryEngine) -> usize {
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
fn stores_replicate_over_the_channel_transport_and_survive_a_partition() {
    // A small GC limit so log compaction runs alongside the traffic (the GC worker itself
    // is checked deterministically in raft_log_gc's unit test).
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_log_gc_count_limit: 3,
        raft_log_gc_tick_ticks: 1,
        ..Config::default()
    };
    let c = LiveCluster::start(&cfg, 1 << 20);
    c.rt.block_on(async {
        let (leader, _) = on_leader(&c.mailboxes, request(vec![put(b"a", b"1")])).await;
        // Cut the leader off: the others elect a new leader and keep serving.
        let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        c.network.partition(&[&[leader], &others]);
        let majority: Vec<_> = c
            .mailboxes
            .iter()
            .filter(|(id, _)| *id != leader)
            .cloned()
            .collect();
        let (new_leader, _) = on_leader(&majority, request(vec![put(b"b", b"2")])).await;
        assert_ne!(new_leader, leader);
        c.network.heal();
        let (_, resp) = on_leader(&c.mailboxes, request(vec![get(b"a"), get(b"b")])).await;
        assert_eq!(&resp.responses[0].get.as_ref().unwrap().value[..], b"1");
        assert_eq!(&resp.responses[1].get.as_ref().unwrap().value[..], b"2");
        assert!(c.network.delivered() > 0);
    });
    c.shutdown();
}

#[test]
fn a_follower_behind_the_log_catches_up_by_a_streamed_snapshot() {
    const KEYS: usize = 200;
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_log_gc_count_limit: 3,
        raft_log_gc_tick_ticks: 1,
        snap_chunk_bytes: 256,
        snap_apply_batch_bytes: 2048,
        ..Config::default()
    };
    // Transport chunks (1 KiB) that do not line up with the staged frames (256 bytes).
    let c = LiveCluster::start(&cfg, 1024);
    let (leader, follower) = c.rt.block_on(async {
        let (leader, _) = on_leader(&c.mailboxes, request(vec![put(b"first", b"1")])).await;
        let follower = (1..=3).find(|&id| id != leader).unwrap();
        let others: Vec<u64> = (1..=3).filter(|&id| id != follower).collect();
        c.network.partition(&[&[follower], &others]);
        let majority: Vec<_> = c
            .mailboxes
            .iter()
            .filter(|(id, _)| *id != follower)
            .cloned()
            .collect();
        for batch in 0..KEYS / 10 {
            let puts = (batch * 10..batch * 10 + 10)
                .map(|i| put(format!("key-{i:04}").as_bytes(), &[i as u8; 100]))
                .collect();
            on_leader(&majority, request(puts)).await;
        }
        c.network.heal();
        (leader, follower)
    });
    let follower_kv = &c.kvs[follower as usize - 1];
    let deadline = Instant::now() + Duration::from_secs(30);
    // Polling: the follower applies on its region worker thread; no event to await.
    while data_keys(follower_kv) < KEYS + 1 {
        assert!(
            Instant::now() < deadline,
            "the follower has {} of {} keys",
            data_keys(follower_kv),
            KEYS + 1
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It came by snapshot: a leader staged one (the current or a former leader).
    let generated = c
        .snap_mgrs
        .iter()
        .flat_map(SnapManager::list)
        .filter(|(kind, _)| *kind == SnapKind::Generated)
        .count();
    assert!(generated > 0, "leader {leader} generated a snapshot");
    c.shutdown();
}
