//! The gRPC `Kv` and `Admin` services of a node: each request is routed to a region and
//! sent to the store's raft worker as a `RaftCmdRequest`; raft-store's typed errors come
//! back as the response's `region_error`.
//!
//! Routing uses a [`RegionCache`] of the regions on this store, refreshed from the raft
//! worker's routing snapshot (`StoreMsg::QueryRegions`) when a key has no cached region or
//! the store answers `EpochNotMatch` / `RegionNotFound`. A request naming a region
//! (`context.region_id`, with the version the client routed by) goes to that region only
//! and is not re-routed: a stale view comes back as `epoch_not_match` for the client to
//! re-plan. Without one, the service routes by key and splits batch and range writes per
//! region; every part of an exactly-once write carries the same sequence, which the
//! region cache's rule makes safe (see [`crate::region_cache`]). A scan covers one region:
//! the one holding `start_key` (reverse: the one holding the last key below `end_key`).
//!
//! Writes are stamped with this node's wall clock (`timestamp_ms`), the time the store's
//! exactly-once sessions expire by.
//!
//! Every `Kv` call is admitted first ([`crate::admission`]): its request slot is taken by
//! the gRPC layer before the body is read, its encoded bytes here once decoded; past a
//! limit the answer is `server_is_busy` at once. `Admin` calls are not limited (rare, and
//! needed under overload). `SplitRegion` proposes one batch split at every key, checked
//! first against the region so a bad key gets a typed `invalid_split_key`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use futures_util::future::join_all;
use raft_core::eraftpb::ConfChangeType;
use raft_store::pb::errorpb;
use raft_store::pb::metapb::{Peer, Region, RegionEpoch};
use raft_store::pb::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, ChangePeerRequest, CmdType,
    CompareAndSwapRequest, DeleteRangeRequest, DeleteRequest, GetRequest, PutRequest,
    RaftCmdRequest, RaftCmdResponse, Request, RequestHeader, Response, ScanRequest, SplitRequest,
    TransferLeaderRequest,
};
use raft_store::{RegionStatus, StoreMailbox, StoreMsg};
use tokio::sync::watch;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use crate::admission::{Admission, Permit};
use crate::answer::Answer;
use crate::proto::kvrpc::{
    self, Context, EpochNotMatch, InvalidSplitKey, KeyNotInRegion, KvPair, NotLeader, RegionError,
    RegionInfo, RegionNotFound, SequenceForgotten, ServerIsBusy, SplitKeyProblem, StaleCommand,
};
use crate::region_cache::{RegionCache, RegionLike, clip_end, clip_start, contains, reaches};
use crate::rpc_metrics::CallMeter;

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// A typed error for the client to act on.
    Region(Box<RegionError>),
    /// Anything else, as a message.
    Other(String),
    /// A split key the region cannot be split at (typed for `SplitRegion`'s answer).
    InvalidSplitKey(Box<InvalidSplitKey>),
}

/// Which region a request goes to when it names none.
#[derive(Debug, Clone, Copy)]
enum RouteBy<'a> {
    /// The region holding this key.
    Key(&'a [u8]),
    /// The region holding the last key below this one (empty: the last region).
    Before(&'a [u8]),
}

/// Shared by the `Kv` and `Admin` services of one node.
#[derive(Debug, Clone)]
pub struct KvService {
    store_id: u64,
    mailbox: StoreMailbox,
    /// Every store's address, this one included.
    peers: Arc<BTreeMap<u64, String>>,
    /// The regions this node routes to.
    regions: Arc<RwLock<RegionCache<Region>>>,
    /// The limits on the `Kv` requests served at once (not on `Admin` calls, which are
    /// rare and must work under overload).
    admission: Arc<Admission>,
    /// Measures the commands of `BatchCommands` streams as their unary calls.
    meter: CallMeter,
    /// Set when the node shuts down: `BatchCommands` streams stop reading commands.
    closing: Arc<watch::Sender<bool>>,
}

/// The `Admin` service over the same state as [`KvService`].
#[derive(Debug, Clone)]
pub struct AdminService(KvService);

/// This node's wall clock in milliseconds since the Unix epoch, stamped on writes.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn pinned(ctx: Option<&Context>) -> Option<&Context> {
    ctx.filter(|c| c.region_id != 0)
}

impl KvService {
    /// A service for store `store_id` sending commands to `mailbox`, knowing `region`,
    /// serving the `Kv` requests `admission` admits.
    #[must_use]
    pub fn new(
        store_id: u64,
        mailbox: StoreMailbox,
        peers: BTreeMap<u64, String>,
        region: Region,
        admission: Arc<Admission>,
    ) -> Self {
        let mut regions = RegionCache::new();
        regions.insert(region);
        Self {
            store_id,
            mailbox,
            peers: Arc::new(peers),
            regions: Arc::new(RwLock::new(regions)),
            admission,
            meter: CallMeter::default(),
            closing: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The same service, measuring the commands of `BatchCommands` streams with `meter`
    /// (by default they are counted apart from the server's RPC metrics layer).
    #[must_use]
    pub fn with_call_meter(mut self, meter: CallMeter) -> Self {
        self.meter = meter;
        self
    }

    /// Makes every `BatchCommands` stream stop reading commands, answer those it took,
    /// and end: called when the node shuts down, so that the gRPC server's graceful
    /// shutdown is not held up by streams a client would keep open.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    pub(crate) fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub(crate) fn call_meter(&self) -> &CallMeter {
        &self.meter
    }

    /// Changes to true when the streams must end (see [`Self::close_streams`]).
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Admits a decoded `Kv` request by its encoded size (its request slot was taken by
    /// [`crate::admission::AdmissionLayer`] before its body was read), or gives the
    /// `ServerIsBusy` error to answer it with at once.
    fn admit(&self, request: &impl prost::Message) -> Result<Permit, Box<RegionError>> {
        self.admission
            .try_admit_bytes(request.encoded_len())
            .map_err(|why| Box::new(self.admission.busy_error(why)))
    }

    /// The admin service over the same routing state.
    #[must_use]
    pub fn admin(&self) -> AdminService {
        AdminService(self.clone())
    }

    /// The cached region for the context's region id or, without one, by `route`.
    fn cached_region(&self, ctx: Option<&Context>, route: RouteBy<'_>) -> Option<Region> {
        let regions = self.regions.read().unwrap_or_else(PoisonError::into_inner);
        match pinned(ctx) {
            // A cached view older than the client's is refreshed first.
            Some(c) => regions
                .get(c.region_id)
                .filter(|r| r.version() >= c.region_version)
                .cloned(),
            None => match route {
                RouteBy::Key(key) => regions.by_key(key).cloned(),
                RouteBy::Before(end) => regions.before(end).cloned(),
            },
        }
    }

    /// The region to send a request to, refreshing the cache on a miss.
    async fn region_for(
        &self,
        ctx: Option<&Context>,
        route: RouteBy<'_>,
    ) -> Result<Region, Failure> {
        if let Some(region) = self.cached_region(ctx, route) {
            return Ok(region);
        }
        self.refresh_regions().await?;
        if let Some(region) = self.cached_region(ctx, route) {
            return Ok(region);
        }
        let error = match pinned(ctx) {
            Some(c) => region_not_found(c.region_id),
            None => RegionError {
                message: format!("no region on this store holds the key ({route:?})"),
                region_not_found: Some(RegionNotFound { region_id: 0 }),
                ..Default::default()
            },
        };
        Err(Failure::Region(Box::new(error)))
    }

    /// The status of every region on this store, from its raft worker.
    async fn query_regions(&self) -> Result<Vec<RegionStatus>, Failure> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let msg = StoreMsg::QueryRegions(Box::new(move |regions| {
            // The caller may have given up waiting; that is fine.
            let _ = tx.send(regions);
        }));
        if let Err(e) = self.mailbox.try_send(msg) {
            return Err(self.to_failure(&e.to_pb()));
        }
        rx.await
            .map_err(|_| self.to_failure(&raft_store::Error::Stopped.to_pb()))
    }

    /// Replaces the routing cache with the store's initialized regions.
    async fn refresh_regions(&self) -> Result<(), Failure> {
        let statuses = self.query_regions().await?;
        let mut regions = self.regions.write().unwrap_or_else(PoisonError::into_inner);
        regions.clear();
        for s in statuses.into_iter().filter(|s| !s.region.peers.is_empty()) {
            regions.insert(s.region);
        }
        Ok(())
    }

    fn learn_regions(&self, current: &[Region]) {
        let mut regions = self.regions.write().unwrap_or_else(PoisonError::into_inner);
        for r in current {
            regions.insert(r.clone());
        }
    }

    /// Sends the requests `build` makes for the routed region; returns the response and
    /// the region it went to. A stale route is refreshed and retried once, unless the
    /// client named the region (then the client re-plans).
    async fn execute(
        &self,
        ctx: Option<&Context>,
        route: RouteBy<'_>,
        build: impl Fn(&Region) -> Vec<Request>,
    ) -> Result<(RaftCmdResponse, Region), Failure> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let region = self.region_for(ctx, route).await?;
            let resp = self.execute_on(ctx, &region, build(&region), None).await;
            let Some(err) = resp.header.as_ref().and_then(|h| h.error.as_ref()) else {
                return Ok((resp, region));
            };
            let stale_route = err.epoch_not_match.is_some() || err.region_not_found.is_some();
            if stale_route {
                if let Some(epoch) = &err.epoch_not_match {
                    self.learn_regions(&epoch.current_regions);
                }
                self.refresh_regions().await?;
                if attempts < 2 && pinned(ctx).is_none() {
                    continue;
                }
            } else if err.not_leader.is_some() && attempts < 2 && pinned(ctx).is_none() {
                // A follower checks no epoch, so a stale route shows as not_leader: route
                // again by the store's current view before sending the client elsewhere.
                self.refresh_regions().await?;
                let now = self.cached_region(ctx, route);
                let moved =
                    now.is_some_and(|r| r.id != region.id || r.region_epoch != region.region_epoch);
                if moved {
                    continue;
                }
            }
            return Err(self.to_failure(err));
        }
    }

    /// Sends one command (data `requests`, or `admin`) to `region` on this store.
    async fn execute_on(
        &self,
        ctx: Option<&Context>,
        region: &Region,
        requests: Vec<Request>,
        admin: Option<AdminRequest>,
    ) -> RaftCmdResponse {
        let ctx = ctx.cloned().unwrap_or_default();
        let mut epoch: RegionEpoch = region.region_epoch.unwrap_or_default();
        if ctx.region_id == region.id && ctx.region_version != 0 {
            // The client's view decides: a stale one gets EpochNotMatch.
            epoch.version = ctx.region_version;
        }
        let request = RaftCmdRequest {
            header: Some(RequestHeader {
                region_id: region.id,
                region_epoch: Some(epoch),
                client_id: ctx.client_id,
                sequence: ctx.sequence,
                first_awaited_sequence: ctx.first_awaited_sequence,
                timestamp_ms: now_ms(),
                ..Default::default()
            }),
            requests,
            admin_request: admin.map(Box::new),
        };
        self.mailbox.execute(request).await
    }

    fn to_failure(&self, e: &errorpb::Error) -> Failure {
        let mut out = RegionError {
            message: e.message.clone(),
            ..Default::default()
        };
        if let Some(nl) = &e.not_leader {
            let leader = nl.leader.map_or(0, |p| p.store_id);
            out.not_leader = Some(NotLeader {
                region_id: nl.region_id,
                leader_store_id: leader,
                leader_addr: self.peers.get(&leader).cloned().unwrap_or_default(),
            });
        } else if let Some(en) = &e.epoch_not_match {
            out.epoch_not_match = Some(EpochNotMatch {
                current_regions: en.current_regions.iter().map(region_info).collect(),
            });
        } else if let Some(k) = &e.key_not_in_region {
            out.key_not_in_region = Some(KeyNotInRegion {
                key: k.key.clone(),
                region_id: k.region_id,
                start_key: k.start_key.clone(),
                end_key: k.end_key.clone(),
            });
        } else if let Some(r) = &e.region_not_found {
            out.region_not_found = Some(RegionNotFound {
                region_id: r.region_id,
            });
        } else if let Some(b) = &e.server_is_busy {
            metrics::counter!("raftkv_server_busy_total").increment(1);
            out.server_is_busy = Some(ServerIsBusy {
                reason: b.reason.clone(),
                backoff_ms: b.backoff_ms,
            });
        } else if e.stale_command.is_some() {
            out.stale_command = Some(StaleCommand {});
        } else if let Some(f) = &e.sequence_forgotten {
            out.sequence_forgotten = Some(SequenceForgotten {
                client_id: f.client_id,
                sequence: f.sequence,
                first_kept_sequence: f.first_kept_sequence,
            });
        } else {
            // Not a routing error (entry too large, store mismatch, storage failure).
            return Failure::Other(e.message.clone());
        }
        Failure::Region(Box::new(out))
    }
}

fn region_not_found(region_id: u64) -> RegionError {
    RegionError {
        message: format!("region {region_id} not found"),
        region_not_found: Some(RegionNotFound { region_id }),
        ..Default::default()
    }
}

/// The client's view of a region.
#[must_use]
pub fn region_info(r: &Region) -> RegionInfo {
    let epoch = r.region_epoch.unwrap_or_default();
    RegionInfo {
        id: r.id,
        start_key: r.start_key.clone(),
        end_key: r.end_key.clone(),
        conf_ver: epoch.conf_ver,
        version: epoch.version,
        store_ids: r.peers.iter().map(|p| p.store_id).collect(),
    }
}

/// Splits a result into the two error fields of every response.
fn errors<T>(r: Result<T, Failure>) -> (Option<T>, Option<RegionError>, String) {
    match r {
        Ok(v) => (Some(v), None, String::new()),
        Err(Failure::Region(e)) => (None, Some(*e), String::new()),
        Err(Failure::Other(e)) => (None, None, e),
        Err(Failure::InvalidSplitKey(e)) => (None, None, split_key_message(&e)),
    }
}

/// The answer to a request admission control refused.
fn refused<R: Answer>(e: Box<RegionError>) -> Result<GrpcResponse<R>, Status> {
    Ok(GrpcResponse::new(R::with_region_error(*e)))
}

fn get(key: Bytes) -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: String::new(),
            key,
        }),
        ..Default::default()
    }
}

fn put(key: Bytes, value: Bytes) -> Request {
    Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest {
            cf: String::new(),
            key,
            value,
        }),
        ..Default::default()
    }
}

fn bad_request(msg: &str) -> Failure {
    Failure::Other(format!("bad request: {msg}"))
}

/// The first response of a successful command.
fn first(resp: RaftCmdResponse) -> Response {
    resp.responses.into_iter().next().unwrap_or_default()
}

impl KvService {
    /// Runs one request per key, one command per region (concurrently), and returns the
    /// responses in request order. The first failure fails the call (other regions' parts
    /// may have applied; an exactly-once retry applies only the rest).
    async fn per_region(
        &self,
        ctx: Option<&Context>,
        items: Vec<(Bytes, Request)>,
    ) -> Result<Vec<Response>, Failure> {
        let mut groups: BTreeMap<u64, Vec<(usize, Bytes, Request)>> = BTreeMap::new();
        for (i, (key, req)) in items.into_iter().enumerate() {
            let region = self.region_for(ctx, RouteBy::Key(&key)).await?;
            groups.entry(region.id).or_default().push((i, key, req));
        }
        let runs = groups.into_values().map(|group| async move {
            let first_key = group.first().map(|(_, k, _)| k.clone()).unwrap_or_default();
            let (indexes, requests): (Vec<usize>, Vec<Request>) =
                group.into_iter().map(|(i, _, r)| (i, r)).unzip();
            let (resp, _) = self
                .execute(ctx, RouteBy::Key(&first_key), |_| requests.clone())
                .await?;
            Ok::<_, Failure>(indexes.into_iter().zip(resp.responses).collect::<Vec<_>>())
        });
        let mut out = Vec::new();
        for r in join_all(runs).await {
            out.extend(r?);
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Deletes `[start, end)` region by region (or in the named region only).
    async fn delete_range(
        &self,
        ctx: Option<&Context>,
        start: Bytes,
        end: Bytes,
    ) -> Result<(), Failure> {
        let mut cursor = start;
        loop {
            let (_, region) = self
                .execute(ctx, RouteBy::Key(&cursor), |region: &Region| {
                    vec![Request {
                        cmd_type: CmdType::DeleteRange as i32,
                        delete_range: Some(Box::new(DeleteRangeRequest {
                            cf: String::new(),
                            start_key: clip_start(&cursor, region),
                            end_key: clip_end(&end, region),
                        })),
                        ..Default::default()
                    }]
                })
                .await?;
            if reaches(&region, &end) || pinned(ctx).is_some() {
                return Ok(());
            }
            cursor = region.end_key;
        }
    }
}

/// The single-key calls, answered the same way whether they came alone or in a
/// `BatchCommands` stream.
impl KvService {
    /// Answers `RawGet`.
    pub(crate) async fn answer_get(&self, req: kvrpc::RawGetRequest) -> kvrpc::RawGetResponse {
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return Answer::with_region_error(*e),
        };
        let ctx = req.context.as_ref();
        let r = self
            .execute(ctx, RouteBy::Key(&req.key), |_| vec![get(req.key.clone())])
            .await;
        let (resp, region_error, error) = errors(r);
        let got = resp.and_then(|(r, _)| first(r).get).unwrap_or_default();
        kvrpc::RawGetResponse {
            region_error,
            not_found: error.is_empty() && !got.found,
            error,
            value: got.value,
        }
    }

    /// Answers `RawPut`.
    pub(crate) async fn answer_put(&self, req: kvrpc::RawPutRequest) -> kvrpc::RawPutResponse {
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return Answer::with_region_error(*e),
        };
        let r = self
            .execute(req.context.as_ref(), RouteBy::Key(&req.key), |_| {
                vec![put(req.key.clone(), req.value.clone())]
            })
            .await;
        let (_, region_error, error) = errors(r);
        kvrpc::RawPutResponse {
            region_error,
            error,
        }
    }

    /// Answers `RawDelete`.
    pub(crate) async fn answer_delete(
        &self,
        req: kvrpc::RawDeleteRequest,
    ) -> kvrpc::RawDeleteResponse {
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return Answer::with_region_error(*e),
        };
        let cmd = Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: String::new(),
                key: req.key.clone(),
            }),
            ..Default::default()
        };
        let r = self
            .execute(req.context.as_ref(), RouteBy::Key(&req.key), |_| {
                vec![cmd.clone()]
            })
            .await;
        let (_, region_error, error) = errors(r);
        kvrpc::RawDeleteResponse {
            region_error,
            error,
        }
    }

    /// Answers `RawCompareAndSwap`.
    pub(crate) async fn answer_compare_and_swap(
        &self,
        req: kvrpc::RawCompareAndSwapRequest,
    ) -> kvrpc::RawCompareAndSwapResponse {
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return Answer::with_region_error(*e),
        };
        let cmd = Request {
            cmd_type: CmdType::CompareAndSwap as i32,
            cas: Some(Box::new(CompareAndSwapRequest {
                cf: String::new(),
                key: req.key.clone(),
                expected_value: req.previous_value,
                expect_absent: req.previous_not_exist,
                new_value: req.value,
                delete: req.delete,
            })),
            ..Default::default()
        };
        let r = self
            .execute(req.context.as_ref(), RouteBy::Key(&req.key), |_| {
                vec![cmd.clone()]
            })
            .await;
        let (resp, region_error, error) = errors(r);
        let cas = resp.and_then(|(r, _)| first(r).cas).unwrap_or_default();
        kvrpc::RawCompareAndSwapResponse {
            region_error,
            error,
            succeed: cas.succeeded,
            previous_not_exist: !cas.previous_found,
            previous_value: cas.previous_value,
        }
    }
}

#[tonic::async_trait]
impl kvrpc::kv_server::Kv for KvService {
    async fn raw_get(
        &self,
        request: GrpcRequest<kvrpc::RawGetRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawGetResponse>, Status> {
        Ok(GrpcResponse::new(
            self.answer_get(request.into_inner()).await,
        ))
    }

    async fn raw_put(
        &self,
        request: GrpcRequest<kvrpc::RawPutRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawPutResponse>, Status> {
        Ok(GrpcResponse::new(
            self.answer_put(request.into_inner()).await,
        ))
    }

    async fn raw_delete(
        &self,
        request: GrpcRequest<kvrpc::RawDeleteRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawDeleteResponse>, Status> {
        Ok(GrpcResponse::new(
            self.answer_delete(request.into_inner()).await,
        ))
    }

    async fn raw_scan(
        &self,
        request: GrpcRequest<kvrpc::RawScanRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawScanResponse>, Status> {
        let req = request.into_inner();
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return refused(e),
        };
        let ctx = req.context.as_ref();
        let r = async {
            if !req.end_key.is_empty() && req.end_key <= req.start_key {
                return Err(bad_request("scan end_key must be after start_key"));
            }
            let route = if req.reverse {
                RouteBy::Before(&req.end_key)
            } else {
                RouteBy::Key(&req.start_key)
            };
            // A scan covers one region: its range is clipped to the region's.
            let build = |region: &Region| {
                vec![Request {
                    cmd_type: CmdType::Scan as i32,
                    scan: Some(Box::new(ScanRequest {
                        cf: String::new(),
                        start_key: clip_start(&req.start_key, region),
                        end_key: clip_end(&req.end_key, region),
                        limit: req.limit,
                        reverse: req.reverse,
                        key_only: req.key_only,
                    })),
                    ..Default::default()
                }]
            };
            self.execute(ctx, route, build).await
        }
        .await;
        let (resp, region_error, error) = errors(r);
        let kvs = resp
            .and_then(|(r, _)| first(r).scan)
            .map(|s| {
                s.pairs
                    .into_iter()
                    .map(|p| KvPair {
                        key: p.key,
                        value: p.value,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(GrpcResponse::new(kvrpc::RawScanResponse {
            region_error,
            error,
            kvs,
        }))
    }

    async fn raw_batch_get(
        &self,
        request: GrpcRequest<kvrpc::RawBatchGetRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawBatchGetResponse>, Status> {
        let req = request.into_inner();
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return refused(e),
        };
        let items = req
            .keys
            .iter()
            .map(|k| (k.clone(), get(k.clone())))
            .collect();
        let r = self.per_region(req.context.as_ref(), items).await;
        let (resps, region_error, error) = errors(r);
        let pairs = resps
            .unwrap_or_default()
            .into_iter()
            .zip(req.keys)
            .filter_map(|(r, key)| {
                r.get.filter(|g| g.found).map(|g| KvPair {
                    key,
                    value: g.value,
                })
            })
            .collect();
        Ok(GrpcResponse::new(kvrpc::RawBatchGetResponse {
            region_error,
            error,
            pairs,
        }))
    }

    async fn raw_batch_put(
        &self,
        request: GrpcRequest<kvrpc::RawBatchPutRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawBatchPutResponse>, Status> {
        let req = request.into_inner();
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return refused(e),
        };
        let items = req
            .pairs
            .into_iter()
            .map(|p| (p.key.clone(), put(p.key, p.value)))
            .collect();
        let r = self.per_region(req.context.as_ref(), items).await;
        let (_, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::RawBatchPutResponse {
            region_error,
            error,
        }))
    }

    async fn raw_delete_range(
        &self,
        request: GrpcRequest<kvrpc::RawDeleteRangeRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawDeleteRangeResponse>, Status> {
        let req = request.into_inner();
        let _permit = match self.admit(&req) {
            Ok(permit) => permit,
            Err(e) => return refused(e),
        };
        let r = async {
            if !req.end_key.is_empty() && req.end_key <= req.start_key {
                return Err(bad_request("delete range end_key must be after start_key"));
            }
            self.delete_range(req.context.as_ref(), req.start_key, req.end_key)
                .await
        }
        .await;
        let (_, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::RawDeleteRangeResponse {
            region_error,
            error,
        }))
    }

    async fn raw_compare_and_swap(
        &self,
        request: GrpcRequest<kvrpc::RawCompareAndSwapRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawCompareAndSwapResponse>, Status> {
        Ok(GrpcResponse::new(
            self.answer_compare_and_swap(request.into_inner()).await,
        ))
    }

    type BatchCommandsStream = crate::batch_commands::AnswerStream;

    async fn batch_commands(
        &self,
        request: GrpcRequest<tonic::Streaming<kvrpc::BatchCommandsRequest>>,
    ) -> Result<GrpcResponse<Self::BatchCommandsStream>, Status> {
        Ok(GrpcResponse::new(crate::batch_commands::serve(
            Arc::new(self.clone()),
            request.into_inner(),
        )))
    }
}

impl AdminService {
    /// Runs the admin command `build` makes for region `region_id` on this store (the
    /// region's leader, or the answer is `not_leader`); a stale epoch is refreshed and
    /// retried once.
    async fn admin(
        &self,
        region_id: u64,
        build: impl Fn(&Region) -> Result<AdminRequest, Failure>,
    ) -> Result<RaftCmdResponse, Failure> {
        let svc = &self.0;
        let ctx = Context {
            region_id,
            ..Default::default()
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Admin calls are rare and check membership: route by the store's current view.
            svc.refresh_regions().await?;
            let region = svc.region_for(Some(&ctx), RouteBy::Key(&[])).await?;
            let admin = build(&region)?;
            let resp = svc.execute_on(None, &region, Vec::new(), Some(admin)).await;
            let Some(err) = resp.header.as_ref().and_then(|h| h.error.as_ref()) else {
                return Ok(resp);
            };
            if err.epoch_not_match.is_some() || err.region_not_found.is_some() {
                svc.refresh_regions().await?;
                if attempts < 2 {
                    continue;
                }
            }
            return Err(svc.to_failure(err));
        }
    }

    /// The region's peer on `store_id`.
    fn peer_on(region: &Region, store_id: u64) -> Result<Peer, Failure> {
        region
            .peers
            .iter()
            .find(|p| p.store_id == store_id)
            .copied()
            .ok_or_else(|| {
                bad_request(&format!(
                    "region {} has no peer on store {store_id}",
                    region.id
                ))
            })
    }

    /// The region after a membership change, from the admin response.
    fn changed_region(resp: RaftCmdResponse) -> Option<RegionInfo> {
        resp.admin_response
            .and_then(|a| a.change_peer)
            .and_then(|c| c.region)
            .map(|r| region_info(&r))
    }
}

fn change_peer(change_type: ConfChangeType, peer: Peer) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::ChangePeer as i32,
        change_peer: Some(ChangePeerRequest {
            change_type: change_type as i32,
            peer: Some(peer),
        }),
        ..Default::default()
    }
}

fn split_key_message(e: &InvalidSplitKey) -> String {
    let region = e.region.as_ref().map_or(0, |r| r.id);
    let what = match e.problem() {
        SplitKeyProblem::RegionBoundary => "is a boundary of the region already",
        SplitKeyProblem::OutsideRegion => "is outside the region",
        SplitKeyProblem::Repeated => "is given twice",
        SplitKeyProblem::Unspecified => "cannot split it",
    };
    format!("split key {:?} of region {region} {what}", e.key)
}

/// The batch split of `region` at `keys` (in key order), or the first key it cannot be
/// split at. raft-store checks the keys again when it proposes and applies the split
/// (against the region as it is then); this check gives the client a typed answer.
fn batch_split(region: &Region, keys: &[Bytes]) -> Result<AdminRequest, Failure> {
    if keys.is_empty() {
        return Err(bad_request("a split needs at least one split key"));
    }
    let mut keys = keys.to_vec();
    keys.sort();
    for (i, key) in keys.iter().enumerate() {
        let boundary =
            *key == region.start_key || (!region.end_key.is_empty() && *key == region.end_key);
        let problem = if boundary {
            SplitKeyProblem::RegionBoundary
        } else if !contains(region, key) {
            SplitKeyProblem::OutsideRegion
        } else if i > 0 && keys[i - 1] == *key {
            SplitKeyProblem::Repeated
        } else {
            continue;
        };
        return Err(Failure::InvalidSplitKey(Box::new(InvalidSplitKey {
            key: key.clone(),
            problem: problem as i32,
            region: Some(region_info(region)),
        })));
    }
    // Ids 0: the store allocates the new regions' and peers' ids.
    let requests = keys
        .into_iter()
        .map(|split_key| SplitRequest {
            split_key,
            ..Default::default()
        })
        .collect();
    Ok(AdminRequest {
        cmd_type: AdminCmdType::BatchSplit as i32,
        splits: Some(BatchSplitRequest { requests }),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl kvrpc::admin_server::Admin for AdminService {
    async fn status(
        &self,
        _request: GrpcRequest<kvrpc::StatusRequest>,
    ) -> Result<GrpcResponse<kvrpc::StatusResponse>, Status> {
        let svc = &self.0;
        let (statuses, region_error, error) = errors(svc.query_regions().await);
        let error = region_error.map_or(error, |e| e.message);
        let statuses = statuses.unwrap_or_default();
        let statuses = statuses
            .into_iter()
            .map(|s| kvrpc::RegionStatus {
                region: Some(region_info(&s.region)),
                leader_store_id: s.leader_store_id,
                is_leader: s.is_leader,
                term: s.term,
                applied_index: s.applied_index,
                commit_index: s.commit_index,
            })
            .collect();
        Ok(GrpcResponse::new(kvrpc::StatusResponse {
            error,
            store_id: svc.store_id,
            stores: svc
                .peers
                .iter()
                .map(|(id, addr)| kvrpc::StoreInfo {
                    id: *id,
                    addr: addr.clone(),
                })
                .collect(),
            regions: statuses,
        }))
    }

    async fn transfer_leader(
        &self,
        request: GrpcRequest<kvrpc::TransferLeaderRequest>,
    ) -> Result<GrpcResponse<kvrpc::TransferLeaderResponse>, Status> {
        let req = request.into_inner();
        let r = self
            .admin(req.region_id, |region| {
                let peer = Self::peer_on(region, req.to_store_id)?;
                Ok(AdminRequest {
                    cmd_type: AdminCmdType::TransferLeader as i32,
                    transfer_leader: Some(TransferLeaderRequest { peer: Some(peer) }),
                    ..Default::default()
                })
            })
            .await;
        let (_, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::TransferLeaderResponse {
            region_error,
            error,
        }))
    }

    async fn add_peer(
        &self,
        request: GrpcRequest<kvrpc::AddPeerRequest>,
    ) -> Result<GrpcResponse<kvrpc::AddPeerResponse>, Status> {
        let req = request.into_inner();
        let known = self.0.peers.contains_key(&req.store_id);
        let r = self
            .admin(req.region_id, |region| {
                if !known {
                    return Err(bad_request(&format!(
                        "store {} is not in this cluster's configuration",
                        req.store_id
                    )));
                }
                if region.peers.iter().any(|p| p.store_id == req.store_id) {
                    return Err(bad_request(&format!(
                        "region {} already has a peer on store {}",
                        region.id, req.store_id
                    )));
                }
                let change_type = if req.as_learner {
                    ConfChangeType::AddLearnerNode
                } else {
                    ConfChangeType::AddNode
                };
                // Peer id 0: the store allocates a cluster-unique one.
                let peer = Peer {
                    id: 0,
                    store_id: req.store_id,
                    role: 0,
                };
                Ok(change_peer(change_type, peer))
            })
            .await;
        let (resp, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::AddPeerResponse {
            region_error,
            error,
            region: resp.and_then(Self::changed_region),
        }))
    }

    async fn remove_peer(
        &self,
        request: GrpcRequest<kvrpc::RemovePeerRequest>,
    ) -> Result<GrpcResponse<kvrpc::RemovePeerResponse>, Status> {
        let req = request.into_inner();
        let svc = &self.0;
        let leads_here = svc.query_regions().await.is_ok_and(|statuses| {
            statuses
                .iter()
                .any(|s| s.region.id == req.region_id && s.is_leader)
        });
        let r = self
            .admin(req.region_id, |region| {
                if leads_here && req.store_id == svc.store_id {
                    return Err(bad_request(
                        "the leader cannot remove its own peer: transfer leadership first",
                    ));
                }
                let peer = Self::peer_on(region, req.store_id)?;
                Ok(change_peer(ConfChangeType::RemoveNode, peer))
            })
            .await;
        let (resp, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::RemovePeerResponse {
            region_error,
            error,
            region: resp.and_then(Self::changed_region),
        }))
    }

    async fn split_region(
        &self,
        request: GrpcRequest<kvrpc::SplitRegionRequest>,
    ) -> Result<GrpcResponse<kvrpc::SplitRegionResponse>, Status> {
        let req = request.into_inner();
        let r = self
            .admin(req.region_id, |region| batch_split(region, &req.split_keys))
            .await;
        let invalid_split_key = match &r {
            Err(Failure::InvalidSplitKey(e)) => Some((**e).clone()),
            _ => None,
        };
        let (resp, region_error, error) = errors(r);
        let regions = resp
            .and_then(|r| r.admin_response)
            .and_then(|a| a.splits)
            .map(|s| s.regions.iter().map(region_info).collect())
            .unwrap_or_default();
        Ok(GrpcResponse::new(kvrpc::SplitRegionResponse {
            region_error,
            error,
            regions,
            invalid_split_key,
        }))
    }
}
