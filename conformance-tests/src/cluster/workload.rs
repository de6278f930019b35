//! Client workloads for a [`LiveCluster`] and the checks of their histories.
//!
//! [`Workload::start`] spawns clients that read, write and delete a few shared keys (each
//! written value unique) and append to a key of their own; [`RunningWorkload::stop`] waits
//! for them; [`check`] reads every key back through a fresh client and checks the
//! history: linearizable, no acknowledged write lost, appends exactly once and in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{ClientConfig, EngineFactory, LiveCluster};
use crate::linearizability::{
    self, Budget, Key, Outcome, Recorder, Value, append_token, check_appends, check_no_lost_writes,
};

/// What the clients of a workload do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Concurrent clients (ids `1..=clients`).
    pub clients: u64,
    /// Shared keys (`key/00`, `key/01`, ...).
    pub keys: u64,
    /// Percent of operations that append to the client's own key (`append/<client>`).
    pub append_percent: u64,
    /// Percent of the other operations that read; of the remaining writes, one in ten
    /// deletes.
    pub read_percent: u64,
    /// How the clients retry.
    pub client: ClientConfig,
    /// Each client's progress, carried from one run of the workload to the next.
    progress: Arc<Mutex<BTreeMap<u64, Progress>>>,
}

/// Where a client stopped: its operation count and the appends that may have taken
/// effect (acknowledged or of unknown outcome), in order.
#[derive(Debug, Clone, Default)]
struct Progress {
    ops: u64,
    appended: Vec<String>,
}

impl Default for Workload {
    /// One client, 5 keys, 20% appends, 50% reads.
    fn default() -> Self {
        Self {
            clients: 1,
            keys: 5,
            append_percent: 20,
            read_percent: 50,
            client: ClientConfig::default(),
            progress: Arc::default(),
        }
    }
}

/// The name of shared key `i`.
#[must_use]
pub fn shared_key(i: u64) -> Key {
    format!("key/{i:02}").into_bytes()
}

/// The name of `client`'s append key.
#[must_use]
pub fn append_key(client: u64) -> Key {
    format!("append/{client:02}").into_bytes()
}

/// A workload in progress.
#[derive(Debug)]
pub struct RunningWorkload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
    spec: Workload,
}

impl Workload {
    /// The default workload with `clients` clients.
    #[must_use]
    pub fn new(clients: u64) -> Self {
        Self {
            clients,
            ..Self::default()
        }
    }

    /// Spawns the clients on `cluster`'s runtime, recording into `recorder`. Each client
    /// runs operations back to back until [`RunningWorkload::stop`].
    pub fn start<F: EngineFactory>(
        &self,
        cluster: &LiveCluster<F>,
        recorder: &Recorder,
    ) -> RunningWorkload {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (1..=self.clients)
            .map(|id| {
                let mut client = cluster.client(id, recorder, self.client);
                let spec = self.clone();
                let stop = stop.clone();
                let progress = spec.progress.clone();
                cluster.runtime().spawn(async move {
                    let Progress {
                        mut ops,
                        mut appended,
                    } = progress.lock().get(&id).cloned().unwrap_or_default();
                    let started_at = ops;
                    while !stop.load(Ordering::Relaxed) {
                        ops += 1;
                        let roll = client.random_below(100);
                        if roll < spec.append_percent {
                            // The key's whole new value: every append that may have taken
                            // effect, plus this one.
                            let token = append_token(id, ops);
                            let mut value = appended.clone();
                            value.push(token.clone());
                            let outcome = client
                                .put(&append_key(id), value.join(" ").as_bytes())
                                .await;
                            if outcome != Outcome::Failed {
                                appended.push(token);
                            }
                            continue;
                        }
                        let key = shared_key(client.random_below(spec.keys));
                        let roll = client.random_below(100);
                        if roll < spec.read_percent {
                            client.get(&key).await;
                        } else if roll < spec.read_percent + (100 - spec.read_percent) / 10 {
                            client.delete(&key).await;
                        } else {
                            let value = format!("{id}.{ops}");
                            client.put(&key, value.as_bytes()).await;
                        }
                    }
                    progress.lock().insert(id, Progress { ops, appended });
                    ops - started_at
                })
            })
            .collect();
        RunningWorkload {
            stop,
            tasks,
            spec: self.clone(),
        }
    }
}

impl RunningWorkload {
    /// Stops the clients after their current operation and waits for them; returns the
    /// number of operations each ran.
    ///
    /// # Panics
    /// If a client panicked.
    pub fn stop<F: EngineFactory>(self, cluster: &LiveCluster<F>) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        cluster.runtime().block_on(async {
            let mut counts = Vec::new();
            for task in self.tasks {
                counts.push(task.await.expect("a client task does not panic"));
            }
            counts
        })
    }

    /// The workload being run.
    #[must_use]
    pub fn spec(&self) -> &Workload {
        &self.spec
    }
}

/// What [`check`] found, for the test's log.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Operations recorded: ok, failed, unknown.
    pub outcomes: (usize, usize, usize),
    /// The linearizability check's report.
    pub report: linearizability::Report,
}

/// Reads every key of `spec` back through a fresh client (recorded too), then checks the
/// history of `recorder`: linearizable, no acknowledged write lost, appends exactly once
/// and in order. Call it with every fault healed.
///
/// # Panics
/// On any violation, on an undecided linearizability check, or when a final read does not
/// succeed within 30 seconds.
pub fn check<F: EngineFactory>(
    cluster: &LiveCluster<F>,
    recorder: &Recorder,
    spec: &Workload,
) -> Summary {
    let reader_cfg = ClientConfig {
        op_timeout: Duration::from_secs(30),
        ..spec.client
    };
    let mut reader = cluster.client(u64::MAX, recorder, reader_cfg);
    let keys: Vec<Key> = (0..spec.keys)
        .map(shared_key)
        .chain((1..=spec.clients).map(append_key))
        .collect();
    let finals: BTreeMap<Key, Option<Value>> = cluster.runtime().block_on(async {
        let mut finals = BTreeMap::new();
        for key in keys {
            match reader.get(&key).await {
                Outcome::Ok(linearizability::KvOutput::Get(value)) => {
                    finals.insert(key, value);
                }
                other => panic!(
                    "the final read of {:?} did not succeed: {other:?}",
                    String::from_utf8_lossy(&key)
                ),
            }
        }
        finals
    });
    let history = recorder.history();
    let report = linearizability::check(&history, Budget::default());
    report.assert_linearizable();
    if let Err(lost) = check_no_lost_writes(&history, &finals) {
        panic!("an acknowledged write was lost: {lost}");
    }
    let appends: BTreeMap<Key, Option<Value>> = finals
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"append/"))
        .collect();
    if let Err(violation) = check_appends(&history, &appends) {
        panic!("{violation}");
    }
    Summary {
        outcomes: history.outcome_counts(),
        report,
    }
}
