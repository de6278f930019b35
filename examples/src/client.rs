//! The Rust client of a raftkv cluster: it routes each request to the leader of the region
//! holding its keys, retries what can be retried, and makes writes exactly-once.
//!
//! ```no_run
//! use bytes::Bytes;
//! use raftkv_examples::Client;
//!
//! # async fn run() -> raftkv_examples::Result<()> {
//! let client = Client::connect(["127.0.0.1:20161", "127.0.0.1:20162", "127.0.0.1:20163"])?;
//! client.put("user/1", "alice").await?;
//! assert_eq!(client.get("user/1").await?.as_deref(), Some(&b"alice"[..]));
//!
//! // Take a lock only if nobody holds it.
//! let taken = client.compare_and_swap("lock", None, Some(Bytes::from("me"))).await?;
//! assert!(taken.succeeded);
//!
//! // Scans and batches cross region boundaries.
//! let users = client.scan("user/", "user0", 100).await?;
//! client.batch_put(vec![("a".into(), "1".into()), ("z".into(), "2".into())]).await?;
//! # Ok(()) }
//! ```
//!
//! # Routing
//! The client learns the regions, their stores and leaders from the nodes' `Admin.Status`
//! and caches them ([`RegionCache`]: a newer region version always wins). Every request
//! names the region and the version it was routed by; a stale view comes back as
//! `epoch_not_match`, and the client refreshes its cache and re-plans (a batch or a range
//! is split again by the new regions).
//!
//! # Retries
//! Within the client's deadline (10 s by default, [`Client::with_timeout`]): a
//! `not_leader` answer with a hint is retried on the hinted store at once; no leader yet,
//! `stale_command`, `server_is_busy` (after its `backoff_ms`) and an unreachable or silent
//! store are retried after an exponential backoff (20 ms doubling to 500 ms), moving to the
//! region's next store where that helps. What no retry can fix fails at once with a typed
//! [`Error`]; a deadline passed is [`Error::Timeout`].
//!
//! # Exactly-once writes
//! Every write call takes the next sequence number of this client (a random client id), and
//! all its attempts and parts carry it, with the lowest sequence the client still awaits,
//! so the cluster applies it once however often it is retried, and answers retries with
//! the first response. Many calls may run at once on one client (it is `Sync`; share it
//! with an `Arc`). [`Error::Timeout`] on a write means its outcome is unknown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::answer::Answer;
use crate::command_link::{Batched, CommandLink};
use crate::error::{Error, Result};
use crate::node::MAX_KV_MESSAGE_BYTES;
use crate::proto::kvrpc::admin_client::AdminClient;
use crate::proto::kvrpc::kv_client::KvClient;
use crate::proto::kvrpc::{self, Context, RegionInfo};
use crate::region_cache::{RegionCache, clip_end, clip_start, reaches};

/// The first backoff after a retryable error; doubled up to [`BACKOFF_MAX`].
const BACKOFF_INITIAL: Duration = Duration::from_millis(20);
/// The longest backoff.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// The longest wait for one answer before trying again (a retried write is deduplicated).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest wait for a node's status while refreshing the routes.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Not-leader hints followed in a row before backing off (leaders can ping-pong during an
/// election).
const HINTS_BEFORE_BACKOFF: u32 = 4;

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the swap happened.
    pub succeeded: bool,
    /// The value before the call (`None`: the key was absent).
    pub previous: Option<Bytes>,
}

/// How to scan; the default is forward, unlimited, with values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// At most this many pairs (0 = no limit).
    pub limit: u32,
    /// From the end of the range down (the pairs come in descending key order).
    pub reverse: bool,
    /// Keys only: every value is empty.
    pub key_only: bool,
}

/// What the client knows of the cluster.
#[derive(Debug, Default)]
struct Routes {
    /// Store id to address.
    stores: BTreeMap<u64, String>,
    regions: RegionCache<RegionInfo>,
    /// Region id to the store of its leader, as last seen.
    leaders: HashMap<u64, u64>,
}

/// Why a call on one region did not succeed.
enum Miss {
    /// The routing changed: plan the request again from the refreshed cache.
    Replan,
    /// Give up with this error.
    Fail(Error),
}

impl From<Error> for Miss {
    fn from(e: Error) -> Self {
        Miss::Fail(e)
    }
}

impl Miss {
    /// Backs off before the caller plans again, or gives up with the error.
    async fn back_off(self, attempts: &mut Attempts) -> Result<()> {
        match self {
            Miss::Replan => attempts.backoff(Duration::ZERO).await,
            Miss::Fail(e) => Err(e),
        }
    }
}

/// Retry bookkeeping of one call: its deadline, backoff and last failure.
#[derive(Debug, Clone)]
struct Attempts {
    deadline: Instant,
    backoff: Duration,
    count: u32,
    last: String,
}

impl Attempts {
    fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            backoff: BACKOFF_INITIAL,
            count: 0,
            last: "no attempt made".into(),
        }
    }

    fn failed(&mut self, what: impl Into<String>) {
        self.count += 1;
        self.last = what.into();
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn timeout(&self) -> Error {
        Error::Timeout {
            attempts: self.count,
            last: self.last.clone(),
        }
    }

    /// Sleeps the next backoff (at least `at_least`), or fails if the deadline would pass.
    async fn backoff(&mut self, at_least: Duration) -> Result<()> {
        let wait = self.backoff.max(at_least);
        if Instant::now() + wait >= self.deadline {
            return Err(self.timeout());
        }
        tokio::time::sleep(wait).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Ok(())
    }
}

/// A write's sequence number, awaited until dropped.
struct Sequence<'a> {
    client: &'a Client,
    seq: u64,
}

impl Drop for Sequence<'_> {
    fn drop(&mut self) {
        lock(&self.client.in_flight).remove(&self.seq);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A client's connection to one node: the channel of its unary calls, and the
/// `BatchCommands` stream its single-key calls share ([`CommandLink`]).
#[derive(Debug, Clone)]
struct Link {
    channel: Channel,
    /// `None` when the client sends every call on its own ([`Client::with_command_streams`]).
    commands: Option<CommandLink>,
    /// Set once the node answered a command `Unimplemented` (a server without
    /// `BatchCommands`, or one that does not know the command): calls go unary from then.
    unary_only: Arc<AtomicBool>,
}

impl Link {
    /// Sends a single-key call: as a command of the node's stream, or alone when it is
    /// large, streams are off, or the node does not serve them.
    async fn call<R: Batched + Clone>(
        self,
        request: R,
    ) -> std::result::Result<tonic::Response<R::Response>, tonic::Status> {
        let link = match &self.commands {
            Some(link) if !self.unary_only.load(Ordering::Relaxed) && request.fits_a_command() => {
                link
            }
            _ => return request.unary(kv(self.channel)).await,
        };
        match link.call(request.clone()).await {
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                self.unary_only.store(true, Ordering::Relaxed);
                request.unary(kv(self.channel)).await
            }
            answer => answer,
        }
    }
}

fn kv(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_KV_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_KV_MESSAGE_BYTES)
}

/// A KV client of a raftkv cluster. See the [module docs](self) for routing, retries and
/// exactly-once writes.
#[derive(Debug)]
pub struct Client {
    /// The endpoints given at connect time, asked for the cluster's layout.
    seeds: Vec<String>,
    /// The connection to each node, made on first use.
    links: Mutex<HashMap<String, Link>>,
    routes: RwLock<Routes>,
    timeout: Duration,
    /// Identifies this client's writes (with a sequence) for exactly-once retries.
    client_id: u64,
    /// Whether single-key calls share one `BatchCommands` stream per node.
    command_streams: bool,
    /// The last sequence handed out.
    sequence: AtomicU64,
    /// The sequences of the writes in progress.
    in_flight: Mutex<BTreeSet<u64>>,
}

impl Client {
    /// A client of the nodes at `endpoints` (`host:port`). Connections are made lazily,
    /// so nodes may be down at this point; any one of them is enough to find the others.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for an unparsable address or an empty list.
    ///
    /// ```
    /// let client = raftkv_examples::Client::connect(["127.0.0.1:20161"])?;
    /// assert!(raftkv_examples::Client::connect(Vec::<String>::new()).is_err());
    /// assert!(raftkv_examples::Client::connect(["not an address"]).is_err());
    /// # Ok::<(), raftkv_examples::Error>(())
    /// ```
    pub fn connect<S: AsRef<str>>(endpoints: impl IntoIterator<Item = S>) -> Result<Self> {
        let client = Self {
            seeds: endpoints
                .into_iter()
                .map(|e| e.as_ref().to_string())
                .collect(),
            links: Mutex::new(HashMap::new()),
            routes: RwLock::new(Routes::default()),
            timeout: Duration::from_secs(10),
            client_id: new_client_id(),
            command_streams: true,
            sequence: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeSet::new()),
        };
        if client.seeds.is_empty() {
            return Err(Error::InvalidEndpoint("no endpoints given".into()));
        }
        for seed in &client.seeds {
            // Only parsed here: channels are made on first use, inside a runtime.
            crate::endpoint::endpoint(seed)?;
        }
        Ok(client)
    }

    /// The same client with a different per-call deadline (default 10 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client sending gets, puts, deletes and compare-and-swaps as unary calls
    /// (`false`) instead of commands of one `BatchCommands` stream per node (`true`, the
    /// default). The stream carries every call made to a node meanwhile in one message
    /// each way, which saves most of a call's gRPC cost under concurrency; unary calls
    /// are for comparison, and for servers without the stream.
    #[must_use]
    pub fn with_command_streams(mut self, on: bool) -> Self {
        self.command_streams = on;
        self
    }

    /// The id this client's writes carry.
    #[must_use]
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The value at `key`, if any.
    ///
    /// # Errors
    /// See [`Error`]; retryable failures are retried until the deadline.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let key = key.into();
        let resp = self
            .keyed(&key, None, |link: Link, ctx| {
                let req = kvrpc::RawGetRequest {
                    context: Some(ctx),
                    key: key.clone(),
                };
                async move { link.call(req).await }
            })
            .await?;
        Ok((!resp.not_found).then_some(resp.value))
    }

    /// Writes `value` at `key`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        let seq = self.begin_write();
        self.keyed(&key, Some(seq.seq), |link: Link, ctx| {
            let req = kvrpc::RawPutRequest {
                context: Some(ctx),
                key: key.clone(),
                value: value.clone(),
            };
            async move { link.call(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Deletes `key` (no error when absent).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<()> {
        let key = key.into();
        let seq = self.begin_write();
        self.keyed(&key, Some(seq.seq), |link: Link, ctx| {
            let req = kvrpc::RawDeleteRequest {
                context: Some(ctx),
                key: key.clone(),
            };
            async move { link.call(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Sets `key` to `new` (`None`: deletes it) if its value is `expected` (`None`: if it
    /// is absent), atomically and exactly once. Returns whether it did and the value before.
    ///
    /// ```no_run
    /// # async fn f(client: &raftkv_examples::Client) -> raftkv_examples::Result<()> {
    /// use bytes::Bytes;
    /// // An increment that loses no update under contention.
    /// loop {
    ///     let current = client.get("counter").await?;
    ///     let n: u64 = current.as_deref().map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap_or(0));
    ///     let next = Bytes::from((n + 1).to_string());
    ///     if client.compare_and_swap("counter", current, Some(next)).await?.succeeded {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome> {
        let key = key.into();
        let seq = self.begin_write();
        let resp = self
            .keyed(&key, Some(seq.seq), |link: Link, ctx| {
                let req = kvrpc::RawCompareAndSwapRequest {
                    context: Some(ctx),
                    key: key.clone(),
                    value: new.clone().unwrap_or_default(),
                    previous_value: expected.clone().unwrap_or_default(),
                    previous_not_exist: expected.is_none(),
                    delete: new.is_none(),
                };
                async move { link.call(req).await }
            })
            .await?;
        Ok(CasOutcome {
            succeeded: resp.succeed,
            previous: (!resp.previous_not_exist).then_some(resp.previous_value),
        })
    }

    /// The pairs found among `keys`, in request order; keys in several regions are read
    /// from each region's leader at once.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn batch_get(&self, keys: Vec<Bytes>) -> Result<Vec<(Bytes, Bytes)>> {
        let parts = self
            .batch(&keys, None, |link: Link, ctx, idxs| {
                let req = kvrpc::RawBatchGetRequest {
                    context: Some(ctx),
                    keys: idxs.iter().map(|&i| keys[i].clone()).collect(),
                };
                async move { kv(link.channel).raw_batch_get(req).await }
            })
            .await?;
        let mut found: HashMap<Bytes, Bytes> = HashMap::new();
        for (_, resp) in parts {
            found.extend(resp.pairs.into_iter().map(|p| (p.key, p.value)));
        }
        Ok(keys
            .into_iter()
            .filter_map(|k| found.get(&k).cloned().map(|v| (k, v)))
            .collect())
    }

    /// Writes every pair, one write per region (atomic within a region), exactly once.
    ///
    /// # Errors
    /// See [`Error`]. On an error some regions' parts may have been written.
    pub async fn batch_put(&self, pairs: Vec<(Bytes, Bytes)>) -> Result<()> {
        let seq = self.begin_write();
        let keys: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
        self.batch(&keys, Some(seq.seq), |link: Link, ctx, idxs| {
            let req = kvrpc::RawBatchPutRequest {
                context: Some(ctx),
                pairs: idxs
                    .iter()
                    .map(|&i| kvrpc::KvPair {
                        key: pairs[i].0.clone(),
                        value: pairs[i].1.clone(),
                    })
                    .collect(),
            };
            async move { kv(link.channel).raw_batch_put(req).await }
        })
        .await
        .map(|_| ())
    }

    /// Deletes every key in `[start, end)` (empty end = unbounded), region by region.
    ///
    /// # Errors
    /// See [`Error`]. On an error the first regions of the range may have been cleared.
    pub async fn delete_range(&self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> Result<()> {
        let (mut cursor, end) = (start.into(), end.into());
        if !end.is_empty() && end <= cursor {
            return Err(Error::Server(
                "bad request: delete range end must be after start".into(),
            ));
        }
        let seq = self.begin_write();
        let mut attempts = Attempts::new(self.deadline());
        loop {
            let Some(region) = self.locate(&cursor, &mut attempts).await? else {
                continue;
            };
            let part_end = clip_end(&end, &region);
            let call = |link: Link, ctx| {
                let req = kvrpc::RawDeleteRangeRequest {
                    context: Some(ctx),
                    start_key: cursor.clone(),
                    end_key: part_end.clone(),
                };
                async move { kv(link.channel).raw_delete_range(req).await }
            };
            match self
                .call_region(&region, Some(seq.seq), &mut attempts, &call)
                .await
            {
                Ok(_) if reaches(&region, &end) => return Ok(()),
                Ok(_) => cursor = region.end_key.clone(),
                Err(miss) => miss.back_off(&mut attempts).await?,
            }
        }
    }

    /// Up to `limit` pairs (0 = no limit) with keys in `[start, end)` (empty end =
    /// unbounded), in key order, across regions.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn scan(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u32,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let options = ScanOptions {
            limit,
            ..ScanOptions::default()
        };
        self.scan_with(start, end, options).await
    }

    /// Scans `[start, end)` (empty end = unbounded) with `options`: a limit, descending
    /// order, keys only. Continues region by region until the limit is reached.
    ///
    /// ```no_run
    /// # async fn f(client: &raftkv_examples::Client) -> raftkv_examples::Result<()> {
    /// use raftkv_examples::client::ScanOptions;
    /// // The three largest keys under "log/".
    /// let last = client
    ///     .scan_with("log/", "log0", ScanOptions { limit: 3, reverse: true, key_only: true })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn scan_with(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        options: ScanOptions,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let (start, end) = (start.into(), end.into());
        if !end.is_empty() && end <= start {
            return Err(Error::Server(
                "bad request: scan end must be after start".into(),
            ));
        }
        let mut out: Vec<(Bytes, Bytes)> = Vec::new();
        let mut attempts = Attempts::new(self.deadline());
        // Forward: the next key to read; reverse: the end of what is left to read.
        let mut cursor = if options.reverse {
            end.clone()
        } else {
            start.clone()
        };
        loop {
            let region = if options.reverse {
                self.locate_before(&cursor, &mut attempts).await?
            } else {
                self.locate(&cursor, &mut attempts).await?
            };
            let Some(region) = region else {
                continue;
            };
            let (part_start, part_end) = if options.reverse {
                (clip_start(&start, &region), clip_end(&cursor, &region))
            } else {
                (cursor.clone(), clip_end(&end, &region))
            };
            let limit = if options.limit == 0 {
                0
            } else {
                options.limit - u32::try_from(out.len()).unwrap_or(u32::MAX)
            };
            let call = |link: Link, ctx| {
                let req = kvrpc::RawScanRequest {
                    context: Some(ctx),
                    start_key: part_start.clone(),
                    end_key: part_end.clone(),
                    limit,
                    reverse: options.reverse,
                    key_only: options.key_only,
                };
                async move { kv(link.channel).raw_scan(req).await }
            };
            let resp = match self.call_region(&region, None, &mut attempts, &call).await {
                Ok(resp) => resp,
                Err(miss) => {
                    miss.back_off(&mut attempts).await?;
                    continue;
                }
            };
            out.extend(resp.kvs.into_iter().map(|p| (p.key, p.value)));
            let full = options.limit != 0 && out.len() >= options.limit as usize;
            let last = if options.reverse {
                region.start_key <= start
            } else {
                reaches(&region, &end)
            };
            if full || last {
                return Ok(out);
            }
            cursor = if options.reverse {
                region.start_key.clone()
            } else {
                region.end_key.clone()
            };
        }
    }

    /// The status of every node that answers (regions, leaders, indexes).
    ///
    /// # Errors
    /// [`Error::Timeout`] when no node answers.
    pub async fn status(&self) -> Result<Vec<kvrpc::StatusResponse>> {
        let answers = self.refresh().await;
        if answers.is_empty() {
            return Err(Error::Timeout {
                attempts: 1,
                last: "no node answered Status".into(),
            });
        }
        Ok(answers)
    }

    /// The region holding `key`, as the client routes it now.
    ///
    /// # Errors
    /// [`Error::Timeout`] when no node knows a region for the key.
    pub async fn region_for_key(&self, key: impl AsRef<[u8]>) -> Result<RegionInfo> {
        let mut attempts = Attempts::new(self.deadline());
        loop {
            if let Some(r) = self.locate(key.as_ref(), &mut attempts).await? {
                return Ok(r);
            }
        }
    }

    /// Moves the leadership of `region_id` to its peer on `to_store_id`, and waits until
    /// that store leads (retrying the transfer while the deadline allows).
    ///
    /// ```no_run
    /// # async fn f(client: &raftkv_examples::Client) -> raftkv_examples::Result<()> {
    /// client.transfer_leader(1, 2).await?; // region 1 is now led by store 2
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`Error`]; a store without a peer of the region is [`Error::Server`].
    pub async fn transfer_leader(&self, region_id: u64, to_store_id: u64) -> Result<()> {
        let mut attempts = Attempts::new(self.deadline());
        loop {
            let Some(region) = self.locate_id(region_id, &mut attempts).await? else {
                continue;
            };
            let call = |link: Link, _ctx| {
                let req = kvrpc::TransferLeaderRequest {
                    region_id,
                    to_store_id,
                };
                async move { AdminClient::new(link.channel).transfer_leader(req).await }
            };
            if let Err(miss) = self.call_region(&region, None, &mut attempts, &call).await {
                miss.back_off(&mut attempts).await?;
                continue;
            }
            // The transfer takes an election round; a lagging target may refuse it.
            let retry_at = Instant::now() + Duration::from_secs(1);
            while Instant::now() < retry_at {
                if self.leads(region_id, to_store_id).await {
                    lock_routes(&self.routes)
                        .leaders
                        .insert(region_id, to_store_id);
                    return Ok(());
                }
                attempts.failed(format!(
                    "store {to_store_id} does not lead region {region_id} yet"
                ));
                // Polling the target's status: leadership moves asynchronously.
                if Instant::now() + Duration::from_millis(50) >= attempts.deadline {
                    return Err(attempts.timeout());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Adds a voter of `region_id` on `store_id` (a store of the cluster without one) and
    /// returns the region after the change. The new peer catches up by snapshot.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn add_peer(&self, region_id: u64, store_id: u64) -> Result<RegionInfo> {
        self.add(region_id, store_id, false).await
    }

    /// Adds a learner (a non-voting replica) of `region_id` on `store_id`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn add_learner(&self, region_id: u64, store_id: u64) -> Result<RegionInfo> {
        self.add(region_id, store_id, true).await
    }

    async fn add(&self, region_id: u64, store_id: u64, as_learner: bool) -> Result<RegionInfo> {
        let resp = self
            .admin(region_id, |ch| {
                let req = kvrpc::AddPeerRequest {
                    region_id,
                    store_id,
                    as_learner,
                };
                async move { AdminClient::new(ch).add_peer(req).await }
            })
            .await?;
        self.changed(resp.region)
    }

    /// Removes the peer of `region_id` on `store_id` and returns the region after the
    /// change. The leader cannot remove itself: transfer the leadership first.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn remove_peer(&self, region_id: u64, store_id: u64) -> Result<RegionInfo> {
        let resp = self
            .admin(region_id, |ch| {
                let req = kvrpc::RemovePeerRequest {
                    region_id,
                    store_id,
                };
                async move { AdminClient::new(ch).remove_peer(req).await }
            })
            .await?;
        self.changed(resp.region)
    }

    /// Splits `region_id` at `split_keys` (any order) in one step and returns the regions
    /// its range is made of now, in key order (the first keeps `region_id`). The new
    /// regions are led by the region's leader at first.
    ///
    /// ```no_run
    /// # async fn f(client: &raftkv_examples::Client) -> raftkv_examples::Result<()> {
    /// let regions = client.split_region(1, ["g", "p"]).await?; // 3 regions
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSplitKey`] when a key is a boundary of the region already, outside
    /// it, or repeated (nothing is split then); [`Error::Server`] for an empty key list;
    /// see [`Error`]. A split is not deduplicated: after an unanswered attempt that
    /// applied, a retry finds its keys at boundaries.
    pub async fn split_region<K: Into<Bytes>>(
        &self,
        region_id: u64,
        split_keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<RegionInfo>> {
        let split_keys: Vec<Bytes> = split_keys.into_iter().map(Into::into).collect();
        let resp = self
            .admin(region_id, |ch| {
                let req = kvrpc::SplitRegionRequest {
                    region_id,
                    split_keys: split_keys.clone(),
                };
                async move { AdminClient::new(ch).split_region(req).await }
            })
            .await?;
        if resp.regions.is_empty() {
            return Err(Error::Server("the split answered no regions".into()));
        }
        let mut routes = lock_routes(&self.routes);
        for r in &resp.regions {
            routes.regions.insert(r.clone());
        }
        Ok(resp.regions)
    }

    fn changed(&self, region: Option<RegionInfo>) -> Result<RegionInfo> {
        let region = region.ok_or_else(|| Error::Server("the change answered no region".into()))?;
        lock_routes(&self.routes).regions.insert(region.clone());
        Ok(region)
    }

    /// Runs an admin call on `region_id`'s leader. A membership change is not
    /// deduplicated, so it is not retried after an unanswered attempt could have applied.
    async fn admin<R, F, Fut>(&self, region_id: u64, call: F) -> Result<R>
    where
        R: Answer,
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        self.routed(
            |routes| routes.regions.get(region_id).cloned(),
            None,
            |link, _ctx| call(link.channel),
        )
        .await
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Takes the next sequence number for a write; it is awaited until dropped.
    fn begin_write(&self) -> Sequence<'_> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.in_flight).insert(seq);
        Sequence { client: self, seq }
    }

    /// The context of an attempt on `region`, for write `seq` (if a write).
    fn context(&self, region: &RegionInfo, seq: Option<u64>) -> Context {
        let (client_id, sequence, first_awaited_sequence) = match seq {
            Some(seq) => {
                let first = lock(&self.in_flight).first().copied().unwrap_or(seq);
                (self.client_id, seq, first.min(seq))
            }
            None => (0, 0, 0),
        };
        Context {
            client_id,
            sequence,
            region_id: region.id,
            first_awaited_sequence,
            region_version: region.version,
        }
    }

    /// The connection to `addr`, made lazily once (inside a tokio runtime: its command
    /// link is a task).
    fn link(&self, addr: &str) -> Result<Link> {
        let mut links = lock(&self.links);
        if let Some(link) = links.get(addr) {
            return Ok(link.clone());
        }
        let channel = crate::endpoint::lazy_channel(addr)?;
        let link = Link {
            commands: self
                .command_streams
                .then(|| CommandLink::spawn(channel.clone())),
            channel,
            unary_only: Arc::new(AtomicBool::new(false)),
        };
        links.insert(addr.to_string(), link.clone());
        Ok(link)
    }

    /// The channel to `addr`, for the calls that are not batched.
    fn channel(&self, addr: &str) -> Result<Channel> {
        self.link(addr).map(|link| link.channel)
    }

    /// Asks every known node for its status (at once, briefly) and merges what they know
    /// into the routes. Returns the answers.
    async fn refresh(&self) -> Vec<kvrpc::StatusResponse> {
        let mut addrs: Vec<String> = self.seeds.clone();
        addrs.extend(read_routes(&self.routes).stores.values().cloned());
        addrs.sort();
        addrs.dedup();
        let asks = addrs.iter().map(|addr| async move {
            let ch = self.channel(addr).ok()?;
            let answer = tokio::time::timeout(
                STATUS_TIMEOUT,
                AdminClient::new(ch).status(kvrpc::StatusRequest {}),
            )
            .await;
            let status = answer.ok()?.ok()?.into_inner();
            status.error.is_empty().then_some(status)
        });
        let answers: Vec<kvrpc::StatusResponse> =
            join_all(asks).await.into_iter().flatten().collect();
        let mut routes = lock_routes(&self.routes);
        for status in &answers {
            for s in &status.stores {
                routes.stores.insert(s.id, s.addr.clone());
            }
            for r in &status.regions {
                let Some(region) = r.region.clone() else {
                    continue;
                };
                if r.leader_store_id != 0 {
                    routes.leaders.entry(region.id).or_insert(r.leader_store_id);
                }
                routes.regions.insert(region);
            }
        }
        // A store that says it leads is believed over another's hint.
        for status in &answers {
            for r in status.regions.iter().filter(|r| r.is_leader) {
                if let Some(region) = &r.region {
                    routes.leaders.insert(region.id, status.store_id);
                }
            }
        }
        answers
    }

    /// The cached region holding `key`, refreshing on a miss. `None` (after a backoff)
    /// when no node knows one yet.
    async fn locate(&self, key: &[u8], attempts: &mut Attempts) -> Result<Option<RegionInfo>> {
        self.locate_by(attempts, |routes| routes.regions.by_key(key).cloned())
            .await
    }

    /// The cached region holding the last key below `end` (empty: the last region).
    async fn locate_before(
        &self,
        end: &[u8],
        attempts: &mut Attempts,
    ) -> Result<Option<RegionInfo>> {
        self.locate_by(attempts, |routes| routes.regions.before(end).cloned())
            .await
    }

    /// The cached region `region_id`.
    async fn locate_id(
        &self,
        region_id: u64,
        attempts: &mut Attempts,
    ) -> Result<Option<RegionInfo>> {
        self.locate_by(attempts, |routes| routes.regions.get(region_id).cloned())
            .await
    }

    async fn locate_by(
        &self,
        attempts: &mut Attempts,
        find: impl Fn(&Routes) -> Option<RegionInfo>,
    ) -> Result<Option<RegionInfo>> {
        if let Some(r) = find(&read_routes(&self.routes)) {
            return Ok(Some(r));
        }
        self.refresh().await;
        if let Some(r) = find(&read_routes(&self.routes)) {
            return Ok(Some(r));
        }
        attempts.failed("no node knows a region for the request yet");
        attempts.backoff(Duration::ZERO).await?;
        Ok(None)
    }

    /// Runs `call` on the region holding `key` until it succeeds or fails for good.
    async fn keyed<R, F, Fut>(&self, key: &[u8], seq: Option<u64>, call: F) -> Result<R>
    where
        R: Answer,
        F: Fn(Link, Context) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        self.routed(|routes| routes.regions.by_key(key).cloned(), seq, call)
            .await
    }

    /// Runs `call` on the cached region `find` picks (re-planned after every routing
    /// change) until it succeeds or fails for good.
    async fn routed<R, F, Fut>(
        &self,
        find: impl Fn(&Routes) -> Option<RegionInfo>,
        seq: Option<u64>,
        call: F,
    ) -> Result<R>
    where
        R: Answer,
        F: Fn(Link, Context) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut attempts = Attempts::new(self.deadline());
        loop {
            let Some(region) = self.locate_by(&mut attempts, &find).await? else {
                continue;
            };
            match self.call_region(&region, seq, &mut attempts, &call).await {
                Ok(resp) => return Ok(resp),
                Err(miss) => miss.back_off(&mut attempts).await?,
            }
        }
    }

    /// Runs `call` on each region holding some of `keys` (at once), with the indexes of
    /// its keys; re-plans the parts whose routing changed. Returns every part's answer.
    async fn batch<R, F, Fut>(
        &self,
        keys: &[Bytes],
        seq: Option<u64>,
        call: F,
    ) -> Result<Vec<(Vec<usize>, R)>>
    where
        R: Answer,
        F: Fn(Link, Context, &[usize]) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut attempts = Attempts::new(self.deadline());
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        let mut done = Vec::new();
        while !pending.is_empty() {
            let (groups, unknown) = self.plan(keys, &pending);
            if groups.is_empty() {
                self.refresh().await;
            }
            let call = &call;
            let runs = groups.into_iter().map(|(region, idxs)| {
                let mut attempts = Attempts::new(attempts.deadline);
                async move {
                    let r = self
                        .call_region(&region, seq, &mut attempts, &|link, ctx| {
                            call(link, ctx, &idxs)
                        })
                        .await;
                    (idxs, r)
                }
            });
            pending = unknown;
            for (idxs, r) in join_all(runs).await {
                match r {
                    Ok(resp) => done.push((idxs, resp)),
                    Err(Miss::Replan) => pending.extend(idxs),
                    Err(Miss::Fail(e)) => return Err(e),
                }
            }
            if !pending.is_empty() {
                attempts.failed(format!("{} keys need routing again", pending.len()));
                attempts.backoff(Duration::ZERO).await?;
            }
        }
        Ok(done)
    }

    /// Groups `pending` key indexes by cached region (one consistent view of the cache);
    /// the keys no cached region holds come back apart.
    fn plan(
        &self,
        keys: &[Bytes],
        pending: &[usize],
    ) -> (Vec<(RegionInfo, Vec<usize>)>, Vec<usize>) {
        let routes = read_routes(&self.routes);
        let mut groups: BTreeMap<u64, (RegionInfo, Vec<usize>)> = BTreeMap::new();
        let mut unknown = Vec::new();
        for &i in pending {
            match routes.regions.by_key(&keys[i]) {
                Some(r) => groups
                    .entry(r.id)
                    .or_insert_with(|| (r.clone(), Vec::new()))
                    .1
                    .push(i),
                None => unknown.push(i),
            }
        }
        (groups.into_values().collect(), unknown)
    }

    /// Runs `call` on the leader of `region` until it succeeds, the routing changes
    /// ([`Miss::Replan`]), or it fails for good.
    async fn call_region<R, F, Fut>(
        &self,
        region: &RegionInfo,
        seq: Option<u64>,
        attempts: &mut Attempts,
        call: &F,
    ) -> std::result::Result<R, Miss>
    where
        R: Answer,
        F: Fn(Link, Context) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut rotation = 0usize;
        let mut hints = 0u32;
        loop {
            let Some((store_id, addr)) = self.pick_store(region, rotation) else {
                attempts.failed(format!(
                    "no address known for the stores of region {}",
                    region.id
                ));
                self.refresh().await;
                rotation += 1;
                attempts.backoff(Duration::ZERO).await?;
                continue;
            };
            let link = self.link(&addr)?;
            let wait = attempts.remaining().min(ATTEMPT_TIMEOUT);
            let answer = tokio::time::timeout(wait, call(link, self.context(region, seq))).await;
            let resp = match answer {
                Err(_) => {
                    attempts.failed(format!("{addr}: no answer within {wait:?}"));
                    self.forget_leader(region.id, store_id);
                    rotation += 1;
                    attempts.backoff(Duration::ZERO).await?;
                    continue;
                }
                Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                    return Err(Error::Unimplemented(status.message().to_string()).into());
                }
                Ok(Err(status)) => {
                    attempts.failed(format!("{addr}: {status}"));
                    self.forget_leader(region.id, store_id);
                    rotation += 1;
                    attempts.backoff(Duration::ZERO).await?;
                    continue;
                }
                Ok(Ok(resp)) => resp.into_inner(),
            };
            let Some(e) = resp.region_error() else {
                if !resp.error().is_empty() {
                    let e = resp
                        .typed_error()
                        .unwrap_or_else(|| Error::Server(resp.error().to_string()));
                    return Err(e.into());
                }
                lock_routes(&self.routes)
                    .leaders
                    .insert(region.id, store_id);
                return Ok(resp);
            };
            attempts.failed(format!("{addr}: {}", e.message));
            if let Some(nl) = &e.not_leader {
                if nl.leader_store_id != 0 && nl.leader_store_id != store_id {
                    self.learn_leader(region.id, nl.leader_store_id, &nl.leader_addr);
                    // The hinted leader comes first among the candidates.
                    rotation = 0;
                    hints += 1;
                    if !hints.is_multiple_of(HINTS_BEFORE_BACKOFF)
                        && attempts.remaining() > Duration::ZERO
                    {
                        continue;
                    }
                } else {
                    self.forget_leader(region.id, store_id);
                    rotation += 1;
                }
                attempts.backoff(Duration::ZERO).await?;
            } else if e.epoch_not_match.is_some() || e.key_not_in_region.is_some() {
                if let Some(en) = &e.epoch_not_match {
                    let mut routes = lock_routes(&self.routes);
                    for r in &en.current_regions {
                        routes.regions.insert(r.clone());
                    }
                }
                self.refresh().await;
                return Err(Miss::Replan);
            } else if e.region_not_found.is_some() {
                // This store has no peer of the region (any more): try another, and learn
                // the current membership.
                self.forget_leader(region.id, store_id);
                self.refresh().await;
                return Err(Miss::Replan);
            } else if let Some(busy) = &e.server_is_busy {
                attempts
                    .backoff(Duration::from_millis(busy.backoff_ms))
                    .await?;
            } else if e.stale_command.is_some() {
                attempts.backoff(Duration::ZERO).await?;
            } else if let Some(f) = &e.sequence_forgotten {
                return Err(Error::SequenceForgotten {
                    client_id: f.client_id,
                    sequence: f.sequence,
                    first_kept_sequence: f.first_kept_sequence,
                }
                .into());
            } else {
                return Err(Error::Region(Box::new(e.clone())).into());
            }
        }
    }

    /// The store (and address) to try: the known leader first, then the region's stores
    /// in turn. Without any known region store, the seed endpoints in turn.
    fn pick_store(&self, region: &RegionInfo, rotation: usize) -> Option<(u64, String)> {
        let routes = read_routes(&self.routes);
        let leader = routes.leaders.get(&region.id).copied();
        let mut candidates: Vec<u64> = leader.into_iter().collect();
        candidates.extend(region.store_ids.iter().filter(|s| Some(**s) != leader));
        if candidates.is_empty() {
            let seed = &self.seeds[rotation % self.seeds.len()];
            return Some((0, seed.clone()));
        }
        let store = candidates[rotation % candidates.len()];
        routes.stores.get(&store).map(|addr| (store, addr.clone()))
    }

    fn forget_leader(&self, region_id: u64, store_id: u64) {
        let mut routes = lock_routes(&self.routes);
        if routes.leaders.get(&region_id) == Some(&store_id) {
            routes.leaders.remove(&region_id);
        }
    }

    fn learn_leader(&self, region_id: u64, store_id: u64, addr: &str) {
        let mut routes = lock_routes(&self.routes);
        routes.leaders.insert(region_id, store_id);
        if !addr.is_empty() {
            routes
                .stores
                .entry(store_id)
                .or_insert_with(|| addr.to_string());
        }
    }

    /// Whether `store_id` reports leading `region_id`.
    async fn leads(&self, region_id: u64, store_id: u64) -> bool {
        let Some(addr) = read_routes(&self.routes).stores.get(&store_id).cloned() else {
            return false;
        };
        let Ok(ch) = self.channel(&addr) else {
            return false;
        };
        let answer = tokio::time::timeout(
            STATUS_TIMEOUT,
            AdminClient::new(ch).status(kvrpc::StatusRequest {}),
        )
        .await;
        answer
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|status| status.get_ref().led_region(region_id).is_some())
    }
}

fn read_routes(routes: &RwLock<Routes>) -> std::sync::RwLockReadGuard<'_, Routes> {
    routes.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock_routes(routes: &RwLock<Routes>) -> std::sync::RwLockWriteGuard<'_, Routes> {
    routes.write().unwrap_or_else(PoisonError::into_inner)
}

/// A client id unlikely to collide: the wall clock in nanoseconds mixed with the process
/// id and a per-process counter (SplitMix64 finalizer). Two clients with one id would share
/// exactly-once sessions, so collisions must be rare.
fn new_client_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}
