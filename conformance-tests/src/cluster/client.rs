//! [`Client`]: a key-value client of a [`LiveCluster`](super::LiveCluster) that routes and
//! retries like the real client and records every operation into a history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use raft_store::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use raft_store::{RegionStatus, StoreMailbox, StoreMsg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::routing::{Retry, Routes, Session, classify};
use crate::linearizability::{KvInput, Outcome, Recorder};

/// The mailboxes of a cluster's running stores, kept current by the cluster as stores
/// stop and start. Cloning yields another handle on the same directory.
#[derive(Debug, Clone, Default)]
pub struct StoreDirectory {
    inner: Arc<RwLock<BTreeMap<u64, StoreMailbox>>>,
}

impl StoreDirectory {
    /// The mailbox of running store `id`.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<StoreMailbox> {
        self.inner.read().get(&id).cloned()
    }

    /// The running stores.
    #[must_use]
    pub fn ids(&self) -> Vec<u64> {
        self.inner.read().keys().copied().collect()
    }

    pub(super) fn insert(&self, id: u64, mailbox: StoreMailbox) {
        self.inner.write().insert(id, mailbox);
    }

    pub(super) fn remove(&self, id: u64) {
        self.inner.write().remove(&id);
    }
}

/// How patient a [`Client`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long one attempt waits for its answer. A write whose attempt times out has an
    /// unknown outcome and is not retried (nothing deduplicates a retried write); a read
    /// is retried.
    pub attempt_timeout: Duration,
    /// How long an operation keeps retrying errors that mean "not applied" (not leader,
    /// stale epoch, busy, ...) before it fails.
    pub op_timeout: Duration,
    /// The pause before retrying when no better target is known.
    pub backoff: Duration,
}

impl Default for ClientConfig {
    /// 1 s per attempt, 4 s per operation, 10 ms backoff.
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(4),
            backoff: Duration::from_millis(10),
        }
    }
}

/// What one attempt came to.
enum Attempt {
    /// The store answered.
    Answer(Box<RaftCmdResponse>),
    /// The store never saw the request (mailbox full or store stopped).
    Refused,
    /// The request reached the store but no answer came (timeout, or the store stopped
    /// with the request pending): it may or may not take effect.
    Lost,
}

/// A client of a live cluster: one operation at a time, each recorded (invocation before
/// the first attempt leaves, return after the final answer) into a shared [`Recorder`].
///
/// Like the real client it routes by key from region information it caches (refreshed
/// from the stores on routing errors), follows `NotLeader` hints, and retries every error
/// that means "not applied" (`NotLeader`, `StaleCommand`, `EpochNotMatch`,
/// `KeyNotInRegion`, `ServerIsBusy`, a refused mailbox) until
/// [`op_timeout`](ClientConfig::op_timeout). A write whose outcome became unknown (a
/// timed-out attempt, a store stopped with the request pending, `RegionNotFound` from a
/// destroyed peer, an unclassified error) is retried too, under the same exactly-once
/// session and sequence, so the stores apply it at most once; if time runs out after
/// such an attempt it is recorded as [`Outcome::Unknown`].
pub struct Client {
    id: u64,
    stores: StoreDirectory,
    recorder: Recorder,
    cfg: ClientConfig,
    routes: Routes,
    rng: StdRng,
    /// The exactly-once session this client's writes belong to: unique per `Client`
    /// value, since its sequence numbers start again at 1 (a workload makes a new client
    /// with the same history id every round; reusing a session would make the stores
    /// answer new writes with old results).
    session: Session,
}

/// Hands out session ids unique within the process.
fn next_session_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("regions", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Client `id` (which names it in the history) of the stores in `stores`.
    #[must_use]
    pub fn new(id: u64, stores: StoreDirectory, recorder: Recorder, cfg: ClientConfig) -> Self {
        Self {
            id,
            stores,
            recorder,
            cfg,
            routes: Routes::default(),
            rng: StdRng::seed_from_u64(id),
            session: Session::new(next_session_id()),
        }
    }

    /// This client's id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Reads `key`.
    pub async fn get(&mut self, key: &[u8]) -> Outcome {
        self.run(key, KvInput::Get).await
    }

    /// Sets `key` to `value`.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Outcome {
        self.run(key, KvInput::Put(value.to_vec())).await
    }

    /// Removes `key`.
    pub async fn delete(&mut self, key: &[u8]) -> Outcome {
        self.run(key, KvInput::Delete).await
    }

    /// Runs and records one operation.
    pub async fn run(&mut self, key: &[u8], input: KvInput) -> Outcome {
        let pending = self.recorder.invoke(self.id, key, input.clone());
        let outcome = self.execute(key, &input).await;
        pending.complete(outcome.clone());
        outcome
    }

    async fn execute(&mut self, key: &[u8], input: &KvInput) -> Outcome {
        let sequence = self.session.sequence_for(input);
        let deadline = Instant::now() + self.cfg.op_timeout;
        // Whether an attempt may have taken effect: then running out of time leaves the
        // outcome unknown rather than failed.
        let mut maybe_applied = false;
        while Instant::now() < deadline {
            let running = self.stores.ids();
            let Some((region, store)) =
                self.routes
                    .target(key, |s| running.contains(&s), &mut self.rng)
            else {
                self.refresh().await;
                tokio::time::sleep(self.cfg.backoff).await;
                continue;
            };
            let req = self.session.command(&region, key, input, sequence, 0);
            let retry = match self.attempt(store, req).await {
                Attempt::Answer(resp) => match classify(&resp, input) {
                    Ok(output) => return Outcome::Ok(output),
                    Err(retry) => retry,
                },
                Attempt::Refused => Retry::NotLeader(None),
                Attempt::Lost => Retry::Ambiguous,
            };
            match retry {
                Retry::NotLeader(Some(leader)) if leader != store => {
                    self.routes.set_leader(region.id, leader);
                }
                Retry::NotLeader(_) => {
                    self.routes.forget_leader(region.id);
                    self.refresh().await;
                    tokio::time::sleep(self.cfg.backoff).await;
                }
                Retry::Reroute(regions) => {
                    self.routes.forget_leader(region.id);
                    if regions.is_empty() {
                        self.refresh().await;
                    }
                    regions.into_iter().for_each(|r| self.routes.learn(r));
                }
                Retry::Backoff => tokio::time::sleep(self.cfg.backoff).await,
                // The stores deduplicate by (session, sequence): retrying the same write
                // applies it at most once and returns the first result.
                Retry::Ambiguous if input.is_write() => {
                    maybe_applied = true;
                    self.routes.forget_leader(region.id);
                    self.refresh().await;
                    tokio::time::sleep(self.cfg.backoff).await;
                }
                Retry::Ambiguous => {
                    self.routes.forget_leader(region.id);
                    self.refresh().await;
                }
                Retry::Fatal => return Outcome::Failed,
            }
        }
        if maybe_applied {
            Outcome::Unknown
        } else {
            Outcome::Failed
        }
    }

    /// Asks every running store which regions it has and which it leads.
    async fn refresh(&mut self) {
        for store in self.stores.ids() {
            let Some(mailbox) = self.stores.get(store) else {
                continue;
            };
            let (tx, rx) = tokio::sync::oneshot::channel::<Vec<RegionStatus>>();
            let query = StoreMsg::QueryRegions(Box::new(move |statuses| {
                let _ = tx.send(statuses);
            }));
            if mailbox.try_send(query).is_err() {
                continue;
            }
            let Ok(Ok(statuses)) = tokio::time::timeout(self.cfg.attempt_timeout, rx).await else {
                continue;
            };
            self.routes.learn_statuses(store, statuses);
        }
    }

    async fn attempt(&mut self, store: u64, req: RaftCmdRequest) -> Attempt {
        let Some(mailbox) = self.stores.get(store) else {
            return Attempt::Refused;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = StoreMsg::Command {
            request: Box::new(req),
            callback: Box::new(move |resp| {
                // The client may have given up waiting.
                let _ = tx.send(resp);
            }),
        };
        if mailbox.try_send(msg).is_err() {
            return Attempt::Refused;
        }
        match tokio::time::timeout(self.cfg.attempt_timeout, rx).await {
            Ok(Ok(resp)) => Attempt::Answer(Box::new(resp)),
            // Timed out, or the store dropped the callback when it stopped.
            Ok(Err(_)) | Err(_) => Attempt::Lost,
        }
    }

    /// A random number from this client's seeded generator (for workloads).
    pub fn random_below(&mut self, n: u64) -> u64 {
        self.rng.random_range(0..n.max(1))
    }
}
