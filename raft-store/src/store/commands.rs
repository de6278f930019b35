//! Commands proposed to this store's peers: routing checks and the ids a split or a peer
//! addition left for the store to allocate.

use engines::Engine;
use raft_core::eraftpb;

use super::Store;
use crate::error::{Error, Result};
use crate::msg::Callback;
use crate::pb::raft_cmdpb::{AdminCmdType, RaftCmdRequest, SplitRequest};
use crate::peer::error_response;
use crate::sender::RaftMessageSender;

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    pub(super) fn on_command(&mut self, req: RaftCmdRequest, callback: Callback) {
        let header = req.header.unwrap_or_default();
        if let Some(peer) = header.peer
            && peer.store_id != 0
            && peer.store_id != self.store_id
        {
            let e = Error::StoreNotMatch {
                request_store_id: peer.store_id,
                actual_store_id: self.store_id,
            };
            callback(error_response(&e));
            return;
        }
        let mut req = req;
        if let Err(e) = self.assign_new_ids(&mut req) {
            callback(error_response(&e));
            return;
        }
        let Some(peer) = self.peers.get_mut(&header.region_id) else {
            callback(error_response(&Error::RegionNotFound(header.region_id)));
            return;
        };
        if peer.pending_remove() {
            callback(error_response(&Error::RegionNotFound(header.region_id)));
            return;
        }
        peer.propose(&self.cfg, req, callback);
    }

    /// Fills in the ids a split request or a peer addition left 0, from this store's
    /// allocator (ids are unique in the cluster, so a client need not choose them).
    fn assign_new_ids(&mut self, req: &mut RaftCmdRequest) -> Result<()> {
        let peer_count = req
            .header
            .as_ref()
            .and_then(|h| self.peers.get(&h.region_id))
            .map_or(0, |p| p.region().peers.len());
        let Some(admin) = req.admin_request.as_mut() else {
            return Ok(());
        };
        let splits: Vec<&mut SplitRequest> = match admin.cmd_type() {
            AdminCmdType::Split => admin.split.iter_mut().collect(),
            AdminCmdType::BatchSplit => admin
                .splits
                .iter_mut()
                .flat_map(|b| b.requests.iter_mut())
                .collect(),
            AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2 => {
                let changes = admin
                    .change_peer
                    .iter_mut()
                    .chain(admin.change_peer_v2.iter_mut().flat_map(|v| &mut v.changes));
                for change in changes {
                    let adds = matches!(
                        eraftpb::ConfChangeType::try_from(change.change_type),
                        Ok(eraftpb::ConfChangeType::AddNode
                            | eraftpb::ConfChangeType::AddLearnerNode)
                    );
                    if let Some(peer) = change.peer.as_mut().filter(|p| adds && p.id == 0) {
                        peer.id = self.id_alloc.alloc(&self.kv_engine)?;
                    }
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        for s in splits {
            if s.new_region_id == 0 {
                s.new_region_id = self.id_alloc.alloc(&self.kv_engine)?;
            }
            while s.new_peer_ids.len() < peer_count {
                s.new_peer_ids.push(self.id_alloc.alloc(&self.kv_engine)?);
            }
        }
        Ok(())
    }
}
