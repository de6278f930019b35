//! The KV API end to end on in-process clusters: compare-and-swap, exactly-once writes
//! (retries across a leader change, a restart and a split), requests across regions, and
//! the admin calls.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raftkv_examples::client::ScanOptions;
use raftkv_examples::proto::kvrpc;
use raftkv_examples::{Client, Error, Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[path = "support/raw_cas.rs"]
mod raw_cas;
mod support;
use raw_cas::{cas_request, send_until_served};
use support::{TICK_MS, endpoints, leader, shutdown, start_cluster, start_cluster_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_semantics() {
    let nodes = start_cluster().await;
    let client = Client::connect(endpoints(&nodes)).unwrap();
    let v = |s: &str| Some(Bytes::copy_from_slice(s.as_bytes()));
    let created = client.compare_and_swap("k", None, v("v1")).await.unwrap();
    assert!(created.succeeded && created.previous.is_none());
    let exists = client.compare_and_swap("k", None, v("v2")).await.unwrap();
    assert!(!exists.succeeded);
    assert_eq!(
        exists.previous,
        v("v1"),
        "a mismatch returns the current value"
    );
    let wrong = client
        .compare_and_swap("k", v("nope"), v("v2"))
        .await
        .unwrap();
    assert!(!wrong.succeeded && wrong.previous == v("v1"));
    assert_eq!(client.get("k").await.unwrap(), v("v1"));
    let swapped = client
        .compare_and_swap("k", v("v1"), v("v2"))
        .await
        .unwrap();
    assert!(swapped.succeeded && swapped.previous == v("v1"));
    assert_eq!(client.get("k").await.unwrap(), v("v2"));
    let deleted = client.compare_and_swap("k", v("v2"), None).await.unwrap();
    assert!(deleted.succeeded && deleted.previous == v("v2"));
    assert_eq!(client.get("k").await.unwrap(), None);
    let gone = client.compare_and_swap("k", v("v2"), None).await.unwrap();
    assert!(!gone.succeeded && gone.previous.is_none());
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compare_and_swap_increments_lose_no_update() {
    const CLIENTS: u64 = 4;
    const INCREMENTS: u64 = 10;
    let nodes = start_cluster().await;
    // Two client objects, each shared by two tasks: writes of one client are pipelined.
    let shared: Vec<Arc<Client>> = (0..2)
        .map(|_| Arc::new(Client::connect(endpoints(&nodes)).unwrap()))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = shared[i as usize % shared.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = client.get("counter").await.unwrap();
            for _ in 0..INCREMENTS {
                loop {
                    let n: u64 = seen
                        .as_deref()
                        .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                    let next = Bytes::from((n + 1).to_string());
                    let outcome = client
                        .compare_and_swap("counter", seen.clone(), Some(next.clone()))
                        .await
                        .unwrap();
                    if outcome.succeeded {
                        seen = Some(next);
                        break;
                    }
                    seen = outcome.previous;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let client = Client::connect(endpoints(&nodes)).unwrap();
    let total = client.get("counter").await.unwrap().unwrap();
    assert_eq!(&total[..], (CLIENTS * INCREMENTS).to_string().as_bytes());
    shutdown(nodes).await;
}

/// Three fjall nodes in `dir`, and their configs for restarting them.
async fn start_fjall_cluster(dir: &std::path::Path) -> (Vec<Node>, Vec<NodeConfig>) {
    let mut listeners = Vec::new();
    for id in 1..=3u64 {
        listeners.push((id, TcpListener::bind("127.0.0.1:0").await.unwrap()));
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let (mut nodes, mut configs) = (Vec::new(), Vec::new());
    for (id, l) in listeners {
        let mut cfg = NodeConfig::new(
            id,
            l.local_addr().unwrap(),
            peers.clone(),
            dir.join(format!("n{id}")),
        );
        cfg.tick_ms = TICK_MS;
        configs.push(cfg.clone());
        nodes.push(Node::start_on(cfg, l).await.unwrap());
    }
    (nodes, configs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_applies_once_across_a_leader_change_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, configs) = start_fjall_cluster(dir.path()).await;
    let client = Client::connect(endpoints(&nodes)).unwrap();
    let req = cas_request(42, 1, 1, "k", None, "first");
    let first = send_until_served(&endpoints(&nodes), &req).await;
    assert!(first.succeed && first.previous_not_exist, "{first:?}");
    // Applying it again would fail (the key exists): a retry gets the first answer.
    assert_eq!(send_until_served(&endpoints(&nodes), &req).await, first);
    client.put("k", "other").await.unwrap();
    assert_eq!(send_until_served(&endpoints(&nodes), &req).await, first);
    // After a leader change.
    let old = leader(&nodes).await;
    let new = (1..=3).find(|&id| id != old).unwrap();
    client.transfer_leader(1, new).await.unwrap();
    assert_eq!(leader(&nodes).await, new);
    assert_eq!(send_until_served(&endpoints(&nodes), &req).await, first);
    // After every node restarts from its data dir.
    for n in nodes.drain(..) {
        n.shutdown().await.unwrap();
    }
    for cfg in configs {
        nodes.push(Node::start(cfg).await.unwrap());
    }
    assert_eq!(send_until_served(&endpoints(&nodes), &req).await, first);
    assert_eq!(
        client.get("k").await.unwrap().as_deref(),
        Some(&b"other"[..])
    );
    // Write 2 says the client awaits nothing below 2: write 1 is forgotten, a typed error.
    let second =
        send_until_served(&endpoints(&nodes), &cas_request(42, 2, 2, "k2", None, "x")).await;
    assert!(second.succeed, "{second:?}");
    let late = send_until_served(&endpoints(&nodes), &req).await;
    let forgotten = late
        .region_error
        .and_then(|e| e.sequence_forgotten)
        .expect("sequence_forgotten");
    assert_eq!(
        (
            forgotten.client_id,
            forgotten.sequence,
            forgotten.first_kept_sequence
        ),
        (42, 1, 2)
    );
    shutdown(nodes).await;
}

/// Nodes whose regions split after a few KiB.
async fn start_splitting_cluster() -> Vec<Node> {
    start_cluster_with(3, |cfg| {
        cfg.store.region_max_size_bytes = 2 << 10;
        cfg.store.region_split_size_bytes = 1 << 10;
        cfg.store.split_check_tick_ticks = 5;
    })
    .await
}

/// Polls the cluster until it has at least `n` regions with a leader each.
async fn wait_for_regions(client: &Client, n: usize) -> Vec<kvrpc::RegionInfo> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = client.status().await.unwrap();
        let mut led: BTreeMap<u64, kvrpc::RegionInfo> = BTreeMap::new();
        for s in &statuses {
            for r in s.regions.iter().filter(|r| r.is_leader) {
                if let Some(info) = &r.region {
                    led.insert(info.id, info.clone());
                }
            }
        }
        if led.len() >= n {
            return led.into_values().collect();
        }
        assert!(Instant::now() < deadline, "only {} regions", led.len());
        // Splits are proposed by the stores' split check: poll for them.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i:02}"))
}

fn keys_of(pairs: &[(Bytes, Bytes)]) -> Vec<Bytes> {
    pairs.iter().map(|(k, _)| k.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_span_split_regions_and_split_regions_keep_sessions() {
    let nodes = start_splitting_cluster().await;
    let client = Client::connect(endpoints(&nodes)).unwrap();
    // An exactly-once write on the last key, applied by region 1 before any split.
    let req = cas_request(77, 1, 1, "zz", None, "once");
    let first = send_until_served(&endpoints(&nodes), &req).await;
    assert!(first.succeed, "{first:?}");
    let pairs: Vec<(Bytes, Bytes)> = (0..40)
        .map(|i| (key(i), Bytes::from(vec![b'v'; 100])))
        .collect();
    client.batch_put(pairs).await.unwrap();
    let regions = wait_for_regions(&client, 3).await;
    // The key now lives in a region split off region 1, which answers the retry from the
    // session it copied.
    let zz = client.region_for_key("zz").await.unwrap();
    assert_ne!(zz.id, 1, "{regions:?}");
    assert_eq!(send_until_served(&endpoints(&nodes), &req).await, first);

    let mut all: Vec<Bytes> = (0..40).map(key).collect();
    all.push(Bytes::from("zz"));
    let scanned = client.scan("", "", 0).await.unwrap();
    assert_eq!(keys_of(&scanned), all);
    let limited = client.scan("k05", "", 25).await.unwrap();
    assert_eq!(keys_of(&limited), all[5..30].to_vec());
    let reverse = client
        .scan_with(
            "k03",
            "",
            ScanOptions {
                limit: 30,
                reverse: true,
                key_only: true,
            },
        )
        .await
        .unwrap();
    let mut expected: Vec<Bytes> = all[11..].to_vec();
    expected.reverse();
    assert_eq!(keys_of(&reverse), expected);
    assert!(reverse.iter().all(|(_, v)| v.is_empty()), "keys only");
    let everything_back = client
        .scan_with(
            "",
            "",
            ScanOptions {
                reverse: true,
                ..ScanOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(everything_back.len(), all.len());

    // Batches and range deletes are split by region.
    let mut asked: Vec<Bytes> = all.iter().rev().cloned().collect();
    asked.insert(3, Bytes::from("missing"));
    let got = client.batch_get(asked).await.unwrap();
    let mut want: Vec<Bytes> = all.clone();
    want.reverse();
    assert_eq!(keys_of(&got), want);
    client
        .batch_put(vec![
            (Bytes::from("k00a"), Bytes::from("x")),
            (Bytes::from("k39a"), Bytes::from("y")),
        ])
        .await
        .unwrap();
    client.delete_range("k10", "k30").await.unwrap();
    let left = client.scan("", "", 0).await.unwrap();
    assert_eq!(left.len(), all.len() + 2 - 20);
    assert!(
        keys_of(&left)
            .iter()
            .all(|k| !(k[..] >= b"k10"[..] && k[..] < b"k30"[..]))
    );
    assert_eq!(
        client.get("k39a").await.unwrap().as_deref(),
        Some(&b"y"[..])
    );
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_move_membership_and_leadership() {
    // Store 4 is configured but not in the first region: it starts empty.
    let nodes = start_cluster_with(4, |cfg| cfg.initial_members = vec![1, 2, 3]).await;
    let client = Client::connect(endpoints(&nodes)).unwrap();
    client.put("a", "1").await.unwrap();
    let first = client.region_for_key("a").await.unwrap();
    assert_eq!(first.store_ids, vec![1, 2, 3]);
    let region = client.add_peer(1, 4).await.unwrap();
    assert_eq!(region.store_ids, vec![1, 2, 3, 4]);
    assert!(region.conf_ver > first.conf_ver);
    client.put("b", "2").await.unwrap();
    // The new peer catches up (by snapshot) and can take over.
    client.transfer_leader(1, 4).await.unwrap();
    assert_eq!(leader(&nodes).await, 4);
    let got = client
        .batch_get(vec![Bytes::from("a"), Bytes::from("b")])
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "served by the new leader: {got:?}");
    let region = client.remove_peer(1, 1).await.unwrap();
    assert_eq!(region.store_ids, vec![2, 3, 4]);
    client.put("c", "3").await.unwrap();
    assert_eq!(client.get("c").await.unwrap().as_deref(), Some(&b"3"[..]));
    // Clear refusals.
    match client.remove_peer(1, 4).await {
        Err(Error::Server(msg)) => assert!(msg.contains("transfer leadership first"), "{msg}"),
        r => panic!("the leader removing itself: {r:?}"),
    }
    match client.transfer_leader(1, 1).await {
        Err(Error::Server(msg)) => assert!(msg.contains("no peer on store 1"), "{msg}"),
        r => panic!("transfer to a store without a peer: {r:?}"),
    }
    match client.add_peer(1, 2).await {
        Err(Error::Server(msg)) => assert!(msg.contains("already has a peer"), "{msg}"),
        r => panic!("adding a present store: {r:?}"),
    }
    match client.add_peer(1, 9).await {
        Err(Error::Server(msg)) => assert!(msg.contains("not in this cluster"), "{msg}"),
        r => panic!("adding an unknown store: {r:?}"),
    }
    shutdown(nodes).await;
}
