//! [`SimClient`]: a simulated key-value client — a state machine driven by the
//! simulator's events instead of an async runtime.
//!
//! It behaves like the harness's live [`Client`](crate::cluster::Client) (and shares its
//! answer classification): routes by key from region information it refreshes from the
//! stores, follows `NotLeader` hints, retries "not applied" errors with backoff in virtual
//! time, retries ambiguous writes under its exactly-once session (unique client id,
//! increasing sequence, `first_awaited_sequence` = the current sequence: one write in
//! flight), and records every operation's invocation and return into the history.

use std::collections::{BTreeMap, VecDeque};

use raft_store::pb::raft_cmdpb::RaftCmdResponse;
use rand::Rng;
use rand::rngs::StdRng;

use super::config::Micros;
use super::events::{Event, EventQueue};
use super::network::Network;
use super::node::Node;
use super::trace::Trace;
use crate::cluster::routing::{Retry, Routes, Session, classify};
use crate::linearizability::{Key, KvInput, KvOutput, Outcome, PendingOp, Recorder, Value};

/// How long one attempt waits for its answer.
const ATTEMPT_TIMEOUT_US: Micros = 400_000;
/// The pause before retrying when no better target is known.
const BACKOFF_US: (Micros, Micros) = (5_000, 40_000);
/// The pause between two operations of a workload client.
const THINK_US: (Micros, Micros) = (0, 20_000);

/// What the simulator lends a client while it handles an event.
pub(crate) struct Ctx<'a> {
    pub(crate) queue: &'a mut EventQueue,
    pub(crate) rng: &'a mut StdRng,
    pub(crate) nodes: &'a BTreeMap<u64, Node>,
    pub(crate) network: &'a Network,
    pub(crate) trace: &'a mut Trace,
}

/// What a client is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Nothing: the client is done (or stopped).
    Idle,
    /// The timer before its next operation.
    Think(u64),
    /// The timer before retrying the current operation.
    Backoff(u64),
    /// The answer to an attempt (or its timeout).
    Answer { token: u64, store: u64 },
}

/// The operation in progress.
struct Active {
    key: Key,
    input: KvInput,
    pending: PendingOp,
    sequence: u64,
    deadline: Micros,
    /// An attempt may have taken effect: running out of time leaves it unknown.
    maybe_applied: bool,
}

/// Where a client's operations come from.
enum Source {
    /// Random operations on `keys` keys until stopped.
    Random { keys: u64, stopped: bool },
    /// These reads, then idle; results kept in `results`.
    Script(VecDeque<Key>),
}

/// One simulated client.
pub(crate) struct SimClient {
    /// Its index in the simulator (events name it by index).
    index: usize,
    /// Its name in the history (and the id of its exactly-once session).
    id: u64,
    recorder: Recorder,
    source: Source,
    op_timeout: Micros,
    routes: Routes,
    session: Session,
    next_token: u64,
    waiting: Waiting,
    active: Option<Active>,
    /// The last value this client saw of each key (the expectation of its CASes).
    seen: BTreeMap<Key, Option<Value>>,
    /// The final reads of a script client.
    pub(crate) results: BTreeMap<Key, Option<Value>>,
    /// Script reads that did not succeed.
    pub(crate) failed_reads: Vec<Key>,
}

/// Key `i` of the shared key space.
pub(crate) fn key(i: u64) -> Key {
    format!("k{i}").into_bytes()
}

impl SimClient {
    /// A workload client issuing random operations on `keys` keys.
    pub(crate) fn random(index: usize, id: u64, recorder: Recorder, keys: u64) -> Self {
        Self::new(
            index,
            id,
            recorder,
            Source::Random {
                keys,
                stopped: false,
            },
            3_000_000,
        )
    }

    /// A client reading `keys` once each, patiently (the final reads).
    pub(crate) fn reader(index: usize, id: u64, recorder: Recorder, keys: Vec<Key>) -> Self {
        Self::new(index, id, recorder, Source::Script(keys.into()), 20_000_000)
    }

    fn new(index: usize, id: u64, recorder: Recorder, source: Source, op_timeout: Micros) -> Self {
        Self {
            index,
            id,
            recorder,
            source,
            op_timeout,
            routes: Routes::default(),
            session: Session::new(id),
            next_token: 0,
            waiting: Waiting::Idle,
            active: None,
            seen: BTreeMap::new(),
            results: BTreeMap::new(),
            failed_reads: Vec::new(),
        }
    }

    /// Whether the client has nothing in progress and nothing more to do.
    pub(crate) fn is_idle(&self) -> bool {
        self.waiting == Waiting::Idle
    }

    /// Starts the client's first operation after a random pause.
    pub(crate) fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.think(ctx);
    }

    /// Lets the current operation finish but starts no new one.
    pub(crate) fn stop(&mut self) {
        if let Source::Random { stopped, .. } = &mut self.source {
            *stopped = true;
        }
        if let Waiting::Think(_) = self.waiting {
            self.waiting = Waiting::Idle;
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn think(&mut self, ctx: &mut Ctx<'_>) {
        let token = self.token();
        self.waiting = Waiting::Think(token);
        let pause = ctx.rng.random_range(THINK_US.0..=THINK_US.1);
        ctx.queue.after(
            pause,
            Event::ClientWake {
                client: self.index,
                token,
            },
        );
    }

    fn backoff(&mut self, ctx: &mut Ctx<'_>) {
        let token = self.token();
        self.waiting = Waiting::Backoff(token);
        let pause = ctx.rng.random_range(BACKOFF_US.0..BACKOFF_US.1);
        ctx.queue.after(
            pause,
            Event::ClientWake {
                client: self.index,
                token,
            },
        );
    }

    /// A timer fired.
    pub(crate) fn wake(&mut self, token: u64, ctx: &mut Ctx<'_>) {
        match self.waiting {
            Waiting::Think(t) if t == token => self.begin(ctx),
            Waiting::Backoff(t) if t == token => self.attempt(ctx),
            // The attempt timed out: it may still take effect.
            Waiting::Answer { token: t, store } if t == token => {
                self.retry(Retry::Ambiguous, store, ctx);
            }
            _ => {}
        }
    }

    /// A store answered attempt `token`.
    pub(crate) fn reply(&mut self, token: u64, resp: &RaftCmdResponse, ctx: &mut Ctx<'_>) {
        let Waiting::Answer { token: t, store } = self.waiting else {
            return;
        };
        if t != token {
            return;
        }
        let Some(active) = &self.active else {
            return;
        };
        match classify(resp, &active.input) {
            Ok(output) => self.finish(Outcome::Ok(output), ctx),
            Err(retry) => self.retry(retry, store, ctx),
        }
    }

    /// Attempt `token` found its store down: it was never seen.
    pub(crate) fn refused(&mut self, token: u64, ctx: &mut Ctx<'_>) {
        if let Waiting::Answer { token: t, store } = self.waiting
            && t == token
        {
            self.retry(Retry::NotLeader(None), store, ctx);
        }
    }

    /// Picks and invokes the next operation.
    fn begin(&mut self, ctx: &mut Ctx<'_>) {
        let (key, input) = match &mut self.source {
            Source::Random { stopped: true, .. } => {
                self.waiting = Waiting::Idle;
                return;
            }
            Source::Random { keys, .. } => {
                let key = key(ctx.rng.random_range(0..*keys));
                let value = format!("c{}-{}", self.id, self.session.next_sequence()).into_bytes();
                let input = match ctx.rng.random_range(0..20) {
                    0..=5 => KvInput::Get,
                    6..=11 => KvInput::Put(value),
                    12..=13 => KvInput::Delete,
                    _ => KvInput::Cas {
                        expected: self.seen.get(&key).cloned().flatten(),
                        new: (ctx.rng.random_range(0..4) > 0).then_some(value),
                    },
                };
                (key, input)
            }
            Source::Script(keys) => {
                let Some(key) = keys.pop_front() else {
                    self.waiting = Waiting::Idle;
                    return;
                };
                (key, KvInput::Get)
            }
        };
        let sequence = self.session.sequence_for(&input);
        let pending = self.recorder.invoke(self.id, &key, input.clone());
        self.active = Some(Active {
            key,
            input,
            pending,
            sequence,
            deadline: ctx.queue.now() + self.op_timeout,
            maybe_applied: false,
        });
        self.attempt(ctx);
    }

    /// Sends the current operation to the store believed to lead its region.
    fn attempt(&mut self, ctx: &mut Ctx<'_>) {
        let Some(active) = &self.active else {
            self.waiting = Waiting::Idle;
            return;
        };
        if ctx.queue.now() >= active.deadline {
            let outcome = if active.maybe_applied {
                Outcome::Unknown
            } else {
                Outcome::Failed
            };
            self.finish(outcome, ctx);
            return;
        }
        let running = |s: u64| ctx.nodes.get(&s).is_some_and(|n| n.store().is_some());
        let Some((region, store)) = self.routes.target(&active.key, running, ctx.rng) else {
            self.refresh(ctx);
            self.backoff(ctx);
            return;
        };
        let req = self.session.command(
            &region,
            &active.key,
            &active.input,
            active.sequence,
            ctx.queue.now() / 1000,
        );
        let token = self.token();
        self.waiting = Waiting::Answer { token, store };
        let delay = ctx.network.delay(ctx.rng);
        if !ctx.network.loses(ctx.rng) {
            ctx.queue.after(
                delay,
                Event::ClientArrive {
                    client: self.index,
                    token,
                    store,
                    req: Box::new(req),
                },
            );
        }
        ctx.queue.after(
            ATTEMPT_TIMEOUT_US,
            Event::ClientWake {
                client: self.index,
                token,
            },
        );
    }

    fn retry(&mut self, retry: Retry, store: u64, ctx: &mut Ctx<'_>) {
        let Some(active) = &mut self.active else {
            return;
        };
        let region_id = self.routes.region_for(&active.key).map_or(0, |r| r.id);
        match retry {
            Retry::NotLeader(Some(leader)) if leader != store => {
                self.routes.set_leader(region_id, leader);
                self.attempt(ctx);
            }
            Retry::NotLeader(_) | Retry::Backoff => {
                self.routes.forget_leader(region_id);
                self.refresh(ctx);
                self.backoff(ctx);
            }
            Retry::Reroute(regions) => {
                self.routes.forget_leader(region_id);
                if regions.is_empty() {
                    self.refresh(ctx);
                }
                regions.into_iter().for_each(|r| self.routes.learn(r));
                self.backoff(ctx);
            }
            // The stores deduplicate by (session, sequence): retrying the same write
            // applies it at most once.
            Retry::Ambiguous => {
                if active.input.is_write() {
                    active.maybe_applied = true;
                }
                self.routes.forget_leader(region_id);
                self.refresh(ctx);
                self.backoff(ctx);
            }
            Retry::Fatal => self.finish(Outcome::Failed, ctx),
        }
    }

    /// Records the current operation's outcome and moves on.
    fn finish(&mut self, outcome: Outcome, ctx: &mut Ctx<'_>) {
        let Some(active) = self.active.take() else {
            return;
        };
        ctx.trace.record((
            "op",
            self.id,
            &active.key,
            format!("{:?}", active.input),
            format!("{outcome:?}"),
        ));
        match &outcome {
            Outcome::Ok(KvOutput::Get(v)) => {
                self.seen.insert(active.key.clone(), v.clone());
                if let Source::Script(_) = self.source {
                    self.results.insert(active.key.clone(), v.clone());
                }
            }
            Outcome::Ok(KvOutput::Cas {
                previous,
                succeeded,
            }) => {
                let now = match (&active.input, succeeded) {
                    (KvInput::Cas { new, .. }, true) => new.clone(),
                    _ => previous.clone(),
                };
                self.seen.insert(active.key.clone(), now);
            }
            Outcome::Ok(_) => {
                let now = match &active.input {
                    KvInput::Put(v) => Some(v.clone()),
                    _ => None,
                };
                self.seen.insert(active.key.clone(), now);
            }
            Outcome::Failed | Outcome::Unknown => {
                if let Source::Script(_) = self.source {
                    self.failed_reads.push(active.key.clone());
                }
            }
        }
        active.pending.complete(outcome);
        self.think(ctx);
    }

    /// Asks every running store which regions it has and which it leads (as the live
    /// client does with `QueryRegions`; here the answer is immediate).
    fn refresh(&mut self, ctx: &mut Ctx<'_>) {
        for (&id, node) in ctx.nodes {
            let Some(store) = node.store() else {
                continue;
            };
            self.routes.learn_statuses(id, store.region_statuses());
        }
    }
}
