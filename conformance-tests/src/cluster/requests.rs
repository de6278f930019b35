//! Builders of raft-store requests: data commands (put, get, delete, scan, delete-range,
//! compare-and-swap) and admin
//! commands (conf change, leader transfer, split).

use raft_core::eraftpb::ConfChangeType;
use raft_store::pb::metapb::Peer;
use raft_store::pb::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, ChangePeerV2Request, CmdType,
    CompareAndSwapRequest, DeleteRangeRequest, DeleteRequest, GetRequest, PutRequest, Request,
    ScanRequest, SplitRequest, TransferLeaderRequest,
};

/// Sets `key` to `value` in the default column family.
#[must_use]
pub fn put(key: &[u8], value: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest {
            cf: String::new(),
            key: key.to_vec().into(),
            value: value.to_vec().into(),
        }),
        ..Default::default()
    }
}

/// Reads `key` from the default column family.
#[must_use]
pub fn get(key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: String::new(),
            key: key.to_vec().into(),
        }),
        ..Default::default()
    }
}

/// Removes `key` from the default column family.
#[must_use]
pub fn delete(key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Delete as i32,
        delete: Some(DeleteRequest {
            cf: String::new(),
            key: key.to_vec().into(),
        }),
        ..Default::default()
    }
}

/// Scans `[start, end)` (empty `end`: unbounded), at most `limit` pairs (0: no limit).
#[must_use]
pub fn scan(start: &[u8], end: &[u8], limit: u32, reverse: bool) -> Request {
    Request {
        cmd_type: CmdType::Scan as i32,
        scan: Some(Box::new(ScanRequest {
            start_key: start.to_vec().into(),
            end_key: end.to_vec().into(),
            limit,
            reverse,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Deletes every key in `[start, end)` of the default column family.
#[must_use]
pub fn delete_range(start: &[u8], end: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::DeleteRange as i32,
        delete_range: Some(Box::new(DeleteRangeRequest {
            cf: String::new(),
            start_key: start.to_vec().into(),
            end_key: end.to_vec().into(),
        })),
        ..Default::default()
    }
}

/// A compare-and-swap of `key`: `expected` None = expect absent, `new` None = delete.
#[must_use]
pub fn cas(key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Request {
    Request {
        cmd_type: CmdType::CompareAndSwap as i32,
        cas: Some(Box::new(CompareAndSwapRequest {
            cf: String::new(),
            key: key.to_vec().into(),
            expected_value: expected.unwrap_or_default().to_vec().into(),
            expect_absent: expected.is_none(),
            new_value: new.unwrap_or_default().to_vec().into(),
            delete: new.is_none(),
        })),
        ..Default::default()
    }
}

fn voter(peer_id: u64, store_id: u64) -> Peer {
    Peer {
        id: peer_id,
        store_id,
        role: 0,
    }
}

/// Adds or removes peer `peer_id` on `store_id` (a one-step conf change).
#[must_use]
pub fn change_peer(change_type: ConfChangeType, peer_id: u64, store_id: u64) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::ChangePeer as i32,
        change_peer: Some(ChangePeerRequest {
            change_type: change_type as i32,
            peer: Some(voter(peer_id, store_id)),
        }),
        ..Default::default()
    }
}

/// Several peer changes at once, through joint consensus: `(type, peer id, store id)`.
#[must_use]
pub fn change_peers_v2(changes: &[(ConfChangeType, u64, u64)]) -> AdminRequest {
    let changes = changes
        .iter()
        .map(|&(t, peer_id, store_id)| ChangePeerRequest {
            change_type: t as i32,
            peer: Some(voter(peer_id, store_id)),
        })
        .collect();
    AdminRequest {
        cmd_type: AdminCmdType::ChangePeerV2 as i32,
        change_peer_v2: Some(ChangePeerV2Request { changes }),
        ..Default::default()
    }
}

/// Hands leadership to peer `peer_id` on `store_id`.
#[must_use]
pub fn transfer_leader(peer_id: u64, store_id: u64) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::TransferLeader as i32,
        transfer_leader: Some(TransferLeaderRequest {
            peer: Some(voter(peer_id, store_id)),
        }),
        ..Default::default()
    }
}

/// Splits the region at `key` (the new region takes `[key, end)`); the store fills in
/// the new ids.
#[must_use]
pub fn split_at(key: &[u8]) -> AdminRequest {
    AdminRequest {
        cmd_type: AdminCmdType::Split as i32,
        split: Some(SplitRequest {
            split_key: key.to_vec().into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
