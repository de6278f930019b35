//! Raw gRPC compare-and-swap requests with hand-picked exactly-once fields, sent the way a
//! retrying client would: the tests resend the very same request (same client id and
//! sequence) and check it is applied once and answered with its original response.
#![allow(clippy::unwrap_used, dead_code)] // each test crate uses its own subset

use std::time::Duration;

use bytes::Bytes;
use raftkv_examples::proto::kvrpc::kv_client::KvClient;
use raftkv_examples::proto::kvrpc::{self, Context};
use tokio::time::Instant;

/// A compare-and-swap of `key` from `expected` (`None`: absent) to `new`, as write
/// `sequence` of `client_id` awaiting nothing below `first_awaited`.
pub fn cas_request(
    client_id: u64,
    sequence: u64,
    first_awaited: u64,
    key: &str,
    expected: Option<&str>,
    new: &str,
) -> kvrpc::RawCompareAndSwapRequest {
    kvrpc::RawCompareAndSwapRequest {
        context: Some(Context {
            client_id,
            sequence,
            first_awaited_sequence: first_awaited,
            ..Context::default()
        }),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(new.as_bytes()),
        previous_value: Bytes::copy_from_slice(expected.unwrap_or_default().as_bytes()),
        previous_not_exist: expected.is_none(),
        ..Default::default()
    }
}

/// Sends `req` over raw gRPC to each of `addrs` in turn until one serves it (no routing or
/// leadership error, no transport failure), as a client retrying the same request would.
/// Panics after 20 s.
pub async fn send_until_served(
    addrs: &[String],
    req: &kvrpc::RawCompareAndSwapRequest,
) -> kvrpc::RawCompareAndSwapResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for addr in addrs {
            let Ok(mut kv) = KvClient::connect(format!("http://{addr}")).await else {
                continue;
            };
            let Ok(resp) = kv.raw_compare_and_swap(req.clone()).await else {
                continue;
            };
            let resp = resp.into_inner();
            let retry = resp.region_error.as_ref().is_some_and(|e| {
                e.not_leader.is_some()
                    || e.stale_command.is_some()
                    || e.epoch_not_match.is_some()
                    || e.region_not_found.is_some()
            });
            if !retry {
                return resp;
            }
        }
        assert!(Instant::now() < deadline, "no node served the request");
        // Polling for a leader: there is no event to wait on from outside.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
