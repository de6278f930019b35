//! The raft log GC worker: deletes log entries that a compaction truncated.
//!
//! Deleting them is safe at any later time: they precede the truncated index, which is
//! durable before a task is scheduled, so nothing reads them again.

use engines::Engine;
use tracing::{debug, error};

use crate::keys::{self, CF_RAFT};
use crate::worker::Runnable;

/// Delete the raft log of `region_id` in `[start_index, end_index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftLogGcTask {
    /// The region.
    pub region_id: u64,
    /// The first index to delete.
    pub start_index: u64,
    /// One past the last index to delete.
    pub end_index: u64,
}

impl RaftLogGcTask {
    /// Runs the deletion on `engine`.
    ///
    /// # Errors
    /// An engine failure.
    pub fn run_on<E: Engine>(&self, engine: &E) -> engines::Result<()> {
        let from = keys::raft_log_key(self.region_id, self.start_index);
        let to = keys::raft_log_key(self.region_id, self.end_index);
        engine.delete_range(CF_RAFT, from.as_slice()..to.as_slice())?;
        crate::store_metrics::log_gc(self.end_index.saturating_sub(self.start_index));
        Ok(())
    }
}

/// Runs [`RaftLogGcTask`]s against the raft engine.
#[derive(Debug)]
pub struct RaftLogGcRunner<E> {
    engine: E,
}

impl<E: Engine> RaftLogGcRunner<E> {
    /// A runner deleting from `engine`.
    #[must_use]
    pub fn new(engine: E) -> Self {
        Self { engine }
    }
}

impl<E: Engine> Runnable for RaftLogGcRunner<E> {
    type Task = RaftLogGcTask;

    fn run(&mut self, task: RaftLogGcTask) {
        match task.run_on(&self.engine) {
            Ok(()) => debug!(?task, "raft log deleted"),
            // The entries stay as unreachable garbage; the next compaction's range covers
            // only newer entries, so this is logged, not retried.
            Err(e) => error!(?task, "raft log GC failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use engines::{Engine, MemoryEngine, Peekable, WriteBatch, WriteOptions};

    use super::*;
    use crate::worker::Worker;

    #[test]
    fn gc_worker_deletes_exactly_the_truncated_range() {
        let engine = MemoryEngine::new(&[CF_RAFT]).unwrap();
        let mut wb = engine.write_batch();
        for index in 1..=20 {
            wb.put(CF_RAFT, &keys::raft_log_key(7, index), b"entry")
                .unwrap();
        }
        engine.write(&wb, WriteOptions::synced()).unwrap();
        let worker =
            Worker::start("raftlog-gc-test", 4, RaftLogGcRunner::new(engine.clone())).unwrap();
        let task = RaftLogGcTask {
            region_id: 7,
            start_index: 1,
            end_index: 11,
        };
        assert!(worker.scheduler().schedule(task).is_ok());
        // Dropping the worker runs every queued task before the thread is joined.
        drop(worker);
        for index in 1..=20 {
            let present = engine
                .get(CF_RAFT, &keys::raft_log_key(7, index))
                .unwrap()
                .is_some();
            assert_eq!(present, index > 10, "entry {index}");
        }
    }
}
