//! The `Admin.TransferLeader` call: a `TransferLeader` admin command to the region's leader.

use raft_store::pb::raft_cmdpb::{
    AdminCmdType, AdminRequest, RaftCmdRequest, RequestHeader, TransferLeaderRequest,
};

use super::{Failure, KvService, bad_request, errors};
use crate::proto::kvrpc::{self, Context};

impl KvService {
    /// Starts moving the leadership of `req.region_id` to its peer on `req.to_store_id`;
    /// answered once raft has started the transfer (or refused it).
    pub(super) async fn transfer_leader(
        &self,
        req: kvrpc::TransferLeaderRequest,
    ) -> kvrpc::TransferLeaderResponse {
        let r = async {
            if req.region_id == 0 {
                return Err(bad_request("region_id is required"));
            }
            let ctx = Context {
                region_id: req.region_id,
                ..Default::default()
            };
            let region = self.region_for(Some(&ctx), &[]).await?;
            let peer = region
                .peers
                .iter()
                .find(|p| p.store_id == req.to_store_id)
                .copied()
                .ok_or_else(|| {
                    bad_request(&format!(
                        "store {} has no peer of region {}",
                        req.to_store_id, req.region_id
                    ))
                })?;
            let cmd = RaftCmdRequest {
                header: Some(RequestHeader {
                    region_id: region.id,
                    region_epoch: region.region_epoch,
                    ..Default::default()
                }),
                requests: Vec::new(),
                admin_request: Some(AdminRequest {
                    cmd_type: AdminCmdType::TransferLeader as i32,
                    transfer_leader: Some(TransferLeaderRequest { peer: Some(peer) }),
                    ..Default::default()
                }),
            };
            let resp = self.mailbox.execute(cmd).await;
            match resp.header.and_then(|h| h.error) {
                Some(e) => Err::<(), Failure>(self.to_failure(&e)),
                None => Ok(()),
            }
        }
        .await;
        let (_, region_error, error) = errors(r);
        kvrpc::TransferLeaderResponse {
            region_error,
            error,
        }
    }
}
