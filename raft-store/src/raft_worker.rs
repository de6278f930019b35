//! The production driver of a [`Store`]: one thread, a bounded mailbox, a real clock.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use engines::Engine;
use tracing::{debug, error, info};

use crate::error::{Error, Result};
use crate::msg::StoreMsg;
use crate::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use crate::peer::error_response;
use crate::sender::RaftMessageSender;
use crate::store::Store;
use crate::worker::Worker;

/// The capacity of a store's mailbox; past it, clients get `ServerIsBusy` and Raft
/// messages are dropped (Raft retransmits).
pub const MAILBOX_CAPACITY: usize = 16 * 1024;

/// Region tasks queued for the region worker; past it the store keeps them itself.
pub const REGION_QUEUE_TASKS: usize = 64;

/// A cloneable handle for sending to a store's raft worker.
#[derive(Debug, Clone)]
pub struct StoreMailbox {
    tx: Sender<StoreMsg>,
}

impl StoreMailbox {
    /// A mailbox and its receiving end.
    #[must_use]
    pub fn new(capacity: usize) -> (Self, Receiver<StoreMsg>) {
        let (tx, rx) = bounded(capacity);
        (Self { tx }, rx)
    }

    /// Delivers `msg` without blocking.
    ///
    /// # Errors
    /// [`Error::ServerIsBusy`] when the mailbox is full, [`Error::Stopped`] when the
    /// worker is gone. The message is dropped (and a command's callback is not called).
    pub fn try_send(&self, msg: StoreMsg) -> Result<()> {
        self.tx.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => Error::ServerIsBusy("store mailbox is full".into()),
            TrySendError::Disconnected(_) => Error::Stopped,
        })
    }

    /// Delivers `msg`, waiting while the mailbox is full: for workers and transport
    /// threads whose messages must not be lost (region task results, snapshot statuses,
    /// received snapshots). Never call it from the raft worker itself.
    ///
    /// # Errors
    /// [`Error::Stopped`] when the worker is gone.
    pub fn send(&self, msg: StoreMsg) -> Result<()> {
        self.tx.send(msg).map_err(|_| Error::Stopped)
    }

    /// Runs a command and waits for its response (asynchronously). A full mailbox or a
    /// stopped store answers with the typed error in the response header.
    pub async fn execute(&self, request: RaftCmdRequest) -> RaftCmdResponse {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = StoreMsg::Command {
            request: Box::new(request),
            callback: Box::new(move |resp| {
                // The caller may have given up waiting; that is fine.
                let _ = tx.send(resp);
            }),
        };
        if let Err(e) = self.try_send(msg) {
            return error_response(&e);
        }
        rx.await.unwrap_or_else(|_| error_response(&Error::Stopped))
    }
}

/// A running raft worker thread.
#[derive(Debug)]
pub struct RaftWorker {
    mailbox: StoreMailbox,
    stop: Sender<()>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl RaftWorker {
    /// Starts a thread that drives `store`: every message in the mailbox is handled in
    /// batches of at most `max_batch_msgs`, and a `Tick` is injected every `tick`. The
    /// store's region tasks (snapshots, cleanup of destroyed peers) run on a region
    /// worker thread of their own, stopped after the raft worker.
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn spawn<ER, EK, S>(
        mut store: Store<ER, EK, S>,
        mailbox: StoreMailbox,
        rx: Receiver<StoreMsg>,
        tick: Duration,
        max_batch_msgs: usize,
    ) -> Result<Self>
    where
        ER: Engine,
        EK: Engine,
        S: RaftMessageSender + Send + 'static,
    {
        let results = mailbox.clone();
        let runner = store.region_runner(Box::new(move |msg| {
            if results.send(msg).is_err() {
                debug!("store stopped before a region task result");
            }
        }));
        let region_worker = Worker::start(
            &format!("region-{}", store.store_id()),
            REGION_QUEUE_TASKS,
            runner,
        )?;
        store.set_region_scheduler(region_worker.scheduler());
        if store.config().raft_async_write {
            let wake = mailbox.clone();
            store.start_raft_log_writer(
                format!("raft-writer-{}", store.store_id()),
                Box::new(move || {
                    // A full mailbox means the worker is busy and takes every completion
                    // at the start of its next iteration anyway.
                    let _ = wake.try_send(StoreMsg::RaftLogWritten);
                }),
            )?;
        }
        let (stop, stop_rx) = bounded(1);
        let name = format!("raft-worker-{}", store.store_id());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let result = run(store, rx, stop_rx, tick, max_batch_msgs);
                // The store (and its scheduler) is gone: the region worker finishes its
                // queue and stops.
                drop(region_worker);
                result
            })
            .map_err(|e| Error::Other(format!("cannot spawn the raft worker: {e}")))?;
        Ok(Self {
            mailbox,
            stop,
            thread: Some(thread),
        })
    }

    /// The worker's mailbox.
    #[must_use]
    pub fn mailbox(&self) -> &StoreMailbox {
        &self.mailbox
    }

    /// Stops the worker after the batch in progress and waits for it.
    ///
    /// # Errors
    /// The fatal error that stopped the worker earlier, if any.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        let _ = self.stop.try_send(());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Other("the raft worker panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for RaftWorker {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            error!("raft worker stopped with an error: {e}");
        }
    }
}

fn run<ER: Engine, EK: Engine, S: RaftMessageSender>(
    mut store: Store<ER, EK, S>,
    rx: Receiver<StoreMsg>,
    stop: Receiver<()>,
    tick: Duration,
    max_batch_msgs: usize,
) -> Result<()> {
    let store_id = store.store_id();
    info!(store_id, "raft worker started");
    let mut next_tick = Instant::now() + tick;
    let mut batch = Vec::with_capacity(max_batch_msgs);
    loop {
        if stop.try_recv().is_ok() {
            break;
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(msg) => {
                batch.push(msg);
                while batch.len() < max_batch_msgs {
                    match rx.try_recv() {
                        Ok(msg) => batch.push(msg),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now >= next_tick {
            batch.push(StoreMsg::Tick);
            // Ticks missed while busy are not replayed: time in Raft is a rate, and a
            // burst of catch-up ticks would trigger spurious elections.
            next_tick = now + tick;
        }
        if let Err(e) = store.handle_msgs(batch.drain(..)) {
            error!(store_id, "raft worker stopping on a fatal error: {e}");
            return Err(e);
        }
    }
    // Gathered raft writes go to disk before the store does (nothing unwritten was
    // promised, so dropping them would be safe, but a clean stop should not look like
    // a crash).
    store.flush_raft_writes()?;
    info!(store_id, "raft worker stopped");
    Ok(())
}
