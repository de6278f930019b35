//! Where a store's group commits to the raft engine are written: on the raft worker
//! (inline), on a writer thread, or queued until the next iteration (for deterministic
//! tests of the asynchronous path).
//!
//! With a writer thread the raft worker does not sit in the fsync: while one round's
//! entries are being made durable it handles the acknowledgements and proposals that
//! arrive, commits, applies and answers, and the next round's batch is ready when the
//! disk is. The store learns of each completion ([`RaftLogWriter::take_completed`]) and
//! only then sends the persisted messages of the rounds in the batch and tells raft-core
//! (`on_persist_ready`).

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};
use engines::{Engine, WriteBatch, WriteOptions};
use tracing::error;

use crate::error::{Error, Result};

/// Tells the raft worker that a write completed (it then calls
/// [`RaftLogWriter::take_completed`]). Must not block.
pub type WrittenNotifier = Box<dyn Fn() + Send>;

/// One round's raft-engine batch on its way to disk.
pub(crate) struct Job<B> {
    batch: B,
    sync: bool,
    /// Peers whose Ready the batch carries (a metric).
    peers: usize,
}

/// A finished job: its outcome and its batch, emptied for the next write.
struct Done<B> {
    result: Result<()>,
    batch: B,
}

/// Where the store's raft-engine batches are written. At most one batch is in flight
/// (the store gathers later rounds meanwhile).
pub(crate) enum RaftLogWriter<ER: Engine> {
    /// By the raft worker, before its round ends (the default).
    Inline,
    /// At the start of the store's next iteration: the asynchronous order of events
    /// (answers and the kv write before the raft write; persisted messages an iteration
    /// later; rounds gathering while one is written) without a thread.
    Deferred(Option<Job<ER::WriteBatch>>),
    /// By a writer thread.
    Threaded(WriterThread<ER>),
}

impl<ER: Engine> RaftLogWriter<ER> {
    /// A writer that writes each batch at the start of the store's next iteration.
    pub(crate) fn deferred() -> Self {
        Self::Deferred(None)
    }

    /// Whether batches are written after the round that made them ends.
    pub(crate) fn is_async(&self) -> bool {
        !matches!(self, Self::Inline)
    }

    /// Hands `batch` over (asynchronous writers only, one batch at a time); the store
    /// learns that it is written from [`Self::take_completed`].
    pub(crate) fn submit(&mut self, batch: ER::WriteBatch, sync: bool, peers: usize) {
        let job = Job { batch, sync, peers };
        match self {
            Self::Inline => unreachable!("the store writes inline batches itself"),
            Self::Deferred(slot) => {
                debug_assert!(slot.is_none(), "one batch in flight at a time");
                *slot = Some(job);
            }
            Self::Threaded(thread) => thread.submit(job),
        }
    }

    /// The emptied batch of the write in flight once it is written (a deferred writer
    /// writes it now; with `wait`, waits for it); `None` while it is not.
    ///
    /// # Errors
    /// A failed write: the engine is poisoned and the store must stop.
    pub(crate) fn take_completed(
        &mut self,
        engine: &ER,
        wait: bool,
    ) -> Result<Option<ER::WriteBatch>> {
        match self {
            Self::Inline => Ok(None),
            Self::Deferred(slot) => {
                let Some(mut job) = slot.take() else {
                    return Ok(None);
                };
                write_round(engine, &job.batch, job.sync, job.peers)?;
                recycle(engine, &mut job.batch);
                Ok(Some(job.batch))
            }
            Self::Threaded(thread) => thread.take_completed(wait),
        }
    }
}

/// A write batch past this many operations (a snapshot's deletions, say) is dropped after
/// its write rather than kept for the next, so one large round does not pin its memory.
pub(crate) const KEPT_WRITE_BATCH_OPS: usize = 1 << 16;

/// Empties `batch` for a later round, or replaces it with a new one when it grew past
/// [`KEPT_WRITE_BATCH_OPS`].
pub(crate) fn recycle<E: Engine>(engine: &E, batch: &mut E::WriteBatch) {
    if batch.len() > KEPT_WRITE_BATCH_OPS {
        *batch = engine.write_batch();
    } else {
        batch.clear();
    }
}

/// Writes one round's batch and records the group-commit metrics.
pub(crate) fn write_round<ER: Engine>(
    engine: &ER,
    batch: &ER::WriteBatch,
    sync: bool,
    peers: usize,
) -> Result<()> {
    // The clock read here only feeds a metric; it never steers the state machines.
    let started = std::time::Instant::now();
    engine.write(batch, WriteOptions { sync })?;
    crate::store_metrics::group_commit(peers, sync, started.elapsed().as_secs_f64());
    Ok(())
}

/// The writer thread and the two queues to and from it.
pub(crate) struct WriterThread<ER: Engine> {
    jobs: Option<Sender<Job<ER::WriteBatch>>>,
    done: Receiver<Done<ER::WriteBatch>>,
    /// Whether a batch was submitted and not yet taken as completed.
    in_flight: bool,
    thread: Option<JoinHandle<()>>,
}

impl<ER: Engine> WriterThread<ER> {
    /// Starts `name`, writing to `engine` and calling `notify` after each batch.
    pub(crate) fn start(engine: ER, name: String, notify: WrittenNotifier) -> Result<Self> {
        let (jobs, job_rx) = unbounded::<Job<ER::WriteBatch>>();
        let (done_tx, done) = unbounded();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // Jobs still queued when the store goes are written: the loop ends only
                // once the channel is empty and disconnected.
                for mut job in job_rx {
                    let result = write_round(&engine, &job.batch, job.sync, job.peers);
                    let failed = result.is_err();
                    recycle(&engine, &mut job.batch);
                    if done_tx
                        .send(Done {
                            result,
                            batch: job.batch,
                        })
                        .is_err()
                    {
                        return;
                    }
                    notify();
                    if failed {
                        // The engine is poisoned: every later write would fail too.
                        return;
                    }
                }
            })
            .map_err(|e| Error::Other(format!("cannot spawn the raft log writer: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            in_flight: false,
            thread: Some(thread),
        })
    }

    fn submit(&mut self, job: Job<ER::WriteBatch>) {
        // The thread leaves its loop only after a failed write, whose error the store
        // takes (and stops on) before it could submit again; a send to a stopped thread
        // is caught by `take_completed` finding the channel closed.
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent {
            self.in_flight = true;
        } else {
            self.jobs = None;
        }
    }

    fn take_completed(&mut self, wait: bool) -> Result<Option<ER::WriteBatch>> {
        if self.jobs.is_none() {
            return Err(writer_stopped());
        }
        if !self.in_flight {
            return Ok(None);
        }
        let done = if wait {
            self.done.recv().map_err(|_| writer_stopped())?
        } else {
            match self.done.try_recv() {
                Ok(done) => done,
                Err(TryRecvError::Empty) => return Ok(None),
                // The thread died (a panic in the engine) without answering.
                Err(TryRecvError::Disconnected) => return Err(writer_stopped()),
            }
        };
        self.in_flight = false;
        done.result?;
        Ok(Some(done.batch))
    }
}

/// The error of a writer thread that left its loop (after a failed write or a panic).
fn writer_stopped() -> Error {
    Error::Other("the raft log writer has stopped".into())
}

impl<ER: Engine> Drop for WriterThread<ER> {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued and leave.
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the raft log writer panicked");
        }
    }
}
