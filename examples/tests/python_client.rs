//! The API works from a client generated in another language: grpcio-tools generates a
//! Python client from `proto/kvrpc.proto`, and `python/kv_client.py` puts, gets and
//! compares-and-swaps against a cluster started here.
//!
//! Needs `python3` with grpcio-tools (`python3 -m pip install --user grpcio-tools`, which
//! `.ci/run` does); set `RAFTKV_SKIP_PYTHON=1` to skip it where Python is unavailable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{endpoints, shutdown, start_cluster};

const SKIP_ENV: &str = "RAFTKV_SKIP_PYTHON";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, killing it after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        // Polling the child: std has no wait with a timeout.
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// Fails with instructions when python3 or grpcio-tools is missing.
fn require_python() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .output();
    let problem = match probe {
        Err(e) => format!("python3 could not be run: {e}"),
        Ok(out) if !out.status.success() => format!(
            "python3 lacks grpcio-tools: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(_) => return,
    };
    panic!(
        "{problem}\nThis test needs python3 with grpcio-tools: run \
         `python3 -m pip install --user grpcio-tools`, or set {SKIP_ENV}=1 to skip it."
    );
}

fn generate_client(out: &Path) {
    let proto_dir = manifest_dir().join("proto");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto_dir)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(proto_dir.join("kvrpc.proto"));
    let gen_out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        gen_out.status.success(),
        "grpc_tools.protoc failed:\n{}",
        String::from_utf8_lossy(&gen_out.stderr)
    );
    assert!(out.join("kvrpc_pb2_grpc.py").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_proto_puts_gets_and_swaps() {
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        eprintln!("skipped: {SKIP_ENV}=1");
        return;
    }
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    generate_client(dir.path());
    let nodes = start_cluster().await;
    let mut cmd = Command::new("python3");
    cmd.arg(manifest_dir().join("tests/python/kv_client.py"))
        .arg(dir.path())
        .args(endpoints(&nodes));
    let out = tokio::task::spawn_blocking(move || run_bounded(cmd, Duration::from_secs(60)))
        .await
        .expect("python task");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "python client failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    shutdown(nodes).await;
}
