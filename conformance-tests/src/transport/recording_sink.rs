//! [`RecordingSink`]: a [`FrameSink`] that records everything, for the suite's assertions.

use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use transport::{FrameSink, IncomingSnapshot, StoreId};

/// How long the suite waits for an expected event before failing (a failure guard, never
/// the thing asserted).
pub const GUARD: Duration = Duration::from_secs(30);

/// Snapshots buffered by the sink before it starts rejecting them.
const SNAPSHOTS_MAX: usize = 16;

/// Records every batch it receives and hands snapshots to the test.
#[derive(Debug)]
pub struct RecordingSink {
    batches: Mutex<Vec<(StoreId, Vec<Bytes>)>>,
    /// Number of frames received so far.
    frame_count: watch::Sender<usize>,
    snapshots_tx: mpsc::Sender<IncomingSnapshot>,
    snapshots_rx: tokio::sync::Mutex<mpsc::Receiver<IncomingSnapshot>>,
}

impl Default for RecordingSink {
    fn default() -> Self {
        let (snapshots_tx, snapshots_rx) = mpsc::channel(SNAPSHOTS_MAX);
        Self {
            batches: Mutex::new(Vec::new()),
            frame_count: watch::Sender::new(0),
            snapshots_tx,
            snapshots_rx: tokio::sync::Mutex::new(snapshots_rx),
        }
    }
}

impl RecordingSink {
    /// Every batch received so far, in arrival order.
    #[must_use]
    pub fn batches(&self) -> Vec<(StoreId, Vec<Bytes>)> {
        self.batches.lock().clone()
    }

    /// Number of frames received so far.
    #[must_use]
    pub fn frame_count(&self) -> usize {
        *self.frame_count.borrow()
    }

    /// Waits until at least `count` frames arrived.
    ///
    /// # Panics
    ///
    /// If they do not arrive within [`GUARD`].
    pub async fn wait_frames(&self, count: usize) {
        let mut rx = self.frame_count.subscribe();
        let waited = tokio::time::timeout(GUARD, rx.wait_for(|&n| n >= count)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "expected {count} frames, got {} within {GUARD:?}",
            self.frame_count()
        );
    }

    /// Waits until at least `count` frames arrived, or `wait` passed; returns whether they did.
    pub async fn frames_within(&self, count: usize, wait: Duration) -> bool {
        let mut rx = self.frame_count.subscribe();
        matches!(
            tokio::time::timeout(wait, rx.wait_for(|&n| n >= count)).await,
            Ok(Ok(_))
        )
    }

    /// The next snapshot that started to arrive.
    ///
    /// # Panics
    ///
    /// If none arrives within [`GUARD`].
    pub async fn next_snapshot(&self) -> IncomingSnapshot {
        let mut rx = self.snapshots_rx.lock().await;
        match tokio::time::timeout(GUARD, rx.recv()).await {
            Ok(Some(snapshot)) => snapshot,
            _ => panic!("no snapshot arrived within {GUARD:?}"),
        }
    }
}

impl FrameSink for RecordingSink {
    fn on_frames(&self, from: StoreId, frames: Vec<Bytes>) {
        let count = frames.len();
        self.batches.lock().push((from, frames));
        self.frame_count.send_modify(|n| *n += count);
    }

    fn on_snapshot(&self, _from: StoreId, snapshot: IncomingSnapshot) {
        // Full: the snapshot is dropped, which rejects it (never block the transport).
        let _ = self.snapshots_tx.try_send(snapshot);
    }
}
