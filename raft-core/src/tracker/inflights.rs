//! The window of append messages sent to a peer and not yet acknowledged.

use std::collections::VecDeque;

/// Append messages in flight to one peer, as (last index, bytes), bounded by a message
/// count and a byte budget.
///
/// Invariants: indexes are strictly increasing front to back; `bytes` is the sum of the
/// sizes held; `len() <= cap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflights {
    window: VecDeque<(u64, u64)>,
    bytes: u64,
    cap: usize,
    max_bytes: u64,
}

impl Inflights {
    /// An empty window of at most `cap` messages and `max_bytes` bytes.
    #[must_use]
    pub fn new(cap: usize, max_bytes: u64) -> Self {
        Self {
            window: VecDeque::new(),
            bytes: 0,
            cap,
            max_bytes,
        }
    }

    /// Whether no more messages may be sent: the count or the byte budget is used up.
    #[must_use]
    pub fn full(&self) -> bool {
        self.window.len() >= self.cap || self.bytes >= self.max_bytes
    }

    /// The number of messages in flight.
    #[must_use]
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// Whether nothing is in flight.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// The bytes in flight.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records a message ending at `index` of `bytes`. The caller checked `!full()`.
    pub fn add(&mut self, index: u64, bytes: u64) {
        debug_assert!(!self.full(), "inflights: add to a full window");
        debug_assert!(
            self.window.back().is_none_or(|&(last, _)| last < index),
            "inflights: index {index} not increasing"
        );
        self.window.push_back((index, bytes));
        self.bytes += bytes;
    }

    /// Frees every message ending at or before `index` (they were acknowledged).
    pub fn free_to(&mut self, index: u64) {
        while let Some(&(i, b)) = self.window.front() {
            if i > index {
                break;
            }
            self.bytes -= b;
            self.window.pop_front();
        }
    }

    /// Frees the oldest message. A heartbeat response shows the peer is reachable while
    /// the window may be full of appends that were lost; freeing one slot lets one more
    /// append out, which either succeeds or is rejected and makes the leader probe.
    pub fn free_first_one(&mut self) {
        if let Some(&(index, _)) = self.window.front() {
            self.free_to(index);
        }
    }

    /// Frees everything.
    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Add(u64),
        Free(u64),
        FreeFirst,
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..50).prop_map(Op::Add),
            3 => (0u64..40).prop_map(Op::Free),
            1 => Just(Op::FreeFirst),
            1 => Just(Op::Reset),
        ]
    }

    proptest! {
        /// Inflights behave like a naive list of (index, bytes) with the same limits.
        #[test]
        fn matches_naive_oracle(cap in 1usize..8, max_bytes in 1u64..200, ops in prop::collection::vec(op(), 0..200)) {
            let mut real = Inflights::new(cap, max_bytes);
            let mut oracle: Vec<(u64, u64)> = Vec::new();
            let mut next_index = 1;
            for op in ops {
                let oracle_full = oracle.len() >= cap || oracle.iter().map(|x| x.1).sum::<u64>() >= max_bytes;
                prop_assert_eq!(real.full(), oracle_full);
                match op {
                    Op::Add(bytes) => {
                        if !oracle_full {
                            real.add(next_index, bytes);
                            oracle.push((next_index, bytes));
                        }
                        next_index += 1;
                    }
                    Op::Free(to) => {
                        real.free_to(to);
                        oracle.retain(|&(i, _)| i > to);
                    }
                    Op::FreeFirst => {
                        real.free_first_one();
                        if !oracle.is_empty() {
                            oracle.remove(0);
                        }
                    }
                    Op::Reset => {
                        real.reset();
                        oracle.clear();
                    }
                }
                prop_assert_eq!(real.len(), oracle.len());
                prop_assert_eq!(real.bytes(), oracle.iter().map(|x| x.1).sum::<u64>());
            }
        }
    }
}
