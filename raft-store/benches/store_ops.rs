//! Store-level throughput in one process: three raft-store `Store`s on the memory engine,
//! each on its own raft worker thread, exchanging frames through the in-process channel
//! transport — the shared `conformance_tests::cluster::LiveCluster`, wired as in
//! production (`TransportSender`, frame encoding, `StoreFrameSink`, the snapshot manager,
//! the raft log GC worker; its message filters stay empty).
//!
//! N clients (tokio tasks on a 2-thread runtime, which also runs the transport) each keep
//! one write in flight against the leader's mailbox: a put of an 8-byte key with an empty
//! value, the smallest write a region accepts. A client sends its next put as soon as
//! the previous one is answered (applied on the leader). This is the shape of openraft's
//! in-process benchmark (3 nodes, in-memory store, function-call network, empty requests,
//! 1 … 4096 closed-loop clients), so the figures can be set beside it; see
//! BENCHMARKS.md for its published numbers and the machines.
//!
//! Run with `cargo bench -p raft-store --bench store_ops`. Environment:
//! - `STORE_BENCH_CLIENTS`: client counts, comma-separated (default `1,64,256,1024`);
//! - `STORE_BENCH_SECS`: measured seconds per client count (default 3, after 1 s of
//!   warm-up).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conformance_tests::cluster::live::request;
use conformance_tests::cluster::{LiveCluster, MemoryFactory, put};
use raft_store::{Config, StoreMailbox};

/// The leader's mailbox, once region 1 has a leader.
fn leader(cluster: &LiveCluster<MemoryFactory>) -> StoreMailbox {
    cluster.wait_until("a leader", Duration::from_secs(30), |c| {
        c.leader_of(1).is_some()
    });
    let id = cluster.leader_of(1).unwrap();
    cluster.mailbox(id).unwrap()
}

/// What the clients measured over the timed window.
struct Outcome {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    /// Process CPU time over the window (all threads), where the kernel reports it.
    cpu: Option<Duration>,
    latencies_ns: Vec<u64>,
}

/// CPU time of the whole process (user + system), from `/proc/self/stat` (clock ticks of
/// 10 ms: coarse, but the windows are seconds long).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at `) `.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs `clients` closed-loop writers against `leader` for `warm_up`, then measures for
/// `window`.
fn run_clients(
    rt: &tokio::runtime::Runtime,
    leader: &StoreMailbox,
    clients: usize,
    warm_up: Duration,
    window: Duration,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (leader, stop, ops, errors) =
                (leader.clone(), stop.clone(), ops.clone(), errors.clone());
            rt.spawn(async move {
                let key = (client as u64).to_be_bytes();
                // (completed at, latency in ns) of every answered put.
                let mut done = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let resp = leader.execute(request(vec![put(&key, b"")])).await;
                    let end = Instant::now();
                    if resp
                        .header
                        .as_ref()
                        .and_then(|h| h.error.as_ref())
                        .is_some()
                    {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                    done.push((end, (end - start).as_nanos() as u64));
                }
                done
            })
        })
        .collect();
    std::thread::sleep(warm_up);
    // The counters, the process's CPU time and the clock, read together.
    let read = || {
        (
            ops.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
            process_cpu_time(),
            Instant::now(),
        )
    };
    let (ops0, err0, cpu0, t0) = read();
    std::thread::sleep(window);
    let (ops1, err1, cpu1, t1) = read();
    stop.store(true, Ordering::Relaxed);
    let mut latencies_ns = Vec::new();
    for task in tasks {
        let done = rt.block_on(task).unwrap();
        latencies_ns.extend(
            done.into_iter()
                .filter(|&(at, _)| at >= t0 && at <= t1)
                .map(|(_, ns)| ns),
        );
    }
    Outcome {
        ops: ops1 - ops0,
        errors: err1 - err0,
        elapsed: t1 - t0,
        cpu: cpu1.zip(cpu0).map(|(b, a)| b.saturating_sub(a)),
        latencies_ns,
    }
}

fn quantile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1e3
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`: a short smoke run.
    let quick = std::env::args().any(|a| a == "--test" || a == "--list");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (clients, warm_up, window) = if quick {
        (
            vec![1, 64],
            Duration::from_millis(100),
            Duration::from_millis(200),
        )
    } else {
        let secs = std::env::var("STORE_BENCH_SECS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(3u64)
            .max(1);
        (
            env_list("STORE_BENCH_CLIENTS", &[1, 64, 256, 1024]),
            Duration::from_secs(1),
            Duration::from_secs(secs),
        )
    };
    let cluster = LiveCluster::new(MemoryFactory::default(), 3, Config::default(), 1);
    let rt = cluster.runtime();
    let leader = leader(&cluster);
    println!();
    println!(
        "Store level: 3 stores (memory engine, channel transport, raft workers), closed-loop \
         clients each with one put (8-byte key, empty value) in flight on the leader; {} s \
         per row after {} ms of warm-up",
        window.as_secs_f64(),
        warm_up.as_millis()
    );
    println!();
    println!("| clients | ops/s | p50 µs | p99 µs | CPU µs/op (all threads) | errors |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in clients {
        let mut out = run_clients(rt, &leader, n, warm_up, window);
        out.latencies_ns.sort_unstable();
        let ops_per_sec = out.ops as f64 / out.elapsed.as_secs_f64();
        let cpu_per_op = out.cpu.map_or_else(
            || "-".to_string(),
            |cpu| format!("{:.1}", cpu.as_secs_f64() * 1e6 / out.ops.max(1) as f64),
        );
        println!(
            "| {n} | {ops_per_sec:.0} | {:.1} | {:.1} | {cpu_per_op} | {} |",
            quantile_us(&out.latencies_ns, 0.50),
            quantile_us(&out.latencies_ns, 0.99),
            out.errors
        );
        assert!(out.ops > 0, "no put completed with {n} clients");
    }
    drop(cluster);
}
