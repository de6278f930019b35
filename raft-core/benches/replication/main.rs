//! Replication throughput of raft-core against raft-rs (the `raft` crate), in one run.
//!
//! Three voters in one process pass messages in memory and persist into their library's
//! `MemStorage`. Two workloads:
//!
//! - batches: each iteration proposes a batch of entries on the leader and runs the
//!   cluster until every node has committed and applied them; criterion reports entries
//!   per second, then a summary times both libraries in interleaved rounds and prints
//!   the ratio raftkv / raft-rs per case;
//! - concurrent proposers (see `proposers.rs`): N proposals kept in flight on the leader,
//!   each replaced as soon as it commits; committed entries per second and
//!   propose-to-commit p50/p99 of both libraries, interleaved, with the ratio.
//!
//! Run with `cargo bench -p raft-core --bench replication`. Environment:
//! - `REPLICATION_SUMMARY_ONLY=1`: skip the criterion groups, print only the summaries;
//! - `REPLICATION_ROUNDS` (default 7) and `REPLICATION_ROUND_MS` (default 150): the
//!   interleaved rounds of the summaries and the time each library gets per round;
//! - `REPLICATION_PROFILE`: run one library on one case and nothing else (see
//!   [`profile`]).
#![allow(clippy::print_stdout)]

mod cluster;
mod cpu_time;
mod proposers;
mod raft_rs;
mod raftkv;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};

use crate::cluster::{Case, Cluster, replicate_batch};
use crate::cpu_time::thread_cpu_time;
use crate::proposers::{Limit, Sample, quantile, run_proposers};
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

/// Payload sizes of the concurrent-proposers workload.
const PROPOSER_PAYLOADS: [usize; 2] = [0, 256];
/// Proposals kept in flight in the concurrent-proposers workload.
const PROPOSERS: [usize; 4] = [1, 64, 256, 1024];

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

/// Entries per second (of wall time, and of this thread's CPU time where the kernel
/// reports it) one library sustains on `cluster` for about `budget`.
fn entries_per_sec<C: Cluster>(
    cluster: &mut C,
    case: Case,
    payload: &Bytes,
    budget: Duration,
) -> (f64, f64) {
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let mut iterations = 0u64;
    loop {
        for _ in 0..8 {
            replicate_batch(cluster, case.batch, payload);
        }
        iterations += 8;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            let cpu = thread_cpu_time()
                .zip(cpu_start)
                .map_or(elapsed, |(end, start)| end.saturating_sub(start));
            let entries = (iterations * case.batch as u64) as f64;
            return (entries / elapsed.as_secs_f64(), entries / cpu.as_secs_f64());
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// How long the summaries measure: interleaved rounds, and each library's time per round.
#[derive(Debug, Clone, Copy)]
struct Rounds {
    rounds: usize,
    budget: Duration,
}

impl Rounds {
    fn from_env(quick: bool) -> Self {
        if quick {
            return Self {
                rounds: 1,
                budget: Duration::from_millis(10),
            };
        }
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        Self {
            rounds: var("REPLICATION_ROUNDS", 7).max(1) as usize,
            budget: Duration::from_millis(var("REPLICATION_ROUND_MS", 150).max(1)),
        }
    }
}

/// Times both libraries in alternating rounds (so background load hits both alike) and
/// prints entries per second and the ratio raftkv / raft-rs per case, as a Markdown table.
fn ratio_summary(r: Rounds) {
    println!();
    println!(
        "Batches: entries committed and applied on all {VOTERS} voters per second of wall \
         time (medians of {} interleaved rounds of {} ms); ratios raftkv / raft-rs of \
         wall-time and of CPU-time throughput (median and range over the rounds)",
        r.rounds,
        r.budget.as_millis()
    );
    println!();
    println!(
        "| case | raftkv entries/s | raft-rs entries/s | ratio (wall) | range | ratio (CPU) | range |"
    );
    println!("|---|---:|---:|---:|---|---:|---|");
    for case in CASES {
        let payload = case.payload();
        let mut ours = RaftkvCluster::new(VOTERS);
        let mut theirs = RaftRsCluster::new(VOTERS);
        let (mut ours_eps, mut theirs_eps) = (Vec::new(), Vec::new());
        let (mut wall, mut cpu) = (Ratios::default(), Ratios::default());
        for _ in 0..r.rounds {
            let (a, a_cpu) = entries_per_sec(&mut ours, case, &payload, r.budget);
            let (b, b_cpu) = entries_per_sec(&mut theirs, case, &payload, r.budget);
            ours_eps.push(a);
            theirs_eps.push(b);
            wall.push(a / b);
            cpu.push(a_cpu / b_cpu);
        }
        let (a, b) = (median(&mut ours_eps), median(&mut theirs_eps));
        println!(
            "| {} | {a:.0} | {b:.0} | {} | {} |",
            case.name(),
            wall.cells(),
            cpu.cells()
        );
    }
}

/// Per-round ratios raftkv / raft-rs: each pair of measurements ran back to back, under
/// the same background load.
#[derive(Default)]
struct Ratios(Vec<f64>);

impl Ratios {
    fn push(&mut self, ratio: f64) {
        self.0.push(ratio);
    }

    /// `median | min-max` as two Markdown table cells.
    fn cells(&mut self) -> String {
        let m = median(&mut self.0);
        let (lo, hi) = (self.0[0], self.0[self.0.len() - 1]);
        format!("{m:.2}x | {lo:.2}-{hi:.2}")
    }
}

/// One library's samples of one concurrent-proposers case, over all rounds.
#[derive(Default)]
struct Pooled {
    eps: Vec<f64>,
    latencies_ns: Vec<u64>,
}

impl Pooled {
    /// Records a run; returns its (wall, CPU) throughput.
    fn add(&mut self, s: Sample) -> (f64, f64) {
        let (eps, cpu_eps) = (s.entries_per_sec(), s.entries_per_cpu_sec());
        self.eps.push(eps);
        self.latencies_ns.extend(s.latencies_ns);
        (eps, cpu_eps)
    }

    /// `p50 / p99` in microseconds.
    fn latency(&mut self) -> String {
        let p50 = quantile(&mut self.latencies_ns, 0.50) as f64 / 1e3;
        let p99 = quantile(&mut self.latencies_ns, 0.99) as f64 / 1e3;
        format!("{p50:.1} / {p99:.1}")
    }
}

/// The concurrent-proposers workload for both libraries, interleaved round by round,
/// printed as a Markdown table.
fn proposers_summary(r: Rounds) {
    println!();
    println!(
        "Concurrent proposers: N proposals in flight on the leader, each replaced when it \
         commits. Committed entries per second of wall time (median of {} interleaved \
         rounds of {} ms), ratios raftkv / raft-rs of wall-time and CPU-time throughput, \
         propose-to-commit latency (wall clock) over all rounds",
        r.rounds,
        r.budget.as_millis()
    );
    println!();
    println!(
        "| payload | proposers | raftkv entries/s | raft-rs entries/s | ratio (wall) | range \
         | ratio (CPU) | range | raftkv p50 / p99 µs | raft-rs p50 / p99 µs |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---|---:|---:|");
    let limit = Limit {
        budget: r.budget,
        max_committed: u64::MAX,
    };
    for payload_bytes in PROPOSER_PAYLOADS {
        let payload = Bytes::from(vec![0xA5; payload_bytes]);
        for n in PROPOSERS {
            let mut ours = RaftkvCluster::new(VOTERS);
            let mut theirs = RaftRsCluster::new(VOTERS);
            // One shorter untimed run each first: allocator and caches settle.
            let warm = Limit {
                budget: r.budget / 4,
                ..limit
            };
            run_proposers(&mut ours, n, &payload, warm);
            run_proposers(&mut theirs, n, &payload, warm);
            let (mut a, mut b) = (Pooled::default(), Pooled::default());
            let (mut wall, mut cpu) = (Ratios::default(), Ratios::default());
            for _ in 0..r.rounds {
                let (x, x_cpu) = a.add(run_proposers(&mut ours, n, &payload, limit));
                let (y, y_cpu) = b.add(run_proposers(&mut theirs, n, &payload, limit));
                wall.push(x / y);
                cpu.push(x_cpu / y_cpu);
            }
            println!(
                "| {payload_bytes} B | {n} | {:.0} | {:.0} | {} | {} | {} | {} |",
                median(&mut a.eps),
                median(&mut b.eps),
                wall.cells(),
                cpu.cells(),
                a.latency(),
                b.latency(),
            );
        }
    }
}

/// What [`profile`] runs: a batch case, or a concurrent-proposers case.
#[derive(Debug, Clone, Copy)]
enum ProfileCase {
    Batch(Case),
    Proposers {
        payload_bytes: usize,
        proposers: usize,
    },
}

impl ProfileCase {
    /// Parses `<payload>B_x<batch>` (a batch case) or `<payload>B_c<proposers>`.
    fn parse(name: &str) -> Option<Self> {
        if let Some(case) = CASES.into_iter().find(|c| c.name() == name) {
            return Some(Self::Batch(case));
        }
        let (payload, proposers) = name.split_once("B_c")?;
        Some(Self::Proposers {
            payload_bytes: payload.parse().ok()?,
            proposers: proposers.parse().ok().filter(|&n| n > 0)?,
        })
    }
}

/// Runs one library on one case and nothing else, for a profiler:
/// `REPLICATION_PROFILE=<library>/<case>/<count>`, the library `raftkv` or `raft-rs`;
/// the case a batch case (`0B_x1`, `256B_x64`: `count` batches) or a
/// concurrent-proposers case (`0B_c64`: 64 proposers until `count` entries commit).
fn profile(spec: &str) {
    let mut parts = spec.split('/');
    let (library, case_name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let count: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let Some(case) = ProfileCase::parse(case_name) else {
        println!("unknown case {case_name:?}");
        return;
    };
    fn run<C: Cluster>(case: ProfileCase, case_name: &str, count: u64) {
        let mut cluster = C::new(VOTERS);
        let start = Instant::now();
        let entries = match case {
            ProfileCase::Batch(case) => {
                let payload = case.payload();
                for _ in 0..count {
                    replicate_batch(&mut cluster, case.batch, &payload);
                }
                count * case.batch as u64
            }
            ProfileCase::Proposers {
                payload_bytes,
                proposers,
            } => {
                let payload = Bytes::from(vec![0xA5; payload_bytes]);
                let limit = Limit {
                    budget: Duration::MAX,
                    max_committed: count,
                };
                run_proposers(&mut cluster, proposers, &payload, limit).committed
            }
        };
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} {case_name}: {entries} entries in {secs:.3} s, {:.0} entries/s",
            C::NAME,
            entries as f64 / secs
        );
    }
    match library {
        "raftkv" => run::<RaftkvCluster>(case, case_name, count),
        "raft-rs" => run::<RaftRsCluster>(case, case_name, count),
        other => println!("unknown library {other:?}"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var("REPLICATION_PROFILE") {
        profile(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let list = args.iter().any(|a| a == "--list");
    // `cargo test --benches` runs the binary with `--test`: one short round of each.
    let quick = list || args.iter().any(|a| a == "--test");
    let summary_only = std::env::var("REPLICATION_SUMMARY_ONLY").is_ok_and(|v| v == "1");
    if !summary_only {
        let mut criterion = Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        throughput(&mut criterion);
        criterion.final_summary();
    }
    if !list {
        let rounds = Rounds::from_env(quick);
        ratio_summary(rounds);
        proposers_summary(rounds);
    }
}
