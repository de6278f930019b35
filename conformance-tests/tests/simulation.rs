//! Deterministic simulation of a whole cluster under faults, many seeds (see
//! `conformance_tests::sim`).
//!
//! - `SIM_SEEDS` (default 200): seeds run, `SIM_SEED_BASE` (default 0) the first one.
//! - `SIM_SECONDS` (default 10): virtual seconds of workload under faults per seed.
//! - `SIM_SEED=n`: replays seed `n` alone (with `RUST_LOG` for the stores' logs).
//! - `SIM_THREADS` (default: the available cores, at most 4): seeds run in parallel,
//!   each on one thread (seeds are independent; each is deterministic on its own).
//!
//! A failure prints its seed and the command that replays it.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use conformance_tests::env::u64_var as env_u64;
use conformance_tests::sim::{SimConfig, SimReport, run_seed};

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seconds: env_u64("SIM_SECONDS").unwrap_or(10),
        ..SimConfig::new(seed)
    }
}

fn replay_command(seed: u64) -> String {
    let seconds = env_u64("SIM_SECONDS")
        .map(|s| format!("SIM_SECONDS={s} "))
        .unwrap_or_default();
    format!(
        "{seconds}SIM_SEED={seed} cargo test -p conformance-tests --test simulation -- \
         --nocapture simulated_seeds"
    )
}

/// Runs one seed, turning a panic inside the stores into a failure with its seed.
fn run_one(seed: u64) -> Result<SimReport, String> {
    let cfg = config(seed);
    match std::panic::catch_unwind(|| run_seed(&cfg)) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(failure)) => Err(failure.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Err(format!("seed {seed} panicked: {msg}"))
        }
    }
}

#[test]
fn simulated_seeds() {
    if let Some(seed) = env_u64("SIM_SEED") {
        conformance_tests::cluster::init_tracing();
        match run_one(seed) {
            Ok(report) => eprintln!("{report:?}"),
            Err(e) => panic!("{e}\nreplay: {}", replay_command(seed)),
        }
        return;
    }
    let seeds = env_u64("SIM_SEEDS").unwrap_or(200);
    let base = env_u64("SIM_SEED_BASE").unwrap_or(0);
    let threads = env_u64("SIM_THREADS").unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, |n| n.get().min(4) as u64)
    });
    let next = AtomicU64::new(base);
    let failures = Mutex::new(Vec::new());
    let reports = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= base + seeds {
                        return;
                    }
                    match run_one(seed) {
                        Ok(report) => reports.lock().unwrap().push(report),
                        Err(e) => failures.lock().unwrap().push((seed, e)),
                    }
                }
            });
        }
    });
    let reports = reports.into_inner().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    let ops: u64 = reports.iter().map(|r| r.outcomes[0]).sum();
    let unknown: u64 = reports.iter().map(|r| r.outcomes[2]).sum();
    let mut faults = std::collections::BTreeMap::new();
    for r in &reports {
        for (k, n) in &r.faults {
            *faults.entry(*k).or_insert(0) += n;
        }
    }
    eprintln!(
        "simulation: {} seeds ({} failed) of {} virtual s in {:.1?} on {threads} threads; \
         {ops} operations ok, {unknown} unknown; faults {faults:?}",
        seeds,
        failures.len(),
        config(0).seconds,
        started.elapsed()
    );
    if !failures.is_empty() {
        let mut msg = String::new();
        for (seed, e) in &failures {
            msg.push_str(&format!("{e}\n  replay: {}\n", replay_command(*seed)));
        }
        panic!("{} of {seeds} seeds failed:\n{msg}", failures.len());
    }
    assert!(ops > 0, "the simulated clients completed no operation");
}

#[test]
fn one_seed_replays_identically() {
    let cfg = SimConfig {
        seconds: 3,
        ..SimConfig::new(7)
    };
    let first = run_seed(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let second = run_seed(&cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(first.trace_len > 1000, "a run does something: {first:?}");
    assert!(first.outcomes[0] > 0, "operations succeed: {first:?}");
    assert_eq!(first, second, "one seed, two different runs");
    let other = run_seed(&SimConfig { seed: 8, ..cfg }).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        first.trace_digest, other.trace_digest,
        "another seed, another run"
    );
}
