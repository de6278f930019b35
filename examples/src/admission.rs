//! Admission control of a node's `Kv` service: at most [`ServerLimits::max_requests_in_flight`]
//! client requests, holding at most [`ServerLimits::max_request_bytes_in_flight`] request
//! bytes, are served at once. A request past either limit is answered at once with
//! `ServerIsBusy` (and a backoff hint) and never reaches the raft worker, so what a node
//! holds for its clients stays bounded however many of them there are.
//!
//! Two stages, so a refused request costs as little as possible:
//! - [`AdmissionLayer`], in front of the gRPC routes, takes a request slot before the
//!   request's body is read: past the request limit the call is answered from the layer
//!   and its body is never read nor decoded (HTTP/2 resets the rest of the upload).
//! - the `Kv` handler takes the request's encoded bytes once decoded
//!   ([`Admission::try_admit_bytes`]).
//!
//! A `BatchCommands` stream is not admitted as a call (it lives as long as its client);
//! each command it carries takes a slot and its bytes, and is refused alone.
//!
//! Two atomic counters, updated by compare-and-swap: no lock on the request path. A
//! [`Permit`] holds its share until it is dropped — when the handler hands its answer to
//! gRPC (the bytes) and when the response is ready (the slot), or when the call is
//! cancelled. The gauges `raftkv_admission_requests_in_flight` and
//! `raftkv_admission_bytes_in_flight` follow the counters; refusals count in
//! `raftkv_server_busy_total`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

use crate::answer::Answer;
use crate::proto::kvrpc::{self, RegionError, ServerIsBusy};

/// The backoff a `ServerIsBusy` answer from admission control asks the client for: about
/// one commit round on a loaded disk, so the requests admitted meanwhile can finish.
pub const BUSY_BACKOFF_MS: u64 = 20;

/// The path prefix of the admitted service's calls.
const KV_PREFIX: &str = "/kvrpc.Kv/";
/// The one `Kv` call not admitted here: its stream's commands are, one by one
/// ([`crate::batch_commands`]).
const BATCH_COMMANDS_PATH: &str = "/kvrpc.Kv/BatchCommands";

/// The bounds on what a node's gRPC server takes in from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    /// `Kv` requests served at once; past it, `ServerIsBusy`.
    pub max_requests_in_flight: usize,
    /// Encoded bytes of the `Kv` requests served at once; past it, `ServerIsBusy`. A single
    /// request larger than this is still admitted when nothing else is in flight, so it
    /// is never refused for ever.
    pub max_request_bytes_in_flight: usize,
    /// HTTP/2 streams (calls) one client connection may have open at once; further calls
    /// wait in the client. Together with the message size limit this bounds what a
    /// connection makes the server decode before admission sees the bytes.
    pub max_concurrent_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_requests_in_flight: 8192,
            max_request_bytes_in_flight: 64 << 20,
            max_concurrent_streams: 1024,
        }
    }
}

impl ServerLimits {
    /// Checks that every limit lets something through.
    ///
    /// # Errors
    /// The name of the first limit that is 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_requests_in_flight == 0 {
            return Err("max_requests_in_flight must be greater than 0".into());
        }
        if self.max_request_bytes_in_flight == 0 {
            return Err("max_request_bytes_in_flight must be greater than 0".into());
        }
        if self.max_concurrent_streams == 0 {
            return Err("max_concurrent_streams must be greater than 0".into());
        }
        Ok(())
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`ServerLimits::max_requests_in_flight`] requests are being served.
    Requests,
    /// The request's bytes would pass [`ServerLimits::max_request_bytes_in_flight`].
    Bytes,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Requests => "too many requests in flight",
            Self::Bytes => "too many request bytes in flight",
        })
    }
}

/// The requests and bytes a node is serving, against its limits.
#[derive(Debug)]
pub struct Admission {
    store_id: u64,
    max_requests: usize,
    max_bytes: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    /// Requests refused so far.
    refused: AtomicU64,
    /// Resolved at the first use, not per request: a `metrics::gauge!` lookup hashes the
    /// name and takes a lock in the recorder, and a request takes and gives back two
    /// permits (the same reason as in [`rpc_metrics`](crate::rpc_metrics)).
    metrics: OnceLock<AdmissionMetrics>,
}

/// The recorder's handles of the admission metrics.
#[derive(Debug)]
struct AdmissionMetrics {
    requests: metrics::Gauge,
    bytes: metrics::Gauge,
    busy: metrics::Counter,
}

impl Admission {
    /// Counters at zero, with the limits of `limits`, for store `store_id`'s service.
    #[must_use]
    pub fn new(store_id: u64, limits: &ServerLimits) -> Arc<Self> {
        Arc::new(Self {
            store_id,
            max_requests: limits.max_requests_in_flight,
            max_bytes: limits.max_request_bytes_in_flight,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            metrics: OnceLock::new(),
        })
    }

    fn metrics(&self) -> &AdmissionMetrics {
        self.metrics.get_or_init(|| AdmissionMetrics {
            requests: metrics::gauge!("raftkv_admission_requests_in_flight"),
            bytes: metrics::gauge!("raftkv_admission_bytes_in_flight"),
            busy: metrics::counter!("raftkv_server_busy_total"),
        })
    }

    /// Takes one request slot, or says the request limit is reached.
    ///
    /// # Errors
    /// [`Refused::Requests`]; nothing is counted then.
    pub fn try_admit_request(self: &Arc<Self>) -> Result<Permit, Refused> {
        let max = self.max_requests;
        self.requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| self.refuse(Refused::Requests))?;
        self.metrics().requests.increment(1.0);
        Ok(Permit {
            admission: self.clone(),
            requests: 1,
            bytes: 0,
        })
    }

    /// Takes `bytes` of the byte limit, or says it would be passed. Alone (nothing else
    /// counted), any size fits: a huge request waits for the others, not for ever.
    ///
    /// # Errors
    /// [`Refused::Bytes`]; nothing is counted then.
    pub fn try_admit_bytes(self: &Arc<Self>, bytes: usize) -> Result<Permit, Refused> {
        let max = self.max_bytes;
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b == 0 || b.saturating_add(bytes) <= max).then_some(b.saturating_add(bytes))
            })
            .map_err(|_| self.refuse(Refused::Bytes))?;
        self.metrics().bytes.increment(bytes as f64);
        Ok(Permit {
            admission: self.clone(),
            requests: 0,
            bytes,
        })
    }

    fn refuse(&self, why: Refused) -> Refused {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.metrics().busy.increment(1);
        why
    }

    /// The `ServerIsBusy` error a refused request is answered with.
    #[must_use]
    pub fn busy_error(&self, why: Refused) -> RegionError {
        RegionError {
            message: format!("store {} is busy: {why}", self.store_id),
            server_is_busy: Some(ServerIsBusy {
                reason: why.to_string(),
                backoff_ms: BUSY_BACKOFF_MS,
            }),
            ..Default::default()
        }
    }

    /// Requests admitted and not yet answered.
    #[must_use]
    pub fn requests_in_flight(&self) -> usize {
        self.requests.load(Ordering::Acquire)
    }

    /// Bytes of the requests admitted and not yet answered.
    #[must_use]
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Requests refused since the node started.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// An admitted request's share of the limits, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    requests: usize,
    bytes: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        if self.requests > 0 {
            a.requests.fetch_sub(self.requests, Ordering::AcqRel);
            a.metrics().requests.decrement(1.0);
        }
        if self.bytes > 0 {
            a.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
            a.metrics().bytes.decrement(self.bytes as f64);
        }
    }
}

/// Takes a request slot for every `Kv` call before its body is read; past the limit the
/// call is answered `ServerIsBusy` from here.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
}

impl AdmissionLayer {
    /// The layer counting against `admission`.
    #[must_use]
    pub fn new(admission: Arc<Admission>) -> Self {
        Self { admission }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted {
            inner,
            admission: self.admission.clone(),
        }
    }
}

/// A service behind [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Arc<Admission>,
}

impl<S, B> Service<http::Request<B>> for Admitted<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        // A `BatchCommands` stream outlives its commands: each takes its own slot.
        if !path.starts_with(KV_PREFIX) || path == BATCH_COMMANDS_PATH {
            return Box::pin(self.inner.call(request));
        }
        match self.admission.try_admit_request() {
            Ok(permit) => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let result = response.await;
                    drop(permit);
                    result
                })
            }
            Err(why) => {
                // The request (and its unread body) is dropped here.
                let response = busy_response(self.admission.busy_error(why));
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

/// A complete gRPC answer carrying `error` alone. Every `Kv` response has `region_error`
/// as field 1 (a unit test checks the proto), so this one encoding decodes as the
/// response of whichever `Kv` call it answers.
fn busy_response(error: RegionError) -> http::Response<tonic::body::Body> {
    let message = kvrpc::RawGetResponse::with_region_error(error).encode_to_vec();
    let mut data = BytesMut::with_capacity(5 + message.len());
    // The gRPC frame: not compressed, then the length (a few dozen bytes: fits in u32).
    data.put_u8(0);
    data.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    data.put_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = OneMessage {
        data: Some(data.freeze()),
        trailers: Some(trailers),
    };
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A body of one data frame, then trailers.
struct OneMessage {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for OneMessage {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn admission(requests: usize, bytes: usize) -> Arc<Admission> {
        Admission::new(
            1,
            &ServerLimits {
                max_requests_in_flight: requests,
                max_request_bytes_in_flight: bytes,
                ..ServerLimits::default()
            },
        )
    }

    #[test]
    fn the_request_limit_refuses_until_a_permit_is_dropped() {
        let a = admission(2, 1 << 20);
        let p1 = a.try_admit_request();
        let p2 = a.try_admit_request();
        assert!(p1.is_ok() && p2.is_ok());
        assert_eq!(a.try_admit_request().err(), Some(Refused::Requests));
        assert_eq!(a.requests_in_flight(), 2);
        drop(p1);
        assert!(a.try_admit_request().is_ok(), "a freed slot admits again");
        assert_eq!(a.refused(), 1);
        drop(p2);
        assert_eq!(a.requests_in_flight(), 0);
    }

    #[test]
    fn the_byte_limit_counts_sizes_and_a_lone_huge_request_passes() {
        let a = admission(100, 100);
        let p1 = a.try_admit_bytes(60);
        assert!(p1.is_ok());
        assert_eq!(a.try_admit_bytes(50).err(), Some(Refused::Bytes));
        let p2 = a.try_admit_bytes(40);
        assert!(p2.is_ok());
        assert_eq!(a.bytes_in_flight(), 100);
        drop((p1, p2));
        assert_eq!(a.bytes_in_flight(), 0);
        let huge = a.try_admit_bytes(1000);
        assert!(
            huge.is_ok(),
            "alone, a request over the byte limit is admitted"
        );
        assert_eq!(a.try_admit_bytes(1).err(), Some(Refused::Bytes));
        assert_eq!(a.requests_in_flight(), 0, "bytes take no request slot");
    }

    #[test]
    fn a_zero_limit_is_a_config_error() {
        let mut limits = ServerLimits::default();
        assert_eq!(limits.validate(), Ok(()));
        limits.max_concurrent_streams = 0;
        assert!(
            limits
                .validate()
                .is_err_and(|e| e.contains("max_concurrent_streams"))
        );
    }

    #[test]
    fn every_kv_response_has_region_error_as_field_1() {
        // The layer's busy answer relies on it (see `busy_response`).
        let proto = include_str!("../proto/kvrpc.proto");
        let mut responses = 0;
        let mut lines = proto.lines().map(str::trim);
        while let Some(line) = lines.next() {
            let Some(name) = line
                .strip_prefix("message Raw")
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|n| n.ends_with("Response"))
            else {
                continue;
            };
            let first_field = if line.contains("region_error") {
                line.to_string()
            } else {
                lines.next().unwrap().to_string()
            };
            assert!(
                first_field.contains("RegionError region_error = 1;"),
                "Raw{name}: {first_field}"
            );
            responses += 1;
        }
        assert_eq!(responses, 8, "every Kv call has its response checked");
    }

    #[test]
    fn the_busy_answer_decodes_as_any_kv_response() {
        let a = admission(1, 1);
        let response = busy_response(a.busy_error(Refused::Requests));
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let encoded = kvrpc::RawGetResponse::with_region_error(a.busy_error(Refused::Requests))
            .encode_to_vec();
        let put = kvrpc::RawPutResponse::decode(&encoded[..]).unwrap();
        let busy = put.region_error.unwrap().server_is_busy.unwrap();
        assert_eq!(busy.backoff_ms, BUSY_BACKOFF_MS);
        let scan = kvrpc::RawScanResponse::decode(&encoded[..]).unwrap();
        assert!(scan.region_error.is_some() && scan.kvs.is_empty());
    }
}
