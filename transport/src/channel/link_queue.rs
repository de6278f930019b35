//! [`LinkQueue`]: the clock-free, ordered queue of batches in flight on one link.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

/// Batches (of any payload `T`) in flight on one link, ordered by due time.
///
/// Time is a [`Duration`] since an epoch the caller chooses (wall clock or virtual), so a
/// simulator can drive it. Without delay or reordering, batches come out in push order. A
/// delayed batch never overtakes an earlier one (a link is FIFO, like a TCP stream); a
/// reordered batch is held for [`REORDER_HOLD`](Self::REORDER_HOLD) beyond its delay and
/// does not hold back later batches, which may then overtake it.
#[derive(Debug)]
pub struct LinkQueue<T> {
    heap: BinaryHeap<Reverse<Pending<T>>>,
    /// Due time of the latest FIFO batch; FIFO batches are never due before it.
    fifo_due: Duration,
    /// Tie-breaker keeping push order among batches due at the same time.
    next_seq: u64,
}

#[derive(Debug)]
struct Pending<T> {
    due: Duration,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl<T> Eq for Pending<T> {}

impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Pending<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl<T> Default for LinkQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            fifo_due: Duration::ZERO,
            next_seq: 0,
        }
    }
}

impl<T> LinkQueue<T> {
    /// How long a reordered batch is held beyond its delay.
    pub const REORDER_HOLD: Duration = Duration::from_millis(10);

    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Enqueues `item`, sent at `sent_at`, due `delay` later, held back further if
    /// `reordered` (the fields of a [`BatchFate`](super::BatchFate)).
    pub fn push(&mut self, sent_at: Duration, delay: Duration, reordered: bool, item: T) {
        let due = if reordered {
            sent_at + delay + Self::REORDER_HOLD
        } else {
            self.fifo_due = self.fifo_due.max(sent_at + delay);
            self.fifo_due
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Pending { due, seq, item }));
    }

    /// Takes the next item due at or before `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<T> {
        if self.heap.peek()?.0.due > now {
            return None;
        }
        self.heap.pop().map(|Reverse(pending)| pending.item)
    }

    /// When the next batch becomes due, if any is queued.
    #[must_use]
    pub fn next_due(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(pending)| pending.due)
    }

    /// Number of queued batches.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(queue: &mut LinkQueue<u8>, sent_ms: u64, tag: u8, delay_ms: u64, reordered: bool) {
        let ms = Duration::from_millis;
        queue.push(ms(sent_ms), ms(delay_ms), reordered, tag);
    }

    fn drain(queue: &mut LinkQueue<u8>, now: Duration) -> Vec<u8> {
        std::iter::from_fn(|| queue.pop_due(now)).collect()
    }

    #[test]
    fn fifo_without_faults() {
        let mut queue = LinkQueue::new();
        for tag in 0..5 {
            push(&mut queue, 0, tag, 0, false);
        }
        assert_eq!(drain(&mut queue, Duration::ZERO), vec![0, 1, 2, 3, 4]);
        assert!(queue.is_empty());
    }

    #[test]
    fn delay_never_reorders() {
        let mut queue = LinkQueue::new();
        push(&mut queue, 0, 0, 50, false);
        push(&mut queue, 0, 1, 5, false);
        assert_eq!(
            drain(&mut queue, Duration::from_millis(10)),
            Vec::<u8>::new()
        );
        assert_eq!(queue.next_due(), Some(Duration::from_millis(50)));
        assert_eq!(drain(&mut queue, Duration::from_millis(50)), vec![0, 1]);
    }

    #[test]
    fn reordered_batch_is_overtaken() {
        let mut queue = LinkQueue::new();
        push(&mut queue, 0, 0, 0, true);
        push(&mut queue, 1, 1, 0, false);
        assert_eq!(drain(&mut queue, Duration::from_millis(1)), vec![1]);
        assert_eq!(drain(&mut queue, LinkQueue::<u8>::REORDER_HOLD), vec![0]);
    }
}
