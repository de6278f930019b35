//! Three stores on raft worker threads over the in-process channel transport, wired as a
//! deployment wires them: `TransportSender` and `StoreFrameSink` (the production send and
//! receive paths), the memory engine, and the raft log GC worker.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use engines::MemoryEngine;
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::pb::metapb::Region;
use raft_store::raft_log_gc::{RaftLogGcRunner, RaftLogGcTask};
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::worker::Worker;
use raft_store::{Config, RaftWorker, Store, StoreFrameSink, StoreMailbox, TransportSender};
use transport::channel::ChannelNetwork;

/// The running stores 1, 2 and 3 and their network.
pub struct TransportCluster {
    /// The channel network (partitions and faults go through it).
    pub network: ChannelNetwork,
    /// Each store's id and mailbox, by store id.
    pub mailboxes: Vec<(u64, StoreMailbox)>,
    workers: Vec<RaftWorker>,
    _gc_workers: Vec<Worker<RaftLogGcTask>>,
}

impl TransportCluster {
    /// Bootstraps `region` (whose peers are on stores 1, 2 and 3) on three memory-engine
    /// stores and starts them with `cfg`; the transport's tasks run on `rt`.
    pub fn start(rt: &tokio::runtime::Runtime, cfg: &Config, region: &Region) -> Self {
        let network = rt.block_on(async { ChannelNetwork::new(7) });
        let (mut mailboxes, mut workers, mut gc_workers) = (Vec::new(), Vec::new(), Vec::new());
        for id in 1..=3 {
            let raft = MemoryEngine::new(&[CF_RAFT]).unwrap();
            let kv = MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap();
            bootstrap_store(&kv, 1, id).unwrap();
            bootstrap_region(&raft, &kv, region).unwrap();
            let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
            let transport = {
                let _guard = rt.enter();
                network.register(id, Arc::new(StoreFrameSink::new(mailbox.clone())))
            };
            let sender = TransportSender::new(
                Arc::new(transport),
                rt.handle().clone(),
                mailbox.clone(),
                4 << 20,
                1 << 20,
            );
            let mut store = Store::open(id, cfg.clone(), raft.clone(), kv, sender).unwrap();
            let gc = Worker::start("raftlog-gc", 1024, RaftLogGcRunner::new(raft)).unwrap();
            store.set_log_gc_scheduler(gc.scheduler());
            gc_workers.push(gc);
            let tick = Duration::from_millis(cfg.raft_base_tick_ms);
            workers.push(
                RaftWorker::spawn(store, mailbox.clone(), rx, tick, cfg.max_batch_msgs).unwrap(),
            );
            mailboxes.push((id, mailbox));
        }
        Self {
            network,
            mailboxes,
            workers,
            _gc_workers: gc_workers,
        }
    }

    /// Stops every raft worker, failing on a worker's fatal error.
    pub fn shutdown(self) {
        for worker in self.workers {
            worker.shutdown().unwrap();
        }
    }
}
