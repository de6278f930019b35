//! The joint configuration used while membership changes (Raft thesis §4.3).

use super::{AckedIndexer, MajorityConfig, VoteResult};

/// Two majority configurations; a decision needs a majority in each. Outside a
/// membership change the outgoing configuration is empty and only the incoming counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JointConfig {
    /// The configuration being moved to (the only one outside joint consensus).
    pub incoming: MajorityConfig,
    /// The configuration being left; empty unless in joint consensus.
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// A non-joint configuration of `voters`.
    #[must_use]
    pub fn new(voters: impl IntoIterator<Item = u64>) -> Self {
        Self {
            incoming: MajorityConfig::new(voters),
            outgoing: MajorityConfig::default(),
        }
    }

    /// Whether this is a joint configuration.
    #[must_use]
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes in either half.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// Every voter of either half, ascending and without duplicates.
    #[must_use]
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .incoming
            .ids()
            .iter()
            .chain(self.outgoing.ids())
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether this configuration has exactly one voter.
    #[must_use]
    pub fn is_singleton(&self) -> bool {
        self.outgoing.is_empty() && self.incoming.len() == 1
    }

    /// The largest index acknowledged by a majority of both halves.
    #[must_use]
    pub fn committed_index(&self, acked: &impl AckedIndexer) -> u64 {
        self.incoming
            .committed_index(acked)
            .min(self.outgoing.committed_index(acked))
    }

    /// The election outcome: won only if both halves won, lost if either lost.
    #[must_use]
    pub fn vote_result(&self, votes: impl Fn(u64) -> Option<bool>) -> VoteResult {
        let a = self.incoming.vote_result(&votes);
        let b = self.outgoing.vote_result(&votes);
        match (a, b) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// The naive oracle: the largest index such that a majority of each half holds it.
    fn naive_committed(cfg: &JointConfig, acked: &HashMap<u64, u64>) -> u64 {
        let half = |m: &MajorityConfig| -> u64 {
            if m.is_empty() {
                return u64::MAX;
            }
            let mut best = 0;
            for candidate in m.ids().iter().map(|id| acked.get(id).copied().unwrap_or(0)) {
                let holders = m
                    .ids()
                    .iter()
                    .filter(|id| acked.get(id).copied().unwrap_or(0) >= candidate);
                if holders.count() > m.len() / 2 {
                    best = best.max(candidate);
                }
            }
            best
        };
        half(&cfg.incoming).min(half(&cfg.outgoing))
    }

    fn naive_vote(cfg: &JointConfig, votes: &HashMap<u64, bool>) -> VoteResult {
        let half = |m: &MajorityConfig| -> VoteResult {
            if m.is_empty() {
                return VoteResult::Won;
            }
            let yes = m
                .ids()
                .iter()
                .filter(|id| votes.get(id) == Some(&true))
                .count();
            let no = m
                .ids()
                .iter()
                .filter(|id| votes.get(id) == Some(&false))
                .count();
            if 2 * yes > m.len() {
                VoteResult::Won
            } else if 2 * no >= m.len() + (m.len() % 2) {
                // A strict majority of yes is impossible once the no votes fill half.
                VoteResult::Lost
            } else {
                VoteResult::Pending
            }
        };
        match (half(&cfg.incoming), half(&cfg.outgoing)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    fn arb_config() -> impl Strategy<Value = JointConfig> {
        (
            prop::collection::vec(1u64..10, 0..9),
            prop::collection::vec(1u64..10, 0..9),
        )
            .prop_map(|(a, b)| JointConfig {
                incoming: MajorityConfig::new(a),
                outgoing: MajorityConfig::new(b),
            })
    }

    proptest! {
        #[test]
        fn committed_index_matches_oracle(
            cfg in arb_config(),
            acked in prop::collection::hash_map(1u64..10, 0u64..20, 0..10),
        ) {
            let idx = cfg.committed_index(&|id| acked.get(&id).copied());
            prop_assert_eq!(idx, naive_committed(&cfg, &acked));
        }

        #[test]
        fn vote_result_matches_oracle(
            cfg in arb_config(),
            votes in prop::collection::hash_map(1u64..10, any::<bool>(), 0..10),
        ) {
            let res = cfg.vote_result(|id| votes.get(&id).copied());
            prop_assert_eq!(res, naive_vote(&cfg, &votes));
        }
    }

    #[test]
    fn joint_needs_both_halves() {
        let cfg = JointConfig {
            incoming: MajorityConfig::new([1, 2, 3]),
            outgoing: MajorityConfig::new([3, 4, 5]),
        };
        let acked: HashMap<u64, u64> = [(1, 10), (2, 10), (3, 5), (4, 7), (5, 1)].into();
        // Incoming majority holds 10, outgoing majority holds only 5.
        assert_eq!(cfg.committed_index(&|id| acked.get(&id).copied()), 5);
        let votes: HashMap<u64, bool> = [(1, true), (2, true), (4, false), (5, false)].into();
        assert_eq!(
            cfg.vote_result(|id| votes.get(&id).copied()),
            VoteResult::Lost
        );
    }
}
