//! What the application must do after the node changed: the `Ready` batch.

use crate::eraftpb::{Entry, HardState, Message, Snapshot};
use crate::raft::SoftState;
use crate::read_only::ReadState;

/// Everything the node needs the application to do, handed out by
/// [`RawNode::ready`](crate::RawNode::ready). Handle it in this order:
///
/// 1. send [`messages`](Self::messages) — they may go out before the rest is persisted
///    (a leader's appends: thesis §10.2.1);
/// 2. apply the [`snapshot`](Self::snapshot) to the state machine and persist it, append
///    [`entries`](Self::entries) to the log, persist the [`hard_state`](Self::hard_state);
///    sync to disk when [`must_sync`](Self::must_sync) is set;
/// 3. send [`persisted_messages`](Self::persisted_messages) — only now, because they
///    promise what was just persisted (votes, acknowledgements);
/// 4. apply [`committed_entries`](Self::committed_entries) to the state machine;
/// 5. call [`RawNode::advance`](crate::RawNode::advance) (or, when persisting and
///    applying run asynchronously, `on_persist_ready(number)` and `advance_apply*`).
#[derive(Debug, Default)]
pub struct Ready {
    pub(crate) number: u64,
    pub(crate) soft_state: Option<SoftState>,
    pub(crate) hard_state: Option<HardState>,
    pub(crate) entries: Vec<Entry>,
    /// Boxed: a snapshot is rare and large, and a `Ready` is moved several times.
    pub(crate) snapshot: Option<Box<Snapshot>>,
    pub(crate) committed_entries: Vec<Entry>,
    pub(crate) messages: Vec<Message>,
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) must_sync: bool,
}

impl Ready {
    /// The sequence number of this `Ready`, for `on_persist_ready`.
    #[must_use]
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The new soft state, when it changed.
    #[must_use]
    pub fn soft_state(&self) -> Option<&SoftState> {
        self.soft_state.as_ref()
    }

    /// The hard state to persist, when it changed.
    #[must_use]
    pub fn hard_state(&self) -> Option<&HardState> {
        self.hard_state.as_ref()
    }

    /// Entries to append to the log (they may overwrite a conflicting suffix).
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Takes the entries to append.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.entries)
    }

    /// A snapshot from the leader to apply and persist, if any.
    #[must_use]
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }

    /// Takes the snapshot.
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        self.snapshot.take().map(|s| *s)
    }

    /// Committed entries to apply, in order.
    #[must_use]
    pub fn committed_entries(&self) -> &[Entry] {
        &self.committed_entries
    }

    /// Takes the committed entries.
    pub fn take_committed_entries(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.committed_entries)
    }

    /// Messages that may be sent at once, before persisting this `Ready`.
    #[must_use]
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Takes the messages that may be sent at once.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Messages to send only after this `Ready`'s state is persisted.
    #[must_use]
    pub fn persisted_messages(&self) -> &[Message] {
        &self.persisted_messages
    }

    /// Takes the messages to send after persisting.
    pub fn take_persisted_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.persisted_messages)
    }

    /// Reads confirmed since the last `Ready`: serve each once the state machine has
    /// applied its index.
    #[must_use]
    pub fn read_states(&self) -> &[ReadState] {
        &self.read_states
    }

    /// Takes the confirmed reads.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// Whether the entries, snapshot or hard state must be synced to disk before the
    /// persisted messages go out (a commit-index change alone need not be).
    #[must_use]
    pub fn must_sync(&self) -> bool {
        self.must_sync
    }
}
