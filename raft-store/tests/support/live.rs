//! Helpers for tests that run stores on real threads with real clocks.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use raft_store::StoreMailbox;

#[path = "requests.rs"]
mod requests;
use raft_store::pb::metapb::{Peer, Region, RegionEpoch};
use raft_store::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, Request, RequestHeader};
#[allow(unused_imports)] // each test crate uses its own subset
pub use requests::{get, put};

/// Region 1 over the whole key space with a peer on stores 1, 2 and 3.
pub fn region() -> Region {
    Region {
        id: 1,
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: (1..=3)
            .map(|id| Peer {
                id,
                store_id: id,
                role: 0,
            })
            .collect(),
        ..Default::default()
    }
}

/// A command for region 1 at its bootstrap epoch.
pub fn request(requests: Vec<Request>) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RequestHeader {
            region_id: 1,
            region_epoch: region().region_epoch,
            ..Default::default()
        }),
        requests,
        admin_request: None,
    }
}

/// Sends `req` to each store in turn until one (the leader) accepts it; returns that
/// store and the response. Panics on a non-retryable error or after a deadline.
pub async fn on_leader(
    mailboxes: &[(u64, StoreMailbox)],
    req: RaftCmdRequest,
) -> (u64, RaftCmdResponse) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (id, mailbox) in mailboxes {
            let resp = mailbox.execute(req.clone()).await;
            match resp.header.as_ref().and_then(|h| h.error.as_ref()) {
                None => return (*id, resp),
                Some(e) if e.not_leader.is_some() || e.stale_command.is_some() => {}
                Some(e) => panic!("request failed: {e:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader accepted the request in time"
        );
        // Polling: an election takes a few ticks and there is no event to wait on here.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
