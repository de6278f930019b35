//! Builders of raft-store data requests, shared by the test support modules.
#![allow(dead_code)]

use raft_store::pb::raft_cmdpb::{
    CmdType, CompareAndSwapRequest, DeleteRangeRequest, DeleteRequest, GetRequest, PutRequest,
    Request, ScanRequest,
};

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

pub fn scan(start: &[u8], end: &[u8], limit: u32, reverse: bool) -> Request {
    Request {
        cmd_type: CmdType::Scan as i32,
        scan: Some(ScanRequest {
            start_key: start.to_vec().into(),
            end_key: end.to_vec().into(),
            limit,
            reverse,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn delete_range(start: &[u8], end: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::DeleteRange as i32,
        delete_range: Some(DeleteRangeRequest {
            cf: String::new(),
            start_key: start.to_vec().into(),
            end_key: end.to_vec().into(),
        }),
        ..Default::default()
    }
}

/// A compare-and-swap of `key`: `expected` None = expect absent, `new` None = delete.
pub fn cas(key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> Request {
    Request {
        cmd_type: CmdType::CompareAndSwap as i32,
        cas: Some(CompareAndSwapRequest {
            cf: String::new(),
            key: key.to_vec().into(),
            expected_value: expected.unwrap_or_default().to_vec().into(),
            expect_absent: expected.is_none(),
            new_value: new.unwrap_or_default().to_vec().into(),
            delete: new.is_none(),
        }),
        ..Default::default()
    }
}
