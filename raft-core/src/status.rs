//! A snapshot of a node's state, for observability.

use crate::eraftpb::{ConfState, HardState};
use crate::raft::{Raft, SoftState, StateRole};
use crate::storage::Storage;
use crate::tracker::ProgressMap;

/// A node's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The node's id.
    pub id: u64,
    /// Term, vote and commit index.
    pub hard_state: HardState,
    /// Role and known leader.
    pub soft_state: SoftState,
    /// The applied index.
    pub applied: u64,
    /// The membership.
    pub conf_state: ConfState,
    /// Every peer's replication progress; only a leader has it.
    pub progress: Option<ProgressMap>,
}

impl Status {
    /// The status of `raft`.
    #[must_use]
    pub fn new<S: Storage>(raft: &Raft<S>) -> Self {
        let progress = (raft.state() == StateRole::Leader).then(|| raft.tracker().progress.clone());
        Self {
            id: raft.id(),
            hard_state: raft.hard_state(),
            soft_state: raft.soft_state(),
            applied: raft.raft_log().applied,
            conf_state: raft.tracker().conf_state(),
            progress,
        }
    }
}
