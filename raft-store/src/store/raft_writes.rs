//! The store's side of asynchronous raft writes: which Readies each batch persists, and
//! what happens once it is written.
//!
//! At most one batch is in flight. While it is written the raft worker goes on, and the
//! rounds it makes meanwhile gather in the store's raft batch; when the write completes
//! they leave together, with one fsync (group commit across iterations, as the inline
//! writer gets by sitting in the fsync while the mailbox fills).
//!
//! Invariants: a round's persisted messages (votes, append acknowledgements) leave, and
//! raft-core hears of its persistence (`on_persist_ready`), only after its batch is
//! written; batches are written in the order they were made; a peer is never replaced or
//! destroyed while a round of its region is unwritten (both flush first).

use std::collections::BTreeMap;

use engines::Engine;
use raft_core::eraftpb;

use super::{Store, send_messages};
use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::raft_log_writer::{RaftLogWriter, WriterThread, WrittenNotifier, recycle, write_round};
use crate::sender::RaftMessageSender;

/// A Ready whose raft writes are not yet known to be on disk.
pub(crate) struct PersistedReady {
    pub(crate) region_id: u64,
    /// The Ready's number, for `on_persist_ready`.
    pub(crate) number: u64,
    /// What it may send once written.
    pub(crate) messages: Vec<eraftpb::Message>,
}

/// Where the store's raft batches go, and the Readies waiting for them.
pub(crate) struct RaftWrites<ER: Engine> {
    writer: RaftLogWriter<ER>,
    /// The Readies of the batch being written (empty: none is).
    in_flight: Vec<PersistedReady>,
    /// The Readies whose writes gather in the store's raft batch for the next write.
    gathering: Vec<PersistedReady>,
    /// Whether the gathering batch must be fsynced.
    gathering_sync: bool,
    /// The emptied batch of the last completed write, for the next one (one write in
    /// flight needs at most one spare).
    spare: Option<ER::WriteBatch>,
}

impl<ER: Engine> RaftWrites<ER> {
    /// Writes made inline, before each round ends, or (`deferred`) at the start of the
    /// store's next iteration.
    pub(crate) fn new(deferred: bool) -> Self {
        Self {
            writer: if deferred {
                RaftLogWriter::deferred()
            } else {
                RaftLogWriter::Inline
            },
            in_flight: Vec::new(),
            gathering: Vec::new(),
            gathering_sync: false,
            spare: None,
        }
    }

    /// Whether batches are written after the round that made them.
    pub(crate) fn is_async(&self) -> bool {
        self.writer.is_async()
    }

    /// Whether a round's writes are not yet known to be on disk.
    pub(crate) fn is_pending(&self) -> bool {
        !self.in_flight.is_empty() || !self.gathering.is_empty()
    }

    fn holds_region(&self, region_id: u64) -> bool {
        self.in_flight
            .iter()
            .chain(&self.gathering)
            .any(|r| r.region_id == region_id)
    }

    /// Adds a round, whose writes the store put in its raft batch, to those gathering
    /// for the next write.
    pub(crate) fn gather(&mut self, round: Vec<PersistedReady>, sync: bool) {
        self.gathering.extend(round);
        self.gathering_sync |= sync;
    }

    /// Hands the gathered rounds' `batch` to the writer unless a write is running (the
    /// store then gets an empty batch for the next rounds).
    pub(crate) fn submit_if_idle(&mut self, batch: &mut ER::WriteBatch, engine: &ER) {
        if !self.in_flight.is_empty() || self.gathering.is_empty() {
            return;
        }
        let spare = self.spare.take().unwrap_or_else(|| engine.write_batch());
        let peers = self.gathering.len();
        self.writer
            .submit(std::mem::replace(batch, spare), self.gathering_sync, peers);
        self.in_flight = std::mem::take(&mut self.gathering);
        self.gathering_sync = false;
    }

    /// The Readies of the write in flight once it is written (with `wait`, waiting for
    /// it); `None` when there is none or it is still running.
    ///
    /// # Errors
    /// A failed write, or a writer that answered a wait without the write.
    fn take_written(&mut self, engine: &ER, wait: bool) -> Result<Option<Vec<PersistedReady>>> {
        if self.in_flight.is_empty() {
            return Ok(None);
        }
        match self.writer.take_completed(engine, wait)? {
            Some(batch) => {
                self.spare = Some(batch);
                Ok(Some(std::mem::take(&mut self.in_flight)))
            }
            // Acknowledging these Readies now would promise what is not on disk.
            None if wait => Err(Error::Other(
                "the raft log writer lost a batch in flight".into(),
            )),
            None => Ok(None),
        }
    }
}

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    /// Writes raft batches on a thread of its own, `name`, which calls `notify` after
    /// each (the raft worker then handles the completion in its next iteration). Writes
    /// pending in the current writer are finished first.
    ///
    /// # Errors
    /// A failed pending write, or a thread that cannot be spawned.
    pub fn start_raft_log_writer(&mut self, name: String, notify: WrittenNotifier) -> Result<()> {
        self.flush_raft_writes()?;
        let thread = WriterThread::start(self.raft_engine.clone(), name, notify)?;
        self.raft_writes.writer = RaftLogWriter::Threaded(thread);
        Ok(())
    }

    /// Whether some round's raft writes are not yet known to be on disk. A store with
    /// [`Config::raft_async_write`](crate::Config::raft_async_write) driven by hand (not
    /// by a [`RaftWorker`](crate::RaftWorker)) writes them at the start of its next
    /// [`handle_msgs`](Self::handle_msgs): its driver must run it again while this holds.
    #[must_use]
    pub fn has_unwritten_rounds(&self) -> bool {
        self.raft_writes.is_pending()
    }

    /// Finishes the Readies whose batch is written and submits the gathered rounds.
    pub(super) fn complete_raft_writes(&mut self) -> Result<()> {
        let writes = &mut self.raft_writes;
        if let Some(done) = writes.take_written(&self.raft_engine, false)? {
            // The next write starts before this one's messages go out.
            writes.submit_if_idle(&mut self.raft_wb, &self.raft_engine);
            finish(done, &mut self.peers, &mut self.sender)?;
        }
        Ok(())
    }

    /// Puts every round's raft writes on disk now: waits for the batch in flight, then
    /// writes the gathered ones here.
    ///
    /// # Errors
    /// A failed write; the store must stop.
    pub(crate) fn flush_raft_writes(&mut self) -> Result<()> {
        if let Some(done) = self.raft_writes.take_written(&self.raft_engine, true)? {
            finish(done, &mut self.peers, &mut self.sender)?;
        }
        let writes = &mut self.raft_writes;
        if !writes.gathering.is_empty() {
            write_round(
                &self.raft_engine,
                &self.raft_wb,
                writes.gathering_sync,
                writes.gathering.len(),
            )?;
            recycle(&self.raft_engine, &mut self.raft_wb);
            writes.gathering_sync = false;
            let done = std::mem::take(&mut writes.gathering);
            finish(done, &mut self.peers, &mut self.sender)?;
        }
        Ok(())
    }

    /// Flushes the raft writes before a round in which a peer with unwritten rounds
    /// takes a snapshot: that peer holds its messages while the snapshot applies, and
    /// the acknowledgements of its earlier rounds must not wait for (or be lost with)
    /// the snapshot.
    pub(super) fn flush_raft_writes_before_snapshots(&mut self) -> Result<()> {
        if !self.raft_writes.is_pending() {
            return Ok(());
        }
        let snapshot_coming = self.peers.iter().any(|(&region_id, peer)| {
            peer.raft_group().raft().raft_log().has_pending_snapshot()
                && self.raft_writes.holds_region(region_id)
        });
        if snapshot_coming {
            self.flush_raft_writes()?;
        }
        Ok(())
    }

    /// Flushes the raft writes if a round of `region_id` is among them.
    pub(crate) fn flush_raft_writes_of(&mut self, region_id: u64) -> Result<()> {
        if self.raft_writes.holds_region(region_id) {
            self.flush_raft_writes()?;
        }
        Ok(())
    }
}

/// Finishes Readies whose writes are on disk, in order.
fn finish<ER: Engine, EK: Engine, S: RaftMessageSender>(
    done: Vec<PersistedReady>,
    peers: &mut BTreeMap<u64, Peer<ER, EK>>,
    sender: &mut S,
) -> Result<()> {
    for ready in done {
        // A destroyed or replaced peer flushed its rounds first; a missing one is gone.
        if let Some(peer) = peers.get_mut(&ready.region_id) {
            on_ready_persisted(peer, ready.number, ready.messages, sender)?;
        }
    }
    Ok(())
}

/// What a Ready does once its raft writes are on disk: sends the messages that
/// promised durability (held while the peer applies a snapshot) and tells raft-core.
fn on_ready_persisted<ER: Engine, EK: Engine, S: RaftMessageSender>(
    peer: &mut Peer<ER, EK>,
    number: u64,
    messages: Vec<eraftpb::Message>,
    sender: &mut S,
) -> Result<()> {
    if peer.is_applying_snapshot() {
        peer.hold_messages(messages);
    } else {
        send_messages(peer, messages, sender);
    }
    peer.raft_group_mut().on_persist_ready(number)?;
    Ok(())
}
