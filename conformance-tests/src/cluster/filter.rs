//! Message filters: the faults a test injects between stores, applied where a store's
//! Raft messages leave it ([`FilteredSender`]), so they work the same over in-memory
//! queues and over any transport, and can look inside messages (type, region).
//!
//! Partitions, one-way partitions, a drop rate and drops by message type or region are
//! filters; delay, duplication and reordering need a clock and belong to the network
//! (`transport::channel::ChannelNetwork`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use raft_core::eraftpb::MessageType;
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::{RaftMessageSender, StoreMsg};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Decides which messages between stores are lost.
pub trait MessageFilter: Send + Sync + 'static {
    /// Whether `msg`, sent by store `from` to store `to`, is dropped.
    fn drops(&self, from: u64, to: u64, msg: &RaftMessage) -> bool;
}

impl<F: Fn(u64, u64, &RaftMessage) -> bool + Send + Sync + 'static> MessageFilter for F {
    fn drops(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        self(from, to, msg)
    }
}

/// Names a filter added with [`Filters::add`], to remove it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterId(u64);

/// The filters of a cluster, shared by every store's [`FilteredSender`]; also counts the
/// messages that passed, by type. Cloning yields another handle on the same set.
#[derive(Clone, Default)]
pub struct Filters {
    inner: Arc<FiltersInner>,
}

#[derive(Default)]
struct FiltersInner {
    filters: RwLock<Vec<(FilterId, Arc<dyn MessageFilter>)>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    /// Messages that passed, indexed by `MessageType as usize` (the enum has < 32 values).
    passed: [AtomicU64; 32],
}

impl std::fmt::Debug for Filters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filters")
            .field("filters", &self.inner.filters.read().len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Filters {
    /// No filters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `filter`; messages it drops are lost from now on.
    pub fn add(&self, filter: impl MessageFilter) -> FilterId {
        let id = FilterId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.inner.filters.write().push((id, Arc::new(filter)));
        id
    }

    /// Removes a filter; unknown ids are ignored.
    pub fn remove(&self, id: FilterId) {
        self.inner.filters.write().retain(|(other, _)| *other != id);
    }

    /// Removes every filter.
    pub fn clear(&self) {
        self.inner.filters.write().clear();
    }

    /// Whether some filter drops `msg` from `from` to `to`; counts the message either way.
    pub fn drops(&self, from: u64, to: u64, msg: &RaftMessage) -> bool {
        let dropped = self
            .inner
            .filters
            .read()
            .iter()
            .any(|(_, f)| f.drops(from, to, msg));
        if dropped {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        } else if let Some(counter) = self.inner.passed.get(message_type(msg) as usize) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        dropped
    }

    /// Messages dropped so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Messages of type `msg_type` that passed every filter so far.
    #[must_use]
    pub fn passed(&self, msg_type: MessageType) -> u64 {
        self.inner
            .passed
            .get(msg_type as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

fn message_type(msg: &RaftMessage) -> MessageType {
    msg.message
        .as_ref()
        .map_or(MessageType::MsgUnspecified, |m| m.msg_type())
}

/// Tells a store what became of a snapshot it sent (a [`StoreMsg::SnapshotStatus`]).
pub type SnapshotReporter = Box<dyn Fn(StoreMsg) + Send>;

/// A [`RaftMessageSender`] that loses what the cluster's [`Filters`] drop and passes the
/// rest on to `inner`.
///
/// A dropped snapshot is reported as failed through the [`SnapshotReporter`], as a real
/// transport reports a stream that broke: a leader waits for that report before it
/// sends the follower anything else.
pub struct FilteredSender<S> {
    store_id: u64,
    filters: Filters,
    inner: S,
    snapshot_reporter: Option<SnapshotReporter>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for FilteredSender<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilteredSender")
            .field("store_id", &self.store_id)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> FilteredSender<S> {
    /// Filters the messages store `store_id` sends through `inner`.
    #[must_use]
    pub fn new(store_id: u64, filters: Filters, inner: S) -> Self {
        Self {
            store_id,
            filters,
            inner,
            snapshot_reporter: None,
        }
    }

    /// Reports dropped snapshots through `reporter`.
    #[must_use]
    pub fn with_snapshot_reporter(mut self, reporter: SnapshotReporter) -> Self {
        self.snapshot_reporter = Some(reporter);
        self
    }

    /// The wrapped sender.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: RaftMessageSender> RaftMessageSender for FilteredSender<S> {
    fn send(&mut self, to_store: u64, msg: RaftMessage) {
        if !self.filters.drops(self.store_id, to_store, &msg) {
            self.inner.send(to_store, msg);
            return;
        }
        if message_type(&msg) == MessageType::MsgSnapshot
            && let Some(report) = &self.snapshot_reporter
        {
            report(StoreMsg::SnapshotStatus {
                region_id: msg.region_id,
                to_peer: msg.to_peer.map_or(0, |p| p.id),
                delivered: false,
            });
        }
    }

    fn flush(&mut self) {
        self.inner.flush();
    }
}

/// Stores in different groups cannot talk; stores in no group are unaffected.
#[derive(Debug, Clone)]
pub struct Partition {
    groups: Vec<HashSet<u64>>,
}

impl Partition {
    /// A partition into `groups`.
    #[must_use]
    pub fn new(groups: &[&[u64]]) -> Self {
        Self {
            groups: groups.iter().map(|g| g.iter().copied().collect()).collect(),
        }
    }

    fn group_of(&self, store: u64) -> Option<usize> {
        self.groups.iter().position(|g| g.contains(&store))
    }
}

impl MessageFilter for Partition {
    fn drops(&self, from: u64, to: u64, _msg: &RaftMessage) -> bool {
        matches!((self.group_of(from), self.group_of(to)), (Some(a), Some(b)) if a != b)
    }
}

/// Drops everything `from` sends to `to`; the other direction still works.
#[derive(Debug, Clone, Copy)]
pub struct OneWay {
    /// The sender whose messages are lost.
    pub from: u64,
    /// The receiver that never gets them.
    pub to: u64,
}

impl MessageFilter for OneWay {
    fn drops(&self, from: u64, to: u64, _msg: &RaftMessage) -> bool {
        (from, to) == (self.from, self.to)
    }
}

/// Drops each message with a fixed probability, from a seeded generator.
#[derive(Debug)]
pub struct DropRate {
    rate: f64,
    rng: Mutex<StdRng>,
}

impl DropRate {
    /// Drops with probability `rate` (clamped to `[0, 1]`), decisions drawn from `seed`.
    #[must_use]
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate: rate.clamp(0.0, 1.0),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl MessageFilter for DropRate {
    fn drops(&self, _from: u64, _to: u64, _msg: &RaftMessage) -> bool {
        self.rate > 0.0 && self.rng.lock().random_bool(self.rate)
    }
}

/// Drops the Raft messages of the given types.
#[derive(Debug, Clone)]
pub struct DropTypes {
    types: Vec<MessageType>,
}

impl DropTypes {
    /// Drops messages of any of `types`.
    #[must_use]
    pub fn new(types: &[MessageType]) -> Self {
        Self {
            types: types.to_vec(),
        }
    }
}

impl MessageFilter for DropTypes {
    fn drops(&self, _from: u64, _to: u64, msg: &RaftMessage) -> bool {
        self.types.contains(&message_type(msg))
    }
}

/// Drops every message of one region.
#[derive(Debug, Clone, Copy)]
pub struct DropRegion(pub u64);

impl MessageFilter for DropRegion {
    fn drops(&self, _from: u64, _to: u64, msg: &RaftMessage) -> bool {
        msg.region_id == self.0
    }
}

#[cfg(test)]
mod tests {
    use raft_core::eraftpb::Message;

    use super::*;

    fn msg(region_id: u64, msg_type: MessageType) -> RaftMessage {
        RaftMessage {
            region_id,
            message: Some(Message {
                msg_type: msg_type as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[derive(Default)]
    struct Collect(Vec<(u64, u64)>);

    impl RaftMessageSender for Collect {
        fn send(&mut self, to_store: u64, msg: RaftMessage) {
            self.0.push((to_store, msg.region_id));
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn filters_drop_what_they_match_and_count_the_rest() {
        let filters = Filters::new();
        let partition = filters.add(Partition::new(&[&[1], &[2, 3]]));
        filters.add(OneWay { from: 2, to: 3 });
        filters.add(DropRegion(9));
        filters.add(DropTypes::new(&[MessageType::MsgSnapshot]));
        let append = msg(1, MessageType::MsgAppend);
        assert!(filters.drops(1, 2, &append) && filters.drops(3, 1, &append));
        assert!(filters.drops(2, 3, &append) && !filters.drops(3, 2, &append));
        assert!(!filters.drops(1, 4, &append), "store 4 is in no group");
        assert!(filters.drops(3, 2, &msg(9, MessageType::MsgAppend)));
        assert!(filters.drops(3, 2, &msg(1, MessageType::MsgSnapshot)));
        filters.remove(partition);
        assert!(!filters.drops(1, 2, &append));
        assert_eq!(filters.passed(MessageType::MsgAppend), 3);
        assert_eq!(filters.dropped(), 5);

        let mut sender = FilteredSender::new(2, filters.clone(), Collect::default());
        sender.send(3, append.clone());
        sender.send(1, append.clone());
        sender.send(1, msg(9, MessageType::MsgHeartbeat));
        assert_eq!(sender.inner().0, vec![(1, 1)]);
        filters.clear();
        sender.send(3, append);
        assert_eq!(sender.inner().0.len(), 2);
    }

    #[test]
    fn drop_rate_is_seeded() {
        let draws = |seed| {
            let f = DropRate::new(0.5, seed);
            let m = msg(1, MessageType::MsgAppend);
            (0..200).map(|_| f.drops(1, 2, &m)).collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        let dropped = draws(3).iter().filter(|&&d| d).count();
        assert!((40..160).contains(&dropped), "dropped {dropped} of 200");
        assert!(!DropRate::new(0.0, 1).drops(1, 2, &msg(1, MessageType::MsgAppend)));
    }
}
