//! The `raftkv-server` binary: a TOML config, serving the client, graceful SIGTERM and a
//! restart that finds the data, and clear refusals of a taken port, a bad config and a
//! data dir of another node.

#[path = "support/process_cluster.rs"]
mod process_cluster;

use std::process::Command;

use process_cluster::{ProcessCluster, SERVER};

#[test]
fn a_taken_port_is_refused_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let out = Command::new(SERVER)
        .args(["--node-id", "1", "--engine", "memory", "--listen"])
        .arg(addr.to_string())
        .output()
        .expect("run raftkv-server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn a_taken_metrics_port_is_refused_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let out = Command::new(SERVER)
        .args([
            "--node-id",
            "1",
            "--engine",
            "memory",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--metrics-listen")
        .arg(addr.to_string())
        .output()
        .expect("run raftkv-server");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot serve metrics"), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn a_bad_config_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, expected) in [
        (
            "node_id = 1\nlisten = \"127.0.0.1:0\"\nno_such_key = 1\n",
            "no_such_key",
        ),
        (
            "node_id = 1\nlisten = \"127.0.0.1:0\"\n[store]\nraft_election_ticks = 1\n",
            "raft_election_ticks",
        ),
        (
            "node_id = 1\nlisten = \"127.0.0.1:0\"\nengine = \"rocks\"\n",
            "unknown engine",
        ),
        (
            "node_id = 1\nlisten = \"127.0.0.1:0\"\nraft_engine = \"rocks\"\n",
            "unknown raft engine",
        ),
        ("node_id = 0\nlisten = \"127.0.0.1:0\"\n", "store id 0"),
        ("listen = \"127.0.0.1:0\"\n", "node-id"),
        (
            "node_id = 1\nlisten = \"127.0.0.1:0\"\npeers = [\"2=nowhere\"]\n",
            "host:port",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).expect("write config");
        let out = Command::new(SERVER)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run raftkv-server");
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_node_is_refused() {
    let mut node = ProcessCluster::start(1).await;
    assert!(node.terminate(1).await.success());
    let data = node.server(1).data_dir.clone();
    let out = Command::new(SERVER)
        .args(["--node-id", "2", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run raftkv-server");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("belongs to store 1, not store 2"),
        "{stderr}"
    );
    // The rightful owner still starts from it.
    node.restart(1).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_a_toml_config_stops_on_sigterm_and_restarts_with_its_data() {
    let mut node = ProcessCluster::start(1).await;
    let client = node.client();
    client.put("hello", "world").await.expect("put");
    let exit = node.terminate(1).await;
    assert!(exit.success(), "exit {exit:?}; log:\n{}", node.log(1));
    assert!(
        node.log(1).contains("raftkv node stopped"),
        "{}",
        node.log(1)
    );

    node.restart(1).await;
    assert_eq!(
        client.get("hello").await.expect("get").as_deref(),
        Some(&b"world"[..])
    );
}
