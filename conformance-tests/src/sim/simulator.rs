//! [`Simulator`]: the event loop of one seeded run, and [`run_seed`], which runs it to
//! the end and checks the outcome.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use raft_core::eraftpb::MessageType;
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::pb::raft_cmdpb::RaftCmdResponse;
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::{Config, StoreMsg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::client::{Ctx, SimClient, key};
use super::config::{Micros, SimConfig};
use super::convergence::{caught_up, replicas_agree};
use super::events::{Event, EventQueue};
use super::network::Network;
use super::node::{Node, Outbox};
use super::safety::SafetyMonitor;
use super::trace::Trace;
use crate::cluster::{first_region, transfer_snapshot};
use crate::linearizability::{Budget, Recorder, Verdict, check, check_no_lost_writes};

/// Answers of the stores to clients: (client, attempt token, response).
type Replies = Arc<Mutex<Vec<(usize, u64, RaftCmdResponse)>>>;

/// How long the healed cluster may take to converge, and the final reads to finish.
const QUIET_LIMIT_US: Micros = 60_000_000;
/// How often convergence is checked while quiet.
const QUIET_STEP_US: Micros = 100_000;

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The digest of the run's trace (every event handled and every outcome, in order).
    pub trace_digest: u64,
    /// Items in the trace.
    pub trace_len: u64,
    /// Client operations: ok, failed, unknown.
    pub outcomes: [u64; 3],
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Regions at the end.
    pub regions: usize,
    /// Virtual microseconds at the end.
    pub end_us: Micros,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// Virtual microseconds when it was found.
    pub at_us: Micros,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at virtual {:.3} s: {}",
            self.seed,
            self.at_us as f64 / 1e6,
            self.reason
        )
    }
}

/// One seeded run: the cluster, its clients, and everything in flight.
pub(super) struct Simulator {
    pub(super) cfg: SimConfig,
    pub(super) store_cfg: Config,
    pub(super) rng: StdRng,
    pub(super) queue: EventQueue,
    pub(super) nodes: BTreeMap<u64, Node>,
    pub(super) outbox: Outbox,
    pub(super) replies: Replies,
    pub(super) network: Network,
    pub(super) clients: Vec<SimClient>,
    pub(super) recorder: Recorder,
    pub(super) safety: SafetyMonitor,
    pub(super) trace: Trace,
    /// Whether faults are still being injected.
    pub(super) faulting: bool,
    /// The next peer id a conf change hands out (unique within the run).
    pub(super) next_peer_id: u64,
    pub(super) faults: BTreeMap<&'static str, u64>,
    /// Durable applied indexes of crashed stores, checked when they restart.
    pub(super) durable: BTreeMap<u64, BTreeMap<u64, u64>>,
    _snap_root: tempfile::TempDir,
}

impl Simulator {
    fn new(cfg: &SimConfig) -> Self {
        let store_cfg = cfg.store_config();
        let snap_root = tempfile::tempdir().expect("a temporary directory");
        let region = first_region(3.min(cfg.stores), b"", b"");
        let mut nodes = BTreeMap::new();
        for id in 1..=cfg.stores {
            let node = Node::new(id, snap_root.path(), &store_cfg);
            bootstrap_store(node.kv(), 1, id).expect("bootstrap a store");
            if region.peers.iter().any(|p| p.store_id == id) {
                bootstrap_region(node.raft(), node.kv(), &region).expect("bootstrap a region");
            }
            nodes.insert(id, node);
        }
        let recorder = Recorder::new();
        let clients = (0..cfg.clients)
            .map(|i| SimClient::random(i, 1000 + i as u64, recorder.clone(), cfg.keys))
            .collect();
        Self {
            cfg: cfg.clone(),
            store_cfg,
            rng: StdRng::seed_from_u64(cfg.seed),
            queue: EventQueue::default(),
            nodes,
            outbox: Outbox::default(),
            replies: Replies::default(),
            network: Network::new(cfg),
            clients,
            recorder,
            safety: SafetyMonitor::default(),
            trace: Trace::default(),
            faulting: true,
            next_peer_id: 100,
            faults: BTreeMap::new(),
            durable: BTreeMap::new(),
            _snap_root: snap_root,
        }
    }

    fn failure(&self, reason: impl Into<String>) -> SimFailure {
        SimFailure {
            seed: self.cfg.seed,
            at_us: self.queue.now(),
            reason: reason.into(),
        }
    }

    /// Starts every store, its ticks, the clients and the fault injector.
    fn boot(&mut self) -> Result<(), SimFailure> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.start_store(id)?;
            let first = self.rng.random_range(0..self.cfg.tick_us);
            self.queue.after(first, Event::Tick { store: id });
        }
        for i in 0..self.clients.len() {
            self.with_client(i, |c, ctx| c.start(ctx));
        }
        let first = self.fault_pause();
        self.queue.after(first, Event::Fault);
        Ok(())
    }

    pub(super) fn fault_pause(&mut self) -> Micros {
        let mean = self.cfg.fault_interval_us.max(2);
        self.rng.random_range(mean / 2..mean * 3 / 2)
    }

    /// Opens store `id` and schedules its first iteration.
    pub(super) fn start_store(&mut self, id: u64) -> Result<(), SimFailure> {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if let Err(e) = node.start(&self.store_cfg, &self.outbox) {
            return Err(self.failure(format!("store {id} failed to open: {e}")));
        }
        if let Some(durable) = self.durable.remove(&id) {
            let node = &self.nodes[&id];
            let store = node.store().expect("just started");
            self.safety.restarted(id, store, &durable);
        }
        self.schedule_run(id);
        Ok(())
    }

    /// Crashes store `id`: see [`Node::crash`].
    pub(super) fn crash_store(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.crash();
        let durable = self.safety.crashed(id, node.kv());
        self.durable.insert(id, durable);
    }

    /// The stores that are running (`up`), or that are down.
    pub(super) fn stores(&self, up: bool) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.store().is_some() == up)
            .map(|(&id, _)| id)
            .collect()
    }

    fn with_client(&mut self, i: usize, f: impl FnOnce(&mut SimClient, &mut Ctx<'_>)) {
        let mut ctx = Ctx {
            queue: &mut self.queue,
            rng: &mut self.rng,
            nodes: &self.nodes,
            network: &self.network,
            trace: &mut self.trace,
        };
        f(&mut self.clients[i], &mut ctx);
    }

    pub(super) fn schedule_run(&mut self, id: u64) {
        // The raft worker picks up its mailbox a little later: messages arriving
        // meanwhile join the same batch.
        let latency = self.rng.random_range(10..300);
        self.schedule_run_after(id, latency);
    }

    /// Runs store `id` in `latency` µs of virtual time, unless a run is already due.
    fn schedule_run_after(&mut self, id: u64, latency: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.run_scheduled || node.store().is_none() {
            return;
        }
        node.run_scheduled = true;
        let incarnation = node.incarnation;
        self.queue.after(
            latency,
            Event::Run {
                store: id,
                incarnation,
            },
        );
    }

    /// Puts `msg` in running store `id`'s mailbox; false when the store is down.
    pub(super) fn deliver_local(&mut self, id: u64, msg: StoreMsg) -> bool {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.store().is_none() {
            return false;
        }
        node.mailbox.push(msg);
        self.schedule_run(id);
        true
    }

    /// Processes events due up to `until`.
    fn run_until(&mut self, until: Micros) -> Result<(), SimFailure> {
        while let Some(event) = self.queue.pop_until(until) {
            self.handle(event)?;
            if let Some(v) = self.safety.violations.first() {
                return Err(self.failure(format!("Raft safety violated: {v}")));
            }
        }
        self.queue.advance_to(until);
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), SimFailure> {
        let now = self.queue.now();
        match event {
            Event::Tick { store } => {
                self.trace.record((now, "tick", store));
                self.deliver_local(store, StoreMsg::Tick);
                let jitter = self.rng.random_range(0..self.cfg.tick_us / 10 + 1);
                self.queue.after(
                    self.cfg.tick_us - self.cfg.tick_us / 20 + jitter,
                    Event::Tick { store },
                );
            }
            Event::Deliver { from, to, msg } => self.deliver(now, from, to, *msg),
            Event::Run { store, incarnation } => {
                let node = self.nodes.get_mut(&store).expect("a node of the cluster");
                if node.incarnation != incarnation || node.store().is_none() {
                    return Ok(());
                }
                node.run_scheduled = false;
                self.trace.record((now, "run", store, node.mailbox.len()));
                if let Err(e) = node.run() {
                    return Err(self.failure(format!("store {store} hit a fatal error: {e}")));
                }
                self.after_run(store);
            }
            Event::RegionTask { store, incarnation } => {
                let node = self.nodes.get_mut(&store).expect("a node of the cluster");
                if node.incarnation != incarnation {
                    return Ok(());
                }
                node.task_scheduled = false;
                if let Some(task) = node.run_region_task() {
                    self.trace.record((now, "region task", store, task));
                    self.schedule_run(store);
                }
                self.schedule_region_task(store);
            }
            Event::ClientWake { client, token } => {
                self.with_client(client, |c, ctx| c.wake(token, ctx));
            }
            Event::ClientArrive {
                client,
                token,
                store,
                req,
            } => {
                self.trace.record((now, "request", client, token, store));
                let replies = self.replies.clone();
                let msg = StoreMsg::Command {
                    request: req,
                    callback: Box::new(move |resp| replies.lock().push((client, token, resp))),
                };
                if !self.deliver_local(store, msg) {
                    let delay = self.network.delay(&mut self.rng);
                    self.queue
                        .after(delay, Event::ClientRefused { client, token });
                }
            }
            Event::ClientReply {
                client,
                token,
                resp,
            } => {
                self.trace
                    .record((now, "reply", client, token, format!("{resp:?}")));
                self.with_client(client, |c, ctx| c.reply(token, &resp, ctx));
            }
            Event::ClientRefused { client, token } => {
                self.trace.record((now, "refused", client, token));
                self.with_client(client, |c, ctx| c.refused(token, ctx));
            }
            Event::Fault => {
                if self.faulting {
                    self.inject_fault();
                    let pause = self.fault_pause();
                    self.queue.after(pause, Event::Fault);
                }
            }
            Event::Heal { filter } => {
                self.trace.record((now, "heal"));
                self.network.filters.remove(filter);
            }
            Event::Restart { store } => {
                if self.nodes[&store].store().is_none() {
                    self.trace.record((now, "restart", store));
                    self.start_store(store)?;
                }
            }
        }
        Ok(())
    }

    /// A Raft message arrives; a snapshot's data moves with it, and its sender learns
    /// whether it was delivered, as from a transport.
    fn deliver(&mut self, now: Micros, from: u64, to: u64, msg: RaftMessage) {
        let m = msg.message.as_ref();
        self.trace.record((
            now,
            "deliver",
            from,
            to,
            msg.region_id,
            m.map_or(0, |m| m.msg_type),
            m.map_or(0, |m| m.term),
            m.map_or(0, |m| m.index),
            m.map_or(0, |m| m.commit),
        ));
        let up = self.nodes[&to].store().is_some();
        let snapshot = if up {
            transfer_snapshot(
                Some(&self.nodes[&from].snap_mgr),
                Some(&self.nodes[&to].snap_mgr),
                &msg,
            )
        } else {
            m.and_then(|m| m.snapshot.as_ref()).map(|_| false)
        };
        if let Some(delivered) = snapshot {
            self.report_snapshot(from, &msg, delivered);
            if !delivered {
                return;
            }
        }
        self.deliver_local(to, StoreMsg::RaftMessage(Box::new(msg)));
    }

    fn report_snapshot(&mut self, from: u64, msg: &RaftMessage, delivered: bool) {
        self.deliver_local(
            from,
            StoreMsg::SnapshotStatus {
                region_id: msg.region_id,
                to_peer: msg.to_peer.map_or(0, |p| p.id),
                delivered,
            },
        );
    }

    /// After a store iteration: its messages go on the network, its answers to the
    /// clients, its region tasks to the worker, and the safety monitor looks at it.
    fn after_run(&mut self, id: u64) {
        let sent: Vec<(u64, u64, RaftMessage)> = self.outbox.borrow_mut().drain(..).collect();
        for (from, to, msg) in sent {
            let is_snapshot = msg
                .message
                .as_ref()
                .is_some_and(|m| m.msg_type == MessageType::MsgSnapshot as i32);
            let delays = if self.nodes.contains_key(&to) {
                self.network.fate(&mut self.rng, from, to, &msg)
            } else {
                Vec::new()
            };
            if delays.is_empty() && is_snapshot {
                // A transport reports the snapshot it could not send.
                self.report_snapshot(from, &msg, false);
            }
            for delay in delays {
                self.queue.after(
                    delay,
                    Event::Deliver {
                        from,
                        to,
                        msg: Box::new(msg.clone()),
                    },
                );
            }
        }
        let answers: Vec<(usize, u64, RaftCmdResponse)> = std::mem::take(&mut *self.replies.lock());
        for (client, token, resp) in answers {
            if self.network.loses(&mut self.rng) {
                continue;
            }
            let delay = self.network.delay(&mut self.rng);
            self.queue.after(
                delay,
                Event::ClientReply {
                    client,
                    token,
                    resp: Box::new(resp),
                },
            );
        }
        self.schedule_region_task(id);
        if let Some(store) = self.nodes[&id].store() {
            self.safety.observe(id, store);
            if store.has_unwritten_rounds() {
                // Its raft batch is written when it next runs, a disk write later.
                // Acknowledgements wait that long and a crash meanwhile loses the rounds,
                // so an acknowledgement sent before its write is caught in this window.
                // A hand-driven store also handles no messages until then (production's
                // raft thread goes on while its writer writes): slower, not unsafe.
                let disk = self.rng.random_range(200..3_000);
                self.schedule_run_after(id, disk);
            }
        }
    }

    fn schedule_region_task(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.task_scheduled || !node.has_region_task() {
            return;
        }
        node.task_scheduled = true;
        let incarnation = node.incarnation;
        // Generation and apply take a while, during which the raft worker goes on.
        let took = self.rng.random_range(500..30_000);
        self.queue.after(
            took,
            Event::RegionTask {
                store: id,
                incarnation,
            },
        );
    }

    /// Ends the faults: partitions healed, no more loss or duplication, every crashed
    /// store restarted, the workload clients stopped after their current operation.
    fn heal(&mut self) -> Result<(), SimFailure> {
        self.faulting = false;
        self.network.filters.clear();
        self.network.loss = 0.0;
        self.network.duplicate = 0.0;
        for id in self.stores(false) {
            self.start_store(id)?;
        }
        for c in &mut self.clients {
            c.stop();
        }
        Ok(())
    }

    /// Runs until `done` holds (checked every [`QUIET_STEP_US`]) or the quiet limit.
    fn run_while_quiet(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Self) -> Result<(), String>,
    ) -> Result<(), SimFailure> {
        let limit = self.queue.now() + QUIET_LIMIT_US;
        loop {
            let missing = match done(self) {
                Ok(()) => return Ok(()),
                Err(missing) => missing,
            };
            if self.queue.now() >= limit {
                return Err(self.failure(format!(
                    "{what} did not happen within {} virtual seconds of healing: {missing}",
                    QUIET_LIMIT_US / 1_000_000
                )));
            }
            let next = self.queue.now() + QUIET_STEP_US;
            self.run_until(next)?;
        }
    }
}

/// Runs one seed to the end: workload under faults for `cfg.seconds`, then heal, quiet
/// period, convergence, final reads, and the checks.
///
/// # Errors
/// The first violation found, with the seed.
pub fn run_seed(cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Simulator::new(cfg);
    sim.boot()?;
    sim.run_until(cfg.seconds * 1_000_000)?;
    sim.heal()?;
    sim.run_while_quiet("the workload clients finishing", |s| {
        match s.clients.iter().position(|c| !c.is_idle()) {
            None => Ok(()),
            Some(i) => Err(format!("client {i} still busy")),
        }
    })?;
    sim.run_while_quiet("convergence", |s| caught_up(&s.nodes))?;
    if let Err(e) = replicas_agree(&sim.nodes) {
        return Err(sim.failure(e));
    }
    // The final reads, recorded into the history like any other operation.
    let keys: Vec<_> = (0..cfg.keys).map(key).collect();
    let reader = sim.clients.len();
    sim.clients
        .push(SimClient::reader(reader, 999, sim.recorder.clone(), keys));
    sim.with_client(reader, |c, ctx| c.start(ctx));
    sim.run_while_quiet("the final reads", |s| {
        if s.clients[reader].is_idle() {
            Ok(())
        } else {
            Err("the reader is still busy".to_owned())
        }
    })?;
    let reader_client = &sim.clients[reader];
    if !reader_client.failed_reads.is_empty() {
        return Err(sim.failure(format!(
            "final reads of {:?} did not succeed",
            reader_client.failed_reads
        )));
    }
    let finals = reader_client.results.clone();
    let history = sim.recorder.history();
    let report = check(&history, Budget::default());
    match &report.verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(v) => {
            return Err(sim.failure(format!("history is NOT linearizable: {v}")));
        }
        Verdict::Undecided(u) => {
            return Err(sim.failure(format!(
                "linearizability check UNDECIDED (a failure): key {:?}, {} operations",
                String::from_utf8_lossy(&u.key),
                u.ops
            )));
        }
    }
    if let Err(lost) = check_no_lost_writes(&history, &finals) {
        return Err(sim.failure(format!("an acknowledged write was lost: {lost}")));
    }
    let (ok, failed, unknown) = history.outcome_counts();
    Ok(SimReport {
        seed: cfg.seed,
        trace_digest: sim.trace.digest(),
        trace_len: sim.trace.events(),
        outcomes: [ok, failed, unknown].map(|n| n as u64),
        faults: sim.faults.clone(),
        regions: super::convergence::newest_regions(&sim.nodes).len(),
        end_us: sim.queue.now(),
    })
}
