//! A simple majority configuration.

use std::fmt;

use super::{AckedIndexer, VoteResult};

/// A set of voters; a quorum is any strict majority of them.
///
/// Invariant: `voters` is sorted and free of duplicates, so iteration order (and thus
/// message order) is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    voters: Vec<u64>,
}

/// Configurations up to this size compute the commit index without allocating.
const STACK_VOTERS: usize = 7;

impl MajorityConfig {
    /// A configuration of the given voters (in any order, duplicates ignored).
    #[must_use]
    pub fn new(voters: impl IntoIterator<Item = u64>) -> Self {
        let mut voters: Vec<u64> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        Self { voters }
    }

    /// The voters, in ascending order.
    #[must_use]
    pub fn ids(&self) -> &[u64] {
        &self.voters
    }

    /// The number of voters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.voters.len()
    }

    /// Whether there are no voters.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// Whether `id` is a voter.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Adds a voter; returns whether it was new.
    pub fn insert(&mut self, id: u64) -> bool {
        match self.voters.binary_search(&id) {
            Ok(_) => false,
            Err(pos) => {
                self.voters.insert(pos, id);
                true
            }
        }
    }

    /// Removes a voter; returns whether it was present.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.voters.binary_search(&id) {
            Ok(pos) => {
                self.voters.remove(pos);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes every voter.
    pub fn clear(&mut self) {
        self.voters.clear();
    }

    /// The largest index acknowledged by a majority. An empty configuration returns
    /// `u64::MAX`, so that it never constrains a joint configuration.
    #[must_use]
    pub fn committed_index(&self, acked: &impl AckedIndexer) -> u64 {
        let n = self.voters.len();
        if n == 0 {
            return u64::MAX;
        }
        let mut stack = [0u64; STACK_VOTERS];
        let mut heap = Vec::new();
        let indexes: &mut [u64] = if n <= STACK_VOTERS {
            &mut stack[..n]
        } else {
            heap.resize(n, 0);
            &mut heap
        };
        for (slot, &id) in indexes.iter_mut().zip(&self.voters) {
            *slot = acked.acked_index(id).unwrap_or(0);
        }
        indexes.sort_unstable();
        // With indexes ascending, the (n/2+1)-th largest sits at n - (n/2 + 1).
        indexes[n - (n / 2 + 1)]
    }

    /// The election outcome given each voter's vote (`None`: not yet voted). An empty
    /// configuration wins, by convention, so it never blocks a joint configuration.
    #[must_use]
    pub fn vote_result(&self, votes: impl Fn(u64) -> Option<bool>) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let (mut yes, mut missing) = (0, 0);
        for &id in &self.voters {
            match votes(id) {
                Some(true) => yes += 1,
                Some(false) => {}
                None => missing += 1,
            }
        }
        let quorum = self.voters.len() / 2 + 1;
        if yes >= quorum {
            VoteResult::Won
        } else if yes + missing >= quorum {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

impl fmt::Display for MajorityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.voters)
    }
}
