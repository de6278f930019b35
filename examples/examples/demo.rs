//! The embedded raftkv demo: three nodes in one process on loopback, fjall engines in a
//! temporary directory, driven through the client library.
//!
//! ```sh
//! cargo run -p raftkv-examples --example demo
//! ```
//!
//! It writes and reads keys, stops the leader, shows the new leader and that the data is
//! intact, restarts the stopped node, shows it caught up (it is needed for the quorum once
//! another node stops), and prints a summary.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use raftkv_examples::proto::kvrpc::StatusRequest;
use raftkv_examples::proto::kvrpc::admin_client::AdminClient;
use raftkv_examples::{Client, Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const TICK_MS: u64 = 50;

fn config(id: u64, addr: SocketAddr, peers: &BTreeMap<u64, String>, dir: &Path) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, addr, peers.clone(), dir.join(format!("node{id}")));
    cfg.tick_ms = TICK_MS;
    cfg
}

/// The store leading region 1 among `nodes`, polled with a deadline.
async fn leader(nodes: &BTreeMap<u64, Node>) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for node in nodes.values() {
            if let Ok(mut admin) = AdminClient::connect(format!("http://{}", node.addr())).await
                && let Ok(status) = admin.status(StatusRequest {}).await
                && status.get_ref().regions.iter().any(|r| r.is_leader)
            {
                return Ok(status.get_ref().store_id);
            }
        }
        if Instant::now() >= deadline {
            return Err("no leader elected within 20 s".into());
        }
        // Polling for an election: nothing to wait on from outside.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Region 1's (applied, commit) index on the node at `addr`.
async fn indexes(addr: SocketAddr) -> Result<(u64, u64)> {
    let mut admin = AdminClient::connect(format!("http://{addr}")).await?;
    let status = admin.status(StatusRequest {}).await?.into_inner();
    let region = status.regions.first().ok_or("no region on this node")?;
    Ok((region.applied_index, region.commit_index))
}

/// Waits (bounded) until the node at `addr` has applied `index`.
async fn wait_applied(addr: SocketAddr, index: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((applied, _)) = indexes(addr).await
            && applied >= index
        {
            return Ok(applied);
        }
        if Instant::now() >= deadline {
            return Err(format!("{addr} did not apply index {index} within 20 s").into());
        }
        // Polling: catch-up has no event visible from outside.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn check_keys(client: &Client, prefix: &str, n: u32) -> Result<()> {
    for i in 0..n {
        let key = format!("{prefix}{i:03}");
        let got = client.get(key.clone()).await?;
        if got.as_deref() != Some(format!("value-{i}").as_bytes()) {
            return Err(format!("{key}: expected value-{i}, got {got:?}").into());
        }
    }
    Ok(())
}

async fn write_keys(client: &Client, prefix: &str, n: u32) -> Result<()> {
    for i in 0..n {
        client
            .put(format!("{prefix}{i:03}"), format!("value-{i}"))
            .await?;
    }
    Ok(())
}

async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "raftkv demo: 3 nodes, fjall engines in {}",
        dir.path().display()
    );
    let mut listeners = Vec::new();
    for id in 1..=3u64 {
        listeners.push((id, TcpListener::bind("127.0.0.1:0").await?));
    }
    let mut peers = BTreeMap::new();
    for (id, l) in &listeners {
        peers.insert(*id, l.local_addr()?.to_string());
    }
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let cfg = config(id, listener.local_addr()?, &peers, dir.path());
        let node = Node::start_on(cfg, listener).await?;
        println!("  node {id} listening on {}", node.addr());
        nodes.insert(id, node);
    }
    let client = Client::connect(peers.values())?.with_timeout(Duration::from_secs(15));

    let started = Instant::now();
    write_keys(&client, "a", 100).await?;
    check_keys(&client, "a", 100).await?;
    let first = client.scan("a", "b", 3).await?;
    println!(
        "wrote and read back 100 keys; first three: {:?}",
        first
            .iter()
            .map(|(k, v)| format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            ))
            .collect::<Vec<_>>()
    );
    let old_leader = leader(&nodes).await?;
    println!("leader of region 1: store {old_leader}");

    let stopped = nodes.remove(&old_leader).ok_or("leader node missing")?;
    let old_addr = stopped.addr();
    stopped.shutdown().await?;
    println!("stopped store {old_leader} (the leader)");
    write_keys(&client, "b", 50).await?;
    let new_leader = leader(&nodes).await?;
    println!("new leader: store {new_leader}; wrote 50 more keys");
    check_keys(&client, "a", 100).await?;
    println!("all 100 keys written before the failover are intact");

    let cfg = config(old_leader, old_addr, &peers, dir.path());
    nodes.insert(old_leader, Node::start(cfg).await?);
    println!("restarted store {old_leader} on {old_addr} from its data dir");
    let leader_addr = nodes.get(&new_leader).ok_or("leader missing")?.addr();
    let (_, leader_commit) = indexes(leader_addr).await?;
    let applied = wait_applied(old_addr, leader_commit).await?;
    println!(
        "store {old_leader} caught up: applied index {applied} >= leader's commit index {leader_commit}"
    );
    // Stop another node: the restarted one is now needed for every quorum, so the writes
    // and reads below prove it has caught up with the log it missed.
    let other = *nodes
        .keys()
        .find(|id| **id != old_leader && **id != new_leader)
        .ok_or("third node missing")?;
    nodes
        .remove(&other)
        .ok_or("node missing")?
        .shutdown()
        .await?;
    println!("stopped store {other}; the quorum is now stores {old_leader} and {new_leader}");
    write_keys(&client, "c", 20).await?;
    check_keys(&client, "a", 100).await?;
    check_keys(&client, "b", 50).await?;
    check_keys(&client, "c", 20).await?;
    let leader_now = leader(&nodes).await?;
    println!("with store {old_leader} in every quorum: 170 keys readable, 20 new ones written");

    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await?;
    }
    println!();
    println!("summary:");
    println!("  keys written: 170, all read back intact");
    println!("  leader: store {old_leader} -> stopped -> store {new_leader} elected");
    println!(
        "  store {old_leader} restarted and caught up (leader at the end: store {leader_now})"
    );
    println!("  elapsed: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match tokio::time::timeout(Duration::from_secs(60), run()).await {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            println!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => {
            println!("demo failed: did not finish within 60 s");
            std::process::ExitCode::FAILURE
        }
    }
}
