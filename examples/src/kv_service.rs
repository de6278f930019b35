//! The gRPC `Kv` and `Admin` services of a node: each request is routed by key to a region
//! and sent to the store's raft worker as a `RaftCmdRequest`; raft-store's typed errors
//! come back as the response's `region_error`.
//!
//! Routing uses a cache of the regions this node knows (the bootstrap region, refreshed
//! from `EpochNotMatch` answers). This slice runs one region covering the whole key space,
//! so a scan or a batch covers one region; a range crossing a region boundary after a
//! split is answered with `key_not_in_region`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use raft_store::StoreMailbox;
use raft_store::pb::errorpb;
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{
    CmdType, DeleteRangeRequest, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest,
    RaftCmdResponse, Request, RequestHeader, ScanRequest, SnapRequest,
};
use raft_store::region_check::key_in_region;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

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

    fn region_for(&self, ctx: Option<&Context>, key: &[u8]) -> Result<Region, Failure> {
        let regions = self.regions.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = ctx.map(|c| c.region_id).filter(|id| *id != 0) {
            return regions
                .get(&id)
                .cloned()
                .ok_or_else(|| Failure::Region(Box::new(region_not_found(id))));
        }
        regions
            .values()
            .find(|r| key_in_region(key, r))
            .cloned()
            .ok_or_else(|| {
                Failure::Region(Box::new(RegionError {
                    message: format!("no known region holds key {key:?}"),
                    region_not_found: Some(RegionNotFound { region_id: 0 }),
                    ..Default::default()
                }))
            })
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
            let region = self.region_for(ctx, key)?;
            let resp = self.execute_on(ctx, &region, requests.clone()).await;
            let Some(err) = resp.header.as_ref().and_then(|h| h.error.as_ref()) else {
                return Ok(resp);
            };
            if let Some(epoch) = &err.epoch_not_match {
                self.learn_regions(&epoch.current_regions);
                if attempts < 2 {
                    continue;
                }
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
            let region = self.region_for(ctx, &key)?;
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
            let region = self.region_for(ctx, &req.start_key)?;
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
        let regions: Vec<Region> = svc
            .regions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut statuses = Vec::new();
        for region in regions {
            let snap = Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(SnapRequest {}),
                ..Default::default()
            };
            let resp = svc.execute_on(None, &region, vec![snap]).await;
            let term = resp.header.as_ref().map_or(0, |h| h.current_term);
            let mut status = kvrpc::RegionStatus {
                region: Some(region_info(&region)),
                term,
                ..Default::default()
            };
            match resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                None => {
                    status.is_leader = true;
                    status.leader_store_id = svc.store_id;
                    if let Some(r) = resp.responses.first().and_then(|r| r.snap.as_ref()) {
                        status.region = r.region.as_ref().map(region_info);
                    }
                }
                Some(e) => {
                    status.leader_store_id = e
                        .not_leader
                        .as_ref()
                        .and_then(|nl| nl.leader)
                        .map_or(0, |p| p.store_id);
                }
            }
            statuses.push(status);
        }
        Ok(GrpcResponse::new(kvrpc::StatusResponse {
            error: String::new(),
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
}
