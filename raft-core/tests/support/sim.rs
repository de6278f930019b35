//! A seeded, discrete-event simulator of a raft-core cluster for randomized safety runs.
//!
//! Where `network.rs` persists synchronously and delivers in FIFO order, here every effect
//! is an event the simulator schedules at random from one seed:
//!
//! - **Network**: messages sit in one in-flight pool; delivery picks any of them (reordering),
//!   may leave a copy behind (duplication), may lose it (random loss, partitions, a down
//!   receiver). The pool is bounded; overflow loses a random message.
//! - **Asynchronous persistence**: a `Ready`'s `messages` enter the network at once, while
//!   its snapshot, entries and hard state join the node's disk write queue. Only when the
//!   simulator later completes that write (in order) does it reach `MemStorage`, is
//!   `on_persist_ready(number)` called, and are its `persisted_messages` released.
//! - **Applying**: committed entries wait in an apply queue and are applied later, but
//!   never before the write of the `Ready` that carried them completed, so the state
//!   machine never runs ahead of the persisted commit index (checked). The state machine
//!   is durable: it and the `ConfState` it implies survive crashes, and a restart passes
//!   its applied index as `Config::applied`.
//! - **Crashes**: a crash drops the `RawNode`, its pending disk writes, its apply queue and
//!   its unsent persisted messages; only `MemStorage` and the state machine remain.
//! - **Workload**: proposals with unique values via random nodes, conf changes (V1, V2
//!   simple, V2 joint with every transition, leave-joint) over a fixed pool of ids,
//!   leadership transfers, snapshots with log compaction.
//!
//! Every cluster starts from a snapshot at index 1 that holds the initial membership, so a
//! node joining with empty storage always learns its configuration from a snapshot.
//!
//! After every step the safety properties are checked against oracles that outlive any
//! node (see [`Oracle`]); at the end all faults heal and the cluster must commit a fresh
//! proposal on every voter within a bounded number of rounds.
//!
//! The including test crate must also include `network.rs` as `crate::network` (for
//! `test_config`). Layout: this file drives the cluster; `sim/checks.rs` holds the properties and the
//! liveness phase, `sim/oracle.rs` the run-wide oracles, `sim/state_machine.rs` the
//! application's state machine, `sim/trace.rs` the event trace, `sim/rng.rs` randomness.
#![allow(dead_code)]

#[path = "sim/checks.rs"]
mod checks;
#[path = "sim/oracle.rs"]
mod oracle;
#[path = "sim/rng.rs"]
mod rng;
#[path = "sim/state_machine.rs"]
mod state_machine;
#[path = "sim/trace.rs"]
mod trace;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use prost::Message as _;
use raft_core::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft_core::{Config, Error, MemStorage, RawNode, SnapshotStatus, StateRole};

use crate::network;
use oracle::{Oracle, digest, entry_digest};
use rng::Rng;
use state_machine::{SmEntry, StateMachine};
use trace::{Event, Loss, Trace};

/// The index of the bootstrap snapshot every initial member starts from.
pub const BOOT_INDEX: u64 = 1;
/// The term of the bootstrap snapshot.
pub const BOOT_TERM: u64 = 1;
/// The most messages in flight at once; beyond it a random one is lost.
pub const NET_CAPACITY_MSGS: usize = 256;
/// How many recent events a failure report shows.
pub const TRACE_RECENT_EVENTS: usize = 80;
/// How often (in steps) every pair of logs is compared in full.
pub const FULL_LOG_CHECK_INTERVAL_STEPS: u64 = 97;

// ----- parameters --------------------------------------------------------------------------

/// What one run does; all but `seed` and `steps` are drawn from the seed.
#[derive(Debug, Clone)]
pub struct Params {
    /// The seed everything derives from.
    pub seed: u64,
    /// Random steps before healing.
    pub steps: u64,
    /// Rounds (ticks of every node) the healed cluster gets to commit a new proposal.
    pub liveness_rounds: u64,
    /// The initial voters are `1..=voters`.
    pub voters: u64,
    /// Every id in `1..=pool` runs a node; the ones past `voters` start empty.
    pub pool: u64,
    /// `Config::pre_vote`.
    pub pre_vote: bool,
    /// `Config::check_quorum`.
    pub check_quorum: bool,
    /// `Config::election_ticks`.
    pub election_ticks: usize,
    /// `Config::heartbeat_ticks`.
    pub heartbeat_ticks: usize,
    /// `Config::max_msg_bytes` (small values split appends).
    pub max_msg_bytes: u64,
    /// `Config::max_inflight_msgs`.
    pub max_inflight_msgs: usize,
    /// `Config::max_committed_bytes_per_ready` (small values split applying).
    pub max_committed_bytes_per_ready: u64,
    /// Probability (per mille) that a delivery loses the message.
    pub loss_per_mille: u64,
    /// Probability (per mille) that a delivery leaves a copy in flight.
    pub dup_per_mille: u64,
    /// `Config::skip_bcast_commit` (drawn last, so earlier draws of a seed stay the same).
    pub skip_bcast_commit: bool,
}

impl Params {
    /// Parameters for `seed`, running `steps` random steps.
    pub fn new(seed: u64, steps: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xC0FF_EE00);
        let voters = if rng.chance(500) { 3 } else { 5 };
        Self {
            seed,
            steps,
            liveness_rounds: 300,
            voters,
            pool: voters + 2,
            pre_vote: rng.chance(500),
            check_quorum: rng.chance(500),
            election_ticks: 5 + rng.below(4) as usize,
            heartbeat_ticks: 1 + rng.below(2) as usize,
            max_msg_bytes: [64, 256, 1 << 20][rng.below(3) as usize],
            max_inflight_msgs: [1, 4, 256][rng.below(3) as usize],
            max_committed_bytes_per_ready: [32, 1 << 20][rng.below(2) as usize],
            loss_per_mille: [0, 20, 80, 200][rng.below(4) as usize],
            dup_per_mille: [0, 20, 100][rng.below(3) as usize],
            skip_bcast_commit: rng.chance(500),
        }
    }

    fn config(&self, id: u64, incarnation: u64) -> Config {
        let mut c = network::test_config(id);
        c.election_ticks = self.election_ticks;
        c.heartbeat_ticks = self.heartbeat_ticks;
        c.pre_vote = self.pre_vote;
        c.check_quorum = self.check_quorum;
        c.max_msg_bytes = self.max_msg_bytes;
        c.max_inflight_msgs = self.max_inflight_msgs;
        c.max_committed_bytes_per_ready = self.max_committed_bytes_per_ready;
        c.skip_bcast_commit = self.skip_bcast_commit;
        c.random_seed = self.seed ^ incarnation.wrapping_mul(0x9E37_79B9);
        c
    }
}

// ----- the trace -----------------------------------------------------------------------------
// ----- nodes -------------------------------------------------------------------------------

/// One `Ready`'s share of the disk: written in order, later.
#[derive(Debug)]
struct DiskWrite {
    number: u64,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    persisted_messages: Vec<Message>,
}

/// Committed entries of one `Ready`, applied once that Ready's write is done.
#[derive(Debug)]
struct PendingApply {
    number: u64,
    entries: VecDeque<Entry>,
}

/// What only a running node has; dropped by a crash.
struct Live {
    raw: RawNode<MemStorage>,
    writes: VecDeque<DiskWrite>,
    applies: VecDeque<PendingApply>,
    /// The number of the last Ready whose write completed.
    persisted_number: u64,
    seen_committed: u64,
    seen_applied: u64,
    seen_term: u64,
}

/// One node: durable storage and state machine, and the running part if up.
pub struct Node {
    id: u64,
    storage: MemStorage,
    sm: StateMachine,
    /// The newest hard state observed in storage (which survives crashes).
    durable_hs: HardState,
    incarnation: u64,
    live: Option<Live>,
}

impl Node {
    fn live(&self) -> Option<&Live> {
        self.live.as_ref()
    }
}

/// Counters for tuning and for the report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Leaders observed (distinct terms).
    pub leaders: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost.
    pub lost: u64,
    /// Highest commit index seen.
    pub max_commit: u64,
    /// Proposals accepted.
    pub proposals: u64,
    /// Conf changes applied (counted once per index).
    pub conf_changes: u64,
    /// Snapshots installed by followers.
    pub snapshots_installed: u64,
    /// Crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Liveness rounds needed after healing.
    pub heal_rounds: u64,
}

impl Stats {
    /// Adds `other` into `self` (for totals over many seeds).
    pub fn add(&mut self, other: &Stats) {
        self.leaders += other.leaders;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.max_commit += other.max_commit;
        self.proposals += other.proposals;
        self.conf_changes += other.conf_changes;
        self.snapshots_installed += other.snapshots_installed;
        self.crashes += other.crashes;
        self.partitions += other.partitions;
        self.heal_rounds += other.heal_rounds;
    }
}

/// The result of a successful run.
#[derive(Debug)]
pub struct Outcome {
    /// Hash of the whole event trace.
    pub trace_hash: u64,
    /// Counters.
    pub stats: Stats,
}

/// A failed run: what broke, where, and how to replay it.
#[derive(Debug)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The step at which a check failed.
    pub step: u64,
    /// What broke.
    pub message: String,
    /// The parameters and the last events.
    pub context: String,
}

impl Failure {
    /// A report with the seed, the replay command and the last events.
    pub fn report(&self) -> String {
        format!(
            "raft-core safety run failed: seed={seed} step={step}\n  {msg}\n\
             replay: RAFT_SAFETY_SEED={seed} cargo test -p raft-core --test safety\n{ctx}",
            seed = self.seed,
            step = self.step,
            msg = self.message,
            ctx = self.context
        )
    }
}

/// The kinds of random step.
#[derive(Debug, Clone, Copy)]
enum Action {
    Tick,
    Deliver,
    Lose,
    Ready,
    Persist,
    Apply,
    Propose,
    ConfChange,
    Transfer,
    Compact,
    Crash,
    Restart,
    Partition,
    Heal,
    Campaign,
}

/// Either conf change wire type.
#[derive(Debug, Clone)]
enum AnyConfChange {
    V1(ConfChange),
    V2(ConfChangeV2),
}

fn change_name(t: i32) -> &'static str {
    match ConfChangeType::try_from(t) {
        Ok(ConfChangeType::AddNode) => "add",
        Ok(ConfChangeType::RemoveNode) => "remove",
        Ok(ConfChangeType::AddLearnerNode) => "learner",
        Err(_) => "?",
    }
}

impl AnyConfChange {
    fn describe(&self) -> String {
        match self {
            Self::V1(cc) => format!("v1 {} {}", change_name(cc.change_type), cc.node_id),
            Self::V2(cc) => {
                let steps: Vec<String> = cc
                    .changes
                    .iter()
                    .map(|c| format!("{} {}", change_name(c.change_type), c.node_id))
                    .collect();
                let tr = match ConfChangeTransition::try_from(cc.transition) {
                    Ok(ConfChangeTransition::Auto) => "auto",
                    Ok(ConfChangeTransition::Implicit) => "implicit",
                    Ok(ConfChangeTransition::Explicit) => "explicit",
                    Err(_) => "?",
                };
                format!("v2 {tr} [{}]", steps.join(", "))
            }
        }
    }
}

// ----- the simulator -----------------------------------------------------------------------

/// A simulated cluster driven by one seed.
pub struct Sim {
    params: Params,
    rng: Rng,
    step: u64,
    nodes: BTreeMap<u64, Node>,
    /// Messages in flight, in no particular order.
    net: Vec<Message>,
    /// The group of each node while partitioned.
    partition: Option<BTreeMap<u64, u64>>,
    /// Whether loss and duplication are on (off once healed).
    faults: bool,
    next_value: u64,
    oracle: Oracle,
    trace: Trace,
    stats: Stats,
}

/// The result of a check: a description of what broke.
pub type Check = Result<(), String>;

impl Sim {
    /// A cluster for `params`: voters `1..=voters` bootstrapped, the rest of the pool empty.
    pub fn new(params: Params) -> Result<Self, String> {
        let rng = Rng::new(params.seed);
        let voters: Vec<u64> = (1..=params.voters).collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=params.pool {
            let storage = MemStorage::new();
            let (sm, durable_hs) = if id <= params.voters {
                let sm = StateMachine::bootstrapped();
                let snapshot = Snapshot {
                    data: sm.encode(),
                    metadata: Some(SnapshotMetadata {
                        conf_state: Some(ConfState::from((voters.clone(), vec![]))),
                        index: BOOT_INDEX,
                        term: BOOT_TERM,
                    }),
                };
                storage
                    .wl()
                    .apply_snapshot(snapshot)
                    .map_err(|e| format!("bootstrap: {e}"))?;
                let hs = *storage.rl().hard_state();
                (sm, hs)
            } else {
                (StateMachine::default(), HardState::default())
            };
            nodes.insert(
                id,
                Node {
                    id,
                    storage,
                    sm,
                    durable_hs,
                    incarnation: 0,
                    live: None,
                },
            );
        }
        let mut sim = Self {
            params,
            rng,
            step: 0,
            nodes,
            net: Vec::new(),
            partition: None,
            faults: true,
            next_value: 0,
            oracle: Oracle::default(),
            trace: Trace::default(),
            stats: Stats::default(),
        };
        for id in 1..=sim.params.pool {
            sim.start(id)?;
        }
        Ok(sim)
    }

    /// Runs the random steps, then heals and checks liveness.
    ///
    /// # Errors
    /// The first violated property, with the seed and the trace.
    pub fn run(mut self) -> Result<Outcome, Failure> {
        while self.step < self.params.steps {
            self.step += 1;
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.random_step()?;
                self.check_step()?;
                if self.step.is_multiple_of(FULL_LOG_CHECK_INTERVAL_STEPS) {
                    self.check_logs_pairwise()?;
                }
                Ok(())
            }));
            if let Err(message) = flatten(result) {
                return Err(self.failure(message));
            }
        }
        let result = catch_unwind(AssertUnwindSafe(|| self.liveness()));
        if let Err(message) = flatten(result) {
            return Err(self.failure(message));
        }
        Ok(Outcome {
            trace_hash: self.trace.hash(),
            stats: self.stats,
        })
    }

    fn failure(&self, message: String) -> Failure {
        let mut ctx = format!("params: {:?}\nnodes:\n", self.params);
        for node in self.nodes.values() {
            let _ = writeln!(ctx, "  {}", self.describe_node(node));
        }
        let _ = writeln!(
            ctx,
            "in flight: {} messages; partition: {:?}\nlast {} events:\n{}",
            self.net.len(),
            self.partition,
            self.trace.recent.len(),
            self.trace.render()
        );
        Failure {
            seed: self.params.seed,
            step: self.step,
            message,
            context: ctx,
        }
    }

    fn describe_node(&self, node: &Node) -> String {
        let hs = node.storage.rl().hard_state().to_owned();
        let durable = format!(
            "disk hs=({},{},{}) first={} last={} sm_applied={}",
            hs.term,
            hs.vote,
            hs.commit,
            raft_core::Storage::first_index(&node.storage),
            raft_core::Storage::last_index(&node.storage),
            node.sm.applied
        );
        match node.live() {
            None => format!("{}: DOWN; {durable}", node.id),
            Some(l) => {
                let r = l.raw.raft();
                let log = r.raft_log();
                let progress = if r.state() == StateRole::Leader {
                    let prs: Vec<String> = r
                        .tracker()
                        .progress
                        .iter()
                        .map(|(id, p)| {
                            format!(
                                "{id}:{}/m{}/n{}/inf{}{}",
                                p.state,
                                p.matched,
                                p.next_idx,
                                p.inflights.len(),
                                if p.probe_sent { "/probe_sent" } else { "" }
                            )
                        })
                        .collect();
                    format!(" progress=[{}]", prs.join(" "))
                } else {
                    String::new()
                };
                format!(
                    "{}: {:?} term={} vote={} lead={} commit={} applied={} persisted={} \
                     last={} conf={:?} writes={} applies={}{progress}; {durable}",
                    node.id,
                    r.state(),
                    r.term(),
                    r.vote(),
                    r.leader_id(),
                    log.committed,
                    log.applied,
                    log.persisted,
                    log.last_index(),
                    r.tracker().conf.to_conf_state(),
                    l.writes.len(),
                    l.applies.len()
                )
            }
        }
    }

    fn record(&mut self, event: Event) {
        self.trace.push(self.step, event);
    }

    // ----- node lifecycle ------------------------------------------------------------------

    fn start(&mut self, id: u64) -> Check {
        let node = self.nodes.get_mut(&id).expect("node in pool");
        let mut cfg = self.params.config(id, node.incarnation);
        cfg.applied = node.sm.applied;
        let raw = RawNode::new(&cfg, node.storage.clone())
            .map_err(|e| format!("node {id} failed to start from its storage: {e}"))?;
        let (term, commit, applied) = {
            let r = raw.raft();
            (r.term(), r.raft_log().committed, r.raft_log().applied)
        };
        let hs = *node.storage.rl().hard_state();
        if commit
            != hs
                .commit
                .max(raft_core::Storage::first_index(&node.storage) - 1)
        {
            return Err(format!(
                "node {id} restarted with commit {commit}, but persisted commit is {}",
                hs.commit
            ));
        }
        if applied != node.sm.applied {
            return Err(format!(
                "node {id} restarted with applied {applied}, but its state machine applied {}",
                node.sm.applied
            ));
        }
        node.live = Some(Live {
            raw,
            writes: VecDeque::new(),
            applies: VecDeque::new(),
            persisted_number: 0,
            seen_committed: commit,
            seen_applied: applied,
            seen_term: term,
        });
        if node.incarnation > 0 {
            self.record(Event::Restart {
                id,
                term,
                commit,
                applied,
            });
        }
        Ok(())
    }

    fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node in pool");
        if let Some(live) = node.live.take() {
            node.incarnation += 1;
            self.stats.crashes += 1;
            self.record(Event::Crash {
                id,
                lost_writes: live.writes.len(),
            });
        }
    }

    fn live_ids(&self) -> Vec<u64> {
        self.ids_where(true)
    }

    /// Nodes that are crashed (not running).
    fn down_ids(&self) -> Vec<u64> {
        self.ids_where(false)
    }

    fn ids_where(&self, live: bool) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.live.is_some() == live)
            .map(|n| n.id)
            .collect()
    }

    fn live_ref(&self, id: u64) -> Option<&Live> {
        self.nodes.get(&id).and_then(|n| n.live.as_ref())
    }

    fn live_mut(&mut self, id: u64) -> Option<&mut Live> {
        self.nodes.get_mut(&id).and_then(|n| n.live.as_mut())
    }

    // ----- random steps --------------------------------------------------------------------

    fn random_step(&mut self) -> Check {
        let live = self.live_ids();
        let down = self.down_ids();
        let ready: Vec<u64> = live
            .iter()
            .copied()
            .filter(|&id| self.live_ref(id).is_some_and(|l| l.raw.has_ready()))
            .collect();
        let writing: Vec<u64> = live
            .iter()
            .copied()
            .filter(|&id| self.live_ref(id).is_some_and(|l| !l.writes.is_empty()))
            .collect();
        let applying: Vec<u64> = live
            .iter()
            .copied()
            .filter(|&id| {
                self.live_ref(id).is_some_and(|l| {
                    l.applies
                        .front()
                        .is_some_and(|a| a.number <= l.persisted_number)
                })
            })
            .collect();
        let any_live = !live.is_empty();
        let in_flight = !self.net.is_empty();
        // Only actions that can do something now compete, with these weights.
        let weights = [
            (Action::Tick, if any_live { 60 } else { 0 }),
            (Action::Deliver, if in_flight { 400 } else { 0 }),
            (Action::Lose, if in_flight { 10 } else { 0 }),
            (Action::Ready, if ready.is_empty() { 0 } else { 200 }),
            (Action::Persist, if writing.is_empty() { 0 } else { 150 }),
            (Action::Apply, if applying.is_empty() { 0 } else { 100 }),
            (Action::Propose, if any_live { 60 } else { 0 }),
            (Action::ConfChange, if any_live { 8 } else { 0 }),
            (Action::Transfer, if any_live { 8 } else { 0 }),
            (Action::Compact, if any_live { 20 } else { 0 }),
            (Action::Crash, if any_live { 4 } else { 0 }),
            (Action::Restart, if down.is_empty() { 0 } else { 12 }),
            (
                Action::Partition,
                if self.partition.is_none() { 3 } else { 0 },
            ),
            (Action::Heal, if self.partition.is_some() { 8 } else { 0 }),
            (Action::Campaign, if any_live { 4 } else { 0 }),
        ];
        let total: u64 = weights.iter().map(|w| w.1).sum();
        if total == 0 {
            return Ok(());
        }
        let mut roll = self.rng.below(total);
        let mut action = Action::Tick;
        for (a, w) in weights {
            if roll < w {
                action = a;
                break;
            }
            roll -= w;
        }
        match action {
            Action::Tick => {
                // A tick of the whole cluster, or of one node (clocks drift).
                if self.rng.chance(600) {
                    for id in live {
                        self.tick(id)?;
                    }
                } else if let Some(id) = self.rng.pick(&live) {
                    self.tick(id)?;
                }
            }
            Action::Deliver => {
                let idx = self.rng.below(self.net.len() as u64) as usize;
                self.deliver(idx)?;
            }
            Action::Lose => {
                let idx = self.rng.below(self.net.len() as u64) as usize;
                let m = self.net.swap_remove(idx);
                self.lose(&m, Loss::Random);
            }
            Action::Ready => {
                let id = self.rng.pick(&ready).expect("weighted only when non-empty");
                self.handle_ready(id)?;
            }
            Action::Persist => {
                let id = self
                    .rng
                    .pick(&writing)
                    .expect("weighted only when non-empty");
                for _ in 0..1 + self.rng.below(2) {
                    self.complete_write(id)?;
                }
            }
            Action::Apply => {
                let id = self
                    .rng
                    .pick(&applying)
                    .expect("weighted only when non-empty");
                let limit = 1 + self.rng.below(8) as usize;
                self.apply(id, limit)?;
            }
            Action::Propose => {
                let id = self.rng.pick(&live).expect("some node is up");
                self.propose(id)?;
            }
            Action::ConfChange => {
                let id = self.rng.pick(&live).expect("some node is up");
                self.propose_conf_change(id)?;
            }
            Action::Transfer => {
                let id = self.rng.pick(&live).expect("some node is up");
                let to = 1 + self.rng.below(self.params.pool);
                self.record(Event::Transfer { id, to });
                self.live_mut(id)
                    .expect("picked a live node")
                    .raw
                    .transfer_leader(to)
                    .map_err(|e| format!("node {id} failed transfer_leader({to}): {e}"))?;
            }
            Action::Compact => {
                let id = self.rng.pick(&live).expect("some node is up");
                self.compact(id)?;
            }
            Action::Crash => {
                let id = self.rng.pick(&live).expect("some node is up");
                self.crash(id);
            }
            Action::Restart => {
                let id = self.rng.pick(&down).expect("weighted only when non-empty");
                self.start(id)?;
            }
            Action::Partition => self.make_partition(),
            Action::Heal => {
                self.partition = None;
                self.record(Event::Heal);
            }
            Action::Campaign => {
                // An unprompted election (as after a long pause).
                let id = self.rng.pick(&live).expect("some node is up");
                self.live_mut(id)
                    .expect("picked a live node")
                    .raw
                    .campaign()
                    .map_err(|e| format!("node {id} failed to campaign: {e}"))?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, id: u64) -> Check {
        self.record(Event::Tick { id });
        let live = self.live_mut(id).expect("ticking a live node");
        live.raw
            .tick()
            .map_err(|e| format!("node {id} failed to tick: {e}"))
    }

    fn make_partition(&mut self) {
        let groups_n = 2 + self.rng.below(2);
        let mut groups: Vec<Vec<u64>> = vec![Vec::new(); groups_n as usize];
        let mut map = BTreeMap::new();
        for id in 1..=self.params.pool {
            let g = self.rng.below(groups_n);
            map.insert(id, g);
            groups[g as usize].push(id);
        }
        self.stats.partitions += 1;
        self.record(Event::Partition { groups });
        self.partition = Some(map);
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        self.partition
            .as_ref()
            .is_none_or(|p| p.get(&a) == p.get(&b))
    }

    // ----- the network ---------------------------------------------------------------------

    fn send(&mut self, m: Message) {
        if self.net.len() >= NET_CAPACITY_MSGS {
            let idx = self.rng.below(self.net.len() as u64) as usize;
            let old = self.net.swap_remove(idx);
            self.lose(&old, Loss::Overflow);
        }
        self.net.push(m);
    }

    fn lose(&mut self, m: &Message, why: Loss) {
        self.stats.lost += 1;
        self.record(Event::Lose {
            from: m.from,
            to: m.to,
            ty: m.msg_type(),
            why,
        });
        if self.live_ref(m.from).is_none() {
            return;
        }
        if m.msg_type() == MessageType::MsgSnapshot {
            let l = self.live_mut(m.from).expect("sender is up");
            l.raw.report_snapshot(m.to, SnapshotStatus::Failure);
        }
        if matches!(why, Loss::Partition | Loss::Down) && self.rng.chance(300) {
            self.record(Event::Unreachable {
                id: m.from,
                to: m.to,
            });
            let l = self.live_mut(m.from).expect("sender is up");
            l.raw.report_unreachable(m.to);
        }
    }

    fn deliver(&mut self, idx: usize) -> Check {
        let dup = self.faults && self.rng.chance(self.params.dup_per_mille);
        let m = if dup {
            self.net[idx].clone()
        } else {
            self.net.swap_remove(idx)
        };
        let receiver_up = self.nodes.get(&m.to).is_some_and(|n| n.live.is_some());
        let lost = if !self.connected(m.from, m.to) {
            Some(Loss::Partition)
        } else if self.faults && self.rng.chance(self.params.loss_per_mille) {
            Some(Loss::Random)
        } else if !receiver_up {
            Some(Loss::Down)
        } else {
            None
        };
        if let Some(why) = lost {
            self.lose(&m, why);
            return Ok(());
        }
        self.stats.delivered += 1;
        let ty = m.msg_type();
        let (from, to) = (m.from, m.to);
        self.record(Event::Deliver {
            from,
            to,
            ty,
            term: m.term,
            index: m.index,
            n_ents: m.entries.len(),
            commit: m.commit,
            reject: m.reject,
            dup,
        });
        let live = self.live_mut(to).expect("receiver is up");
        match live.raw.step(m) {
            Ok(()) | Err(Error::ProposalDropped | Error::StepPeerNotFound) => {}
            Err(e) => {
                return Err(format!(
                    "node {to} failed to step a genuine {ty:?} from {from}: {e}"
                ));
            }
        }
        if ty == MessageType::MsgSnapshot
            && let Some(l) = self.live_mut(from)
        {
            l.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        Ok(())
    }

    // ----- Ready, persistence, applying ----------------------------------------------------

    fn handle_ready(&mut self, id: u64) -> Check {
        let live = self.live_mut(id).expect("node is up");
        let mut rd = live
            .raw
            .ready()
            .map_err(|e| format!("node {id} failed to produce a Ready: {e}"))?;
        let number = rd.number();
        let entries = rd.take_entries();
        let snapshot = rd.take_snapshot();
        let committed = rd.take_committed_entries();
        let messages = rd.take_messages();
        let persisted_messages = rd.take_persisted_messages();
        let hard_state = rd.hard_state().copied();
        if let Some(last) = live.applies.back() {
            debug_assert!(last.number < number, "Ready numbers increase");
        }
        if !committed.is_empty() {
            live.applies.push_back(PendingApply {
                number,
                entries: committed.iter().cloned().collect(),
            });
        }
        live.writes.push_back(DiskWrite {
            number,
            snapshot: snapshot.clone(),
            entries: entries.clone(),
            hard_state,
            persisted_messages,
        });
        let persisted_msgs = live.writes.back().map_or(0, |w| w.persisted_messages.len());
        self.record(Event::Ready {
            id,
            number,
            msgs: messages.len(),
            persisted_msgs,
            entries: (
                entries.first().map_or(0, |e| e.index),
                entries.last().map_or(0, |e| e.index),
            ),
            snapshot: snapshot
                .as_ref()
                .and_then(|s| s.metadata.as_ref())
                .map_or(0, |m| m.index),
            hard_state: hard_state.map(|h| (h.term, h.vote, h.commit)),
            committed: (
                committed.first().map_or(0, |e| e.index),
                committed.last().map_or(0, |e| e.index),
            ),
        });
        for m in messages {
            self.check_outgoing(id, &m, false)?;
            self.send(m);
        }
        Ok(())
    }

    /// Completes the oldest pending disk write of `id`, if any.
    fn complete_write(&mut self, id: u64) -> Check {
        let node = self.nodes.get_mut(&id).expect("node in pool");
        let Some(live) = node.live.as_mut() else {
            return Ok(());
        };
        let Some(write) = live.writes.pop_front() else {
            return Ok(());
        };
        if let Some(snapshot) = write.snapshot {
            // Entries committed before the snapshot arrived are applied first, in order.
            self.apply(id, usize::MAX)?;
            let node = self.nodes.get_mut(&id).expect("node in pool");
            let index = snapshot.metadata.as_ref().map_or(0, |m| m.index);
            let sm = StateMachine::decode(&snapshot.data)
                .map_err(|e| format!("node {id} got snapshot {index} without state: {e}"))?;
            if sm.applied != index {
                return Err(format!(
                    "node {id} got snapshot {index} whose state machine is at {}",
                    sm.applied
                ));
            }
            if sm.applied <= node.sm.applied {
                return Err(format!(
                    "node {id} was asked to install snapshot {index} but already applied {}",
                    node.sm.applied
                ));
            }
            for (k, e) in sm.entries.iter().enumerate() {
                let index = BOOT_INDEX + 1 + k as u64;
                self.oracle
                    .check_applied(id, index, digest(e.term, e.entry_type, &e.data))?;
            }
            node.storage
                .wl()
                .apply_snapshot(snapshot)
                .map_err(|e| format!("node {id} could not persist snapshot {index}: {e}"))?;
            node.sm = sm;
            self.stats.snapshots_installed += 1;
            self.record(Event::InstallSnapshot { id, index });
        }
        let node = self.nodes.get_mut(&id).expect("node in pool");
        let live = node.live.as_mut().expect("node is up");
        node.storage
            .wl()
            .append(&write.entries)
            .map_err(|e| format!("node {id} could not append its entries: {e}"))?;
        // Log matching, checked on every entry as it becomes durable (entries only ever held
        // in memory by a node that then crashed never existed for anyone else).
        let mut prev = write
            .entries
            .first()
            .and_then(|e| raft_core::Storage::term(&node.storage, e.index - 1).ok());
        for e in &write.entries {
            self.oracle.check_entry(id, e, prev)?;
            prev = Some(e.term);
        }
        if let Some(hs) = write.hard_state {
            node.storage.wl().set_hard_state(hs);
        }
        // The persisted hard state never regresses.
        let hs = *node.storage.rl().hard_state();
        let old = node.durable_hs;
        if hs.term < old.term
            || (hs.term == old.term && old.vote != 0 && hs.vote != old.vote)
            || hs.commit < old.commit
        {
            return Err(format!(
                "node {id} persisted hard state {:?} after {:?}",
                (hs.term, hs.vote, hs.commit),
                (old.term, old.vote, old.commit)
            ));
        }
        node.durable_hs = hs;
        live.persisted_number = write.number;
        live.raw
            .on_persist_ready(write.number)
            .map_err(|e| format!("node {id} failed on_persist_ready: {e}"))?;
        self.record(Event::Persist {
            id,
            number: write.number,
        });
        for m in write.persisted_messages {
            self.check_outgoing(id, &m, true)?;
            self.send(m);
        }
        Ok(())
    }

    /// Applies up to `limit` committed entries whose Ready is persisted.
    fn apply(&mut self, id: u64, limit: usize) -> Check {
        let mut done = 0;
        let node = self.nodes.get_mut(&id).expect("node in pool");
        let Some(live) = node.live.as_mut() else {
            return Ok(());
        };
        let before = node.sm.applied;
        while done < limit {
            let Some(batch) = live.applies.front_mut() else {
                break;
            };
            if batch.number > live.persisted_number {
                break;
            }
            let Some(entry) = batch.entries.pop_front() else {
                live.applies.pop_front();
                continue;
            };
            done += 1;
            apply_entry(
                id,
                &mut node.sm,
                &node.storage,
                live,
                &mut self.oracle,
                &mut self.stats,
                &mut self.trace,
                self.step,
                entry,
            )?;
        }
        if live.applies.front().is_some_and(|b| b.entries.is_empty()) {
            live.applies.pop_front();
        }
        let applied = node.sm.applied;
        live.raw
            .advance_apply_to(applied)
            .map_err(|e| format!("node {id} failed advance_apply_to({applied}): {e}"))?;
        if applied != before {
            self.record(Event::Apply { id, applied });
        }
        Ok(())
    }

    // ----- workload ------------------------------------------------------------------------

    fn propose(&mut self, id: u64) -> Check {
        self.next_value += 1;
        let value = self.next_value;
        let data = value_bytes(value);
        let live = self.live_mut(id).expect("node is up");
        let accepted = match live.raw.propose(Bytes::new(), data) {
            Ok(()) => true,
            Err(Error::ProposalDropped) => false,
            Err(e) => return Err(format!("node {id} failed to propose: {e}")),
        };
        self.stats.proposals += u64::from(accepted);
        self.record(Event::Propose {
            id,
            value,
            accepted,
        });
        Ok(())
    }

    fn random_conf_change(&mut self) -> AnyConfChange {
        let pool = self.params.pool;
        let rng = &mut self.rng;
        let single = |rng: &mut Rng| {
            let t = match rng.below(100) {
                0..40 => ConfChangeType::AddNode,
                40..75 => ConfChangeType::RemoveNode,
                _ => ConfChangeType::AddLearnerNode,
            };
            ConfChangeSingle::with(t, 1 + rng.below(pool))
        };
        match rng.below(10) {
            0..3 => {
                let s = single(rng);
                AnyConfChange::V1(ConfChange {
                    change_type: s.change_type,
                    node_id: s.node_id,
                    ..Default::default()
                })
            }
            3..5 => AnyConfChange::V2(ConfChangeV2 {
                transition: ConfChangeTransition::Auto as i32,
                changes: vec![single(rng)],
                ..Default::default()
            }),
            5..9 => {
                let n = 1 + rng.below(3);
                let changes = (0..n).map(|_| single(rng)).collect();
                let transition = [
                    ConfChangeTransition::Auto,
                    ConfChangeTransition::Implicit,
                    ConfChangeTransition::Explicit,
                ][rng.below(3) as usize];
                AnyConfChange::V2(ConfChangeV2 {
                    transition: transition as i32,
                    changes,
                    ..Default::default()
                })
            }
            _ => AnyConfChange::V2(ConfChangeV2::default()),
        }
    }

    fn propose_conf_change(&mut self, id: u64) -> Check {
        let cc = self.random_conf_change();
        let live = self.live_mut(id).expect("node is up");
        let result = match &cc {
            AnyConfChange::V1(cc) => live.raw.propose_conf_change(Bytes::new(), cc),
            AnyConfChange::V2(cc) => live.raw.propose_conf_change(Bytes::new(), cc),
        };
        let accepted = match result {
            Ok(()) => true,
            Err(Error::ProposalDropped) => false,
            Err(e) => return Err(format!("node {id} failed to propose a conf change: {e}")),
        };
        self.record(Event::ProposeConfChange {
            id,
            change: cc.describe(),
            accepted,
        });
        Ok(())
    }

    /// Snapshots the state machine of `id` and compacts its log up to some point at or
    /// before the snapshot.
    fn compact(&mut self, id: u64) -> Check {
        let node = self.nodes.get_mut(&id).expect("node in pool");
        let index = node.sm.applied;
        let first = raft_core::Storage::first_index(&node.storage);
        if index < first {
            return Ok(());
        }
        let keep = self.rng.below(4);
        let compact_to = (index + 1).saturating_sub(keep).max(first);
        let data = node.sm.encode();
        let mut core = node.storage.wl();
        core.create_snapshot(index, None, data)
            .map_err(|e| format!("node {id} could not snapshot at {index}: {e}"))?;
        core.compact(compact_to)
            .map_err(|e| format!("node {id} could not compact to {compact_to}: {e}"))?;
        drop(core);
        self.record(Event::Compact {
            id,
            snapshot: index,
            first: compact_to,
        });
        Ok(())
    }
}

/// Applies one committed entry to a node's state machine (and its membership).
#[allow(clippy::too_many_arguments)]
fn apply_entry(
    id: u64,
    sm: &mut StateMachine,
    storage: &MemStorage,
    live: &mut Live,
    oracle: &mut Oracle,
    stats: &mut Stats,
    trace: &mut Trace,
    step: u64,
    entry: Entry,
) -> Check {
    if sm.applied == 0 {
        return Err(format!(
            "node {id} applies entry {} without ever having had state",
            entry.index
        ));
    }
    if entry.index != sm.applied + 1 {
        return Err(format!(
            "node {id} was handed entry {} to apply, but its state machine is at {}",
            entry.index, sm.applied
        ));
    }
    let persisted_commit = storage.rl().hard_state().commit;
    if entry.index > persisted_commit {
        return Err(format!(
            "node {id} was handed entry {} to apply before a commit index covering it was \
             persisted (disk commit {persisted_commit})",
            entry.index
        ));
    }
    oracle.check_applied(id, entry.index, entry_digest(&entry))?;
    let cc_result = match entry.entry_type() {
        EntryType::EntryNormal => None,
        EntryType::EntryConfChange => {
            let cc = ConfChange::decode(entry.data.clone())
                .map_err(|e| format!("node {id}: undecodable ConfChange: {e}"))?;
            Some(live.raw.apply_conf_change(&cc))
        }
        EntryType::EntryConfChangeV2 => {
            let cc = ConfChangeV2::decode(entry.data.clone())
                .map_err(|e| format!("node {id}: undecodable ConfChangeV2: {e}"))?;
            Some(live.raw.apply_conf_change(&cc))
        }
    };
    sm.entries.push(SmEntry {
        term: entry.term,
        entry_type: entry.entry_type,
        data: entry.data,
    });
    sm.applied += 1;
    if let Some(result) = cc_result {
        let text = match result {
            Ok(cs) => {
                let text = format!("{cs:?}");
                let mut core = storage.wl();
                core.set_conf_state(cs);
                // The leader sends a node it adds the latest snapshot `MemStorage` holds;
                // one from before the change would not include that node, which refuses it.
                // So, as an application using `MemStorage` must, snapshot the new membership.
                core.create_snapshot(sm.applied, None, sm.encode())
                    .map_err(|e| format!("node {id} could not snapshot at {}: {e}", sm.applied))?;
                stats.conf_changes += 1;
                text
            }
            Err(Error::ConfChangeInvalid(why)) => format!("refused: {why}"),
            Err(e) => return Err(format!("node {id} failed to apply a conf change: {e}")),
        };
        trace.push(
            step,
            Event::ApplyConfChange {
                id,
                index: entry.index,
                result: text,
            },
        );
    }
    Ok(())
}

fn value_bytes(value: u64) -> Bytes {
    let mut v = b"v".to_vec();
    v.extend_from_slice(&value.to_le_bytes());
    v.into()
}

fn flatten(result: std::thread::Result<Check>) -> Check {
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-string panic".to_owned());
            Err(format!("panic: {msg}"))
        }
    }
}

/// Runs one seed.
///
/// # Errors
/// The first violated property, with the seed and the trace.
pub fn run_seed(seed: u64, steps: u64) -> Result<Outcome, Failure> {
    let params = Params::new(seed, steps);
    match Sim::new(params) {
        Ok(sim) => sim.run(),
        Err(message) => Err(Failure {
            seed,
            step: 0,
            message,
            context: String::new(),
        }),
    }
}
