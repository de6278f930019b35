//! The Wing–Gong–Lowe search for a linearization of one object's history, with
//! memoization of visited configurations (the set of linearized operations and the
//! model's state).
//!
//! The history becomes a doubly-linked list of call and return events in time order. The
//! search walks it from the front: at a call it tries to linearize that operation now
//! (the model accepts its output from the current state, and the resulting configuration
//! was not visited before), which removes the operation's events from the list and
//! restarts from the front; at a return it has met an operation that should have taken
//! effect already, so it undoes the latest choice and tries the next call after it. The
//! history is linearizable once no return event is left: operations that never returned
//! may take effect after everything else, which is the same as never.
//!
//! Visited configurations are remembered by a 128-bit Zobrist hash of the linearized set
//! plus the state. A hash collision could only prune an unvisited branch and make the
//! search report a violation it should not (never accept a wrong history); with 128 bits
//! its chance is negligible.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::model::Model;

/// One operation as the search sees it.
#[derive(Debug, Clone)]
pub struct Entry<I, O> {
    /// What was asked.
    pub input: I,
    /// What came back; `None` if unknown (the operation may return anything).
    pub output: Option<O>,
    /// Invocation time.
    pub invoked_at: u64,
    /// Return time; `None` if it never returned (it may take effect at any later time or
    /// never). Invariant: `invoked_at < returned_at`.
    pub returned_at: Option<u64>,
}

/// How much work a check may do before it gives up with an undecided result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (one per event visited), over the whole check.
    pub steps_max: u64,
    /// Wall-clock time, over the whole check.
    pub time_max: Duration,
}

impl Default for Budget {
    /// 50 million steps or 60 seconds, whichever comes first.
    fn default() -> Self {
        Self {
            steps_max: 50_000_000,
            time_max: Duration::from_secs(60),
        }
    }
}

/// Counts steps against a [`Budget`].
#[derive(Debug)]
pub struct Meter {
    steps: u64,
    steps_max: u64,
    deadline: Instant,
}

impl Meter {
    /// How often the clock is read, in steps.
    const CLOCK_EVERY_STEPS: u64 = 4096;

    /// A meter for `budget`, starting now.
    #[must_use]
    pub fn new(budget: Budget) -> Self {
        Self {
            steps: 0,
            steps_max: budget.steps_max,
            deadline: Instant::now() + budget.time_max,
        }
    }

    /// Steps taken so far.
    #[must_use]
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Counts one step; `false` once the budget is spent.
    fn step(&mut self) -> bool {
        self.steps += 1;
        self.steps <= self.steps_max
            && (!self.steps.is_multiple_of(Self::CLOCK_EVERY_STEPS)
                || Instant::now() < self.deadline)
    }
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchResult {
    /// A linearization exists.
    Linearizable,
    /// None exists. `longest` is the longest sequence of operations (indexes into the
    /// entries) the search could linearize; `stuck` an operation that could not be placed
    /// after it before its return.
    Violation {
        /// The longest linearizable prefix found, in linearization order.
        longest: Vec<usize>,
        /// The operation whose return the search could not get past at that point.
        stuck: Option<usize>,
    },
    /// The budget ran out first.
    Undecided,
}

const NIL: usize = usize::MAX;

/// The event list: node 0 is the head sentinel, node `i + 1` is event `i`.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node: the operation and whether it is its return.
    event: Vec<(usize, bool)>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
}

impl Events {
    fn new<I, O>(entries: &[Entry<I, O>]) -> Self {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(entries.len() * 2);
        for (op, e) in entries.iter().enumerate() {
            assert!(
                e.returned_at.is_none_or(|r| r > e.invoked_at),
                "operation {op} returns before its invocation"
            );
            order.push((e.invoked_at, false, op));
            if let Some(r) = e.returned_at {
                order.push((r, true, op));
            }
        }
        // On equal times calls come first: such operations count as concurrent.
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut events = Self {
            next: (1..=nodes)
                .map(|n| if n == nodes { NIL } else { n })
                .collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            event: Vec::with_capacity(nodes),
            call_node: vec![NIL; entries.len()],
            return_node: vec![NIL; entries.len()],
        };
        events.prev[0] = NIL;
        events.event.push((NIL, false));
        for (i, &(_, is_return, op)) in order.iter().enumerate() {
            events.event.push((op, is_return));
            if is_return {
                events.return_node[op] = i + 1;
            } else {
                events.call_node[op] = i + 1;
            }
        }
        events
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Undoes `unlink(node)`; unlinks must be undone in reverse order.
    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Takes operation `op`'s events out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if self.return_node[op] != NIL {
            self.unlink(self.return_node[op]);
        }
    }

    /// Puts operation `op`'s events back (the reverse of [`lift`](Self::lift)).
    fn unlift(&mut self, op: usize) {
        if self.return_node[op] != NIL {
            self.relink(self.return_node[op]);
        }
        self.relink(self.call_node[op]);
    }
}

/// Random 128-bit keys, one per operation, from a fixed SplitMix64 stream (so runs are
/// reproducible).
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect()
}

/// Searches for a linearization of `entries` under `model`, charging `meter`.
pub fn search<M: Model>(
    model: &M,
    entries: &[Entry<M::Input, M::Output>],
    meter: &mut Meter,
) -> SearchResult {
    let mut events = Events::new(entries);
    let zobrist = zobrist_keys(entries.len());
    let mut returns_left = entries.iter().filter(|e| e.returned_at.is_some()).count();
    let mut visited: HashSet<(u128, M::State)> = HashSet::new();
    // The operations linearized so far, each with the state before it.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut linearized_hash: u128 = 0;
    let mut longest: Vec<usize> = Vec::new();
    let mut stuck = None;
    let mut node = events.next[0];
    loop {
        if returns_left == 0 {
            return SearchResult::Linearizable;
        }
        if !meter.step() {
            return SearchResult::Undecided;
        }
        // Every return event is still ahead of `node`, and one is left: the list cannot
        // end before it.
        assert_ne!(
            node, NIL,
            "the walk passed a return event it did not stop at"
        );
        let (op, is_return) = events.event[node];
        if !is_return {
            let entry = &entries[op];
            if let Some(next_state) = model.step(&state, &entry.input, entry.output.as_ref()) {
                let next_hash = linearized_hash ^ zobrist[op];
                if visited.insert((next_hash, next_state.clone())) {
                    stack.push((op, std::mem::replace(&mut state, next_state)));
                    linearized_hash = next_hash;
                    events.lift(op);
                    if entry.returned_at.is_some() {
                        returns_left -= 1;
                    }
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(op, _)| op).collect();
                        stuck = None;
                    }
                    node = events.next[0];
                    continue;
                }
            }
            node = events.next[node];
        } else {
            if stack.len() == longest.len() && stuck.is_none() {
                stuck = Some(op);
            }
            let Some((undone, previous)) = stack.pop() else {
                return SearchResult::Violation { longest, stuck };
            };
            state = previous;
            linearized_hash ^= zobrist[undone];
            events.unlift(undone);
            if entries[undone].returned_at.is_some() {
                returns_left += 1;
            }
            node = events.next[events.call_node[undone]];
        }
    }
}
