//! A raftkv node: one store on a raft worker thread, and one gRPC server hosting the KV,
//! Admin and raft transport services.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use engines::{Engine, FjallEngine, MemoryEngine};
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::pb::metapb::{Peer, Region, RegionEpoch};
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::{RaftWorker, SnapManager, Store, StoreFrameSink, StoreMailbox, TransportSender};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};
use transport::grpc::{GrpcConfig, GrpcTransport};
use transport::{StaticResolver, Transport};

use crate::admission::{Admission, AdmissionLayer, ServerLimits};
use crate::error::{Error, Result};
use crate::kv_service::KvService;
use crate::proto::kvrpc::admin_server::AdminServer;
use crate::proto::kvrpc::kv_server::KvServer;
use crate::rpc_metrics::{InFlight, RpcMetricsLayer};

/// The largest gRPC message the KV service accepts or sends.
pub const MAX_KV_MESSAGE_BYTES: usize = 64 << 20;

/// The cluster id written by every node of a raftkv cluster.
pub const CLUSTER_ID: u64 = 1;

/// The id of the first region (the whole key space).
pub const FIRST_REGION_ID: u64 = 1;

/// The default of [`NodeConfig::drain_timeout_ms`].
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;

/// The directory of the state machine's engine inside the data directory.
const KV_DIR: &str = "kv";

/// Which storage engine a node keeps its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// fjall (LSM), in `data_dir/kv` (and the raft log in `data_dir/raft` with
    /// [`RaftEngineKind::Kv`]).
    #[default]
    Fjall,
    /// LMDB through heed (feature `heed`), in `data_dir/kv` (and the raft log in
    /// `data_dir/raft` with [`RaftEngineKind::Kv`]).
    #[cfg(feature = "heed")]
    Heed,
    /// In memory: lost on shutdown (tests). The raft log is in memory too, whatever
    /// [`NodeConfig::raft_engine`] says.
    Memory,
}

/// Which engine a node on a disk engine keeps its raft log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaftEngineKind {
    /// The raft log in `data_dir/raft-log`, a [`LogEngine`](engines::LogEngine): one
    /// append per write batch instead of an LSM tree's memtable, journal and compactions.
    /// Unix only (the default there).
    #[cfg_attr(unix, default)]
    Log,
    /// The raft log in `data_dir/raft`, on the same backend as the state machine: the
    /// layout before `LogEngine` existed.
    #[cfg_attr(not(unix), default)]
    Kv,
}

impl RaftEngineKind {
    /// The setting's value in a config file or on the command line (`log`, `kv`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Kv => "kv",
        }
    }

    /// The directory of the raft log inside the data directory.
    #[must_use]
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Log => "raft-log",
            Self::Kv => "raft",
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's store id (also its peer id in the first region).
    pub store_id: u64,
    /// Where the gRPC server listens.
    pub listen_addr: SocketAddr,
    /// Every store of the cluster (this one included) and its address.
    pub peers: BTreeMap<u64, String>,
    /// Where the engines keep their files, and staged snapshots in `data_dir/snap`
    /// (the memory engine uses a temporary directory instead, removed on shutdown).
    pub data_dir: PathBuf,
    /// The storage engine.
    pub engine: EngineKind,
    /// Where the raft log is kept: a [`LogEngine`](engines::LogEngine) of its own
    /// (default) or the state machine's backend. Recorded in the data directory on the
    /// first start, which later starts must match. Ignored with [`EngineKind::Memory`],
    /// whose raft log is always in memory.
    pub raft_engine: RaftEngineKind,
    /// The raft tick interval (overrides `store.raft_base_tick_ms`).
    pub tick_ms: u64,
    /// How long a graceful shutdown waits for the client requests in flight (and then
    /// for the gRPC server) before going on without them.
    pub drain_timeout_ms: u64,
    /// The store's settings.
    pub store: raft_store::Config,
    /// The stores whose peers form the first region when the cluster is bootstrapped
    /// (empty = every store in `peers`). A store left out starts with no region and gets
    /// data once a peer is added on it (`Admin.AddPeer`). Must be the same on every node.
    pub initial_members: Vec<u64>,
    /// What the gRPC server takes in from clients (admission control, HTTP/2 streams).
    pub limits: ServerLimits,
}

impl NodeConfig {
    /// A config with defaults (fjall, the raft log in a log engine, 100 ms ticks).
    #[must_use]
    pub fn new(
        store_id: u64,
        listen_addr: SocketAddr,
        peers: BTreeMap<u64, String>,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            store_id,
            listen_addr,
            peers,
            data_dir,
            engine: EngineKind::default(),
            raft_engine: RaftEngineKind::default(),
            tick_ms: 100,
            drain_timeout_ms: DRAIN_TIMEOUT_MS,
            store: raft_store::Config::default(),
            initial_members: Vec::new(),
            limits: ServerLimits::default(),
        }
    }

    /// Checks the settings (store id, peers, tick interval, the store's settings).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.store_id == 0 {
            return Err(Error::Config("store id 0 is reserved".into()));
        }
        if !self.peers.contains_key(&self.store_id) {
            return Err(Error::Config(format!(
                "peers must include this node's store {}",
                self.store_id
            )));
        }
        if self.tick_ms == 0 {
            return Err(Error::Config("tick_ms must be greater than 0".into()));
        }
        #[cfg(not(unix))]
        if self.raft_engine == RaftEngineKind::Log && self.engine != EngineKind::Memory {
            return Err(Error::Config(
                "raft_engine = \"log\" needs a Unix system; use raft_engine = \"kv\"".into(),
            ));
        }
        if let Some(id) = self
            .initial_members
            .iter()
            .find(|id| !self.peers.contains_key(id))
        {
            return Err(Error::Config(format!(
                "initial member {id} is not among the peers"
            )));
        }
        self.limits.validate().map_err(Error::Config)?;
        self.store_config()
            .validate()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The store's settings with this node's tick interval.
    fn store_config(&self) -> raft_store::Config {
        raft_store::Config {
            raft_base_tick_ms: self.tick_ms,
            ..self.store.clone()
        }
    }

    /// Whether this node's store holds a peer of the first region from the start.
    #[must_use]
    pub fn is_initial_member(&self) -> bool {
        self.initial_members.is_empty() || self.initial_members.contains(&self.store_id)
    }

    /// The first region: the whole key space, a voter on every initial member.
    #[must_use]
    pub fn first_region(&self) -> Region {
        Region {
            id: FIRST_REGION_ID,
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: self
                .peers
                .keys()
                .filter(|id| self.initial_members.is_empty() || self.initial_members.contains(id))
                .map(|&id| Peer {
                    id,
                    store_id: id,
                    role: 0,
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// A running node. Stop it with [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct Node {
    store_id: u64,
    addr: SocketAddr,
    worker: Option<RaftWorker>,
    /// Syncs the engines once the worker has stopped.
    engines: EngineSync,
    transport: Arc<GrpcTransport>,
    /// Client requests being served, awaited by a graceful shutdown.
    in_flight: Arc<InFlight>,
    /// The KV service, whose `BatchCommands` streams a shutdown closes.
    kv: KvService,
    stop_server: Option<oneshot::Sender<()>>,
    drain_timeout: Duration,
    server: Option<JoinHandle<std::result::Result<(), tonic::transport::Error>>>,
    /// A snapshot directory of this node alone (memory engine), removed once it stopped.
    temp_snap_dir: Option<PathBuf>,
}

/// A snapshot directory for a node whose engine keeps nothing on disk: unique to this
/// process and node, so nodes of concurrent clusters never share one.
fn temp_snap_dir(store_id: u64) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("raftkv-snap-{}-{store_id}-{n}", std::process::id()))
}

impl Node {
    /// Binds `cfg.listen_addr` and starts the node.
    ///
    /// # Errors
    /// [`Error::AddrInUse`] when the address is taken; see [`start_on`](Self::start_on).
    pub async fn start(cfg: NodeConfig) -> Result<Self> {
        let listener = TcpListener::bind(cfg.listen_addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                Error::AddrInUse {
                    addr: cfg.listen_addr.to_string(),
                }
            } else {
                Error::Io(e)
            }
        })?;
        Self::start_on(cfg, listener).await
    }

    /// Starts the node serving on `listener` (which overrides `cfg.listen_addr`): opens
    /// the engines, bootstraps the store and the first region if new, starts the raft
    /// worker, the transport and the gRPC server.
    ///
    /// # Errors
    /// A bad config, [`Error::StoreNotMatch`] when the data dir belongs to another store,
    /// [`Error::DataDir`] when it was written by another engine or keeps its raft log
    /// elsewhere (see [`NodeConfig::raft_engine`]), an engine or store failure.
    pub async fn start_on(cfg: NodeConfig, listener: TcpListener) -> Result<Self> {
        cfg.validate()?;
        if cfg.engine != EngineKind::Memory {
            crate::data_dir::claim(&cfg.data_dir, cfg.store_id, cfg.engine, cfg.raft_engine)?;
        }
        let addr = listener.local_addr()?;
        let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
        let resolver = Arc::new(StaticResolver::new(
            cfg.peers
                .iter()
                .filter(|(id, _)| **id != cfg.store_id)
                .map(|(id, a)| (*id, a.clone())),
        ));
        let temp_snap_dir = (cfg.engine == EngineKind::Memory).then(|| temp_snap_dir(cfg.store_id));
        let snap_dir = temp_snap_dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("snap"));
        let snap_mgr = SnapManager::open(&snap_dir, &cfg.store).map_err(raft_store::Error::from)?;
        let grpc_config = GrpcConfig::default();
        let transport = Arc::new(GrpcTransport::new(
            cfg.store_id,
            grpc_config.clone(),
            resolver,
            Arc::new(StoreFrameSink::new(mailbox.clone(), snap_mgr.clone())),
        ));
        let sender = TransportSender::new(
            transport.clone(),
            tokio::runtime::Handle::current(),
            mailbox.clone(),
            grpc_config.max_frame_bytes,
            grpc_config.snapshot_chunk_bytes,
            snap_mgr.clone(),
        );
        let parts = StoreParts {
            sender,
            snap_mgr,
            mailbox: mailbox.clone(),
            rx,
        };
        let (worker, engines) = match cfg.engine {
            EngineKind::Memory => launch(
                &cfg,
                MemoryEngine::new(&[CF_RAFT])?,
                MemoryEngine::new(&[CF_DEFAULT, CF_META])?,
                parts,
            )?,
            EngineKind::Fjall => {
                launch_on_disk(&cfg, |dir, cfs| Ok(FjallEngine::open(dir, cfs)?), parts)?
            }
            #[cfg(feature = "heed")]
            EngineKind::Heed => launch_on_disk(
                &cfg,
                |dir, cfs| {
                    // LMDB opens an existing directory only.
                    std::fs::create_dir_all(dir)?;
                    Ok(engines::HeedEngine::open(dir, cfs)?)
                },
                parts,
            )?,
        };
        let admission = Admission::new(cfg.store_id, &cfg.limits);
        let rpc_metrics = RpcMetricsLayer::new();
        let in_flight = rpc_metrics.in_flight();
        let kv = KvService::new(
            cfg.store_id,
            mailbox,
            cfg.peers.clone(),
            cfg.first_region(),
            admission.clone(),
        )
        .with_call_meter(rpc_metrics.call_meter());
        let admin = kv.admin();
        let (stop_server, stopped) = oneshot::channel::<()>();
        // Accepted connections get TCP_NODELAY from the incoming stream: the builder's
        // `tcp_nodelay` is ignored with `serve_with_incoming*`, and without it a small
        // response behind an unacknowledged one waits for the peer's delayed ACK (40 ms).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        // What the server holds of client requests: the admitted ones (admission control:
        // a request slot is taken before a `Kv` call's body is read, its bytes once it is
        // decoded), plus, per connection, the bodies of at most `max_concurrent_streams`
        // admitted calls being decoded (each up to MAX_KV_MESSAGE_BYTES), one message
        // being decoded per `BatchCommands` stream (whose commands are admitted one by
        // one; a stream stops reading at PENDING_COMMANDS_MAX unanswered commands), and
        // the unread bytes the HTTP/2 flow-control windows let in (per stream and per
        // connection).
        let server = Server::builder()
            .max_concurrent_streams(Some(cfg.limits.max_concurrent_streams))
            .initial_stream_window_size(grpc_config.stream_window_bytes)
            .initial_connection_window_size(grpc_config.connection_window_bytes)
            .layer(rpc_metrics)
            .layer(AdmissionLayer::new(admission))
            .add_service(
                KvServer::new(kv.clone())
                    .max_decoding_message_size(MAX_KV_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_KV_MESSAGE_BYTES),
            )
            .add_service(AdminServer::new(admin))
            .add_service(transport.service())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        let server = tokio::spawn(server);
        info!(store_id = cfg.store_id, %addr, "raftkv node started");
        Ok(Self {
            store_id: cfg.store_id,
            addr,
            worker: Some(worker),
            engines,
            transport,
            in_flight,
            kv,
            stop_server: Some(stop_server),
            drain_timeout: Duration::from_millis(cfg.drain_timeout_ms),
            server: Some(server),
            temp_snap_dir,
        })
    }

    /// This node's store id.
    #[must_use]
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The address the gRPC server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops gracefully: stops accepting connections, lets the client requests in flight
    /// finish (at most [`NodeConfig::drain_timeout_ms`]; they need the transport to commit), closes the
    /// transport, stops the raft worker (answering what it still holds), syncs the engines
    /// and waits for the gRPC server to finish.
    ///
    /// # Errors
    /// The fatal error that stopped the worker, if any, or a failed engine sync.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop().await
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        // Open streams would keep the server's graceful shutdown waiting: they stop
        // reading, answer what they took (awaited below as requests in flight) and end.
        self.kv.close_streams();
        if !self.in_flight.wait_idle(self.drain_timeout).await {
            warn!(
                store_id = self.store_id,
                in_flight = self.in_flight.count(),
                "requests still in flight after the drain timeout; stopping anyway"
            );
        }
        // The transport's streams are long-lived: close them so the server can finish.
        self.transport.close().await;
        // Stopping the worker answers the requests it still holds (e.g. writes that lost
        // their quorum) with `Stopped`, so the server's graceful shutdown cannot hang on
        // them.
        let stopped = match self.worker.take() {
            Some(worker) => {
                let engines = self.engines.clone();
                tokio::task::spawn_blocking(move || -> Result<()> {
                    worker.shutdown()?;
                    // The worker has stopped: nothing writes any more.
                    engines.sync()
                })
                .await
                .unwrap_or_else(|e| Err(Error::Config(format!("worker shutdown task failed: {e}"))))
            }
            None => Ok(()),
        };
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(self.drain_timeout, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!(store_id = self.store_id, "gRPC server failed: {e}"),
                Ok(Err(e)) => warn!(store_id = self.store_id, "gRPC server task failed: {e}"),
                Err(_) => {
                    warn!(
                        store_id = self.store_id,
                        "gRPC server did not stop; aborting it"
                    );
                    server.abort();
                }
            }
        }
        self.remove_temp_snap_dir();
        stopped?;
        info!(store_id = self.store_id, "raftkv node stopped");
        Ok(())
    }
}

impl Node {
    fn remove_temp_snap_dir(&mut self) {
        if let Some(dir) = self.temp_snap_dir.take()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            warn!(dir = %dir.display(), "cannot remove the snapshot directory: {e}");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        // Without this, clients holding `BatchCommands` streams would keep the server task
        // (and the service it holds) alive for as long as they run.
        self.kv.close_streams();
        // The worker stops in its own Drop; then nothing uses the directory.
        if let Some(worker) = self.worker.take() {
            drop(worker);
        }
        self.remove_temp_snap_dir();
    }
}

/// Syncs a node's two engines (whatever their type).
#[derive(Clone)]
struct EngineSync(Arc<dyn Fn() -> engines::Result<()> + Send + Sync>);

impl EngineSync {
    fn new<ER: Engine, EK: Engine>(raft: ER, kv: EK) -> Self {
        Self(Arc::new(move || {
            raft.sync()?;
            kv.sync()
        }))
    }

    fn sync(&self) -> Result<()> {
        Ok((self.0)()?)
    }
}

impl std::fmt::Debug for EngineSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineSync")
    }
}

/// What a store needs besides its engines, handed to [`launch`].
struct StoreParts {
    sender: TransportSender,
    snap_mgr: SnapManager,
    mailbox: StoreMailbox,
    rx: crossbeam_channel::Receiver<raft_store::StoreMsg>,
}

/// Opens a disk engine's state machine in `data_dir/kv` with `open`, and the raft log as
/// `cfg.raft_engine` says (`open` again in `data_dir/raft`, or a log engine in
/// `data_dir/raft-log`), then [`launch`]es the store over them.
fn launch_on_disk<EK: Engine>(
    cfg: &NodeConfig,
    open: impl Fn(&Path, &[&str]) -> Result<EK>,
    parts: StoreParts,
) -> Result<(RaftWorker, EngineSync)> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let raft_dir = cfg.data_dir.join(cfg.raft_engine.dir_name());
    let kv = open(&cfg.data_dir.join(KV_DIR), &[CF_DEFAULT, CF_META])?;
    match cfg.raft_engine {
        #[cfg(unix)]
        RaftEngineKind::Log => launch(
            cfg,
            engines::LogEngine::open(&raft_dir, &[CF_RAFT])?,
            kv,
            parts,
        ),
        // `NodeConfig::validate` refuses this combination first.
        #[cfg(not(unix))]
        RaftEngineKind::Log => Err(Error::Config(
            "raft_engine = \"log\" needs a Unix system".into(),
        )),
        RaftEngineKind::Kv => launch(cfg, open(&raft_dir, &[CF_RAFT])?, kv, parts),
    }
}

/// Bootstraps (if new) and opens the store over `raft` and `kv`, and starts its workers.
fn launch<ER: Engine, EK: Engine>(
    cfg: &NodeConfig,
    raft: ER,
    kv: EK,
    parts: StoreParts,
) -> Result<(RaftWorker, EngineSync)> {
    let StoreParts {
        sender,
        snap_mgr,
        mailbox,
        rx,
    } = parts;
    bootstrap_store(&kv, CLUSTER_ID, cfg.store_id).map_err(|e| match e {
        raft_store::Error::StoreNotMatch {
            actual_store_id, ..
        } => Error::StoreNotMatch {
            dir: cfg.data_dir.display().to_string(),
            store_id: cfg.store_id,
            actual_store_id,
        },
        e => Error::Store(e),
    })?;
    if cfg.is_initial_member() && bootstrap_region(&raft, &kv, &cfg.first_region())? {
        info!(store_id = cfg.store_id, "bootstrapped the first region");
    }
    let store_cfg = cfg.store_config();
    let max_batch = store_cfg.max_batch_msgs;
    let engines = EngineSync::new(raft.clone(), kv.clone());
    let store = Store::open(cfg.store_id, store_cfg, raft, kv, sender, snap_mgr)?;
    let worker = RaftWorker::spawn(
        store,
        mailbox,
        rx,
        Duration::from_millis(cfg.tick_ms),
        max_batch,
    )?;
    Ok((worker, engines))
}
