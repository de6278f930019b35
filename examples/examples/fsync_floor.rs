//! Prints the disk's fdatasync floor for a directory, for one writer and for three at
//! once (three replicas sharing the disk): `cargo run --release -p raftkv-examples
//! --example fsync_floor -- [DIR] [SECONDS]`.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use raftkv_examples::fsync_probe;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let stats = fsync_probe::measure(&dir, 256, Duration::from_secs_f64(seconds), 10)?;
    println!(
        "fdatasync floor in {}: {:.0} syncs/s by one writer, p50 {:?}, p99 {:?} ({} syncs)",
        dir.display(),
        stats.syncs_per_sec,
        stats.p50,
        stats.p99,
        stats.syncs
    );
    let shared =
        fsync_probe::measure_concurrent(&dir, 3, 256, Duration::from_secs_f64(seconds), 10)?;
    println!(
        "three writers at once: {:.0} syncs/s in all, p50 {:?}, p99 {:?} ({} syncs)",
        shared.syncs_per_sec, shared.p50, shared.p99, shared.syncs
    );
    Ok(())
}
