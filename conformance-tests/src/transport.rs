//! The `transport` suite: what every [`transport::Transport`] must do.
//!
//! An implementation certifies itself by implementing [`TransportHarness`] (start and stop a
//! store) and calling [`run_all`] once, or [`transport_suite!`](crate::transport_suite) to
//! get one `#[tokio::test]` per case. The cases:
//!
//! - [`fifo_per_link`]: per-link FIFO order without faults, sender attributed.
//! - [`batches_arrive_whole`]: one `send` is one `on_frames` call with the same frames.
//! - [`large_snapshot`]: a ≥ 64 MiB snapshot arrives byte-identical (length + CRC-32).
//! - [`peer_down_then_up`]: sends fail fast with `Unreachable` while a peer is down, never
//!   hang, and delivery resumes in order after it restarts.
//! - [`many_peers`]: eight stores all-to-all at once.
//! - [`errors`]: unknown store, closed transport, oversized frame.
//!
//! Bad input on the wire (garbage, oversized frames from a hostile peer) depends on the
//! wire format, so each transport tests it beside its harness (see `tests/transport_grpc.rs`).

mod cases;
mod recording_sink;

use std::sync::Arc;

use async_trait::async_trait;
use transport::{FrameSink, StoreId, Transport};

pub use cases::{
    LARGE_SNAPSHOT_BYTES, batches_arrive_whole, errors, fifo_per_link, large_snapshot, many_peers,
    peer_down_then_up,
};
pub use recording_sink::{GUARD, RecordingSink};

/// Starts and stops the stores of one test; a fresh harness is made for every case.
#[async_trait]
pub trait TransportHarness: Send + Sync + 'static {
    /// Starts store `store` (again, after [`stop`](Self::stop)), delivering its inbound
    /// traffic to `sink`, and returns its transport. Other stores of this harness must be
    /// able to reach it (e.g. through a shared resolver) once this returns.
    async fn start(&self, store: StoreId, sink: Arc<dyn FrameSink>) -> Arc<dyn Transport>;

    /// Stops store `store` as a crash or shutdown would: closes its transport and its
    /// endpoint, so peers cannot reach it until it is started again.
    async fn stop(&self, store: StoreId);

    /// The largest frame the transport accepts, if it has a limit to check.
    fn max_frame_bytes(&self) -> Option<usize> {
        None
    }
}

/// Runs every case, each with a fresh harness from `make`.
pub async fn run_all<H: TransportHarness>(make: impl Fn() -> H) {
    fifo_per_link(&make()).await;
    batches_arrive_whole(&make()).await;
    large_snapshot(&make()).await;
    peer_down_then_up(&make()).await;
    many_peers(&make()).await;
    errors(&make()).await;
}

/// Expands to one `#[tokio::test]` per case of the transport suite, each calling `$make`
/// for a fresh [`TransportHarness`]. The calling crate needs `tokio` with the `macros` and
/// `rt-multi-thread` features.
///
/// ```text
/// conformance_tests::transport_suite!(MyHarness::new());
/// ```
#[macro_export]
macro_rules! transport_suite {
    ($make:expr) => {
        $crate::transport_suite!(@case $make, fifo_per_link);
        $crate::transport_suite!(@case $make, batches_arrive_whole);
        $crate::transport_suite!(@case $make, large_snapshot);
        $crate::transport_suite!(@case $make, peer_down_then_up);
        $crate::transport_suite!(@case $make, many_peers);
        $crate::transport_suite!(@case $make, errors);
    };
    (@case $make:expr, $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            $crate::transport::$case(&$make).await;
        }
    };
}
