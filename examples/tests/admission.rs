//! Admission control of the `Kv` service, over real gRPC, in front of a fake store
//! ([`fake_store`]), so "the limit is full" is an event (the held commands arrived).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use raftkv_examples::admission::BUSY_BACKOFF_MS;
use raftkv_examples::proto::kvrpc;
use raftkv_examples::proto::kvrpc::kv_client::KvClient;
use raftkv_examples::{Client, ServerLimits};

#[path = "support/fake_store.rs"]
mod fake_store;
use fake_store::{next_command, put, start};

fn busy_reason(resp: &kvrpc::RawPutResponse) -> Option<(String, u64)> {
    let busy = resp.region_error.as_ref()?.server_is_busy.as_ref()?;
    Some((busy.reason.clone(), busy.backoff_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_request_limit_answers_busy_until_a_request_finishes() {
    let mut node = start(ServerLimits {
        max_requests_in_flight: 2,
        ..ServerLimits::default()
    })
    .await;
    let kv = KvClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    // Two puts fill the limit: they are admitted and held at the store.
    let mut calls = Vec::new();
    for key in ["a", "b"] {
        let mut kv = kv.clone();
        calls.push(tokio::spawn(async move { kv.raw_put(put(key, 8)).await }));
    }
    let first = next_command(&mut node).await;
    let second = next_command(&mut node).await;
    assert_eq!(node.admission.requests_in_flight(), 2);

    // The third is refused at once, without reaching the store, and without its body
    // being read: 1 MiB, more than the HTTP/2 windows let the client send unread.
    let resp = kv
        .clone()
        .raw_put(put("c", 1 << 20))
        .await
        .unwrap()
        .into_inner();
    let (reason, backoff_ms) = busy_reason(&resp).expect("ServerIsBusy");
    assert!(reason.contains("requests in flight"), "{reason}");
    assert_eq!(backoff_ms, BUSY_BACKOFF_MS);
    assert_eq!(node.admission.refused(), 1);
    assert!(
        node.commands.try_recv().is_err(),
        "a refused put reached the store"
    );

    // The client library retries a busy answer after its backoff: it is refused while
    // the limit stays full, and served once a held request is answered.
    let client = Client::connect([node.addr.clone()]).unwrap();
    let retried = tokio::spawn(async move { client.put("d", "v").await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.admission.refused() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client did not retry"
        );
        tokio::time::sleep(Duration::from_millis(5)).await; // polling a counter
    }
    let mut held_keys = vec![first.key(), second.key()];
    held_keys.sort();
    assert_eq!(held_keys, [b"a".to_vec(), b"b".to_vec()]);
    first.succeed();
    second.succeed();
    for call in calls {
        let resp = call.await.unwrap().unwrap().into_inner();
        assert_eq!(resp.region_error, None);
        assert!(resp.error.is_empty(), "{}", resp.error);
    }
    let retry = next_command(&mut node).await;
    assert_eq!(retry.key(), b"d");
    retry.succeed();
    retried.await.unwrap().expect("the retried put succeeds");
    assert_eq!(node.admission.requests_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_limit_refuses_a_request_that_would_pass_it() {
    let mut node = start(ServerLimits {
        max_request_bytes_in_flight: 1000,
        ..ServerLimits::default()
    })
    .await;
    let kv = KvClient::connect(format!("http://{}", node.addr))
        .await
        .unwrap();
    let mut big = kv.clone();
    let held = tokio::spawn(async move { big.raw_put(put("big", 900)).await });
    let first = next_command(&mut node).await;
    assert!(node.admission.bytes_in_flight() > 900);

    let resp = kv
        .clone()
        .raw_put(put("more", 200))
        .await
        .unwrap()
        .into_inner();
    let (reason, _) = busy_reason(&resp).expect("ServerIsBusy");
    assert!(reason.contains("bytes in flight"), "{reason}");

    // A small one still fits beside it.
    let mut small = kv.clone();
    let fits = tokio::spawn(async move { small.raw_put(put("s", 1)).await });
    let second = next_command(&mut node).await;
    assert_eq!(second.key(), b"s");
    first.succeed();
    second.succeed();
    for call in [held, fits] {
        let resp = call.await.unwrap().unwrap().into_inner();
        assert_eq!(resp.region_error, None);
    }
    assert_eq!(node.admission.bytes_in_flight(), 0);
    let mut again = kv.clone();
    let answer = tokio::spawn(async move { again.raw_put(put("more", 200)).await });
    next_command(&mut node).await.succeed();
    let resp = answer.await.unwrap().unwrap().into_inner();
    assert_eq!(
        resp.region_error, None,
        "admitted again once the bytes were freed"
    );
}
