//! [`FaultPlan`]: clock-free, seeded decisions about which frames a link loses, duplicates,
//! delays or reorders.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::StoreId;

/// A content predicate: `filter(from, to, frame)` returns `true` to **drop** the frame.
pub type FrameFilter = Arc<dyn Fn(StoreId, StoreId, &Bytes) -> bool + Send + Sync + 'static>;

/// Names a filter added with [`FaultPlan::add_filter`], to remove it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterId(u64);

/// What a link does with one batch, as decided by [`FaultPlan::plan_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFate {
    /// The frames to deliver, in order, duplicates included. Empty if all were dropped.
    pub frames: Vec<Bytes>,
    /// How many of the sent frames were dropped.
    pub dropped_count: u64,
    /// How long after sending the batch becomes due.
    pub delay: Duration,
    /// Whether the batch is held back so that later batches on the link overtake it.
    pub reordered: bool,
}

/// The fault settings of a simulated network plus the seeded RNG that applies them.
///
/// It reads no clock and does no I/O: given the same seed and the same sequence of calls it
/// makes the same decisions, so a simulator with virtual time can reuse it. The channel
/// transport wraps it with tokio timers.
///
/// A frame is dropped if its link is partitioned, a filter says so, or it loses the
/// drop-rate draw; a surviving frame is duplicated with `duplicate_rate`. A batch is delayed
/// by a uniform draw from the delay range and reordered with `reorder_rate`.
pub struct FaultPlan {
    seed: u64,
    rng: StdRng,
    /// Probability in `[0, 1]` that a frame is dropped.
    drop_rate: f64,
    /// Probability in `[0, 1]` that a delivered frame is delivered twice.
    duplicate_rate: f64,
    /// Probability in `[0, 1]` that a batch is overtaken by later ones.
    reorder_rate: f64,
    /// Delay of each batch, drawn uniformly; an empty range means no delay.
    delay_range: Range<Duration>,
    /// Full partition: store → group. Two listed stores in different groups cannot talk.
    groups: HashMap<StoreId, usize>,
    /// One-way partitions: `(from, to)` pairs whose traffic from `from` to `to` is lost.
    one_way: HashSet<(StoreId, StoreId)>,
    filters: Vec<(FilterId, FrameFilter)>,
    next_filter_id: u64,
}

impl FaultPlan {
    /// A fault-free plan whose random decisions derive from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            delay_range: Duration::ZERO..Duration::ZERO,
            groups: HashMap::new(),
            one_way: HashSet::new(),
            filters: Vec::new(),
            next_filter_id: 0,
        }
    }

    /// The seed this plan was created with (print it when a randomized test fails).
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Splits the stores into `groups`: stores in different groups cannot talk. Stores not
    /// listed are unaffected. Replaces any previous full partition.
    pub fn partition(&mut self, groups: &[&[StoreId]]) {
        self.groups.clear();
        for (index, group) in groups.iter().enumerate() {
            for &store in *group {
                self.groups.insert(store, index);
            }
        }
    }

    /// Drops everything `from` sends to `to` (the reverse direction still works).
    pub fn one_way_partition(&mut self, from: StoreId, to: StoreId) {
        self.one_way.insert((from, to));
    }

    /// Sets the probability that a frame is dropped.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `[0, 1]`.
    pub fn set_drop_rate(&mut self, rate: f64) {
        self.drop_rate = checked_rate(rate);
    }

    /// Sets the probability that a delivered frame is delivered twice.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `[0, 1]`.
    pub fn set_duplicate_rate(&mut self, rate: f64) {
        self.duplicate_rate = checked_rate(rate);
    }

    /// Sets the probability that a batch is overtaken by later batches on its link.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `[0, 1]`.
    pub fn set_reorder_rate(&mut self, rate: f64) {
        self.reorder_rate = checked_rate(rate);
    }

    /// Delays each batch by a uniform draw from `range` (empty range: no delay).
    pub fn set_delay(&mut self, range: Range<Duration>) {
        self.delay_range = range;
    }

    /// Adds a content filter; see [`FrameFilter`].
    pub fn add_filter(&mut self, filter: FrameFilter) -> FilterId {
        let id = FilterId(self.next_filter_id);
        self.next_filter_id += 1;
        self.filters.push((id, filter));
        id
    }

    /// Removes a filter; unknown ids are ignored.
    pub fn remove_filter(&mut self, id: FilterId) {
        self.filters.retain(|(other, _)| *other != id);
    }

    /// Removes every fault: partitions, filters, drop, duplicate and reorder rates, delay.
    /// The RNG keeps its position so later decisions stay reproducible.
    pub fn heal(&mut self) {
        self.drop_rate = 0.0;
        self.duplicate_rate = 0.0;
        self.reorder_rate = 0.0;
        self.delay_range = Duration::ZERO..Duration::ZERO;
        self.groups.clear();
        self.one_way.clear();
        self.filters.clear();
    }

    /// Whether a partition cuts traffic from `from` to `to`.
    #[must_use]
    pub fn is_blocked(&self, from: StoreId, to: StoreId) -> bool {
        if self.one_way.contains(&(from, to)) {
            return true;
        }
        match (self.groups.get(&from), self.groups.get(&to)) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        }
    }

    /// Decides the fate of a batch sent from `from` to `to`.
    pub fn plan_batch(&mut self, from: StoreId, to: StoreId, frames: Vec<Bytes>) -> BatchFate {
        if self.is_blocked(from, to) {
            return BatchFate {
                dropped_count: frames.len() as u64,
                frames: Vec::new(),
                delay: Duration::ZERO,
                reordered: false,
            };
        }
        let mut kept = Vec::with_capacity(frames.len());
        let mut dropped_count = 0;
        for frame in frames {
            if self
                .filters
                .iter()
                .any(|(_, filter)| filter(from, to, &frame))
                || draw(&mut self.rng, self.drop_rate)
            {
                dropped_count += 1;
                continue;
            }
            if draw(&mut self.rng, self.duplicate_rate) {
                kept.push(frame.clone());
            }
            kept.push(frame);
        }
        let delay = self.draw_delay();
        let reordered = draw(&mut self.rng, self.reorder_rate);
        BatchFate {
            frames: kept,
            dropped_count,
            delay,
            reordered,
        }
    }

    /// Decides whether a snapshot from `from` to `to` with metadata `meta` gets through:
    /// it is lost if the link is partitioned, a filter drops `meta`, or the drop draw says so.
    pub fn plan_snapshot(&mut self, from: StoreId, to: StoreId, meta: &Bytes) -> bool {
        !(self.is_blocked(from, to)
            || self
                .filters
                .iter()
                .any(|(_, filter)| filter(from, to, meta))
            || draw(&mut self.rng, self.drop_rate))
    }

    fn draw_delay(&mut self) -> Duration {
        if self.delay_range.is_empty() {
            return self.delay_range.start;
        }
        let lo = nanos(self.delay_range.start);
        let hi = nanos(self.delay_range.end);
        Duration::from_nanos(self.rng.random_range(lo..hi))
    }
}

impl fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultPlan")
            .field("seed", &self.seed)
            .field("drop_rate", &self.drop_rate)
            .field("duplicate_rate", &self.duplicate_rate)
            .field("reorder_rate", &self.reorder_rate)
            .field("delay_range", &self.delay_range)
            .field("groups", &self.groups)
            .field("one_way", &self.one_way)
            .field("filters", &self.filters.len())
            .finish_non_exhaustive()
    }
}

fn checked_rate(rate: f64) -> f64 {
    assert!(
        (0.0..=1.0).contains(&rate),
        "a rate must be within [0, 1], got {rate}"
    );
    rate
}

/// Draws only when the rate is non-zero, so a fault-free plan consumes no randomness.
fn draw(rng: &mut StdRng, rate: f64) -> bool {
    rate > 0.0 && rng.random_bool(rate)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u8) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![i])).collect()
    }

    #[test]
    fn fault_free_plan_delivers_everything_in_order() {
        let mut plan = FaultPlan::new(1);
        let fate = plan.plan_batch(1, 2, frames(10));
        assert_eq!(fate.frames, frames(10));
        assert_eq!(
            (fate.dropped_count, fate.delay, fate.reordered),
            (0, Duration::ZERO, false)
        );
    }

    #[test]
    fn same_seed_same_decisions() {
        let run = |seed| {
            let mut plan = FaultPlan::new(seed);
            plan.set_drop_rate(0.3);
            plan.set_duplicate_rate(0.2);
            plan.set_reorder_rate(0.5);
            plan.set_delay(Duration::from_millis(1)..Duration::from_millis(9));
            (0..50)
                .map(|_| plan.plan_batch(1, 2, frames(20)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn partitions_and_heal() {
        let mut plan = FaultPlan::new(1);
        plan.partition(&[&[1], &[2, 3]]);
        assert!(plan.is_blocked(1, 2) && plan.is_blocked(3, 1));
        assert!(!plan.is_blocked(2, 3) && !plan.is_blocked(1, 4));
        plan.one_way_partition(2, 3);
        assert!(plan.is_blocked(2, 3) && !plan.is_blocked(3, 2));
        assert_eq!(plan.plan_batch(1, 2, frames(3)).dropped_count, 3);
        plan.heal();
        assert!(!plan.is_blocked(1, 2) && !plan.is_blocked(2, 3));
    }

    #[test]
    fn filters_drop_by_content() {
        let mut plan = FaultPlan::new(1);
        let id = plan.add_filter(Arc::new(|_, to, frame: &Bytes| {
            to == 2 && frame[0].is_multiple_of(2)
        }));
        let fate = plan.plan_batch(1, 2, frames(6));
        assert_eq!(
            fate.frames,
            vec![
                Bytes::from(vec![1]),
                Bytes::from(vec![3]),
                Bytes::from(vec![5])
            ]
        );
        assert_eq!(plan.plan_batch(1, 3, frames(6)).frames.len(), 6);
        plan.remove_filter(id);
        assert_eq!(plan.plan_batch(1, 2, frames(6)).frames.len(), 6);
    }

    #[test]
    fn rates_are_roughly_honoured() {
        let mut plan = FaultPlan::new(42);
        plan.set_drop_rate(0.5);
        let dropped: u64 = (0..100)
            .map(|_| plan.plan_batch(1, 2, frames(10)).dropped_count)
            .sum();
        assert!(
            (300..700).contains(&dropped),
            "dropped {dropped} of 1000 (seed 42)"
        );
    }
}
