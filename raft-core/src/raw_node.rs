//! The thread-safe-to-wrap, I/O-free interface an application drives.

use std::collections::VecDeque;

use bytes::Bytes;
use prost::Message as _;

use crate::conf_change::ConfChangeI;
use crate::config::Config;
use crate::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType};
use crate::error::{Error, Result};
use crate::raft::{Raft, SoftState, StateRole, is_local_msg, is_response_msg};
use crate::ready::Ready;
use crate::status::Status;
use crate::storage::Storage;

/// Whether a snapshot reached its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received and applied it.
    Finish,
    /// Sending or applying failed; the leader will try again.
    Failure,
}

/// What a `Ready` asked to persist, remembered until the application confirms it.
#[derive(Debug, Clone, Copy)]
struct ReadyRecord {
    number: u64,
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    /// The term of a hard state whose term or vote changed.
    hard_state_term: Option<u64>,
}

/// The application's handle on a Raft node: feed it ticks, messages and proposals; take
/// its [`Ready`]; tell it what was persisted and applied.
///
/// Persistence may be synchronous (`ready`, persist, `advance`) or pipelined: several
/// `Ready`s may be outstanding, confirmed in order with
/// [`on_persist_ready`](Self::on_persist_ready), and applying confirmed with
/// [`advance_apply_to`](Self::advance_apply_to).
#[derive(Debug)]
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    last_number: u64,
    /// Readies handed out and not yet confirmed persisted, oldest first.
    unpersisted: VecDeque<ReadyRecord>,
    /// The term of the newest hard state known to be on disk. A leader sends before
    /// persisting only once its term is durable: no message of a term may leave the node
    /// before the node's own vote in that term is durable.
    durable_term: u64,
}

impl<S: Storage> RawNode<S> {
    /// A node over `store` with `config`.
    ///
    /// # Errors
    /// An invalid config, a storage failure, or an inconsistent persisted state.
    pub fn new(config: &Config, store: S) -> Result<Self> {
        let raft = Raft::new(config, store)?;
        let prev_hard_state = raft.hard_state();
        let durable_term = prev_hard_state.term;
        Ok(Self {
            prev_soft_state: raft.soft_state(),
            prev_hard_state,
            raft,
            last_number: 0,
            unpersisted: VecDeque::new(),
            durable_term,
        })
    }

    /// The state machine.
    #[must_use]
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// The state machine, mutably (tests and advanced uses).
    pub fn raft_mut(&mut self) -> &mut Raft<S> {
        &mut self.raft
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        self.raft.store()
    }

    /// The store, mutably (an application persisting a `Ready` updates its own storage's
    /// cached state through this).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.raft_log_mut().store
    }

    /// Advances the logical clock by one tick.
    ///
    /// # Errors
    /// A storage failure.
    pub fn tick(&mut self) -> Result<()> {
        self.raft.tick()
    }

    /// Starts an election now.
    ///
    /// # Errors
    /// A storage failure.
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::MsgHup as i32,
            ..Default::default()
        })
    }

    /// Proposes `data` for the log.
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] when it cannot be appended or forwarded now.
    pub fn propose(&mut self, context: Bytes, data: Bytes) -> Result<()> {
        let entry = Entry {
            data,
            context,
            ..Default::default()
        };
        self.propose_entries(vec![entry])
    }

    /// Proposes several entries in one step (one message, one broadcast).
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] when they cannot be appended or forwarded now.
    pub fn propose_entries(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.raft.propose(entries)
    }

    /// Proposes a membership change (a `ConfChange` or a `ConfChangeV2`).
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] when another change is pending or it cannot be appended.
    pub fn propose_conf_change(&mut self, context: Bytes, cc: &impl ConfChangeI) -> Result<()> {
        let (entry_type, data) = match cc.as_v1() {
            Some(v1) => (EntryType::EntryConfChange, v1.encode_to_vec()),
            None => (EntryType::EntryConfChangeV2, cc.as_v2().encode_to_vec()),
        };
        let entry = Entry {
            entry_type: entry_type as i32,
            data: data.into(),
            context,
            ..Default::default()
        };
        self.propose_entries(vec![entry])
    }

    /// Applies a committed membership change; persist the returned `ConfState`.
    ///
    /// # Errors
    /// [`Error::ConfChangeInvalid`] when the change does not fit the configuration.
    pub fn apply_conf_change(&mut self, cc: &impl ConfChangeI) -> Result<ConfState> {
        self.raft.apply_conf_change(&cc.as_v2())
    }

    /// Hands the node a message from a peer.
    ///
    /// # Errors
    /// [`Error::StepLocalMsg`] for local-only message types, [`Error::StepPeerNotFound`]
    /// for a response from a non-member, [`Error::InvalidMessage`] for malformed input.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let msg_type = MessageType::try_from(m.msg_type)
            .map_err(|_| Error::InvalidMessage(format!("unknown message type {}", m.msg_type)))?;
        if is_local_msg(msg_type) {
            return Err(Error::StepLocalMsg);
        }
        if is_response_msg(msg_type) && !self.raft.tracker().progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Sets whether a new commit index waits for the next append or heartbeat to reach
    /// the followers (see [`Config::skip_bcast_commit`](crate::Config::skip_bcast_commit)).
    pub fn set_skip_bcast_commit(&mut self, skip: bool) {
        self.raft.set_skip_bcast_commit(skip);
    }

    /// Makes the commit of the entry at `index` reach the followers at once, even when
    /// commits are not broadcast (see [`Raft::broadcast_commit_of`]).
    pub fn broadcast_commit_of(&mut self, index: u64) {
        self.raft.broadcast_commit_of(index);
    }

    /// Asks the leader to hand leadership to `transferee`.
    ///
    /// # Errors
    /// A storage failure.
    pub fn transfer_leader(&mut self, transferee: u64) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::MsgTransferLeader as i32,
            from: transferee,
            ..Default::default()
        })
    }

    /// Requests a linearizable read; the answer comes back in `Ready::read_states` with
    /// the same `context`, which should be unique per request.
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] when there is no leader to ask.
    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::MsgReadIndex as i32,
            context,
            ..Default::default()
        })
    }

    /// Reports that `id` could not be reached; the leader stops streaming to it.
    pub fn report_unreachable(&mut self, id: u64) {
        let m = Message {
            msg_type: MessageType::MsgUnreachable as i32,
            from: id,
            ..Default::default()
        };
        // Only a leader acts on it, and it cannot fail.
        let _ = self.raft.step(m);
    }

    /// Reports the outcome of sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        let m = Message {
            msg_type: MessageType::MsgSnapStatus as i32,
            from: id,
            reject: status == SnapshotStatus::Failure,
            ..Default::default()
        };
        // Only a leader acts on it, and it cannot fail.
        let _ = self.raft.step(m);
    }

    /// Whether a `Ready` has anything in it.
    #[must_use]
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        let log = raft.raft_log();
        raft.soft_state() != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || raft.has_pending_messages()
            || !log.unstable.next_entries().is_empty()
            || log.unstable.next_snapshot().is_some()
            || log.has_next_committed_entries()
            || raft.has_read_states()
    }

    /// Collects what the application must do now. See [`Ready`] for the order.
    ///
    /// # Errors
    /// A storage failure while reading entries.
    pub fn ready(&mut self) -> Result<Ready> {
        let mut messages = self.raft.take_messages()?;
        self.last_number += 1;
        let number = self.last_number;
        let raft = &mut self.raft;

        let soft_state = raft.soft_state();
        let soft_state = (soft_state != self.prev_soft_state).then(|| {
            self.prev_soft_state = soft_state;
            soft_state
        });

        let log = raft.raft_log_mut();
        let entries = log.unstable.next_entries().to_vec();
        let snapshot = log.unstable.next_snapshot().cloned().map(Box::new);
        log.unstable.accept_in_progress();
        let committed_entries = log.next_committed_entries()?;
        if let Some(last) = committed_entries.last() {
            log.accept_applying(last.index);
        }
        raft.reduce_uncommitted_bytes(&committed_entries);

        let hs = raft.hard_state();
        let durable_change =
            hs.term != self.prev_hard_state.term || hs.vote != self.prev_hard_state.vote;
        let hard_state = (hs != self.prev_hard_state).then(|| {
            self.prev_hard_state = hs;
            hs
        });

        let send_now = raft.state() == StateRole::Leader
            && !durable_change
            && self.durable_term == raft.term();
        let persisted_messages = if send_now {
            Vec::new()
        } else {
            std::mem::take(&mut messages)
        };

        let record = ReadyRecord {
            number,
            last_entry: entries.last().map(|e| (e.index, e.term)),
            snapshot_index: snapshot
                .as_ref()
                .and_then(|s| s.metadata.as_ref())
                .map(|m| m.index),
            hard_state_term: durable_change.then_some(hs.term),
        };
        if record.last_entry.is_some()
            || record.snapshot_index.is_some()
            || record.hard_state_term.is_some()
        {
            self.unpersisted.push_back(record);
        }
        Ok(Ready {
            number,
            soft_state,
            hard_state,
            must_sync: !entries.is_empty() || snapshot.is_some() || durable_change,
            entries,
            snapshot,
            committed_entries,
            messages,
            persisted_messages,
            read_states: self.raft.take_read_states(),
        })
    }

    /// Confirms that everything asked by the `Ready`s up to `number` is persisted (and any
    /// snapshot in them applied to the state machine). A leader may commit as a result.
    ///
    /// # Errors
    /// A storage failure.
    pub fn on_persist_ready(&mut self, number: u64) -> Result<()> {
        while let Some(record) = self.unpersisted.front().copied() {
            if record.number > number {
                break;
            }
            self.unpersisted.pop_front();
            if let Some(index) = record.snapshot_index {
                self.raft.on_persist_snapshot(index);
            }
            if let Some((index, term)) = record.last_entry {
                self.raft.on_persist_entries(index, term)?;
            }
            if let Some(term) = record.hard_state_term {
                self.durable_term = self.durable_term.max(term);
            }
        }
        Ok(())
    }

    /// Confirms that every committed entry handed out so far is applied.
    ///
    /// # Errors
    /// A storage failure.
    pub fn advance_apply(&mut self) -> Result<()> {
        let applying = self.raft.raft_log().applying;
        self.raft.commit_apply(applying)
    }

    /// Confirms that the committed entries up to `applied` are applied.
    ///
    /// # Errors
    /// A storage failure.
    pub fn advance_apply_to(&mut self, applied: u64) -> Result<()> {
        self.raft.commit_apply(applied)
    }

    /// Confirms a `Ready` was fully handled: persisted, sent and applied.
    ///
    /// # Errors
    /// A storage failure.
    pub fn advance(&mut self, rd: Ready) -> Result<()> {
        self.on_persist_ready(rd.number)?;
        self.advance_apply()
    }

    /// The node's state, with every peer's progress when it is the leader.
    #[must_use]
    pub fn status(&self) -> Status {
        Status::new(&self.raft)
    }
}
