//! Replication throughput of raft-core against raft-rs (the `raft` crate), in one run.
//!
//! Three voters in one process pass messages in memory and persist into their library's
//! `MemStorage`. Each iteration proposes a batch of entries on the leader and runs the
//! cluster until every node has committed and applied them; criterion reports entries per
//! second. After the criterion groups, a summary times both libraries in interleaved
//! rounds and prints the ratio raftkv / raft-rs per case.
//!
//! Run with `cargo bench -p raft-core --bench replication`.
#![allow(clippy::print_stdout)]

mod cluster;
mod raft_rs;
mod raftkv;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};

use crate::cluster::{Case, Cluster, replicate_batch};
use crate::raft_rs::RaftRsCluster;
use crate::raftkv::RaftkvCluster;

/// The settings both libraries run with, so neither gets an easier configuration.
mod settings {
    pub const ELECTION_TICKS: usize = 10;
    pub const HEARTBEAT_TICKS: usize = 2;
    pub const MAX_MSG_BYTES: u64 = 1 << 20;
    pub const MAX_INFLIGHT_MSGS: usize = 256;
    pub const MAX_COMMITTED_BYTES_PER_READY: u64 = 16 << 20;
    pub const MAX_UNCOMMITTED_BYTES: u64 = 64 << 20;
}

const VOTERS: u64 = 3;

const CASES: [Case; 4] = [
    Case {
        payload_bytes: 0,
        batch: 1,
    },
    Case {
        payload_bytes: 0,
        batch: 64,
    },
    Case {
        payload_bytes: 256,
        batch: 1,
    },
    Case {
        payload_bytes: 256,
        batch: 64,
    },
];

/// Criterion groups: one per case, both libraries side by side.
fn throughput(c: &mut Criterion) {
    for case in CASES {
        let mut group = c.benchmark_group(format!("replication/{}", case.name()));
        group.throughput(Throughput::Elements(case.batch as u64));
        bench_one::<RaftkvCluster>(&mut group, case);
        bench_one::<RaftRsCluster>(&mut group, case);
        group.finish();
    }
}

fn bench_one<C: Cluster>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    case: Case,
) {
    let payload = case.payload();
    group.bench_function(BenchmarkId::from_parameter(C::NAME), |b| {
        let mut cluster = C::new(VOTERS);
        b.iter(|| replicate_batch(&mut cluster, case.batch, &payload));
    });
}

/// Entries per second one library sustains on `cluster` for about `budget`.
fn entries_per_sec<C: Cluster>(
    cluster: &mut C,
    case: Case,
    payload: &Bytes,
    budget: Duration,
) -> f64 {
    let start = Instant::now();
    let mut iterations = 0u64;
    loop {
        for _ in 0..8 {
            replicate_batch(cluster, case.batch, payload);
        }
        iterations += 8;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return (iterations * case.batch as u64) as f64 / elapsed.as_secs_f64();
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Times both libraries in alternating rounds (so background load hits both alike) and
/// prints entries per second and the ratio raftkv / raft-rs per case.
fn ratio_summary(quick: bool) {
    let (rounds, budget) = if quick {
        (1, Duration::from_millis(10))
    } else {
        (7, Duration::from_millis(150))
    };
    println!();
    println!(
        "raft-core vs raft-rs: entries committed and applied per second, {VOTERS} voters, \
         medians of {rounds} interleaved rounds of {} ms",
        budget.as_millis()
    );
    println!(
        "{:<12} {:>14} {:>14} {:>7}  ratio range",
        "case", "raftkv", "raft-rs", "ratio"
    );
    for case in CASES {
        let payload = case.payload();
        let mut ours = RaftkvCluster::new(VOTERS);
        let mut theirs = RaftRsCluster::new(VOTERS);
        let (mut ours_eps, mut theirs_eps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let a = entries_per_sec(&mut ours, case, &payload, budget);
            let b = entries_per_sec(&mut theirs, case, &payload, budget);
            ours_eps.push(a);
            theirs_eps.push(b);
            ratios.push(a / b);
        }
        let (a, b) = (median(&mut ours_eps), median(&mut theirs_eps));
        // The median of the per-round ratios: each pair ran back to back under the same
        // background load.
        let ratio = median(&mut ratios);
        let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
        println!(
            "{:<12} {a:>14.0} {b:>14.0} {ratio:>6.2}x  {lo:.2}..{hi:.2}",
            case.name(),
        );
    }
}

/// Runs one library on one case for a fixed number of iterations and nothing else, for
/// a profiler: `REPLICATION_PROFILE=raftkv/0B_x1/20000` (library `raftkv` or `raft-rs`,
/// a case name, iterations).
fn profile(spec: &str) {
    let mut parts = spec.split('/');
    let (library, case_name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let iterations: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let Some(case) = CASES.into_iter().find(|c| c.name() == case_name) else {
        println!("unknown case {case_name:?}");
        return;
    };
    fn run<C: Cluster>(case: Case, iterations: u64) {
        let payload = case.payload();
        let mut cluster = C::new(VOTERS);
        let start = Instant::now();
        for _ in 0..iterations {
            replicate_batch(&mut cluster, case.batch, &payload);
        }
        let secs = start.elapsed().as_secs_f64();
        let entries = iterations * case.batch as u64;
        println!(
            "{} {}: {entries} entries in {secs:.3} s, {:.0} entries/s",
            C::NAME,
            case.name(),
            entries as f64 / secs
        );
    }
    match library {
        "raftkv" => run::<RaftkvCluster>(case, iterations),
        "raft-rs" => run::<RaftRsCluster>(case, iterations),
        other => println!("unknown library {other:?}"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var("REPLICATION_PROFILE") {
        profile(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--test" || a == "--list");
    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    throughput(&mut criterion);
    criterion.final_summary();
    if !args.iter().any(|a| a == "--list") {
        ratio_summary(quick);
    }
}
