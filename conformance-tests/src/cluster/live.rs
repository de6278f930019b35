//! Small helpers for tests that run stores on real threads with real clocks and talk to
//! their mailboxes directly.

use std::time::{Duration, Instant};

use raft_store::StoreMailbox;
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, Request, RequestHeader};

use super::first_region;

/// Region 1 over the whole key space with a peer on stores 1, 2 and 3.
#[must_use]
pub fn region() -> Region {
    first_region(3, b"", b"")
}

/// A command for region 1 at its bootstrap epoch.
#[must_use]
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
/// store and the response.
///
/// # Panics
/// On a non-retryable error, or when no store accepted it within 30 seconds.
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
