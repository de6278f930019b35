//! The gRPC `Kv` and `Admin` services of a node: each request is routed by key to a region
//! and sent to the store's raft worker as a `RaftCmdRequest`; raft-store's typed errors
//! come back as the response's `region_error`.
//!
//! Routing uses a cache of the regions on this store, refreshed from the raft worker's
//! routing snapshot (`StoreMsg::QueryRegions`) when a key has no cached region or the
//! store answers `EpochNotMatch` / `RegionNotFound`. A scan covers the region holding its
//! start key (its end is clipped to that region); a range write crossing a region
//! boundary is answered with `key_not_in_region`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use raft_store::pb::errorpb;
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{
    CmdType, DeleteRangeRequest, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest,
    RaftCmdResponse, Request, RequestHeader, ScanRequest,
};
use raft_store::region_check::key_in_region;
use raft_store::{RegionStatus, StoreMailbox, StoreMsg};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

mod transfer_leader;

use crate::proto::kvrpc::{
    self, Context, EpochNotMatch, KeyNotInRegion, KvPair, NotLeader, RegionError, RegionInfo,
    RegionNotFound, ServerIsBusy, StaleCommand,
};

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// A typed, region-level error for the client to act on.
    Region(Box<RegionError>),
    /// Anything else, as a message.
    Other(String),
}

/// Shared by the `Kv` and `Admin` services of one node.
#[derive(Debug, Clone)]
pub struct KvService {
    store_id: u64,
    mailbox: StoreMailbox,
    /// Every store's address, this one included.
    peers: Arc<BTreeMap<u64, String>>,
    /// The regions this node routes to, by id.
    regions: Arc<RwLock<BTreeMap<u64, Region>>>,
}

/// The `Admin` service over the same state as [`KvService`].
#[derive(Debug, Clone)]
pub struct AdminService(KvService);

impl KvService {
    /// A service for store `store_id` sending commands to `mailbox`, knowing `region`.
    #[must_use]
    pub fn new(
        store_id: u64,
        mailbox: StoreMailbox,
        peers: BTreeMap<u64, String>,
        region: Region,
    ) -> Self {
        Self {
            store_id,
            mailbox,
            peers: Arc::new(peers),
            regions: Arc::new(RwLock::new(BTreeMap::from([(region.id, region)]))),
        }
    }

    /// The admin service over the same routing state.
    #[must_use]
    pub fn admin(&self) -> AdminService {
        AdminService(self.clone())
    }

    /// The cached region for the context's region id or, without one, for `key`.
    fn cached_region(&self, ctx: Option<&Context>, key: &[u8]) -> Option<Region> {
        let regions = self.regions.read().unwrap_or_else(PoisonError::into_inner);
        match ctx.map(|c| c.region_id).filter(|id| *id != 0) {
            Some(id) => regions.get(&id).cloned(),
            None => regions.values().find(|r| key_in_region(key, r)).cloned(),
        }
    }

    /// The region to send a request for `key` to, refreshing the cache on a miss.
    async fn region_for(&self, ctx: Option<&Context>, key: &[u8]) -> Result<Region, Failure> {
        if let Some(region) = self.cached_region(ctx, key) {
            return Ok(region);
        }
        self.refresh_regions().await?;
        if let Some(region) = self.cached_region(ctx, key) {
            return Ok(region);
        }
        let error = match ctx.map(|c| c.region_id).filter(|id| *id != 0) {
            Some(id) => region_not_found(id),
            None => RegionError {
                message: format!("no region on this store holds key {key:?}"),
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
            regions.insert(s.region.id, s.region);
        }
        Ok(())
    }

    fn learn_regions(&self, current: &[Region]) {
        let mut regions = self.regions.write().unwrap_or_else(PoisonError::into_inner);
        for r in current {
            regions.insert(r.id, r.clone());
        }
    }

    /// Sends `requests` to the region holding `key` (or the context's region). An
    /// `EpochNotMatch` refreshes the routing cache and is retried once.
    async fn execute(
        &self,
        ctx: Option<&Context>,
        key: &[u8],
        requests: Vec<Request>,
    ) -> Result<RaftCmdResponse, Failure> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let region = self.region_for(ctx, key).await?;
            let resp = self.execute_on(ctx, &region, requests.clone()).await;
            let Some(err) = resp.header.as_ref().and_then(|h| h.error.as_ref()) else {
                return Ok(resp);
            };
            let stale_route = err.epoch_not_match.is_some() || err.region_not_found.is_some();
            if stale_route && attempts < 2 {
                if let Some(epoch) = &err.epoch_not_match {
                    self.learn_regions(&epoch.current_regions);
                }
                self.refresh_regions().await?;
                continue;
            }
            return Err(self.to_failure(err));
        }
    }

    async fn execute_on(
        &self,
        ctx: Option<&Context>,
        region: &Region,
        requests: Vec<Request>,
    ) -> RaftCmdResponse {
        let ctx = ctx.cloned().unwrap_or_default();
        let request = RaftCmdRequest {
            header: Some(RequestHeader {
                region_id: region.id,
                region_epoch: region.region_epoch,
                client_id: ctx.client_id,
                sequence: ctx.sequence,
                ..Default::default()
            }),
            requests,
            admin_request: None,
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
            out.server_is_busy = Some(ServerIsBusy {
                reason: b.reason.clone(),
                backoff_ms: b.backoff_ms,
            });
        } else if e.stale_command.is_some() {
            out.stale_command = Some(StaleCommand {});
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

fn region_info(r: &Region) -> RegionInfo {
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
    }
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

impl KvService {
    /// Runs one request per key, one command per region, and returns the responses in
    /// key order.
    async fn per_region(
        &self,
        ctx: Option<&Context>,
        items: Vec<(Bytes, Request)>,
    ) -> Result<Vec<raft_store::pb::raft_cmdpb::Response>, Failure> {
        let mut groups: BTreeMap<u64, Vec<(usize, Bytes, Request)>> = BTreeMap::new();
        for (i, (key, req)) in items.into_iter().enumerate() {
            let region = self.region_for(ctx, &key).await?;
            groups.entry(region.id).or_default().push((i, key, req));
        }
        let mut out = Vec::new();
        for group in groups.into_values() {
            let first_key = group.first().map(|(_, k, _)| k.clone()).unwrap_or_default();
            let (indexes, requests): (Vec<usize>, Vec<Request>) =
                group.into_iter().map(|(i, _, r)| (i, r)).unzip();
            let resp = self.execute(ctx, &first_key, requests).await?;
            out.extend(indexes.into_iter().zip(resp.responses));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }
}

#[tonic::async_trait]
impl kvrpc::kv_server::Kv for KvService {
    async fn raw_get(
        &self,
        request: GrpcRequest<kvrpc::RawGetRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawGetResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.as_ref();
        let r = self
            .execute(ctx, &req.key, vec![get(req.key.clone())])
            .await;
        let (resp, region_error, error) = errors(r);
        let got = resp
            .and_then(|r| r.responses.into_iter().next())
            .and_then(|r| r.get)
            .unwrap_or_default();
        Ok(GrpcResponse::new(kvrpc::RawGetResponse {
            region_error,
            not_found: error.is_empty() && !got.found,
            error,
            value: got.value,
        }))
    }

    async fn raw_put(
        &self,
        request: GrpcRequest<kvrpc::RawPutRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawPutResponse>, Status> {
        let req = request.into_inner();
        let r = self
            .execute(
                req.context.as_ref(),
                &req.key,
                vec![put(req.key.clone(), req.value)],
            )
            .await;
        let (_, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::RawPutResponse {
            region_error,
            error,
        }))
    }

    async fn raw_delete(
        &self,
        request: GrpcRequest<kvrpc::RawDeleteRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawDeleteResponse>, Status> {
        let req = request.into_inner();
        let cmd = Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: String::new(),
                key: req.key.clone(),
            }),
            ..Default::default()
        };
        let r = self
            .execute(req.context.as_ref(), &req.key, vec![cmd])
            .await;
        let (_, region_error, error) = errors(r);
        Ok(GrpcResponse::new(kvrpc::RawDeleteResponse {
            region_error,
            error,
        }))
    }

    async fn raw_scan(
        &self,
        request: GrpcRequest<kvrpc::RawScanRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawScanResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.as_ref();
        let r = async {
            if !req.end_key.is_empty() && req.end_key <= req.start_key {
                return Err(bad_request("scan end_key must be after start_key"));
            }
            let region = self.region_for(ctx, &req.start_key).await?;
            // Clip the range to the region: a scan covers one region in this slice.
            let mut end_key = req.end_key.clone();
            if !region.end_key.is_empty() && (end_key.is_empty() || end_key > region.end_key) {
                end_key = region.end_key.clone();
            }
            let cmd = Request {
                cmd_type: CmdType::Scan as i32,
                scan: Some(ScanRequest {
                    cf: String::new(),
                    start_key: req.start_key.clone(),
                    end_key,
                    limit: req.limit,
                    reverse: req.reverse,
                    key_only: req.key_only,
                }),
                ..Default::default()
            };
            self.execute(ctx, &req.start_key, vec![cmd]).await
        }
        .await;
        let (resp, region_error, error) = errors(r);
        let kvs = resp
            .and_then(|r| r.responses.into_iter().next())
            .and_then(|r| r.scan)
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
        let r = async {
            if !req.end_key.is_empty() && req.end_key <= req.start_key {
                return Err(bad_request("delete range end_key must be after start_key"));
            }
            let cmd = Request {
                cmd_type: CmdType::DeleteRange as i32,
                delete_range: Some(DeleteRangeRequest {
                    cf: String::new(),
                    start_key: req.start_key.clone(),
                    end_key: req.end_key.clone(),
                }),
                ..Default::default()
            };
            self.execute(req.context.as_ref(), &req.start_key, vec![cmd])
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
        _request: GrpcRequest<kvrpc::RawCompareAndSwapRequest>,
    ) -> Result<GrpcResponse<kvrpc::RawCompareAndSwapResponse>, Status> {
        Err(Status::unimplemented(
            "RawCompareAndSwap is not implemented yet: it needs a conditional write in \
             raft-store's apply (planned for the exactly-once slice)",
        ))
    }
}

#[tonic::async_trait]
impl kvrpc::admin_server::Admin for AdminService {
    async fn status(
        &self,
        _request: GrpcRequest<kvrpc::StatusRequest>,
    ) -> Result<GrpcResponse<kvrpc::StatusResponse>, Status> {
        let svc = &self.0;
        let (statuses, error) = match svc.query_regions().await {
            Ok(statuses) => (statuses, String::new()),
            Err(Failure::Region(e)) => (Vec::new(), e.message),
            Err(Failure::Other(e)) => (Vec::new(), e),
        };
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
        Ok(GrpcResponse::new(
            self.0.transfer_leader(request.into_inner()).await,
        ))
    }
}
