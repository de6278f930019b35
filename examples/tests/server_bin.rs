//! The `raftkv-server` binary: a TOML config, serving the client, graceful SIGTERM, and a
//! clear refusal of a taken port.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use raftkv_examples::Client;
use tokio::time::Instant;

const SERVER: &str = env!("CARGO_BIN_EXE_raftkv-server");

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

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_a_toml_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Pick a free port by binding and releasing it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\nlisten = \"{addr}\"\npeers = [\"1={addr}\"]\ndata_dir = {:?}\n\
             engine = \"fjall\"\ntick_ms = 20\n",
            dir.path().join("data")
        ),
    )
    .expect("write config");
    let mut child = Command::new(SERVER)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raftkv-server");
    let client = Client::connect([addr.to_string()])
        .expect("client")
        .with_timeout(Duration::from_secs(20));
    client.put("hello", "world").await.expect("put");
    assert_eq!(
        client.get("hello").await.expect("get").as_deref(),
        Some(&b"world"[..])
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("raftkv-server did not stop on SIGTERM");
        }
        // Polling the child: std has no wait with a timeout.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(exit.success(), "exit {exit:?}; stderr:\n{stderr}");
    assert!(stderr.contains("raftkv node stopped"), "{stderr}");
}
