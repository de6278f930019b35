//! Test clusters of raft-store stores, shared by raft-store's own tests and the fault
//! scenarios of this crate.
//!
//! - [`Cluster`] (this file): a deterministic cluster on one thread. Messages go through
//!   in-memory queues, time is a count of ticks, and a store can be stopped and reopened
//!   from its engines.
//! - [`LiveCluster`]: stores on raft worker threads with real clocks, over the in-process
//!   `channel` transport, driven by concurrent [`Client`]s that record a
//!   [`History`](crate::linearizability::History).
//!
//! Both take an [`EngineFactory`] (memory, fjall, heed) and inject faults with the same
//! message [`filter`]s; [`on_every_engine!`](crate::on_every_engine) runs a test body once
//! per engine.
#![allow(clippy::unwrap_used)] // a test harness: a failed setup step is a test failure

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::pb::metapb::{Peer, Region, RegionEpoch};
use raft_store::pb::raft_cmdpb::{
    AdminRequest, RaftCmdRequest, RaftCmdResponse, Request, RequestHeader,
};
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::{Config, RaftMessageSender, SnapManager, Store, StoreMsg};

pub(crate) mod client;
mod engine_factory;
pub mod filter;
pub mod live;
mod live_cluster;
mod requests;
pub(crate) mod routing;
pub mod workload;

pub use client::{Client, ClientConfig};
#[cfg(feature = "fjall")]
pub use engine_factory::FjallFactory;
#[cfg(feature = "heed")]
pub use engine_factory::HeedFactory;
pub use engine_factory::{EngineFactory, MemoryFactory};
pub use filter::{FilteredSender, Filters};
pub use live_cluster::LiveCluster;
pub use requests::{
    cas, change_peer, change_peers_v2, delete, delete_range, get, put, scan, split_at,
    transfer_leader,
};

type Queue = Rc<RefCell<VecDeque<(u64, RaftMessage)>>>;

/// Sends into the cluster's shared queue.
#[derive(Debug)]
pub struct QueueSender {
    queue: Queue,
}

impl RaftMessageSender for QueueSender {
    fn send(&mut self, to_store: u64, msg: RaftMessage) {
        self.queue.borrow_mut().push_back((to_store, msg));
    }

    fn flush(&mut self) {}
}

/// The region every test cluster starts with: id 1, `[start, end)`, epoch (1, 1), a peer
/// with id `i` on store `i` for `i` in `1..=n`.
#[must_use]
pub fn first_region(n: u64, start: &[u8], end: &[u8]) -> Region {
    Region {
        id: 1,
        start_key: start.to_vec().into(),
        end_key: end.to_vec().into(),
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: (1..=n)
            .map(|id| Peer {
                id,
                store_id: id,
                role: 0,
            })
            .collect(),
    }
}

/// Stages the data of a snapshot message from `src` on `dst`, as a transport does: `None`
/// for other messages, else whether it was delivered (a failure, or a store without a
/// snapshot directory, loses the message).
pub(crate) fn transfer_snapshot(
    src: Option<&SnapManager>,
    dst: Option<&SnapManager>,
    msg: &RaftMessage,
) -> Option<bool> {
    msg.message.as_ref()?.snapshot.as_ref()?;
    let (Some(src), Some(dst)) = (src, dst) else {
        return Some(false);
    };
    let staged = raft_store::snapshot::message_descriptor(msg)
        .and_then(|meta| raft_store::snapshot::snap_manager::transfer(src, dst, &meta));
    Some(staged.is_ok())
}

/// Writes `region` into the engines of stores `1..=n` (cluster id 1).
pub fn bootstrap<F: EngineFactory>(factory: &mut F, n: u64, region: &Region) {
    for id in 1..=n {
        let (raft, kv) = factory.open(id);
        bootstrap_store(&kv, 1, id).unwrap();
        bootstrap_region(&raft, &kv, region).unwrap();
    }
}

/// Sends `RUST_LOG`-filtered tracing output to the test's captured output (once).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A store of a [`Cluster`].
pub type TestStore<E> = Store<E, E, FilteredSender<QueueSender>>;

/// Stores on one thread exchanging messages through in-memory queues; time advances only
/// by [`tick`](Self::tick).
pub struct Cluster<F: EngineFactory = MemoryFactory> {
    /// The configuration every store opens with.
    pub cfg: Config,
    /// The running stores.
    pub stores: BTreeMap<u64, TestStore<F::Engine>>,
    factory: F,
    engines: BTreeMap<u64, (F::Engine, F::Engine)>,
    /// Every store's staged snapshots (kept while a store is stopped: its messages may
    /// still be in flight).
    pub snap_mgrs: BTreeMap<u64, SnapManager>,
    queue: Queue,
    /// Messages for a store from its own transport (reports of dropped snapshots).
    reports: Arc<Mutex<Vec<(u64, StoreMsg)>>>,
    /// Stores that are stopped: messages to them are lost.
    pub stopped: HashSet<u64>,
    filters: Filters,
}

/// Short election and heartbeat timeouts, in ticks, for fast tests.
#[must_use]
pub fn test_config() -> Config {
    Config {
        raft_election_ticks: 10,
        raft_heartbeat_ticks: 2,
        ..Config::default()
    }
}

impl Cluster<MemoryFactory> {
    /// `n` stores on memory engines sharing one region `[start, end)`.
    #[must_use]
    pub fn new(n: u64, cfg: Config, start: &[u8], end: &[u8]) -> Self {
        Self::with_factory(MemoryFactory::default(), n, cfg, start, end)
    }
}

impl<F: EngineFactory> Cluster<F> {
    /// Opens stores 1..=n that were created earlier (their engines hold the region).
    pub fn reopen(factory: F, n: u64, cfg: Config) -> Self {
        init_tracing();
        let mut cluster = Self {
            cfg,
            stores: BTreeMap::new(),
            engines: BTreeMap::new(),
            snap_mgrs: BTreeMap::new(),
            reports: Arc::default(),
            queue: Rc::new(RefCell::new(VecDeque::new())),
            stopped: HashSet::new(),
            filters: Filters::new(),
            factory,
        };
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    /// `n` stores sharing one region `[start, end)` with a peer on each store.
    /// Set `RUST_LOG` (e.g. `RUST_LOG=raft_store=debug`) to see the stores' logs.
    pub fn with_factory(mut factory: F, n: u64, cfg: Config, start: &[u8], end: &[u8]) -> Self {
        bootstrap(&mut factory, n, &first_region(n, start, end));
        Self::reopen(factory, n, cfg)
    }

    /// Adds a store with no region (a peer arrives on it by conf change and snapshot).
    pub fn add_empty_store(&mut self, id: u64) {
        let (_, kv) = self.factory.open(id);
        bootstrap_store(&kv, 1, id).unwrap();
        drop(kv);
        self.start(id);
    }

    /// Opens store `id` from its engines.
    pub fn start(&mut self, id: u64) {
        let (raft, kv) = self.factory.open(id);
        self.engines.insert(id, (raft.clone(), kv.clone()));
        let queue = QueueSender {
            queue: self.queue.clone(),
        };
        let reports = self.reports.clone();
        let sender = FilteredSender::new(id, self.filters.clone(), queue)
            .with_snapshot_reporter(Box::new(move |msg| reports.lock().unwrap().push((id, msg))));
        let snap_mgr = SnapManager::open(self.factory.snap_dir(id), &self.cfg).unwrap();
        self.snap_mgrs.insert(id, snap_mgr.clone());
        let store = Store::open(id, self.cfg.clone(), raft, kv, sender, snap_mgr).unwrap();
        self.stores.insert(id, store);
        self.stopped.remove(&id);
    }

    /// Stops store `id` (its engines keep their data); messages to it are lost.
    pub fn stop(&mut self, id: u64) {
        self.stores.remove(&id);
        self.engines.remove(&id);
        self.stopped.insert(id);
    }

    /// The faults between stores; see [`filter`].
    #[must_use]
    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// The kv engine of running store `id`.
    #[must_use]
    pub fn kv(&self, id: u64) -> &F::Engine {
        &self.engines[&id].1
    }

    /// The raft engine of running store `id`.
    #[must_use]
    pub fn raft_engine(&self, id: u64) -> &F::Engine {
        &self.engines[&id].0
    }

    /// Delivers queued messages until the network is quiet.
    pub fn run(&mut self) {
        for _ in 0..1000 {
            let batch: Vec<(u64, RaftMessage)> = self.queue.borrow_mut().drain(..).collect();
            let reports = std::mem::take(&mut *self.reports.lock().unwrap());
            // Stores with unwritten raft batches (`raft_async_write`) write them when run.
            let unwritten: Vec<u64> = self
                .stores
                .iter()
                .filter(|(_, s)| s.has_unwritten_rounds())
                .map(|(&id, _)| id)
                .collect();
            if batch.is_empty() && reports.is_empty() && unwritten.is_empty() {
                return;
            }
            let mut per_store: BTreeMap<u64, Vec<StoreMsg>> = BTreeMap::new();
            for id in unwritten {
                per_store.entry(id).or_default();
            }
            for (store, msg) in reports {
                per_store.entry(store).or_default().push(msg);
            }
            for (to, msg) in batch {
                if self.stopped.contains(&to) {
                    continue;
                }
                // A snapshot's staged data moves with its message, verified on arrival;
                // the sender learns the outcome, as from a transport.
                let from = msg.from_peer.map_or(0, |p| p.store_id);
                if let Some(delivered) =
                    transfer_snapshot(self.snap_mgrs.get(&from), self.snap_mgrs.get(&to), &msg)
                {
                    per_store
                        .entry(from)
                        .or_default()
                        .push(StoreMsg::SnapshotStatus {
                            region_id: msg.region_id,
                            to_peer: msg.to_peer.map_or(0, |p| p.id),
                            delivered,
                        });
                    if !delivered {
                        continue;
                    }
                }
                per_store
                    .entry(to)
                    .or_default()
                    .push(StoreMsg::RaftMessage(Box::new(msg)));
            }
            for (to, msgs) in per_store {
                if let Some(store) = self.stores.get_mut(&to) {
                    store.handle_msgs(msgs).unwrap();
                }
            }
        }
        panic!("network did not quiesce");
    }

    /// One tick on every store, then delivers messages until the network is quiet.
    pub fn tick(&mut self) {
        for store in self.stores.values_mut() {
            store.handle_msgs([StoreMsg::Tick]).unwrap();
        }
        self.run();
    }

    /// The store whose peer of `region_id` leads, ticking until one does.
    pub fn leader(&mut self, region_id: u64) -> u64 {
        for _ in 0..500 {
            if let Some(id) = self.current_leader(region_id) {
                return id;
            }
            self.tick();
        }
        panic!("no leader for region {region_id}");
    }

    /// The store whose peer of `region_id` leads in the highest term, if any.
    #[must_use]
    pub fn current_leader(&self, region_id: u64) -> Option<u64> {
        self.stores
            .iter()
            .filter(|(_, s)| s.peer(region_id).is_some_and(|p| p.is_leader()))
            .max_by_key(|(_, s)| s.peer(region_id).map(|p| p.raft_group().raft().term()))
            .map(|(&id, _)| id)
    }

    /// Hands all `reqs` to `store` in one batch and runs the cluster until every one is
    /// answered; the responses come back in order.
    pub fn call_many(&mut self, store: u64, reqs: Vec<RaftCmdRequest>) -> Vec<RaftCmdResponse> {
        let slots: Vec<Arc<Mutex<Option<RaftCmdResponse>>>> =
            reqs.iter().map(|_| Arc::default()).collect();
        let msgs: Vec<StoreMsg> = reqs
            .into_iter()
            .zip(&slots)
            .map(|(req, slot)| {
                let answer = slot.clone();
                StoreMsg::Command {
                    request: Box::new(req),
                    callback: Box::new(move |resp| *answer.lock().unwrap() = Some(resp)),
                }
            })
            .collect();
        self.stores
            .get_mut(&store)
            .expect("store running")
            .handle_msgs(msgs)
            .unwrap();
        for _ in 0..200 {
            self.run();
            if slots.iter().all(|s| s.lock().unwrap().is_some()) {
                return slots
                    .iter()
                    .map(|s| s.lock().unwrap().take().unwrap())
                    .collect();
            }
            self.tick();
        }
        panic!("requests to store {store} were never all answered");
    }

    /// Sends `req` to `store` and runs the cluster until it is answered.
    pub fn call(&mut self, store: u64, req: RaftCmdRequest) -> RaftCmdResponse {
        let slot: Arc<Mutex<Option<RaftCmdResponse>>> = Arc::default();
        let answer = slot.clone();
        let msg = StoreMsg::Command {
            request: Box::new(req),
            callback: Box::new(move |resp| *answer.lock().unwrap() = Some(resp)),
        };
        self.stores
            .get_mut(&store)
            .expect("store running")
            .handle_msgs([msg])
            .unwrap();
        for _ in 0..200 {
            self.run();
            if let Some(resp) = slot.lock().unwrap().take() {
                return resp;
            }
            self.tick();
        }
        panic!("request to store {store} was never answered");
    }

    /// A request for region 1 with the epoch the store currently has.
    pub fn request(&self, store: u64, requests: Vec<Request>) -> RaftCmdRequest {
        self.request_in(store, 1, requests)
    }

    /// A request for `region_id` with the epoch the store currently has.
    pub fn request_in(&self, store: u64, region_id: u64, requests: Vec<Request>) -> RaftCmdRequest {
        let region = self.stores[&store]
            .peer(region_id)
            .expect("peer of the region")
            .region()
            .clone();
        RaftCmdRequest {
            header: Some(RequestHeader {
                region_id,
                region_epoch: region.region_epoch,
                ..Default::default()
            }),
            requests,
            admin_request: None,
        }
    }

    /// Runs `requests` on the leader, following NotLeader hints; panics on other errors.
    pub fn must_call(&mut self, requests: Vec<Request>) -> RaftCmdResponse {
        self.must_call_in(1, requests)
    }

    /// Runs `requests` on `region_id`'s leader, following NotLeader hints; panics on
    /// other errors.
    pub fn must_call_in(&mut self, region_id: u64, requests: Vec<Request>) -> RaftCmdResponse {
        for _ in 0..20 {
            let leader = self.leader(region_id);
            let resp = self.call(leader, self.request_in(leader, region_id, requests.clone()));
            match resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                None => return resp,
                Some(e) if e.not_leader.is_some() || e.stale_command.is_some() => self.tick(),
                Some(e) => panic!("request failed: {e:?}"),
            }
        }
        panic!("request kept failing");
    }

    /// Runs an admin command on the leader, following NotLeader hints.
    pub fn must_admin(&mut self, admin: AdminRequest) -> RaftCmdResponse {
        for _ in 0..20 {
            let leader = self.leader(1);
            let mut req = self.request(leader, Vec::new());
            req.admin_request = Some(Box::new(admin.clone()));
            let resp = self.call(leader, req);
            match resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                None => return resp,
                Some(e) if e.not_leader.is_some() || e.stale_command.is_some() => self.tick(),
                Some(e) => panic!("admin request failed: {e:?}"),
            }
        }
        panic!("admin request kept failing");
    }

    /// The region holding `key`, as the running stores route it (the newest epoch wins).
    pub fn region_for_key(&self, key: &[u8]) -> u64 {
        self.stores
            .values()
            .filter_map(|s| s.region_for_key(key))
            .max_by_key(|r| r.region_epoch.map(|e| e.version))
            .map(|r| r.id)
            .expect("some store routes the key")
    }

    /// Puts `key` into whichever region holds it.
    pub fn must_put_routed(&mut self, key: &[u8], value: &[u8]) {
        let region_id = self.region_for_key(key);
        self.must_call_in(region_id, vec![put(key, value)]);
    }

    /// Puts `key` into region 1.
    pub fn must_put(&mut self, key: &[u8], value: &[u8]) {
        self.must_call(vec![put(key, value)]);
    }

    /// Reads `key` from region 1.
    pub fn must_get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let resp = self.must_call(vec![get(key)]);
        let g = resp.responses[0].get.clone().unwrap();
        g.found.then(|| g.value.to_vec())
    }
}

/// Runs each named test function (generic over the engine factory) on one engine: test
/// `name` of module `engine` calls `super::name(factory)`.
///
/// ```ignore
/// conformance_tests::on_engine!(memory = MemoryFactory::default(); basic, restarts);
/// ```
#[macro_export]
macro_rules! on_engine {
    ($engine:ident = $factory:expr; $($name:ident),* $(,)?) => {
        mod $engine {
            $(#[test] fn $name() { super::$name($factory) })*
        }
    };
}

/// Runs each named test function (generic over the engine factory) once per engine:
/// `memory::name`, `fjall::name` and, with the `heed` feature **of the calling crate**
/// (which must enable this crate's `heed` feature), `heed::name`.
#[macro_export]
macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        $crate::on_engine!(memory = $crate::cluster::MemoryFactory::default(); $($name),*);
        $crate::on_engine!(fjall = $crate::cluster::FjallFactory::new(); $($name),*);
        #[cfg(feature = "heed")]
        $crate::on_engine!(heed = $crate::cluster::HeedFactory::new(); $($name),*);
    };
}
