//! [`ChannelNetwork`]: the in-process hub every [`ChannelTransport`] of a test sends through.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::channel_transport::ChannelTransport;
use super::fault_plan::{BatchFate, FaultPlan, FilterId};
use super::link::{self, Envelope};
use crate::{FrameSink, StoreId};

/// An in-process network connecting [`ChannelTransport`]s, with seeded fault injection.
///
/// Each ordered pair of stores is a *link* with its own bounded queue and delivery task.
/// Faults ([`partition`](Self::partition), [`set_drop_rate`](Self::set_drop_rate), ...) are
/// decided by a [`FaultPlan`] seeded at creation; they may change at any time and
/// [`heal`](Self::heal) removes them all. Frames lost to faults count in
/// [`dropped`](Self::dropped); frames handed to a sink count in
/// [`delivered`](Self::delivered).
///
/// Cloning yields another handle to the same network.
#[derive(Clone, Debug)]
pub struct ChannelNetwork {
    pub(super) inner: Arc<NetworkInner>,
}

/// Shared state of a [`ChannelNetwork`].
#[derive(Debug)]
pub(super) struct NetworkInner {
    /// Time zero of the links' [`LinkQueue`](super::LinkQueue)s.
    pub(super) epoch: Instant,
    pub(super) faults: Mutex<FaultPlan>,
    /// Running stores. Sinks are called under the read lock, so once a store is removed
    /// (under the write lock) its sink receives nothing more.
    pub(super) stores: RwLock<HashMap<StoreId, Registration>>,
    /// Queues of the links' delivery tasks, keyed by `(from, to)`.
    pub(super) links: Mutex<HashMap<(StoreId, StoreId), mpsc::Sender<Envelope>>>,
    next_generation: AtomicU64,
    pub(super) max_frame_bytes: AtomicU64,
    pub(super) delivered_count: AtomicU64,
    pub(super) dropped_count: AtomicU64,
    /// Frames queued on links and not yet delivered or dropped.
    pub(super) in_flight_count: watch::Sender<u64>,
}

/// A running store: its sink, and which incarnation it is.
#[derive(Clone)]
pub(super) struct Registration {
    pub(super) sink: Arc<dyn FrameSink>,
    /// Distinguishes incarnations of one store id, so frames sent to a stopped incarnation
    /// are not delivered to its successor.
    pub(super) generation: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("generation", &self.generation)
            .finish()
    }
}

impl ChannelNetwork {
    /// Capacity of each link's queue, in batches; a send to a full link is shed with
    /// [`Error::Unreachable`](crate::Error::Unreachable).
    pub const LINK_QUEUE_BATCHES_MAX: usize = 4096;
    /// Default largest frame accepted by [`ChannelTransport::send`](crate::Transport::send).
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

    /// A fault-free network whose fault decisions derive from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            inner: Arc::new(NetworkInner {
                epoch: Instant::now(),
                faults: Mutex::new(FaultPlan::new(seed)),
                stores: RwLock::new(HashMap::new()),
                links: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(1),
                max_frame_bytes: AtomicU64::new(Self::DEFAULT_MAX_FRAME_BYTES as u64),
                delivered_count: AtomicU64::new(0),
                dropped_count: AtomicU64::new(0),
                in_flight_count: watch::Sender::new(0),
            }),
        }
    }

    /// Starts store `store`: frames sent to it go to `sink`. Replaces (stops) a previous
    /// incarnation of the same store id.
    #[must_use]
    pub fn register(&self, store: StoreId, sink: Arc<dyn FrameSink>) -> ChannelTransport {
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        self.inner
            .stores
            .write()
            .insert(store, Registration { sink, generation });
        ChannelTransport::new(self.clone(), store, generation)
    }

    /// Splits stores into groups that cannot talk to each other; see
    /// [`FaultPlan::partition`].
    pub fn partition(&self, groups: &[&[StoreId]]) {
        self.inner.faults.lock().partition(groups);
    }

    /// Drops everything `from` sends to `to`.
    pub fn one_way_partition(&self, from: StoreId, to: StoreId) {
        self.inner.faults.lock().one_way_partition(from, to);
    }

    /// Sets the probability that a frame is dropped.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `[0, 1]`.
    pub fn set_drop_rate(&self, rate: f64) {
        self.inner.faults.lock().set_drop_rate(rate);
    }

    /// Delays each batch by a uniform draw from `range`; batches on a link stay in order.
    pub fn set_delay(&self, range: Range<Duration>) {
        self.inner.faults.lock().set_delay(range);
    }

    /// Sets the probability that a frame is delivered twice.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `[0, 1]`.
    pub fn set_duplicate_rate(&self, rate: f64) {
        self.inner.faults.lock().set_duplicate_rate(rate);
    }

    /// Sets the probability that a batch is overtaken by later batches on its link.
    ///
    /// # Panics
    ///
    /// If `rate` is not within `[0, 1]`.
    pub fn set_reorder_rate(&self, rate: f64) {
        self.inner.faults.lock().set_reorder_rate(rate);
    }

    /// Drops every frame for which `filter(from, to, frame)` returns `true` (e.g. by message
    /// type or region, decoded from the frame). Snapshots are filtered by their metadata.
    pub fn add_filter<F>(&self, filter: F) -> FilterId
    where
        F: Fn(StoreId, StoreId, &Bytes) -> bool + Send + Sync + 'static,
    {
        self.inner.faults.lock().add_filter(Arc::new(filter))
    }

    /// Removes a filter added with [`add_filter`](Self::add_filter).
    pub fn remove_filter(&self, id: FilterId) {
        self.inner.faults.lock().remove_filter(id);
    }

    /// Removes every fault; frames sent afterwards are delivered promptly and in order.
    pub fn heal(&self) {
        self.inner.faults.lock().heal();
    }

    /// Sets the largest frame a send accepts.
    pub fn set_max_frame_bytes(&self, max_frame_bytes: usize) {
        self.inner
            .max_frame_bytes
            .store(max_frame_bytes as u64, Ordering::Relaxed);
    }

    /// Runs `f` on the fault plan, e.g. to read its seed.
    pub fn with_faults<R>(&self, f: impl FnOnce(&mut FaultPlan) -> R) -> R {
        f(&mut self.inner.faults.lock())
    }

    /// Frames handed to a sink so far (duplicates count twice).
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.inner.delivered_count.load(Ordering::Relaxed)
    }

    /// Frames lost so far: to faults, to full link queues, or because the receiver stopped.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner.dropped_count.load(Ordering::Relaxed)
    }

    /// Frames queued on links (delayed or held for reordering) and not yet delivered or
    /// dropped.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        *self.inner.in_flight_count.borrow()
    }

    /// Waits until no frame is in flight: everything sent so far was delivered or dropped.
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.in_flight_count.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: this cannot fail.
        let _ = rx.wait_for(|&n| n == 0).await;
    }
}

impl NetworkInner {
    /// The running incarnation of `store`, if any.
    pub(super) fn registration(&self, store: StoreId) -> Option<Registration> {
        self.stores.read().get(&store).cloned()
    }

    /// Removes `store` if `generation` is still its running incarnation.
    pub(super) fn unregister(&self, store: StoreId, generation: u64) {
        let mut stores = self.stores.write();
        if stores
            .get(&store)
            .is_some_and(|r| r.generation == generation)
        {
            stores.remove(&store);
        }
    }

    pub(super) fn count_dropped(&self, frames: u64) {
        self.dropped_count.fetch_add(frames, Ordering::Relaxed);
    }

    /// Hands `fate` to the link `from → to`, starting its delivery task if needed.
    ///
    /// Returns `false` (and counts the frames dropped) if the link's queue is full.
    pub(super) fn enqueue(
        self: &Arc<Self>,
        from: StoreId,
        to: StoreId,
        to_generation: u64,
        fate: BatchFate,
    ) -> bool {
        let frame_count = fate.frames.len() as u64;
        let envelope = Envelope {
            sent_at: self.epoch.elapsed(),
            to_generation,
            fate,
        };
        self.in_flight_count.send_modify(|n| *n += frame_count);
        let mut links = self.links.lock();
        let tx = links.entry((from, to)).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(ChannelNetwork::LINK_QUEUE_BATCHES_MAX);
            tokio::spawn(link::run(from, to, rx, Arc::downgrade(self)));
            tx
        });
        match tx.try_send(envelope) {
            Ok(()) => true,
            Err(_) => {
                self.in_flight_count.send_modify(|n| *n -= frame_count);
                self.count_dropped(frame_count);
                false
            }
        }
    }
}
