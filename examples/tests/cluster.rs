//! Three nodes in one process on loopback (memory engines), driven through the client and
//! raw gRPC: the KV operations, leader failover, and bad requests.

use std::collections::BTreeMap;
use std::time::Duration;

use raftkv_examples::proto::kvrpc::admin_client::AdminClient;
use raftkv_examples::proto::kvrpc::kv_client::KvClient;
use raftkv_examples::proto::kvrpc::{self, Context};
use raftkv_examples::{Client, EngineKind, Error, Node, NodeConfig, RaftEngineKind};
use tokio::net::TcpListener;

mod support;
use support::{ENTRY_MAX_BYTES, TICK_MS, endpoints, leader, node, shutdown, start_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_scan_through_the_client() {
    let nodes = start_cluster().await;
    let client = Client::connect(endpoints(&nodes)).expect("client");
    for i in 0..10u8 {
        client.put(format!("k{i}"), vec![i; 3]).await.expect("put");
    }
    assert_eq!(
        client.get("k3").await.expect("get").as_deref(),
        Some(&[3u8; 3][..])
    );
    assert_eq!(client.get("missing").await.expect("get"), None);
    client.delete("k3").await.expect("delete");
    assert_eq!(client.get("k3").await.expect("get"), None);
    let pairs = client.scan("k2", "k6", 0).await.expect("scan");
    let keys: Vec<_> = pairs.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(keys, vec![&b"k2"[..], b"k4", b"k5"]);
    let limited = client.scan("", "", 2).await.expect("scan");
    assert_eq!(limited.len(), 2);
    assert_eq!(&limited[0].0[..], b"k0");
    // The leader's status reports region 1 with its indexes past the 11 writes.
    let leader_id = leader(&nodes).await;
    let leader_addr = node(&nodes, leader_id).addr();
    let mut admin = AdminClient::connect(format!("http://{leader_addr}"))
        .await
        .expect("connect");
    let status = admin
        .status(kvrpc::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.error.is_empty(), "{}", status.error);
    assert_eq!(status.stores.len(), 3);
    let region = &status.regions[0];
    assert_eq!(region.region.as_ref().map(|r| r.id), Some(1));
    assert_eq!(region.leader_store_id, leader_id);
    assert!(region.commit_index >= region.applied_index && region.applied_index > 5 + 11);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_calls_and_delete_range_over_raw_grpc() {
    let nodes = start_cluster().await;
    let client = Client::connect(endpoints(&nodes)).expect("client");
    client.put("warmup", "x").await.expect("put");
    let leader = leader(&nodes).await;
    let addr = node(&nodes, leader).addr();
    let mut kv = KvClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let pairs = (0..5u8)
        .map(|i| kvrpc::KvPair {
            key: format!("b{i}").into(),
            value: vec![i].into(),
        })
        .collect();
    let resp = kv
        .raw_batch_put(kvrpc::RawBatchPutRequest {
            context: Some(Context {
                client_id: 7,
                sequence: 1,
                ..Context::default()
            }),
            pairs,
        })
        .await
        .expect("rpc")
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    let resp = kv
        .raw_batch_get(kvrpc::RawBatchGetRequest {
            context: None,
            keys: vec!["b1".into(), "nope".into(), "b4".into()],
        })
        .await
        .expect("rpc")
        .into_inner();
    let keys: Vec<_> = resp.pairs.iter().map(|p| p.key.as_ref()).collect();
    assert_eq!(keys, vec![&b"b1"[..], b"b4"]);
    let resp = kv
        .raw_delete_range(kvrpc::RawDeleteRangeRequest {
            context: None,
            start_key: "b1".into(),
            end_key: "b3".into(),
        })
        .await
        .expect("rpc")
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    let scan = client.scan("b", "c", 0).await.expect("scan");
    let keys: Vec<_> = scan.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(keys, vec![&b"b0"[..], b"b3", b"b4"]);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_keeps_serving_after_the_leader_stops() {
    let mut nodes = start_cluster().await;
    let client = Client::connect(endpoints(&nodes)).expect("client");
    client.put("before", "1").await.expect("put");
    let old = leader(&nodes).await;
    let pos = nodes
        .iter()
        .position(|n| n.store_id() == old)
        .expect("leader node");
    nodes.remove(pos).shutdown().await.expect("stop leader");
    client.put("after", "2").await.expect("put after failover");
    assert_eq!(
        client.get("before").await.expect("get").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        client.get("after").await.expect("get").as_deref(),
        Some(&b"2"[..])
    );
    let new = leader(&nodes).await;
    assert_ne!(new, old);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_typed_errors() {
    let nodes = start_cluster().await;
    let client = Client::connect(endpoints(&nodes))
        .expect("client")
        .with_timeout(Duration::from_secs(10));
    client.put("ok", "1").await.expect("put");
    // A value over raft_entry_max_bytes is refused, not retried.
    let big = vec![0u8; ENTRY_MAX_BYTES as usize + 1];
    match client.put("big", big).await {
        Err(Error::Server(msg)) => assert!(msg.contains("too large"), "{msg}"),
        other => panic!("expected an entry-too-large error, got {other:?}"),
    }
    // A request for a region this node does not have gets a typed region error.
    let mut kv = KvClient::connect(format!("http://{}", nodes[0].addr()))
        .await
        .expect("connect");
    let resp = kv
        .raw_get(kvrpc::RawGetRequest {
            context: Some(Context {
                region_id: 42,
                ..Context::default()
            }),
            key: "ok".into(),
        })
        .await
        .expect("rpc")
        .into_inner();
    let region_error = resp.region_error.expect("a region error");
    assert_eq!(region_error.region_not_found.map(|r| r.region_id), Some(42));
    // A scan whose end is before its start is a bad request.
    let resp = kv
        .raw_scan(kvrpc::RawScanRequest {
            start_key: "b".into(),
            end_key: "a".into(),
            ..Default::default()
        })
        .await
        .expect("rpc")
        .into_inner();
    assert!(resp.error.contains("bad request"), "{resp:?}");
    // A key longer than the engines accept is refused before it reaches them.
    match client.put(vec![b'k'; 600], "v").await {
        Err(Error::Server(msg)) => assert!(msg.contains("600 bytes is longer"), "{msg}"),
        other => panic!("expected a key-too-long error, got {other:?}"),
    }
    match client.compare_and_swap(vec![b'k'; 600], None, None).await {
        Err(Error::Server(msg)) => assert!(msg.contains("bad request"), "{msg}"),
        other => panic!("expected a key-too-long error, got {other:?}"),
    }
    // The store survived both: it still serves.
    assert_eq!(
        client.get("ok").await.expect("get").as_deref(),
        Some(&b"1"[..])
    );
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_and_a_foreign_data_dir_are_refused() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = BTreeMap::from([(1, addr.to_string())]);
    let cfg = NodeConfig::new(1, addr, peers, dir.path().to_path_buf());
    match Node::start(cfg).await {
        Err(Error::AddrInUse { .. }) => {}
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    // A data dir written by store 1 refuses to start as store 2.
    let l1 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a1 = l1.local_addr().expect("addr");
    let cfg = NodeConfig::new(
        1,
        a1,
        BTreeMap::from([(1, a1.to_string())]),
        dir.path().into(),
    );
    Node::start_on(cfg, l1)
        .await
        .expect("start")
        .shutdown()
        .await
        .expect("stop");
    let l2 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a2 = l2.local_addr().expect("addr");
    let cfg = NodeConfig::new(
        2,
        a2,
        BTreeMap::from([(2, a2.to_string())]),
        dir.path().into(),
    );
    match Node::start_on(cfg, l2).await {
        Err(e @ Error::StoreNotMatch { .. }) => {
            assert!(e.to_string().contains("belongs to store 1"), "{e}");
        }
        other => panic!("expected StoreNotMatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_fjall_node_keeps_its_data_and_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut listeners = Vec::new();
    for id in 1..=3u64 {
        listeners.push((id, TcpListener::bind("127.0.0.1:0").await.expect("bind")));
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().expect("addr").to_string()))
        .collect();
    let config = |id: u64, addr| {
        let mut cfg = NodeConfig::new(id, addr, peers.clone(), dir.path().join(format!("n{id}")));
        cfg.tick_ms = TICK_MS;
        cfg
    };
    let mut nodes = Vec::new();
    for (id, l) in listeners {
        let cfg = config(id, l.local_addr().expect("addr"));
        nodes.push(Node::start_on(cfg, l).await.expect("start"));
    }
    let client = Client::connect(endpoints(&nodes)).expect("client");
    client
        .batch_put(vec![("x1".into(), "1".into()), ("x2".into(), "2".into())])
        .await
        .expect("batch put");
    // Stop a follower, write while it is down, restart it from its data dir.
    let leader_id = leader(&nodes).await;
    let pos = nodes
        .iter()
        .position(|n| n.store_id() != leader_id)
        .expect("a follower");
    let follower = nodes.remove(pos);
    let (follower_id, follower_addr) = (follower.store_id(), follower.addr());
    follower.shutdown().await.expect("stop follower");
    client.put("x3", "3").await.expect("put while down");
    nodes.push(
        Node::start(config(follower_id, follower_addr))
            .await
            .expect("restart"),
    );
    // Stop the other surviving node that is not the restarted one: from now on every
    // quorum includes the restarted node, so it must have caught up.
    let pos = nodes
        .iter()
        .position(|n| n.store_id() != leader_id && n.store_id() != follower_id)
        .or_else(|| nodes.iter().position(|n| n.store_id() == leader_id))
        .expect("another node");
    nodes.remove(pos).shutdown().await.expect("stop");
    client
        .put("x4", "4")
        .await
        .expect("put with the restarted node in the quorum");
    let got = client
        .batch_get(vec!["x1".into(), "x2".into(), "x3".into(), "x4".into()])
        .await
        .expect("batch get");
    assert_eq!(got.len(), 4);
    client.delete_range("x2", "x4").await.expect("delete range");
    let left: Vec<_> = client
        .scan("x", "y", 0)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        left,
        vec![bytes::Bytes::from("x1"), bytes::Bytes::from("x4")]
    );
    shutdown(nodes).await;
}

/// Starts a single fjall (or heed) node in `dir` with its raft log in `raft_engine`.
async fn start_single(
    dir: &std::path::Path,
    engine: EngineKind,
    raft_engine: RaftEngineKind,
) -> raftkv_examples::Result<Node> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut cfg = NodeConfig::new(1, addr, BTreeMap::from([(1, addr.to_string())]), dir.into());
    cfg.engine = engine;
    cfg.raft_engine = raft_engine;
    cfg.tick_ms = TICK_MS;
    Node::start_on(cfg, listener).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_raft_engine_keeps_the_log_in_its_own_dir_and_a_data_dir_keeps_its_raft_engine() {
    let engines = [
        EngineKind::Fjall,
        #[cfg(feature = "heed")]
        EngineKind::Heed,
    ];
    for engine in engines {
        for (raft_engine, other) in [
            (RaftEngineKind::Log, RaftEngineKind::Kv),
            (RaftEngineKind::Kv, RaftEngineKind::Log),
        ] {
            let what = format!("{engine:?} with the raft log in {raft_engine:?}");
            let dir = tempfile::tempdir().expect("tempdir");
            let node = start_single(dir.path(), engine, raft_engine)
                .await
                .expect("start");
            let client = Client::connect(endpoints(std::slice::from_ref(&node))).expect("client");
            client.put("k", "v").await.expect("put");
            node.shutdown().await.expect("stop");
            assert!(dir.path().join(raft_engine.dir_name()).is_dir(), "{what}");
            assert!(!dir.path().join(other.dir_name()).exists(), "{what}");

            // The other raft engine would find an empty log: refused, naming the setting.
            match start_single(dir.path(), engine, other).await {
                Err(e @ Error::DataDir { .. }) => {
                    let wanted = format!("raft_engine = \"{}\"", raft_engine.name());
                    assert!(e.to_string().contains(&wanted), "{what}: {e}");
                }
                other => panic!("{what}: expected DataDir, got {other:?}"),
            }
            assert!(!dir.path().join(other.dir_name()).exists(), "{what}");

            let node = start_single(dir.path(), engine, raft_engine)
                .await
                .expect("restart");
            let client = Client::connect(endpoints(std::slice::from_ref(&node))).expect("client");
            assert_eq!(
                client.get("k").await.expect("get").as_deref(),
                Some(&b"v"[..]),
                "{what}"
            );
            node.shutdown().await.expect("stop");
        }
    }
}
