//! A deterministic cluster of stores in one thread: messages go through in-memory queues,
//! time is a count of ticks, and a store can be stopped and reopened from its engines.
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use engines::{Engine, MemoryEngine};
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::pb::metapb::{Peer, Region, RegionEpoch};
use raft_store::pb::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, RaftCmdResponse, Request,
    RequestHeader, TransferLeaderRequest,
};
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::{Config, RaftMessageSender, Store, StoreMsg};

#[path = "requests.rs"]
mod requests;
#[allow(unused_imports)] // each test crate uses its own subset
pub use requests::{cas, delete, delete_range, get, put, scan};

type Queue = Rc<RefCell<VecDeque<(u64, RaftMessage)>>>;

/// Sends into the cluster's shared queue.
pub struct QueueSender {
    queue: Queue,
}

impl RaftMessageSender for QueueSender {
    fn send(&mut self, to_store: u64, msg: RaftMessage) {
        self.queue.borrow_mut().push_back((to_store, msg));
    }

    fn flush(&mut self) {}
}

/// Opens the (raft, kv) engines of a store: the same data every time for one id.
pub trait EngineFactory {
    type Engine: Engine;
    fn open(&mut self, store_id: u64) -> (Self::Engine, Self::Engine);
}

/// Memory engines, kept across stop and start like a disk would be.
#[derive(Default)]
pub struct MemoryFactory {
    engines: BTreeMap<u64, (MemoryEngine, MemoryEngine)>,
}

impl EngineFactory for MemoryFactory {
    type Engine = MemoryEngine;
    fn open(&mut self, store_id: u64) -> (MemoryEngine, MemoryEngine) {
        self.engines
            .entry(store_id)
            .or_insert_with(|| {
                (
                    MemoryEngine::new(&[CF_RAFT]).unwrap(),
                    MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap(),
                )
            })
            .clone()
    }
}

/// fjall engines in a temporary directory, reopened from disk on every start.
pub struct FjallFactory {
    dir: tempfile::TempDir,
    fixed: Option<std::path::PathBuf>,
}

impl FjallFactory {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            fixed: None,
        }
    }

    /// Engines under `path`, which outlives the factory (for crash tests).
    pub fn at(path: &std::path::Path) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            fixed: Some(path.to_path_buf()),
        }
    }
}

impl EngineFactory for FjallFactory {
    type Engine = engines::FjallEngine;
    fn open(&mut self, store_id: u64) -> (Self::Engine, Self::Engine) {
        let root = self
            .fixed
            .clone()
            .unwrap_or_else(|| self.dir.path().to_path_buf());
        let base = root.join(format!("store-{store_id}"));
        let raft = engines::FjallEngine::open(&base.join("raft"), &[CF_RAFT]).unwrap();
        let kv = engines::FjallEngine::open(&base.join("kv"), &[CF_DEFAULT, CF_META]).unwrap();
        (raft, kv)
    }
}

/// heed (LMDB) engines in a temporary directory, reopened from disk on every start.
#[cfg(feature = "heed")]
pub struct HeedFactory {
    dir: tempfile::TempDir,
}

#[cfg(feature = "heed")]
impl HeedFactory {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

#[cfg(feature = "heed")]
impl EngineFactory for HeedFactory {
    type Engine = engines::HeedEngine;
    fn open(&mut self, store_id: u64) -> (Self::Engine, Self::Engine) {
        let base = self.dir.path().join(format!("store-{store_id}"));
        let raft = engines::HeedEngine::open(&base.join("raft"), &[CF_RAFT]).unwrap();
        let kv = engines::HeedEngine::open(&base.join("kv"), &[CF_DEFAULT, CF_META]).unwrap();
        (raft, kv)
    }
}

pub type TestStore<E> = Store<E, E, QueueSender>;

pub struct Cluster<F: EngineFactory = MemoryFactory> {
    pub cfg: Config,
    pub stores: BTreeMap<u64, TestStore<F::Engine>>,
    factory: F,
    engines: BTreeMap<u64, (F::Engine, F::Engine)>,
    queue: Queue,
    /// Stores that are stopped: messages to them are lost.
    pub stopped: HashSet<u64>,
    /// Links (from, to) that drop every message.
    pub cut: HashSet<(u64, u64)>,
}

pub fn test_config() -> Config {
    Config {
        raft_election_ticks: 10,
        raft_heartbeat_ticks: 2,
        ..Config::default()
    }
}

impl Cluster<MemoryFactory> {
    /// `n` stores on memory engines sharing one region `[start, end)`.
    pub fn new(n: u64, cfg: Config, start: &[u8], end: &[u8]) -> Self {
        Self::with_factory(MemoryFactory::default(), n, cfg, start, end)
    }
}

impl<F: EngineFactory> Cluster<F> {
    /// Opens stores 1..=n that were created earlier (their engines hold the region).
    pub fn reopen(factory: F, n: u64, cfg: Config) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut cluster = Self {
            cfg,
            stores: BTreeMap::new(),
            engines: BTreeMap::new(),
            queue: Rc::new(RefCell::new(VecDeque::new())),
            stopped: HashSet::new(),
            cut: HashSet::new(),
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
        let region = Region {
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
        };
        for id in 1..=n {
            let (raft, kv) = factory.open(id);
            bootstrap_store(&kv, 1, id).unwrap();
            bootstrap_region(&raft, &kv, &region).unwrap();
        }
        Self::reopen(factory, n, cfg)
    }

    /// Adds a store with no region (a peer arrives on it by conf change and snapshot).
    pub fn add_empty_store(&mut self, id: u64) {
        let (_, kv) = self.factory.open(id);
        bootstrap_store(&kv, 1, id).unwrap();
        drop(kv);
        self.start(id);
    }

    pub fn start(&mut self, id: u64) {
        let (raft, kv) = self.factory.open(id);
        self.engines.insert(id, (raft.clone(), kv.clone()));
        let sender = QueueSender {
            queue: self.queue.clone(),
        };
        let store = Store::open(id, self.cfg.clone(), raft, kv, sender).unwrap();
        self.stores.insert(id, store);
        self.stopped.remove(&id);
    }

    pub fn stop(&mut self, id: u64) {
        self.stores.remove(&id);
        self.engines.remove(&id);
        self.stopped.insert(id);
    }

    pub fn kv(&self, id: u64) -> &F::Engine {
        &self.engines[&id].1
    }

    pub fn raft_engine(&self, id: u64) -> &F::Engine {
        &self.engines[&id].0
    }

    /// Delivers queued messages until the network is quiet.
    pub fn run(&mut self) {
        for _ in 0..1000 {
            let batch: Vec<(u64, RaftMessage)> = self.queue.borrow_mut().drain(..).collect();
            if batch.is_empty() {
                return;
            }
            let mut per_store: BTreeMap<u64, Vec<StoreMsg>> = BTreeMap::new();
            for (to, msg) in batch {
                let from = msg.from_peer.map_or(0, |p| p.store_id);
                if self.stopped.contains(&to) || self.cut.contains(&(from, to)) {
                    continue;
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
            req.admin_request = Some(admin.clone());
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

    pub fn must_put(&mut self, key: &[u8], value: &[u8]) {
        self.must_call(vec![put(key, value)]);
    }

    pub fn must_get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let resp = self.must_call(vec![get(key)]);
        let g = resp.responses[0].get.clone().unwrap();
        g.found.then(|| g.value.to_vec())
    }
}

pub fn change_peer(
    change_type: raft_core::eraftpb::ConfChangeType,
    peer_id: u64,
    store_id: u64,
) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::ChangePeer as i32,
        change_peer: Some(ChangePeerRequest {
            change_type: change_type as i32,
            peer: Some(Peer {
                id: peer_id,
                store_id,
                role: 0,
            }),
        }),
        ..Default::default()
    }
}

pub fn transfer_leader(peer_id: u64, store_id: u64) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::TransferLeader as i32,
        transfer_leader: Some(TransferLeaderRequest {
            peer: Some(Peer {
                id: peer_id,
                store_id,
                role: 0,
            }),
        }),
        ..Default::default()
    }
}

pub fn split_at(key: &[u8]) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::Split as i32,
        split: Some(raft_store::pb::raft_cmdpb::SplitRequest {
            split_key: key.to_vec().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs each named test function (generic over the engine factory) once per engine:
/// `memory::name`, `fjall::name` and, with the `heed` feature, `heed::name`.
#[macro_export]
macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::$name(super::cluster::MemoryFactory::default()) })*
        }
        mod fjall {
            $(#[test] fn $name() { super::$name(super::cluster::FjallFactory::new()) })*
        }
        #[cfg(feature = "heed")]
        mod heed {
            $(#[test] fn $name() { super::$name(super::cluster::HeedFactory::new()) })*
        }
    };
}

pub fn change_peers_v2(changes: &[(raft_core::eraftpb::ConfChangeType, u64, u64)]) -> AdminRequest {
    let changes = changes
        .iter()
        .map(|&(t, peer_id, store_id)| ChangePeerRequest {
            change_type: t as i32,
            peer: Some(Peer {
                id: peer_id,
                store_id,
                role: 0,
            }),
        })
        .collect();
    AdminRequest {
        cmd_type: AdminCmdType::ChangePeerV2 as i32,
        change_peer_v2: Some(raft_store::pb::raft_cmdpb::ChangePeerV2Request { changes }),
        ..Default::default()
    }
}
