//! A tower layer over a node's gRPC server that measures the client-facing RPCs and counts
//! the requests in flight, which a graceful shutdown waits for.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `raftkv_rpc_requests_total` | counter | `service`, `method` | requests received |
//! | `raftkv_rpc_duration_seconds` | histogram | `service`, `method` | from the request to the response headers: the whole call for these unary RPCs |
//! | `raftkv_rpc_in_flight` | gauge | | client requests being served |
//!
//! A `Kv.BatchCommands` stream is measured only up to its response headers (it lives as
//! long as the client keeps it); each command it carries is measured as the unary call of
//! its request ([`CallMeter`]), so `RawGet` counts every get whichever way it came, and a
//! drain waits for the commands in flight, not for the stream.
//!
//! Only the `kvrpc` services (`Kv`, `Admin`) are measured: the raft transport's streams
//! live as long as the connection, so their duration means nothing and they would keep a
//! drain from ever finishing. Method labels come from a fixed list, so a client sending
//! made-up paths cannot grow the label set. The metric handles of every listed RPC are
//! looked up in the recorder once, at the first request: a `metrics::counter!` lookup hashes
//! the name and labels and searches the registry under a lock, and four of them per request
//! showed up at several percent of a node's CPU under load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use tokio::sync::Notify;
use tower::{Layer, Service};

/// The path prefix of the measured services.
const MEASURED_PREFIX: &str = "/kvrpc.";

/// Every RPC of `proto/kvrpc.proto`, as `(service, method)`; anything else under
/// [`MEASURED_PREFIX`] is labelled `other` (a unit test keeps this list complete).
const KNOWN_RPCS: &[(&str, &str)] = &[
    ("kvrpc.Kv", "RawGet"),
    ("kvrpc.Kv", "RawPut"),
    ("kvrpc.Kv", "RawDelete"),
    ("kvrpc.Kv", "RawScan"),
    ("kvrpc.Kv", "RawBatchGet"),
    ("kvrpc.Kv", "RawBatchPut"),
    ("kvrpc.Kv", "RawDeleteRange"),
    ("kvrpc.Kv", "RawCompareAndSwap"),
    ("kvrpc.Kv", "BatchCommands"),
    ("kvrpc.Admin", "Status"),
    ("kvrpc.Admin", "TransferLeader"),
    ("kvrpc.Admin", "AddPeer"),
    ("kvrpc.Admin", "RemovePeer"),
    ("kvrpc.Admin", "SplitRegion"),
];

/// The labels used for a measured path that is not in [`KNOWN_RPCS`].
const OTHER_RPC: (&str, &str) = ("other", "other");

/// The index in [`KNOWN_RPCS`] of a request path (`KNOWN_RPCS.len()`: [`OTHER_RPC`]), or
/// `None` when the path is not measured.
fn rpc_index(path: &str) -> Option<usize> {
    if !path.starts_with(MEASURED_PREFIX) {
        return None;
    }
    let (service, method) = path[1..].split_once('/')?;
    Some(
        KNOWN_RPCS
            .iter()
            .position(|(s, m)| *s == service && *m == method)
            .unwrap_or(KNOWN_RPCS.len()),
    )
}

/// The labels of a request path, or `None` when the path is not measured.
#[cfg(test)]
fn labels(path: &str) -> Option<(&'static str, &'static str)> {
    rpc_index(path).map(|i| KNOWN_RPCS.get(i).copied().unwrap_or(OTHER_RPC))
}

/// The handles of one RPC's metrics.
struct RpcHandles {
    requests: Counter,
    duration: Histogram,
}

/// Every metric handle the layer records into, resolved once.
struct Handles {
    in_flight: Gauge,
    /// Indexed like [`KNOWN_RPCS`], then [`OTHER_RPC`].
    rpcs: Vec<RpcHandles>,
}

impl Handles {
    fn resolve() -> Self {
        let rpc = |&(service, method): &(&'static str, &'static str)| RpcHandles {
            requests: metrics::counter!(
                "raftkv_rpc_requests_total", "service" => service, "method" => method
            ),
            duration: metrics::histogram!(
                "raftkv_rpc_duration_seconds", "service" => service, "method" => method
            ),
        };
        Self {
            in_flight: metrics::gauge!("raftkv_rpc_in_flight"),
            rpcs: KNOWN_RPCS
                .iter()
                .chain(std::iter::once(&OTHER_RPC))
                .map(rpc)
                .collect(),
        }
    }
}

/// The number of measured requests being served.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    /// Notified when `count` drops to 0.
    idle: Notify,
}

impl InFlight {
    /// Requests being served now.
    #[must_use]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no request is being served, at most `timeout`; true when idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drop to 0 in between is not missed.
            notified.as_mut().enable();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

/// One measured request; records its duration and leaves the in-flight count when
/// dropped (answered, failed or cancelled).
struct Measured {
    in_flight: Arc<InFlight>,
    handles: Arc<OnceLock<Handles>>,
    rpc: usize,
    started: Instant,
}

impl Measured {
    /// Starts measuring a request of `KNOWN_RPCS[rpc]` (past the end: [`OTHER_RPC`]).
    fn start(in_flight: Arc<InFlight>, handles: Arc<OnceLock<Handles>>, rpc: usize) -> Self {
        in_flight.count.fetch_add(1, Ordering::AcqRel);
        let h = handles.get_or_init(Handles::resolve);
        h.in_flight.increment(1.0);
        let rpc = rpc.min(KNOWN_RPCS.len());
        h.rpcs[rpc].requests.increment(1);
        Self {
            in_flight,
            handles,
            rpc,
            started: Instant::now(),
        }
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        let h = self.handles.get_or_init(Handles::resolve);
        h.rpcs[self.rpc]
            .duration
            .record(self.started.elapsed().as_secs_f64());
        h.in_flight.decrement(1.0);
        if self.in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.in_flight.idle.notify_waiters();
        }
    }
}

/// The in-flight count and metric handles measured calls are recorded in: used by the
/// layer for every call, and directly for the calls that arrive inside a stream (the
/// commands of `Kv.BatchCommands`), which are measured as their unary RPC.
#[derive(Clone, Default)]
pub struct CallMeter {
    in_flight: Arc<InFlight>,
    handles: Arc<OnceLock<Handles>>,
}

impl std::fmt::Debug for CallMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMeter")
            .field("in_flight", &self.in_flight.count())
            .finish_non_exhaustive()
    }
}

/// One call being measured by a [`CallMeter`]; recorded when dropped.
pub struct CallMeasurement {
    _measured: Measured,
}

impl CallMeter {
    /// Starts measuring a call of `path` (`/kvrpc.Kv/RawGet`); `None` for an unmeasured
    /// path.
    #[must_use]
    pub fn start(&self, path: &str) -> Option<CallMeasurement> {
        rpc_index(path).map(|rpc| CallMeasurement {
            _measured: Measured::start(self.in_flight.clone(), self.handles.clone(), rpc),
        })
    }
}

/// The layer; every service it wraps shares one [`CallMeter`].
#[derive(Clone, Debug, Default)]
pub struct RpcMetricsLayer {
    meter: CallMeter,
}

impl RpcMetricsLayer {
    /// A layer with its own in-flight count.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The requests in flight through the services of this layer.
    #[must_use]
    pub fn in_flight(&self) -> Arc<InFlight> {
        self.meter.in_flight.clone()
    }

    /// A meter for the calls inside streams, counted with this layer's.
    #[must_use]
    pub fn call_meter(&self) -> CallMeter {
        self.meter.clone()
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            meter: self.meter.clone(),
        }
    }
}

/// A service measured by [`RpcMetricsLayer`].
#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    meter: CallMeter,
}

impl<S: std::fmt::Debug> std::fmt::Debug for RpcMetrics<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMetrics")
            .field("inner", &self.inner)
            .field("meter", &self.meter)
            .finish_non_exhaustive()
    }
}

impl<S, B, R> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let measured = self.meter.start(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            drop(measured);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_rpc_of_the_proto_has_its_own_labels() {
        let proto = include_str!("../proto/kvrpc.proto");
        let mut service = "";
        let mut found = 0;
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.trim_end_matches(['{', ' ']);
            }
            if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap().trim();
                let path = format!("/kvrpc.{service}/{method}");
                assert_eq!(
                    labels(&path),
                    KNOWN_RPCS
                        .iter()
                        .find(|(s, m)| *s == format!("kvrpc.{service}") && *m == method)
                        .copied(),
                    "{path} is missing from KNOWN_RPCS"
                );
                found += 1;
            }
        }
        assert!(found >= 9, "parsed only {found} rpcs from the proto");
    }

    #[test]
    fn transport_and_unknown_paths() {
        assert_eq!(labels("/transport.Transport/Raft"), None);
        assert_eq!(labels("/kvrpc.Kv/NoSuchCall"), Some(("other", "other")));
    }

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_request_ends() {
        let in_flight = Arc::new(InFlight::default());
        assert!(in_flight.wait_idle(Duration::ZERO).await);
        let handles = Arc::new(OnceLock::new());
        let a = Measured::start(in_flight.clone(), handles.clone(), 0);
        let b = Measured::start(in_flight.clone(), handles.clone(), KNOWN_RPCS.len());
        assert!(!in_flight.wait_idle(Duration::from_millis(1)).await);
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.wait_idle(Duration::from_secs(30)).await })
        };
        drop(a);
        assert_eq!(in_flight.count(), 1);
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(in_flight.count(), 0);
    }
}
