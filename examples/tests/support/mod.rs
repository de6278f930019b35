//! In-process clusters of `Node`s on loopback for the examples' tests.
#![allow(dead_code, clippy::unwrap_used)] // each test crate uses its own subset

use std::collections::BTreeMap;
use std::time::Duration;

use raftkv_examples::proto::kvrpc::{self, admin_client::AdminClient};
use raftkv_examples::{EngineKind, Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The raft tick of test nodes.
pub const TICK_MS: u64 = 20;
/// The entry size limit of test nodes (small, so "too large" is cheap to provoke).
pub const ENTRY_MAX_BYTES: u64 = 64 << 10;

/// Starts stores 1..=n on fresh loopback ports with memory engines; `tune` adjusts each
/// node's config.
pub async fn start_cluster_with(n: u64, tune: impl Fn(&mut NodeConfig)) -> Vec<Node> {
    let mut listeners = Vec::new();
    for id in 1..=n {
        listeners.push((id, TcpListener::bind("127.0.0.1:0").await.unwrap()));
    }
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let mut cfg = NodeConfig::new(
            id,
            listener.local_addr().unwrap(),
            peers.clone(),
            std::env::temp_dir(),
        );
        cfg.engine = EngineKind::Memory;
        cfg.tick_ms = TICK_MS;
        cfg.store.raft_entry_max_bytes = ENTRY_MAX_BYTES;
        tune(&mut cfg);
        nodes.push(Node::start_on(cfg, listener).await.unwrap());
    }
    nodes
}

/// Three nodes with the default test settings.
pub async fn start_cluster() -> Vec<Node> {
    start_cluster_with(3, |_| {}).await
}

pub fn endpoints(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|n| n.addr().to_string()).collect()
}

/// The store that leads `region_id`, polled from the nodes' Admin status until one
/// reports leading it (bounded).
pub async fn leader_of(nodes: &[Node], region_id: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for node in nodes {
            let Ok(mut admin) = AdminClient::connect(format!("http://{}", node.addr())).await
            else {
                continue;
            };
            if let Ok(status) = admin.status(kvrpc::StatusRequest {}).await {
                let status = status.into_inner();
                if status.led_region(region_id).is_some() {
                    return status.store_id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected in time");
        // Polling for an election: there is no event to wait on from outside.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader of region 1.
pub async fn leader(nodes: &[Node]) -> u64 {
    leader_of(nodes, 1).await
}

/// The node with store id `id`.
pub fn node(nodes: &[Node], id: u64) -> &Node {
    nodes.iter().find(|n| n.store_id() == id).unwrap()
}

pub async fn shutdown(nodes: Vec<Node>) {
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
