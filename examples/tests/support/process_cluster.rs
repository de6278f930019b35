//! A cluster of real `raftkv-server` processes on loopback for end-to-end tests: free
//! ports, one TOML config and data dir per node in a temp dir (fjall with the raft log in a
//! log engine by default, or another engine), the raft log fsynced before every
//! acknowledgement (`sync_log`), SIGKILL / SIGTERM / restart, and a Drop guard that kills
//! every child (and prints their logs when the test failed).
#![allow(clippy::unwrap_used, clippy::print_stderr, dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use raftkv_examples::{AdminClient, Client};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

/// The server binary under test.
pub const SERVER: &str = env!("CARGO_BIN_EXE_raftkv-server");

/// Raft tick of the test clusters: elections within a few hundred milliseconds.
pub const TICK_MS: u64 = 25;

/// How long the test servers drain requests on SIGTERM.
pub const DRAIN_TIMEOUT_MS: u64 = 500;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition is polled (processes give no event to wait on).
const POLL: Duration = Duration::from_millis(25);

/// Set (to anything) to keep a failed test's configs, data dirs and server logs.
pub const KEEP_ENV: &str = "RAFTKV_TEST_KEEP";

/// Whole-cluster start attempts when a picked port turns out to be taken.
const START_ATTEMPTS: usize = 3;

/// `n` distinct free loopback addresses: all bound at once (so they differ), then released.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Polls `condition` until it holds; panics with `what` after [`DEADLINE`].
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for `child` to exit, at most [`DEADLINE`].
pub async fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} did not exit in time", child.id());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill -TERM");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// A plain HTTP/1.0 GET of `path` on `addr`; the whole response.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

/// How the servers of a [`ProcessCluster`] are configured.
#[derive(Debug, Clone)]
pub struct Options {
    /// The raft tick (elections take 10 to 20 ticks).
    pub tick_ms: u64,
    /// The `engine` setting: `fjall`, or `heed` (with the examples' `heed` feature).
    pub engine: &'static str,
    /// The `raft_engine` setting: `log` (the raft log in `data_dir/raft-log`) or `kv`.
    pub raft_engine: &'static str,
    /// More `[store]` settings, TOML lines (e.g. `raft_log_gc_count_limit = 20`).
    pub store: &'static str,
}

impl Default for Options {
    /// [`TICK_MS`] on fjall, the raft log in a log engine.
    fn default() -> Self {
        Self {
            tick_ms: TICK_MS,
            engine: "fjall",
            raft_engine: "log",
            store: "",
        }
    }
}

/// One server of the cluster.
#[derive(Debug)]
pub struct ServerProcess {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    pub addr: SocketAddr,
    /// Prometheus address.
    pub metrics_addr: SocketAddr,
    /// Its TOML config.
    pub config: PathBuf,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Where its stderr goes (appended across restarts).
    pub log: PathBuf,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts the process (appending its output to the log).
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "store {} is already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(SERVER)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn raftkv-server");
        self.child = Some(child);
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Three (or `n`) `raftkv-server` processes forming one cluster.
#[derive(Debug)]
pub struct ProcessCluster {
    /// The servers, store ids 1..=n.
    pub servers: Vec<ServerProcess>,
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts `n` servers and waits until every one answers and a leader is elected.
    /// Retries on fresh ports when a server reports its port taken (another process
    /// grabbed it between picking and binding).
    pub async fn start(n: usize) -> Self {
        Self::start_with_tick(n, TICK_MS).await
    }

    /// [`start`](Self::start) with another raft tick (elections take 10 to 20 ticks).
    pub async fn start_with_tick(n: usize, tick_ms: u64) -> Self {
        Self::start_with(
            n,
            Options {
                tick_ms,
                ..Options::default()
            },
        )
        .await
    }

    /// [`start`](Self::start) with `options`.
    pub async fn start_with(n: usize, options: Options) -> Self {
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Self::configure(n, &options);
            for s in &mut cluster.servers {
                s.spawn();
            }
            match cluster.wait_serving().await {
                Ok(()) => {
                    cluster.leader().await;
                    return cluster;
                }
                Err(log) if log.contains("already in use") && attempt < START_ATTEMPTS => {
                    eprintln!("a picked port was taken; retrying on new ports");
                }
                Err(log) => panic!("a server exited during start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Writes the configs of `n` servers on fresh ports.
    fn configure(n: usize, options: &Options) -> Self {
        let Options {
            tick_ms,
            engine,
            raft_engine,
            store,
        } = options;
        let dir = tempfile::tempdir().unwrap();
        let addrs = free_addrs(2 * n);
        let peers: Vec<String> = (0..n)
            .map(|i| format!("\"{}={}\"", i + 1, addrs[i]))
            .collect();
        let servers = (0..n)
            .map(|i| {
                let id = i as u64 + 1;
                let config = dir.path().join(format!("node{id}.toml"));
                let data_dir = dir.path().join(format!("data{id}"));
                std::fs::write(
                    &config,
                    format!(
                        "node_id = {id}\nlisten = \"{}\"\nmetrics_listen = \"{}\"\n\
                         peers = [{}]\ndata_dir = {:?}\nengine = \"{engine}\"\n\
                         raft_engine = \"{raft_engine}\"\ntick_ms = {tick_ms}\n\
                         drain_timeout_ms = {DRAIN_TIMEOUT_MS}\n[store]\nsync_log = true\n{store}\n",
                        addrs[i],
                        addrs[n + i],
                        peers.join(", "),
                        data_dir,
                    ),
                )
                .unwrap();
                ServerProcess {
                    id,
                    addr: addrs[i],
                    metrics_addr: addrs[n + i],
                    config,
                    data_dir,
                    log: dir.path().join(format!("node{id}.log")),
                    child: None,
                }
            })
            .collect();
        Self { servers, dir }
    }

    /// Waits until every running server answers Status; `Err(log)` when one exits.
    async fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        for i in 0..self.servers.len() {
            if !self.servers[i].is_running() {
                continue;
            }
            let admin = AdminClient::connect([self.servers[i].addr.to_string()])
                .unwrap()
                .with_timeout(Duration::from_secs(1));
            loop {
                if admin.status(0).await.is_ok() {
                    break;
                }
                let server = &mut self.servers[i];
                if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                    server.child = None;
                    return Err(format!(
                        "store {} exited with {status}:\n{}",
                        server.id,
                        server.log_text()
                    ));
                }
                assert!(
                    Instant::now() < deadline,
                    "store {} did not start",
                    server.id
                );
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// The gRPC endpoints of every server.
    pub fn endpoints(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.addr.to_string()).collect()
    }

    /// The endpoints as the CLI's comma-separated `--endpoints` value.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// A client of every server with a deadline long enough to ride out a failover.
    pub fn client(&self) -> Client {
        Client::connect(self.endpoints())
            .unwrap()
            .with_timeout(Duration::from_secs(20))
    }

    /// An admin client of every server.
    pub fn admin(&self) -> AdminClient {
        AdminClient::connect(self.endpoints())
            .unwrap()
            .with_timeout(Duration::from_secs(1))
    }

    /// The server of store `id`.
    pub fn server(&self, id: u64) -> &ServerProcess {
        &self.servers[(id - 1) as usize]
    }

    fn server_mut(&mut self, id: u64) -> &mut ServerProcess {
        &mut self.servers[(id - 1) as usize]
    }

    /// The store leading region 1, once one is elected.
    pub async fn leader(&self) -> u64 {
        let admin = self.admin();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(leader) = admin.leader(1).await {
                return leader.store_id;
            }
            assert!(Instant::now() < deadline, "no leader elected in time");
            tokio::time::sleep(POLL).await;
        }
    }

    /// The highest applied index store `id` reports (`None`: it does not answer).
    pub async fn applied_index(&self, id: u64) -> Option<u64> {
        let admin = AdminClient::connect([self.server(id).addr.to_string()])
            .unwrap()
            .with_timeout(Duration::from_secs(1));
        let status = admin.status(0).await.ok()?;
        status.regions.iter().map(|r| r.applied_index).max()
    }

    /// Waits until every running store has applied at least what store `leader` had
    /// applied when called (the restarted ones caught up).
    pub async fn wait_caught_up(&self, leader: u64) {
        let target = self
            .applied_index(leader)
            .await
            .expect("the leader answers its status");
        for s in self.servers.iter().filter(|s| s.is_running()) {
            wait_for(
                &format!("store {} to apply index {target}", s.id),
                || async { self.applied_index(s.id).await.is_some_and(|a| a >= target) },
            )
            .await;
        }
    }

    /// The sum of the samples of metric `name` (any labels) that running store `id`
    /// exports since it started (`None`: it does not answer or has no such sample).
    pub async fn metric(&self, id: u64, name: &str) -> Option<f64> {
        let text = http_get(self.server(id).metrics_addr, "/metrics").await;
        let samples: Vec<f64> = text
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        (!samples.is_empty()).then(|| samples.iter().sum())
    }

    /// SIGKILLs store `id` and reaps it.
    pub async fn kill(&mut self, id: u64) {
        let server = self.server_mut(id);
        let mut child = server.child.take().expect("the server is running");
        child.kill().unwrap();
        wait_exit(&mut child).await;
    }

    /// SIGTERMs store `id` and returns how it exited.
    pub async fn terminate(&mut self, id: u64) -> ExitStatus {
        let server = self.server_mut(id);
        let mut child = server.child.take().expect("the server is running");
        sigterm(&child);
        wait_exit(&mut child).await
    }

    /// Starts store `id` again on its ports and data dir and waits until it answers.
    pub async fn restart(&mut self, id: u64) {
        self.server_mut(id).spawn();
        if let Err(log) = self.wait_serving().await {
            panic!("store {id} did not restart:\n{log}");
        }
    }

    /// The log of store `id` so far.
    pub fn log(&self, id: u64) -> String {
        self.server(id).log_text()
    }

    /// The temp dir holding the configs, data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(mut child) = s.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            if std::env::var_os(KEEP_ENV).is_some() {
                self.dir.disable_cleanup(true);
                eprintln!("{KEEP_ENV}: kept {}", self.dir.path().display());
            }
            for s in &self.servers {
                let log = s.log_text();
                let tail: Vec<_> = log.lines().rev().take(40).collect();
                eprintln!("--- store {} log (last 40 lines) ---", s.id);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
