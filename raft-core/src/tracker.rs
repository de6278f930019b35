//! What the leader knows of each peer: membership, replication progress and votes.
//! A leaf module: it knows nothing of the Raft core beyond the wire types.

mod inflights;
mod progress;
mod progress_map;

use std::collections::{BTreeMap, BTreeSet};

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState};
pub use progress_map::ProgressMap;

use crate::eraftpb::ConfState;
use crate::quorum::{JointConfig, VoteResult};

/// Memberships up to this size are walked without allocating.
const INLINE_MEMBERS: usize = 8;

/// Member ids copied out of a [`ProgressTracker`], ascending (see
/// [`ProgressTracker::member_id_list`]).
///
/// Invariant: `spilled` is empty or holds every id (and then `len == 0`).
#[derive(Debug, Clone)]
pub struct MemberIds {
    inline: [u64; INLINE_MEMBERS],
    len: usize,
    spilled: Vec<u64>,
}

impl MemberIds {
    /// The ids, ascending.
    #[must_use]
    pub fn as_slice(&self) -> &[u64] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}

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

    /// Every member id (voters and learners), ascending, copied out so the caller may
    /// mutate the node while walking them. Small memberships are copied onto the stack:
    /// a broadcast neither allocates nor searches the map once per peer.
    #[must_use]
    pub fn member_id_list(&self) -> MemberIds {
        let all = self.progress.ids();
        let mut ids = MemberIds {
            inline: [0; INLINE_MEMBERS],
            len: 0,
            spilled: Vec::new(),
        };
        if all.len() <= INLINE_MEMBERS {
            ids.inline[..all.len()].copy_from_slice(all);
            ids.len = all.len();
        } else {
            ids.spilled = all.to_vec();
        }
        ids
    }

    /// Every member id (voters and learners), ascending.
    pub fn member_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.progress.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_list_copies_every_id_in_order() {
        for n in [0u64, 1, 3, INLINE_MEMBERS as u64, INLINE_MEMBERS as u64 + 5] {
            let mut trk = ProgressTracker::new(4, u64::MAX);
            // Inserted in descending order: the list still ascends.
            for id in (1..=n).rev() {
                trk.progress.insert(id * 10, Progress::new(1, 4, u64::MAX));
            }
            let want: Vec<u64> = (1..=n).map(|id| id * 10).collect();
            assert_eq!(trk.member_id_list().as_slice(), &want[..], "{n} members");
        }
    }
}
