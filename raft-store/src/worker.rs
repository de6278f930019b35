//! Background workers: a [`Runnable`] fed by a bounded queue on its own thread.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tracing::{error, info};

use crate::error::{Error, Result};

/// What a worker does with each task. Runs on the worker's thread, one task at a time.
pub trait Runnable: Send + 'static {
    /// The work item.
    type Task: Send + 'static;
    /// Does one task; failures are the runner's to report (log, metric, callback).
    fn run(&mut self, task: Self::Task);
}

/// Hands tasks to a worker without blocking.
#[derive(Debug)]
pub struct Scheduler<T> {
    tx: Sender<T>,
}

impl<T> Clone for Scheduler<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T> Scheduler<T> {
    /// A scheduler whose tasks nobody runs by itself: the caller drains the returned
    /// receiver and runs each task when it chooses (e.g. a deterministic simulator calling
    /// [`Runnable::run`] under its own clock). Holds at most `capacity` tasks.
    #[must_use]
    pub fn manual(capacity: usize) -> (Self, Receiver<T>) {
        let (tx, rx) = bounded(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Queues `task`; when the queue is full or the worker is gone, hands it back so the
    /// caller can run it itself or drop it.
    ///
    /// # Errors
    /// The task, unqueued.
    pub fn schedule(&self, task: T) -> std::result::Result<(), T> {
        self.tx.try_send(task).map_err(|e| match e {
            TrySendError::Full(t) | TrySendError::Disconnected(t) => t,
        })
    }
}

/// A thread running a [`Runnable`] over a bounded queue. Dropping it finishes the queued
/// tasks and joins the thread.
#[derive(Debug)]
pub struct Worker<T> {
    scheduler: Option<Scheduler<T>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts `runner` on a thread named `name` with a queue of `capacity` tasks.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start<R: Runnable<Task = T>>(
        name: &str,
        capacity: usize,
        mut runner: R,
    ) -> Result<Self> {
        let (tx, rx) = bounded::<T>(capacity.max(1));
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                info!(worker = %thread_name, "worker started");
                for task in rx {
                    runner.run(task);
                }
                info!(worker = %thread_name, "worker stopped");
            })
            .map_err(|e| Error::Other(format!("cannot spawn worker {name}: {e}")))?;
        Ok(Self {
            scheduler: Some(Scheduler { tx }),
            thread: Some(thread),
        })
    }

    /// A handle for queueing tasks.
    #[must_use]
    pub fn scheduler(&self) -> Scheduler<T> {
        self.scheduler
            .clone()
            .expect("the scheduler lives until drop")
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        // Closing our sender ends the loop once every other scheduler is gone too.
        self.scheduler.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("a worker thread panicked");
        }
    }
}
