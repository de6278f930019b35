//! A client of the `Kv` service that finds the leader and retries retryable errors.
//!
//! Every call runs within the client's deadline: a `not_leader` answer with a hint is
//! retried on the hinted store at once; other retryable answers (no leader yet, stale
//! command, busy, epoch change, an unreachable endpoint) move to the next endpoint after
//! an exponential backoff.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::node::MAX_KV_MESSAGE_BYTES;
use crate::proto::kvrpc::kv_client::KvClient;
use crate::proto::kvrpc::{self, Context, RegionError};

/// The first backoff after a retryable error; doubled up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(20);
/// The longest backoff.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The error fields every KV response carries.
trait KvResponse {
    fn region_error(&self) -> Option<&RegionError>;
    fn error(&self) -> &str;
}

macro_rules! kv_response {
    ($($t:ty),*) => {$(
        impl KvResponse for $t {
            fn region_error(&self) -> Option<&RegionError> { self.region_error.as_ref() }
            fn error(&self) -> &str { &self.error }
        }
    )*};
}

kv_response!(
    kvrpc::RawGetResponse,
    kvrpc::RawPutResponse,
    kvrpc::RawDeleteResponse,
    kvrpc::RawScanResponse,
    kvrpc::RawBatchGetResponse,
    kvrpc::RawBatchPutResponse,
    kvrpc::RawDeleteRangeResponse
);

/// The order of a scan's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanOrder {
    /// Ascending keys.
    #[default]
    Forward,
    /// Descending keys.
    Reverse,
}

/// A KV client over a set of node endpoints (`host:port`).
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<(String, KvClient<Channel>)>,
    /// The endpoint index that answered last (the leader, as far as we know).
    current: Mutex<usize>,
    timeout: Duration,
    /// Identifies this client's writes (with `sequence`) for exactly-once retries.
    client_id: u64,
    /// The sequence number of the last write; a retry of a write reuses its number.
    sequence: AtomicU64,
}

impl Client {
    /// A client of the nodes at `endpoints` (`host:port`). Connections are made lazily,
    /// so nodes may be down at this point.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unparsable address or an empty list.
    pub fn connect<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self> {
        let mut clients = Vec::new();
        for e in endpoints {
            let addr = e.as_ref().to_string();
            let channel = crate::endpoint::lazy_channel(&addr)?;
            let client = KvClient::new(channel)
                .max_decoding_message_size(MAX_KV_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_KV_MESSAGE_BYTES);
            clients.push((addr, client));
        }
        if clients.is_empty() {
            return Err(Error::InvalidEndpoint("no endpoints given".into()));
        }
        Ok(Self {
            endpoints: clients,
            current: Mutex::new(0),
            timeout: Duration::from_secs(10),
            client_id: new_client_id(),
            sequence: AtomicU64::new(0),
        })
    }

    /// The id this client's writes carry.
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The context of a new write: this client and the next sequence number.
    fn write_context(&self) -> Option<Context> {
        Some(Context {
            client_id: self.client_id,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            region_id: 0,
        })
    }

    /// The same client with a different per-call deadline (default 10 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint the client currently sends to.
    #[must_use]
    pub fn current_endpoint(&self) -> &str {
        &self.endpoints[self.current()].0
    }

    fn current(&self) -> usize {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) % self.endpoints.len()
    }

    fn set_current(&self, i: usize) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = i;
    }

    /// Runs `call` until it succeeds, fails for good, or the deadline passes.
    async fn call<R, F, Fut>(&self, call: F) -> Result<R>
    where
        R: KvResponse,
        F: Fn(KvClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = BACKOFF_INITIAL;
        let mut attempts = 0;
        let mut last;
        loop {
            attempts += 1;
            let i = self.current();
            let client = self.endpoints[i].1.clone();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut hinted = false;
            match tokio::time::timeout(remaining, call(client)).await {
                Err(_) => last = "deadline passed while waiting for an answer".to_string(),
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                    return Err(Error::Unimplemented(status.message().to_string()));
                }
                Ok(Err(status)) => {
                    last = format!("{}: {status}", self.endpoints[i].0);
                }
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    match resp.region_error() {
                        None if resp.error().is_empty() => return Ok(resp),
                        None => return Err(Error::Server(resp.error().to_string())),
                        Some(e) => {
                            // Routing failures no retry can fix.
                            let no_route = e
                                .region_not_found
                                .as_ref()
                                .is_some_and(|r| r.region_id == 0);
                            if e.key_not_in_region.is_some() || no_route {
                                return Err(Error::Region(Box::new(e.clone())));
                            }
                            last = format!("{}: {}", self.endpoints[i].0, e.message);
                            if let Some(busy) = &e.server_is_busy {
                                backoff = backoff.max(Duration::from_millis(busy.backoff_ms));
                            }
                            if let Some(j) = e
                                .not_leader
                                .as_ref()
                                .filter(|nl| !nl.leader_addr.is_empty())
                                .and_then(|nl| {
                                    self.endpoints
                                        .iter()
                                        .position(|(a, _)| *a == nl.leader_addr)
                                })
                                .filter(|j| *j != i)
                            {
                                self.set_current(j);
                                hinted = true;
                            }
                            if hinted {
                                // Follow the hint at once, but not forever.
                                if Instant::now() >= deadline {
                                    return Err(Error::Timeout { attempts, last });
                                }
                                continue;
                            }
                            // A region still unknown at the deadline is reported as such.
                            if e.region_not_found.is_some() && Instant::now() + backoff >= deadline
                            {
                                return Err(Error::Region(Box::new(e.clone())));
                            }
                        }
                    }
                }
            }
            if Instant::now() + backoff >= deadline {
                return Err(Error::Timeout { attempts, last });
            }
            self.set_current(i + 1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Writes `value` at `key`.
    ///
    /// # Errors
    /// See [`Error`]; retryable failures are retried until the deadline.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<()> {
        let req = kvrpc::RawPutRequest {
            context: self.write_context(),
            key: key.into(),
            value: value.into(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.raw_put(req).await }
        })
        .await
        .map(|_| ())
    }

    /// The value at `key`, if any.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let req = kvrpc::RawGetRequest {
            context: None,
            key: key.into(),
        };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.raw_get(req).await }
            })
            .await?;
        Ok((!resp.not_found).then_some(resp.value))
    }

    /// Deletes `key` (no error when absent).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<()> {
        let req = kvrpc::RawDeleteRequest {
            context: self.write_context(),
            key: key.into(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.raw_delete(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Up to `limit` pairs (0 = no limit) with keys in `[start, end)` (empty end =
    /// unbounded), in key order.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn scan(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u32,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.scan_with_options(start, end, limit, ScanOrder::Forward, false)
            .await
    }

    /// Like [`scan`](Self::scan), in descending key order with [`ScanOrder::Reverse`]
    /// (the last `limit` keys of `[start, end)`), and with empty values when `key_only`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn scan_with_options(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u32,
        order: ScanOrder,
        key_only: bool,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let req = kvrpc::RawScanRequest {
            context: None,
            start_key: start.into(),
            end_key: end.into(),
            limit,
            reverse: order == ScanOrder::Reverse,
            key_only,
        };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.raw_scan(req).await }
            })
            .await?;
        Ok(resp.kvs.into_iter().map(|p| (p.key, p.value)).collect())
    }

    /// Writes every pair; atomic when all keys are in one region (always, in this slice).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn batch_put(&self, pairs: Vec<(Bytes, Bytes)>) -> Result<()> {
        let req = kvrpc::RawBatchPutRequest {
            context: self.write_context(),
            pairs: pairs
                .into_iter()
                .map(|(key, value)| kvrpc::KvPair { key, value })
                .collect(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.raw_batch_put(req).await }
        })
        .await
        .map(|_| ())
    }

    /// The pairs found among `keys`, in request order.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn batch_get(&self, keys: Vec<Bytes>) -> Result<Vec<(Bytes, Bytes)>> {
        let req = kvrpc::RawBatchGetRequest {
            context: None,
            keys,
        };
        let resp = self
            .call(|mut c| {
                let req = req.clone();
                async move { c.raw_batch_get(req).await }
            })
            .await?;
        Ok(resp.pairs.into_iter().map(|p| (p.key, p.value)).collect())
    }

    /// Deletes every key in `[start, end)` (empty end = unbounded).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete_range(&self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> Result<()> {
        let req = kvrpc::RawDeleteRangeRequest {
            context: self.write_context(),
            start_key: start.into(),
            end_key: end.into(),
        };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.raw_delete_range(req).await }
        })
        .await
        .map(|_| ())
    }
}

/// A client id unlikely to collide: the wall clock in nanoseconds mixed with the process
/// id (SplitMix64 finalizer). Collisions only matter once writes are deduplicated.
fn new_client_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}
