//! What the leader knows of each peer: membership, replication progress and votes.
//! A leaf module: it knows nothing of the Raft core beyond the wire types.

mod inflights;
mod progress;

use std::collections::{BTreeMap, BTreeSet};

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState};

use crate::eraftpb::ConfState;
use crate::quorum::{JointConfig, VoteResult};

/// Progress of every peer, keyed by id; ordered so iteration is deterministic.
pub type ProgressMap = BTreeMap<u64, Progress>;

/// The membership: voters (possibly joint), learners, and learners-to-be.
///
/// Invariants (checked by `confchange` after every change):
/// - a learner is in neither half of `voters`; every id here has a `Progress`;
/// - `learners_next` ⊆ outgoing voters: nodes demoted to learner while joint, which stay
///   voters of the outgoing half until the joint configuration is left;
/// - outside joint consensus, `learners_next` is empty and `auto_leave` is false.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The voters; joint while a membership change is in progress.
    pub voters: JointConfig,
    /// Non-voting members that receive the log.
    pub learners: BTreeSet<u64>,
    /// Voters of the outgoing half that become learners when the joint config is left.
    pub learners_next: BTreeSet<u64>,
    /// Whether to leave the joint configuration automatically once it is committed.
    pub auto_leave: bool,
}

impl TrackerConfig {
    /// The membership as a wire `ConfState` (sorted, deterministic).
    #[must_use]
    pub fn to_conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.incoming.ids().to_vec(),
            voters_outgoing: self.voters.outgoing.ids().to_vec(),
            learners: self.learners.iter().copied().collect(),
            learners_next: self.learners_next.iter().copied().collect(),
            auto_leave: self.auto_leave,
        }
    }
}

/// The leader's bookkeeping of membership, per-peer progress and election votes.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    /// The membership in force.
    pub conf: TrackerConfig,
    /// Progress of every member (voters and learners).
    pub progress: ProgressMap,
    /// Votes received in the current election.
    votes: BTreeMap<u64, bool>,
    /// The inflight window of each peer, in messages.
    pub max_inflight_msgs: usize,
    /// The inflight window of each peer, in bytes.
    pub max_inflight_bytes: u64,
}

impl ProgressTracker {
    /// An empty tracker whose peers will get the given inflight windows.
    #[must_use]
    pub fn new(max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            conf: TrackerConfig::default(),
            progress: ProgressMap::new(),
            votes: BTreeMap::new(),
            max_inflight_msgs,
            max_inflight_bytes,
        }
    }

    /// The membership as a wire `ConfState`.
    #[must_use]
    pub fn conf_state(&self) -> ConfState {
        self.conf.to_conf_state()
    }

    /// Whether there is exactly one voter.
    #[must_use]
    pub fn is_singleton(&self) -> bool {
        self.conf.voters.is_singleton()
    }

    /// The largest index acknowledged by a quorum of voters.
    #[must_use]
    pub fn committed(&self) -> u64 {
        self.conf
            .voters
            .committed_index(&|id| self.progress.get(&id).map(|p| p.matched))
    }

    /// Whether a quorum of voters was recently active. The leader marks itself active.
    #[must_use]
    pub fn quorum_active(&self) -> bool {
        self.conf
            .voters
            .vote_result(|id| self.progress.get(&id).map(|p| p.recent_active))
            == VoteResult::Won
    }

    /// Clears the votes of the last election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s vote; only its first vote in an election counts.
    pub fn record_vote(&mut self, id: u64, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// Counts the votes: `(granted, rejected, outcome)`, voters only.
    #[must_use]
    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let (mut granted, mut rejected) = (0, 0);
        for id in self.conf.voters.ids() {
            match self.votes.get(&id) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        (
            granted,
            rejected,
            self.conf
                .voters
                .vote_result(|id| self.votes.get(&id).copied()),
        )
    }

    /// The smallest member id above `after` (the smallest of all for `None`): walks the
    /// members without collecting them while the caller mutates the rest of the node.
    #[must_use]
    pub fn next_member(&self, after: Option<u64>) -> Option<u64> {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = after.map_or(Unbounded, Excluded);
        self.progress
            .range((lower, Unbounded))
            .next()
            .map(|(&id, _)| id)
    }

    /// Every member id (voters and learners), ascending.
    pub fn member_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.progress.keys().copied()
    }
}
