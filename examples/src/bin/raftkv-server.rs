//! `raftkv-server`: one raftkv node (store + KV, Admin and raft transport on one gRPC port).
//!
//! ```sh
//! raftkv-server --node-id 1 --listen 127.0.0.1:20161 --data-dir /tmp/kv1 \
//!     --peer 1=127.0.0.1:20161 --peer 2=127.0.0.1:20162 --peer 3=127.0.0.1:20163
//! raftkv-server --config node1.toml
//! ```
//!
//! `--engine` picks the storage engine (fjall by default) and `--raft-engine` where the raft
//! log goes: `log` (default) keeps it in `data_dir/raft-log`, an append-only log engine;
//! `kv` keeps it in `data_dir/raft` on the storage engine, the layout of data dirs written
//! before the log engine existed (a data dir must be started with the raft engine it was
//! created with).
//!
//! Command-line flags override the TOML file. Logs go to stderr, filtered by `RUST_LOG`
//! (default `info`). SIGINT or SIGTERM shut the node down gracefully: stop accepting,
//! finish the requests in flight, stop the raft worker, sync the engines, exit 0.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the node cannot start or stops with an
//! error (port in use, data dir of another node, storage failure), 2 for a bad command
//! line or config.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use raftkv_examples::{EngineKind, Node, NodeConfig, RaftEngineKind};
use serde::Deserialize;
use tracing::info;

/// mimalloc instead of glibc's allocator: an apply round allocates and frees vectors of
/// thousands of commands, which glibc serves with fresh `mmap`s (page faults on every
/// round) once they pass its mmap threshold.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line flags; each overrides the config file's setting.
#[derive(Debug, Parser)]
#[command(name = "raftkv-server", about = "Runs one raftkv node")]
struct Args {
    /// A TOML config file (keys: node_id, listen, peers = ["id=addr", ...], data_dir,
    /// engine, raft_engine, tick_ms, drain_timeout_ms, metrics_listen, max_requests_in_flight,
    /// max_request_bytes_in_flight, max_concurrent_streams, and a `[store]` table of
    /// raft-store settings; see the README's configuration reference).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's store id.
    #[arg(long)]
    node_id: Option<u64>,
    /// The gRPC listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// A store of the cluster as `id=host:port`; repeat for every store, this one included.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// The data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The storage engine: fjall (default), memory, or heed (feature `heed`).
    #[arg(long)]
    engine: Option<String>,
    /// Where the raft log goes: log (default; `data_dir/raft-log`, an append-only log
    /// engine) or kv (`data_dir/raft`, on the storage engine; data dirs written before the
    /// log engine). Ignored with the memory engine.
    #[arg(long)]
    raft_engine: Option<String>,
    /// The raft tick interval in milliseconds (default 100).
    #[arg(long)]
    tick_ms: Option<u64>,
    /// How long a graceful shutdown waits for requests in flight, in ms (default 5000).
    #[arg(long)]
    drain_timeout_ms: Option<u64>,
    /// Serve Prometheus metrics over HTTP on this address (default: not served).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Check the config and print the effective settings, then exit without starting.
    #[arg(long)]
    check_config: bool,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    listen: Option<SocketAddr>,
    peers: Vec<String>,
    data_dir: Option<PathBuf>,
    engine: Option<String>,
    raft_engine: Option<String>,
    tick_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    max_requests_in_flight: Option<usize>,
    max_request_bytes_in_flight: Option<usize>,
    max_concurrent_streams: Option<u32>,
    store: Option<raft_store::Config>,
}

/// What the server runs: the node and where its metrics go.
#[derive(Debug)]
struct ServerConfig {
    node: NodeConfig,
    metrics_listen: Option<SocketAddr>,
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    match s {
        "fjall" => Ok(EngineKind::Fjall),
        "memory" => Ok(EngineKind::Memory),
        #[cfg(feature = "heed")]
        "heed" => Ok(EngineKind::Heed),
        other => Err(format!(
            "unknown engine {other:?} (fjall, memory{})",
            if cfg!(feature = "heed") { ", heed" } else { "" }
        )),
    }
}

fn parse_raft_engine(s: &str) -> Result<RaftEngineKind, String> {
    [RaftEngineKind::Log, RaftEngineKind::Kv]
        .into_iter()
        .find(|kind| kind.name() == s)
        .ok_or_else(|| format!("unknown raft engine {s:?} (log, kv)"))
}

fn parse_peers(peers: &[String]) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    for p in peers {
        let (id, addr) = p
            .split_once('=')
            .ok_or_else(|| format!("peer {p:?} must be id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer {p:?}: bad store id"))?;
        let addr = raftkv_examples::endpoint::parse_list(addr)
            .ok()
            .filter(|a| a.len() == 1)
            .ok_or_else(|| format!("peer {p:?}: the address must be host:port"))?;
        if out.insert(id, addr.concat()).is_some() {
            return Err(format!("store {id} is listed twice"));
        }
    }
    Ok(out)
}

fn server_config(args: Args) -> Result<ServerConfig, String> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| format!("bad config {}: {e}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let node_id = args
        .node_id
        .or(file.node_id)
        .ok_or("--node-id (or node_id in the config) is required")?;
    let listen = args
        .listen
        .or(file.listen)
        .ok_or("--listen (or listen in the config) is required")?;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(format!("raftkv-data-{node_id}")));
    let peers = if args.peers.is_empty() {
        file.peers
    } else {
        args.peers
    };
    let mut peers = parse_peers(&peers)?;
    // A single node needs no --peer.
    peers.entry(node_id).or_insert_with(|| listen.to_string());
    let mut cfg = NodeConfig::new(node_id, listen, peers, data_dir);
    if let Some(engine) = args.engine.or(file.engine) {
        cfg.engine = parse_engine(&engine)?;
    }
    if let Some(raft_engine) = args.raft_engine.or(file.raft_engine) {
        cfg.raft_engine = parse_raft_engine(&raft_engine)?;
    }
    if let Some(store) = file.store {
        cfg.tick_ms = store.raft_base_tick_ms;
        cfg.store = store;
    }
    if let Some(tick_ms) = args.tick_ms.or(file.tick_ms) {
        cfg.tick_ms = tick_ms;
    }
    if let Some(ms) = args.drain_timeout_ms.or(file.drain_timeout_ms) {
        cfg.drain_timeout_ms = ms;
    }
    let limits = &mut cfg.limits;
    limits.max_requests_in_flight = file
        .max_requests_in_flight
        .unwrap_or(limits.max_requests_in_flight);
    limits.max_request_bytes_in_flight = file
        .max_request_bytes_in_flight
        .unwrap_or(limits.max_request_bytes_in_flight);
    limits.max_concurrent_streams = file
        .max_concurrent_streams
        .unwrap_or(limits.max_concurrent_streams);
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(ServerConfig {
        node: cfg,
        metrics_listen: args.metrics_listen.or(file.metrics_listen),
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let check_only = args.check_config;
    let cfg = match server_config(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("raftkv-server: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        eprintln!("raftkv-server: config ok: {cfg:#?}");
        return ExitCode::SUCCESS;
    }
    if let Some(addr) = cfg.metrics_listen {
        if let Err(e) = raftkv_examples::metrics_exporter::serve(addr) {
            eprintln!("raftkv-server: {e}");
            return ExitCode::FAILURE;
        }
        info!(%addr, "serving Prometheus metrics at http://{addr}/metrics");
    }
    let node = match Node::start(cfg.node).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("raftkv-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(store_id = node.store_id(), addr = %node.addr(), "serving; Ctrl-C to stop");
    wait_for_signal().await;
    info!("shutting down");
    match node.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raftkv-server: shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}
