//! Crash tests with real processes: `raftkv-server`s (fjall, and heed with the `heed`
//! feature, their raft log in a log engine; fjall keeping it on the kv backend too; three
//! nodes and one) under a workload of concurrent recording clients, SIGKILLed at random
//! points and restarted from their data dirs, with the raft log fsynced before every
//! acknowledgement (`sync_log`, the default).
//!
//! The clients put, get and compare-and-swap a few registers and append to a shared log key
//! by compare-and-swap; every operation is recorded (an error or a timeout is an unknown
//! outcome). After the kills every register is read back linearizably and the history must
//! be linearizable (an undecided check fails), no acknowledged write lost, every append
//! present exactly once and in order, and service must have resumed after each restart.
//!
//! The exactly-once tests resend the very same write (same client id and sequence) over raw
//! gRPC across a SIGKILL of the leader, of every node and of a single-node cluster: it is
//! applied once and every retry gets the original answer.
//!
//! Randomness is seeded: each test prints its seed, `CRASH_SEED=<seed>` replays the choices
//! (kill points are counted in completed operations, so timing still varies).
//! `CRASH_KILLS=<n>` kills more often (default 3).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::print_stderr)] // a test, reporting its seed

#[path = "support/process_cluster.rs"]
mod process_cluster;
#[path = "support/raw_cas.rs"]
mod raw_cas;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use conformance_tests::linearizability::{
    self, Budget, Key, KvInput, KvOutput, Outcome, Recorder, Value, append_token, check_appends,
    check_no_lost_writes,
};
use process_cluster::{Options, ProcessCluster, wait_for};
use raftkv_examples::Client;
use raftkv_examples::client::CasOutcome;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use raw_cas::{cas_request, send_until_served};

/// Concurrent workload clients.
const CLIENTS: u64 = 4;
/// Registers the clients share.
const REGISTERS: u64 = 3;
/// The key every client appends to (by compare-and-swap).
const LOG_KEY: &[u8] = b"log";
/// A client call's deadline: long enough to ride out a kill and restart, so that few
/// operations end unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills per test (`CRASH_KILLS`).
fn kills() -> u64 {
    env_u64("CRASH_KILLS", 3)
}

/// The test's seed (`CRASH_SEED`, or the clock), printed for replay.
fn seed(name: &str) -> u64 {
    let seed = env_u64(
        "CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    eprintln!("crash test {name}: seed {seed} (replay with CRASH_SEED={seed})");
    seed
}

fn register(i: u64) -> Key {
    format!("reg/{i}").into_bytes()
}

fn bytes(v: &Option<Value>) -> Option<Bytes> {
    v.as_ref().map(|v| Bytes::copy_from_slice(v))
}

fn value(v: Option<Bytes>) -> Option<Value> {
    v.map(|v| v.to_vec())
}

/// One recording client: a `Client` of its own (its own exactly-once session).
struct Worker {
    id: u64,
    client: Client,
    recorder: Recorder,
    rng: StdRng,
    /// The last value this worker saw in each key: what its next swap expects.
    seen: HashMap<Key, Option<Value>>,
    ops: u64,
    /// Operations acknowledged by any worker.
    acked: Arc<AtomicU64>,
}

impl Worker {
    /// Records `input` on `key` around `call`; an error is an unknown outcome.
    async fn record<T>(
        &self,
        key: &[u8],
        input: KvInput,
        call: impl Future<Output = raftkv_examples::Result<T>>,
        output: impl FnOnce(&T) -> KvOutput,
    ) -> Option<T> {
        let op = self.recorder.invoke(self.id, key, input);
        match call.await {
            Ok(answer) => {
                op.complete(Outcome::Ok(output(&answer)));
                self.acked.fetch_add(1, Ordering::Relaxed);
                Some(answer)
            }
            // A failed call may still apply later: a timeout, a lost connection, a
            // forgotten answer. Nothing the client sees proves it did not.
            Err(_) => {
                op.complete(Outcome::Unknown);
                None
            }
        }
    }

    async fn get(&mut self, key: Key) {
        let client = &self.client;
        let got = self
            .record(&key, KvInput::Get, client.get(key.clone()), |v| {
                KvOutput::Get(value(v.clone()))
            })
            .await;
        if let Some(v) = got {
            self.seen.insert(key, value(v));
        }
    }

    async fn put(&mut self, key: Key, new: Value) {
        let client = &self.client;
        let call = client.put(key.clone(), new.clone());
        if self
            .record(&key, KvInput::Put(new.clone()), call, |()| KvOutput::Put)
            .await
            .is_some()
        {
            self.seen.insert(key, Some(new));
        }
    }

    /// Swaps `key` from what this worker last saw to `new`.
    async fn cas(&mut self, key: Key, new: Option<Value>) {
        let expected = self.seen.get(&key).cloned().flatten();
        let client = &self.client;
        let input = KvInput::Cas {
            expected: expected.clone(),
            new: new.clone(),
        };
        let call = client.compare_and_swap(key.clone(), bytes(&expected), bytes(&new));
        let answer = self
            .record(&key, input, call, |o: &CasOutcome| KvOutput::Cas {
                succeeded: o.succeeded,
                previous: value(o.previous.clone()),
            })
            .await;
        if let Some(o) = answer {
            let now = if o.succeeded { new } else { value(o.previous) };
            self.seen.insert(key, now);
        }
    }

    /// One random operation: 20% appends to the log, else on a random register 30% gets,
    /// 30% puts, 35% swaps to a new value and 5% swaps to absent.
    async fn step(&mut self) {
        self.ops += 1;
        let unique = format!("{}.{}", self.id, self.ops).into_bytes();
        if self.rng.random_range(0..100) < 20 {
            let mut log = self
                .seen
                .get(LOG_KEY)
                .cloned()
                .flatten()
                .unwrap_or_default();
            if !log.is_empty() {
                log.push(b' ');
            }
            log.extend_from_slice(append_token(self.id, self.ops).as_bytes());
            return self.cas(LOG_KEY.to_vec(), Some(log)).await;
        }
        let key = register(self.rng.random_range(0..REGISTERS));
        match self.rng.random_range(0..100) {
            0..30 => self.get(key).await,
            30..60 => self.put(key, unique).await,
            60..95 => self.cas(key, Some(unique)).await,
            _ => self.cas(key, None).await,
        }
    }
}

/// The workload in progress.
struct Workload {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(cluster: &ProcessCluster, recorder: &Recorder, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let tasks = (1..=CLIENTS)
            .map(|id| {
                let mut worker = Worker {
                    id,
                    client: cluster.client().with_timeout(CLIENT_TIMEOUT),
                    recorder: recorder.clone(),
                    rng: StdRng::seed_from_u64(seed.wrapping_add(id)),
                    seen: HashMap::new(),
                    ops: 0,
                    acked: acked.clone(),
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        worker.step().await;
                    }
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` operations beyond the current count were acknowledged.
    async fn progress(&self, more: u64, what: &str) {
        let target = self.acked() + more;
        wait_for(what, || async { self.acked() >= target }).await;
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a workload client does not panic");
        }
    }
}

/// Reads every key back (recorded as client 0) and checks the whole history.
async fn check_history(cluster: &ProcessCluster, recorder: &Recorder) {
    let reader = cluster.client();
    let mut finals: BTreeMap<Key, Option<Value>> = BTreeMap::new();
    let keys = (0..REGISTERS).map(register).chain([LOG_KEY.to_vec()]);
    for key in keys {
        let op = recorder.invoke(0, &key, KvInput::Get);
        let got = value(reader.get(key.clone()).await.unwrap_or_else(|e| {
            panic!(
                "the final read of {:?} failed: {e}",
                String::from_utf8_lossy(&key)
            )
        }));
        op.complete(Outcome::Ok(KvOutput::Get(got.clone())));
        finals.insert(key, got);
    }
    let history = recorder.history();
    let (ok, failed, unknown) = history.outcome_counts();
    let report = linearizability::check(&history, Budget::default());
    eprintln!(
        "history: {ok} ok, {failed} failed, {unknown} unknown; checked {} operations in {} \
         steps, {:?}",
        report.searched, report.steps, report.elapsed
    );
    if !report.is_linearizable() {
        let path =
            std::env::temp_dir().join(format!("raftkv-crash-{}.history", std::process::id()));
        let ops: Vec<String> = history.ops().iter().map(ToString::to_string).collect();
        std::fs::write(&path, ops.join("\n")).unwrap();
        eprintln!("the whole history: {}", path.display());
    }
    report.assert_linearizable();
    if let Err(lost) = check_no_lost_writes(&history, &finals) {
        panic!("an acknowledged write was lost: {lost}");
    }
    let log: BTreeMap<Key, Option<Value>> =
        finals.into_iter().filter(|(k, _)| k == LOG_KEY).collect();
    if let Err(violation) = check_appends(&history, &log) {
        panic!("{violation}");
    }
    let appends = log[LOG_KEY]
        .as_deref()
        .map_or(0, |v| linearizability::parse_tokens(v).unwrap().len());
    assert!(appends > 0, "no append took effect");
    assert!(ok > 100, "too little work to check: {ok} operations");
}

/// Snapshots applied (a histogram's count, any server).
const SNAPSHOTS_APPLIED: &str = "raftstore_snapshot_apply_seconds_count";

/// `[store]` settings that compact the log after a few entries, so a store that was down
/// catches up by snapshot (and may be killed while receiving or applying one).
const TINY_LOG_GC: &str = "raft_log_gc_count_limit = 2\nraft_log_gc_tick_ticks = 2\n";

/// The crash test on `nodes` servers configured by `options`: [`kills`] SIGKILLs of a
/// random server (half the time the leader; a single node otherwise) at random points of
/// the workload, each restarted from its data dir; on three nodes the last kill takes
/// every server at once. Then the history is checked. Returns how many snapshots the
/// servers applied (each process's count read just before it was killed, and at the end).
async fn crash_test(name: &str, nodes: usize, options: Options) -> f64 {
    let seed = seed(name);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = ProcessCluster::start_with(nodes, options).await;
    let recorder = Recorder::new();
    let workload = Workload::start(&cluster, &recorder, seed);
    let mut snapshots = 0.0;
    let kills = kills();
    for round in 1..=kills {
        workload
            .progress(rng.random_range(10..60), "operations before a kill")
            .await;
        // Fault timing, not synchronization: a random instant within the next operations
        // (mid-append, mid-fsync, mid-apply), not right after an acknowledgement.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..50))).await;
        let everyone = nodes > 1 && round == kills;
        let victims: Vec<u64> = if everyone {
            (1..=nodes as u64).collect()
        } else if nodes == 1 {
            vec![1]
        } else if rng.random_bool(0.5) {
            vec![cluster.leader().await]
        } else {
            vec![rng.random_range(1..=nodes as u64)]
        };
        eprintln!(
            "kill {round}/{kills}: SIGKILL store(s) {victims:?} after {} acknowledged operations",
            workload.acked()
        );
        for &id in &victims {
            snapshots += cluster.metric(id, SNAPSHOTS_APPLIED).await.unwrap_or(0.0);
            cluster.kill(id).await;
        }
        if victims.len() < nodes {
            // A majority is up: service goes on without the killed store (long enough
            // for a tiny log-GC limit to compact past it).
            workload
                .progress(rng.random_range(10..40), "operations while a store is down")
                .await;
        }
        for &id in &victims {
            cluster.restart(id).await;
        }
        workload
            .progress(20, "operations after the restart (service resumed)")
            .await;
    }
    workload.stop().await;
    let leader = cluster.leader().await;
    cluster.wait_caught_up(leader).await;
    check_history(&cluster, &recorder).await;
    for id in 1..=nodes as u64 {
        snapshots += cluster.metric(id, SNAPSHOTS_APPLIED).await.unwrap_or(0.0);
    }
    snapshots
}

fn on(engine: &'static str) -> Options {
    Options {
        engine,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_fjall_three_nodes() {
    crash_test("kill9_fjall_three_nodes", 3, on("fjall")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_fjall_single_node() {
    crash_test("kill9_fjall_single_node", 1, on("fjall")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_fjall_single_node_raft_log_on_the_kv_backend() {
    let options = Options {
        raft_engine: "kv",
        ..on("fjall")
    };
    crash_test(
        "kill9_fjall_single_node_raft_log_on_the_kv_backend",
        1,
        options,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_fjall_three_nodes_catching_up_by_snapshot() {
    let options = Options {
        store: TINY_LOG_GC,
        ..on("fjall")
    };
    let snapshots = crash_test(
        "kill9_fjall_three_nodes_catching_up_by_snapshot",
        3,
        options,
    )
    .await;
    eprintln!("snapshots applied: {snapshots}");
    assert!(snapshots > 0.0, "no restarted store caught up by snapshot");
}

#[cfg(feature = "heed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_heed_three_nodes() {
    crash_test("kill9_heed_three_nodes", 3, on("heed")).await;
}

#[cfg(feature = "heed")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_heed_single_node() {
    crash_test("kill9_heed_single_node", 1, on("heed")).await;
}

/// The counter's value, read linearizably.
async fn counter(client: &Client) -> String {
    let v = client
        .get("counter")
        .await
        .unwrap()
        .expect("the counter exists");
    String::from_utf8(v.to_vec()).unwrap()
}

/// Exactly-once under injected retries, end to end: increments of a counter by
/// compare-and-swap, each resent as the very same request (client id and sequence) after
/// SIGKILLs, are applied once and answered with their original response, even when
/// executing the retry anew would give another answer.
async fn retried_increments(nodes: usize) {
    let mut cluster = ProcessCluster::start(nodes).await;
    let addrs = cluster.endpoints();
    let other = cluster.client();
    other.put("counter", "0").await.unwrap();

    // Write 1 of client 7: 0 -> 1. Its retry gets the same answer; applied again, it
    // would fail (the counter is 1 now).
    let inc = cas_request(7, 1, 1, "counter", Some("0"), "1");
    let first = send_until_served(&addrs, &inc).await;
    assert!(
        first.succeed && !first.previous_not_exist && first.previous_value == "0",
        "{first:?}"
    );
    assert_eq!(send_until_served(&addrs, &inc).await, first);
    assert_eq!(counter(&other).await, "1");

    // Write 2: 1 -> 2, whose answer the client "loses"; another writer then moves the
    // counter to 5, so executing the retry anew would fail.
    let inc2 = cas_request(7, 2, 1, "counter", Some("1"), "2");
    let lost = send_until_served(&addrs, &inc2).await;
    assert!(lost.succeed, "{lost:?}");
    other.put("counter", "5").await.unwrap();

    // SIGKILL the leader; with a majority left, the retries go to the new leader.
    let leader = cluster.leader().await;
    cluster.kill(leader).await;
    if nodes > 1 {
        assert_eq!(send_until_served(&addrs, &inc).await, first);
        assert_eq!(send_until_served(&addrs, &inc2).await, lost);
        assert_ne!(cluster.leader().await, leader);
    }
    cluster.restart(leader).await;
    assert_eq!(send_until_served(&addrs, &inc).await, first);
    assert_eq!(send_until_served(&addrs, &inc2).await, lost);

    // SIGKILL every node at once: the answers are on disk.
    if nodes > 1 {
        for id in 1..=nodes as u64 {
            cluster.kill(id).await;
        }
        for id in 1..=nodes as u64 {
            cluster.restart(id).await;
        }
        assert_eq!(send_until_served(&addrs, &inc).await, first);
        assert_eq!(send_until_served(&addrs, &inc2).await, lost);
    }
    // Each increment moved the counter once: 5 is still there.
    assert_eq!(counter(&other).await, "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_increment_applies_once_across_kills_of_the_leader_and_of_every_node() {
    retried_increments(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_increment_applies_once_across_a_kill_of_a_single_node() {
    retried_increments(1).await;
}
