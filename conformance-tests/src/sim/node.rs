//! [`Node`]: one store of the simulation with its engines, mailbox and region worker, all
//! driven by the simulator's events.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use crossbeam_channel::Receiver;
use engines::{Engine, MemoryEngine};
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::region_worker::{RegionRunner, RegionTask};
use raft_store::worker::Scheduler;
use raft_store::{Config, RaftMessageSender, SnapManager, Store, StoreMsg};

/// Raft messages the stores sent during one iteration: (from, to, message).
pub(crate) type Outbox = Rc<RefCell<Vec<(u64, u64, RaftMessage)>>>;

/// A store's sender: messages wait in the simulator's outbox until the network decides
/// their fate.
#[derive(Debug)]
pub(crate) struct SimSender {
    from: u64,
    outbox: Outbox,
}

impl RaftMessageSender for SimSender {
    fn send(&mut self, to_store: u64, msg: RaftMessage) {
        self.outbox.borrow_mut().push((self.from, to_store, msg));
    }

    fn flush(&mut self) {}
}

/// A store of the simulation.
pub(crate) type SimStore = Store<MemoryEngine, MemoryEngine, SimSender>;

type Task = RegionTask<<MemoryEngine as Engine>::Snapshot>;

/// Region tasks queued beyond this wait in the store (it retries handing them over).
const REGION_QUEUE: usize = 64;

/// A running store: the store, its region worker's queue and runner.
pub(crate) struct Running {
    /// The store.
    pub(crate) store: SimStore,
    tasks: Receiver<Task>,
    runner: RegionRunner<MemoryEngine, MemoryEngine>,
}

/// One store's machine: its engines (which survive crashes, minus unsynced writes), its
/// snapshot directory, and the store when it runs.
pub(crate) struct Node {
    id: u64,
    raft: MemoryEngine,
    kv: MemoryEngine,
    /// The staged snapshots (on disk: they survive crashes).
    pub(crate) snap_mgr: SnapManager,
    /// The store, `None` while crashed.
    pub(crate) running: Option<Running>,
    /// Messages waiting for the store's next iteration.
    pub(crate) mailbox: Vec<StoreMsg>,
    /// Whether an iteration is scheduled.
    pub(crate) run_scheduled: bool,
    /// Whether a region task is scheduled.
    pub(crate) task_scheduled: bool,
    /// Bumped by each crash: events scheduled for an earlier life are stale.
    pub(crate) incarnation: u64,
}

impl Node {
    /// A machine over fresh engines (the caller bootstraps them before [`Self::start`]).
    pub(crate) fn new(id: u64, snap_dir: &Path, cfg: &Config) -> Self {
        Self {
            id,
            raft: MemoryEngine::new(&[raft_store::keys::CF_RAFT]).expect("a memory engine opens"),
            kv: MemoryEngine::new(&[raft_store::keys::CF_DEFAULT, raft_store::keys::CF_META])
                .expect("a memory engine opens"),
            snap_mgr: SnapManager::open(snap_dir.join(format!("store-{id}")), cfg)
                .expect("a snapshot directory opens"),
            running: None,
            mailbox: Vec::new(),
            run_scheduled: false,
            task_scheduled: false,
            incarnation: 0,
        }
    }

    /// The raft engine.
    pub(crate) fn raft(&self) -> &MemoryEngine {
        &self.raft
    }

    /// The kv engine.
    pub(crate) fn kv(&self) -> &MemoryEngine {
        &self.kv
    }

    /// The store, when running.
    pub(crate) fn store(&self) -> Option<&SimStore> {
        self.running.as_ref().map(|r| &r.store)
    }

    /// Opens the store from the engines, its region tasks queued for the simulator.
    ///
    /// # Errors
    /// What [`Store::open`] fails with.
    pub(crate) fn start(&mut self, cfg: &Config, outbox: &Outbox) -> raft_store::Result<()> {
        let sender = SimSender {
            from: self.id,
            outbox: outbox.clone(),
        };
        let mut store = Store::open(
            self.id,
            cfg.clone(),
            self.raft.clone(),
            self.kv.clone(),
            sender,
            self.snap_mgr.clone(),
        )?;
        let (scheduler, tasks) = Scheduler::manual(REGION_QUEUE);
        store.set_region_scheduler(scheduler);
        // Results are returned by `execute` and delivered as events, never notified.
        let runner = store.region_runner(Box::new(|_| {}));
        self.running = Some(Running {
            store,
            tasks,
            runner,
        });
        // Open may have queued tasks (an interrupted apply or cleanup) and needs an
        // iteration to hand them over.
        self.mailbox.clear();
        Ok(())
    }

    /// A power loss: the store, its mailbox and its queued region tasks are gone, and
    /// every unsynced engine write is dropped.
    pub(crate) fn crash(&mut self) {
        self.running = None;
        self.mailbox.clear();
        self.run_scheduled = false;
        self.task_scheduled = false;
        self.incarnation += 1;
        self.raft.simulate_crash();
        self.kv.simulate_crash();
        self.raft = self.raft.reopen();
        self.kv = self.kv.reopen();
    }

    /// One raft worker iteration over the whole mailbox (nothing when it is empty).
    ///
    /// # Errors
    /// A fatal store error.
    pub(crate) fn run(&mut self) -> raft_store::Result<()> {
        let Some(running) = self.running.as_mut() else {
            return Ok(());
        };
        let msgs = std::mem::take(&mut self.mailbox);
        running.store.handle_msgs(msgs)
    }

    /// Whether the region worker has a task waiting.
    pub(crate) fn has_region_task(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.tasks.is_empty())
    }

    /// Runs the region worker's next task; its result waits in the mailbox.
    pub(crate) fn run_region_task(&mut self) -> Option<String> {
        let running = self.running.as_mut()?;
        let task = running.tasks.try_recv().ok()?;
        let name = format!("{task:?}");
        let result = running.runner.execute(task);
        self.mailbox
            .push(StoreMsg::RegionTaskDone(Box::new(result)));
        Some(name)
    }
}
