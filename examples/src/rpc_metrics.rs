//! A tower layer over a node's gRPC server that measures the client-facing RPCs and counts
//! the requests in flight, which a graceful shutdown waits for.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `raftkv_rpc_requests_total` | counter | `service`, `method` | requests received |
//! | `raftkv_rpc_duration_seconds` | histogram | `service`, `method` | from the request to the response headers: the whole call for these unary RPCs |
//! | `raftkv_rpc_in_flight` | gauge | | client requests being served |
//!
//! Only the `kvrpc` services (`Kv`, `Admin`) are measured: the raft transport's streams
//! live as long as the connection, so their duration means nothing and they would keep a
//! drain from ever finishing. Method labels come from a fixed list, so a client sending
//! made-up paths cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
    ("kvrpc.Admin", "Status"),
    ("kvrpc.Admin", "TransferLeader"),
    ("kvrpc.Admin", "AddPeer"),
    ("kvrpc.Admin", "RemovePeer"),
    ("kvrpc.Admin", "SplitRegion"),
];

/// The labels of a request path, or `None` when the path is not measured.
fn labels(path: &str) -> Option<(&'static str, &'static str)> {
    if !path.starts_with(MEASURED_PREFIX) {
        return None;
    }
    let (service, method) = path[1..].split_once('/')?;
    Some(
        KNOWN_RPCS
            .iter()
            .find(|(s, m)| *s == service && *m == method)
            .copied()
            .unwrap_or(("other", "other")),
    )
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
    started: Instant,
    service: &'static str,
    method: &'static str,
}

impl Measured {
    fn start(in_flight: Arc<InFlight>, service: &'static str, method: &'static str) -> Self {
        in_flight.count.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!("raftkv_rpc_in_flight").increment(1.0);
        metrics::counter!("raftkv_rpc_requests_total", "service" => service, "method" => method)
            .increment(1);
        Self {
            in_flight,
            started: Instant::now(),
            service,
            method,
        }
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        metrics::histogram!(
            "raftkv_rpc_duration_seconds",
            "service" => self.service,
            "method" => self.method
        )
        .record(self.started.elapsed().as_secs_f64());
        metrics::gauge!("raftkv_rpc_in_flight").decrement(1.0);
        if self.in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.in_flight.idle.notify_waiters();
        }
    }
}

/// The layer; every service it wraps shares one [`InFlight`].
#[derive(Debug, Clone, Default)]
pub struct RpcMetricsLayer {
    in_flight: Arc<InFlight>,
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
        self.in_flight.clone()
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics {
            inner,
            in_flight: self.in_flight.clone(),
        }
    }
}

/// A service measured by [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    in_flight: Arc<InFlight>,
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
        let measured = labels(request.uri().path())
            .map(|(service, method)| Measured::start(self.in_flight.clone(), service, method));
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
        let a = Measured::start(in_flight.clone(), "kvrpc.Kv", "RawGet");
        let b = Measured::start(in_flight.clone(), "kvrpc.Kv", "RawPut");
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
