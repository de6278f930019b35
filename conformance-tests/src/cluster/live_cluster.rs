//! [`LiveCluster`]: stores on raft worker threads with real clocks, over the in-process
//! `channel` transport, with faults, stops and restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::Peekable;
use prost::Message as _;
use raft_store::bootstrap::bootstrap_store;
use raft_store::keys::{self, CF_META};
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{AdminRequest, RaftCmdRequest, RaftCmdResponse, RequestHeader};
use raft_store::pb::raft_serverpb::RaftApplyState;
use raft_store::raft_log_gc::{RaftLogGcRunner, RaftLogGcTask};
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::worker::Worker;
use raft_store::{
    Config, RaftWorker, RegionStatus, SnapManager, Store, StoreFrameSink, StoreMailbox, StoreMsg,
    TransportSender,
};
use transport::Transport as _;
use transport::channel::{ChannelNetwork, ChannelTransport};

use super::client::StoreDirectory;
use super::routing::epoch;
use super::{
    Client, ClientConfig, EngineFactory, FilteredSender, Filters, bootstrap, first_region,
};
use crate::linearizability::Recorder;

/// Largest frame the stores' senders build.
const MAX_FRAME_BYTES: usize = 4 << 20;

/// One running store and what it needs.
struct Node<E> {
    worker: RaftWorker,
    /// Declared after `worker`: dropped once the store (holding its scheduler) is gone.
    _gc: Worker<RaftLogGcTask>,
    transport: Arc<ChannelTransport>,
    raft: E,
    kv: E,
    snap_mgr: SnapManager,
}

/// Stores on raft worker threads (real clock, `raft_base_tick_ms` per tick) exchanging
/// messages over a `transport::channel::ChannelNetwork`, each with a raft-log GC worker,
/// as in production.
///
/// Faults: message [`Filters`] (partitions, one-way partitions, drop rate, by type or
/// region) applied where each store's messages leave it, plus the network's own delay,
/// duplication and reordering ([`network`](Self::network)). Stores can be stopped and
/// restarted from their engines. [`Client`]s made by [`client`](Self::client) run on the
/// cluster's tokio runtime and record their operations.
///
/// The methods block; call them from the test's thread, not from inside the runtime.
/// Set `RUST_LOG` (e.g. `RUST_LOG=raft_store=info`) to see the stores' logs.
pub struct LiveCluster<F: EngineFactory> {
    cfg: Config,
    factory: F,
    nodes: BTreeMap<u64, Node<F::Engine>>,
    directory: StoreDirectory,
    filters: Filters,
    network: ChannelNetwork,
    /// Declared last: dropped after the stores, whose senders run tasks on it.
    runtime: tokio::runtime::Runtime,
}

impl<F: EngineFactory> std::fmt::Debug for LiveCluster<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCluster")
            .field("running", &self.nodes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<F: EngineFactory> LiveCluster<F> {
    /// `n` stores sharing region 1 over the whole key space, started. `seed` seeds the
    /// network's fault decisions.
    ///
    /// # Panics
    /// When a store cannot be bootstrapped or started.
    pub fn new(mut factory: F, n: u64, cfg: Config, seed: u64) -> Self {
        super::init_tracing();
        bootstrap(&mut factory, n, &first_region(n, b"", b""));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let network = {
            let _guard = runtime.enter();
            ChannelNetwork::new(seed)
        };
        let mut cluster = Self {
            cfg,
            factory,
            nodes: BTreeMap::new(),
            directory: StoreDirectory::default(),
            filters: Filters::new(),
            network,
            runtime,
        };
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    /// The stores' configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The message filters (partitions, drops).
    #[must_use]
    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// The network (delay, duplication, reordering; counters).
    #[must_use]
    pub fn network(&self) -> &ChannelNetwork {
        &self.network
    }

    /// Removes every fault: filters and the network's.
    pub fn heal(&self) {
        self.filters.clear();
        self.network.heal();
    }

    /// The running stores.
    #[must_use]
    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The cluster's tokio runtime (clients run on it).
    #[must_use]
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// The mailbox of running store `id`, for callers that drive a store directly (a
    /// benchmark's clients, which record nothing).
    #[must_use]
    pub fn mailbox(&self, id: u64) -> Option<StoreMailbox> {
        self.directory.get(id)
    }

    /// A client that records into `recorder`.
    #[must_use]
    pub fn client(&self, id: u64, recorder: &Recorder, cfg: ClientConfig) -> Client {
        Client::new(id, self.directory.clone(), recorder.clone(), cfg)
    }

    /// Starts store `id` from its engines (made empty by the factory if new: see
    /// [`add_empty_store`](Self::add_empty_store)).
    ///
    /// # Panics
    /// If it is running, or cannot be opened.
    pub fn start(&mut self, id: u64) {
        assert!(!self.nodes.contains_key(&id), "store {id} is running");
        let (raft, kv) = self.factory.open(id);
        let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
        let snap_mgr = SnapManager::open(self.factory.snap_dir(id), &self.cfg)
            .unwrap_or_else(|e| panic!("snapshot directory of store {id}: {e}"));
        let transport = {
            let _guard = self.runtime.enter();
            let sink = Arc::new(StoreFrameSink::new(mailbox.clone(), snap_mgr.clone()));
            Arc::new(self.network.register(id, sink))
        };
        let sender = TransportSender::new(
            transport.clone(),
            self.runtime.handle().clone(),
            mailbox.clone(),
            MAX_FRAME_BYTES,
            usize::try_from(self.cfg.snap_chunk_bytes).unwrap_or(usize::MAX),
            snap_mgr.clone(),
        );
        let reports = mailbox.clone();
        let sender = FilteredSender::new(id, self.filters.clone(), sender).with_snapshot_reporter(
            Box::new(move |msg| {
                // A full mailbox loses the report as a real transport's would; the
                // leader then waits for its snapshot to go stale.
                let _ = reports.try_send(msg);
            }),
        );
        let mut store = Store::open(
            id,
            self.cfg.clone(),
            raft.clone(),
            kv.clone(),
            sender,
            snap_mgr.clone(),
        )
        .unwrap_or_else(|e| panic!("store {id} does not open: {e}"));
        let gc = Worker::start("raftlog-gc", 1024, RaftLogGcRunner::new(raft.clone()))
            .expect("a GC worker thread");
        store.set_log_gc_scheduler(gc.scheduler());
        let tick = Duration::from_millis(self.cfg.raft_base_tick_ms);
        let worker = RaftWorker::spawn(store, mailbox.clone(), rx, tick, self.cfg.max_batch_msgs)
            .expect("a raft worker thread");
        self.directory.insert(id, mailbox);
        self.nodes.insert(
            id,
            Node {
                worker,
                _gc: gc,
                transport,
                raft,
                kv,
                snap_mgr,
            },
        );
    }

    /// Stops store `id` as a clean shutdown would: after the batch in progress, with its
    /// pending commands unanswered; its engines keep their data.
    ///
    /// # Panics
    /// If it is not running, or its worker had stopped on a fatal error.
    pub fn stop(&mut self, id: u64) {
        let node = self
            .nodes
            .remove(&id)
            .unwrap_or_else(|| panic!("store {id} is not running"));
        self.directory.remove(id);
        if let Err(e) = node.worker.shutdown() {
            panic!("store {id} had stopped on a fatal error: {e}");
        }
        self.runtime.block_on(node.transport.close());
    }

    /// Stops and starts store `id`.
    pub fn restart(&mut self, id: u64) {
        self.stop(id);
        self.start(id);
    }

    /// Adds store `id` with no region (a peer arrives on it by conf change and snapshot).
    ///
    /// # Panics
    /// If it cannot be bootstrapped.
    pub fn add_empty_store(&mut self, id: u64) {
        let (_, kv) = self.factory.open(id);
        bootstrap_store(&kv, 1, id).expect("an empty store bootstraps");
        drop(kv);
        self.start(id);
    }

    /// The kv engine of running store `id`.
    #[must_use]
    pub fn kv(&self, id: u64) -> Option<&F::Engine> {
        self.nodes.get(&id).map(|n| &n.kv)
    }

    /// The staged snapshots of running store `id`.
    #[must_use]
    pub fn snap_mgr(&self, id: u64) -> Option<&SnapManager> {
        self.nodes.get(&id).map(|n| &n.snap_mgr)
    }

    /// The raft engine of running store `id`.
    #[must_use]
    pub fn raft_engine(&self, id: u64) -> Option<&F::Engine> {
        self.nodes.get(&id).map(|n| &n.raft)
    }

    /// The persisted apply state of `region_id` on running store `id`.
    #[must_use]
    pub fn apply_state(&self, id: u64, region_id: u64) -> Option<RaftApplyState> {
        let bytes = self
            .kv(id)?
            .get(CF_META, &keys::apply_state_key(region_id))
            .ok()??;
        RaftApplyState::decode(bytes.as_slice()).ok()
    }

    /// What running store `id` knows of its regions; `None` if it does not answer within
    /// a second.
    #[must_use]
    pub fn regions(&self, id: u64) -> Option<Vec<RegionStatus>> {
        let mailbox = self.directory.get(id)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let query = StoreMsg::QueryRegions(Box::new(move |statuses| {
            let _ = tx.send(statuses);
        }));
        mailbox.try_send(query).ok()?;
        rx.recv_timeout(Duration::from_secs(1)).ok()
    }

    /// The running store leading `region_id` in the highest term, if any.
    #[must_use]
    pub fn leader_of(&self, region_id: u64) -> Option<u64> {
        self.running()
            .into_iter()
            .filter_map(|id| {
                let status = self
                    .regions(id)?
                    .into_iter()
                    .find(|s| s.region.id == region_id && s.is_leader)?;
                Some((status.term, id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Sends `req` to running store `id`; the answer, or `None` after `timeout`.
    #[must_use]
    pub fn call(&self, id: u64, req: RaftCmdRequest, timeout: Duration) -> Option<RaftCmdResponse> {
        let mailbox = self.directory.get(id)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let msg = StoreMsg::Command {
            request: Box::new(req),
            callback: Box::new(move |resp| {
                let _ = tx.send(resp);
            }),
        };
        mailbox.try_send(msg).ok()?;
        rx.recv_timeout(timeout).ok()
    }

    /// Runs `admin` on `region_id`'s leader, retrying on other errors until `timeout`.
    ///
    /// # Errors
    /// The last error, when no attempt succeeded in time.
    pub fn admin(
        &self,
        region_id: u64,
        admin: &AdminRequest,
        timeout: Duration,
    ) -> Result<RaftCmdResponse, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            let Some(leader) = self.leader_of(region_id) else {
                self.pause();
                continue;
            };
            let Some(region) = self
                .regions(leader)
                .and_then(|rs| rs.into_iter().find(|s| s.region.id == region_id))
            else {
                continue;
            };
            let req = RaftCmdRequest {
                header: Some(RequestHeader {
                    region_id,
                    region_epoch: region.region.region_epoch,
                    ..Default::default()
                }),
                requests: Vec::new(),
                admin_request: Some(Box::new(admin.clone())),
            };
            match self.call(leader, req, Duration::from_secs(2)) {
                Some(resp) => match resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                    None => return Ok(resp),
                    Some(e) => last = e.message.clone(),
                },
                None => last = "no answer".into(),
            }
            self.pause();
        }
        Err(last)
    }

    /// Polls `condition` until it holds.
    ///
    /// # Panics
    /// After `timeout`, naming `what` was awaited.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}"
            );
            self.pause();
        }
    }

    /// The newest version (highest epoch) of every region some running store has, with
    /// the highest commit index reported for it; `None` if a store did not answer.
    #[must_use]
    pub fn newest_regions(&self) -> Option<BTreeMap<u64, (Region, u64)>> {
        let mut newest: BTreeMap<u64, (Region, u64)> = BTreeMap::new();
        for id in self.running() {
            for s in self.regions(id)? {
                let entry = newest
                    .entry(s.region.id)
                    .or_insert_with(|| (s.region.clone(), 0));
                if epoch(&s.region) > epoch(&entry.0) {
                    entry.0 = s.region;
                }
                entry.1 = entry.1.max(s.commit_index);
            }
        }
        Some(newest)
    }

    /// Waits until, for every region, each running store that is a member of its newest
    /// version has applied up to the highest commit index any store reports for it (the
    /// stores have caught up), and no running store outside that membership still has an
    /// initialized peer of it (a peer removed while cut off learns it from the members
    /// it campaigns to; an uninitialized one never campaigns and may stay).
    ///
    /// # Panics
    /// After `timeout`.
    pub fn wait_converged(&self, timeout: Duration) {
        self.wait_until("the stores to converge", timeout, |c| {
            let Some(newest) = c.newest_regions() else {
                return false;
            };
            let running = c.running();
            let Some(statuses) = running
                .iter()
                .map(|&id| c.regions(id).map(|rs| (id, rs)))
                .collect::<Option<BTreeMap<u64, Vec<RegionStatus>>>>()
            else {
                return false;
            };
            newest.iter().all(|(&region_id, (region, commit))| {
                let is_member = |store: u64| region.peers.iter().any(|p| p.store_id == store);
                statuses.iter().all(|(&store, rs)| {
                    let local = rs.iter().find(|s| s.region.id == region_id);
                    if is_member(store) {
                        local.is_some_and(|s| s.applied_index == *commit)
                    } else {
                        local.is_none_or(|s| s.region.peers.is_empty())
                    }
                }) && c.leader_of(region_id).is_some()
            })
        });
    }

    /// A short pause between polls (no event to wait on: stores report by being asked).
    fn pause(&self) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl<F: EngineFactory> Drop for LiveCluster<F> {
    fn drop(&mut self) {
        for (_, node) in std::mem::take(&mut self.nodes) {
            drop(node.worker);
            self.runtime.block_on(node.transport.close());
        }
    }
}
