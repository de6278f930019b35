//! The read side of stable storage, as the Raft core sees it.

use crate::eraftpb::{ConfState, Entry, HardState, Snapshot};
use crate::error::StorageResult;

/// What stable storage holds when a node starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftState {
    /// The last persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The membership in force as of the last persisted state.
    pub conf_state: ConfState,
}

impl RaftState {
    /// Makes a state from its parts.
    #[must_use]
    pub fn new(hard_state: HardState, conf_state: ConfState) -> Self {
        Self {
            hard_state,
            conf_state,
        }
    }

    /// Whether storage holds any state at all (a brand-new node has none).
    #[must_use]
    pub fn initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }
}

/// The read side of a node's stable storage: the log and the state written through
/// [`Ready`](crate::Ready).
///
/// The application writes to storage itself (it persists each `Ready`); the core only
/// reads through this trait. The log always has a "dummy" position at `first_index() - 1`
/// whose term is known (the last compacted entry or the snapshot), so `term(first_index()
/// - 1)` succeeds.
///
/// # Correctness
/// - The log has no holes: every index in `[first_index, last_index]` is present.
/// - Everything returned has been made durable as the application claimed when it
///   acknowledged the `Ready` that carried it.
/// - `initial_state` returns the latest persisted hard state; a vote once persisted is
///   never forgotten.
///
/// # Errors
/// Each method returns [`StorageError::Compacted`] for indexes before the dummy
/// position, [`StorageError::Unavailable`] for indexes past `last_index`, and
/// [`StorageError::Other`] for real failures, which the core passes up.
pub trait Storage {
    /// The persisted hard state and membership.
    fn initial_state(&self) -> StorageResult<RaftState>;

    /// Entries in `[low, high)`, at most `max_size` bytes in total but always at least one
    /// entry when the range is not empty.
    fn entries(&self, low: u64, high: u64, max_size: Option<u64>) -> StorageResult<Vec<Entry>>;

    /// The term of the entry at `index`, which must lie in `[first_index - 1, last_index]`.
    fn term(&self, index: u64) -> StorageResult<u64>;

    /// The index of the first entry still in the log (the entries before it are in the
    /// latest snapshot). Implementations keep it in memory: it cannot fail.
    fn first_index(&self) -> u64;

    /// The index of the last entry in the log. Implementations keep it in memory: it
    /// cannot fail.
    fn last_index(&self) -> u64;

    /// The latest snapshot, whose index must be at least `request_index`. Returns
    /// [`StorageError::SnapshotTemporarilyUnavailable`] while one is being built; the core
    /// asks again later.
    ///
    /// The snapshot's `conf_state` must include the node it is sent to: a node refuses a
    /// snapshot that does not name it. So a snapshot taken before a membership change is
    /// stale for the nodes that change added; build a new one after applying a change (as
    /// raft-store does, at the applied index) or return `SnapshotTemporarilyUnavailable`.
    fn snapshot(&self, request_index: u64) -> StorageResult<Snapshot>;
}
