//! The disk's physical floor for durable writes: how fast one writer can append a small
//! record and `fdatasync` it, in a loop.
//!
//! Every acknowledged raftkv write waits for at least one such sync (on a quorum), so the
//! benchmarks print their throughput and latency as multiples of these figures. The probe
//! appends rather than overwrites because the engines' logs append: an overwrite of one
//! block can be cheaper on some filesystems and would flatter the floor.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsyncStats {
    /// Appends + syncs completed.
    pub syncs: u64,
    /// Syncs per second by one writer.
    pub syncs_per_sec: f64,
    /// Median latency of one append + sync.
    pub p50: Duration,
    /// 99th percentile latency of one append + sync.
    pub p99: Duration,
}

/// Appends `record_bytes` and calls `fdatasync`, repeatedly for `duration` (at least
/// `min_syncs` times), in a scratch file inside `dir` that is removed afterwards.
///
/// # Errors
/// Any I/O error from creating, writing, syncing or removing the scratch file.
pub fn measure(
    dir: &Path,
    record_bytes: usize,
    duration: Duration,
    min_syncs: u64,
) -> std::io::Result<FsyncStats> {
    measure_concurrent(dir, 1, record_bytes, duration, min_syncs)
}

/// [`measure`] with `writers` threads at once, each on a file of its own: what the disk
/// gives replicas that share it (a 3-node cluster on one machine syncs three logs at
/// the same moments). The rate counts every writer's syncs; the latencies are over all
/// of them.
///
/// # Errors
/// Any I/O error of a writer.
pub fn measure_concurrent(
    dir: &Path,
    writers: usize,
    record_bytes: usize,
    duration: Duration,
    min_syncs: u64,
) -> std::io::Result<FsyncStats> {
    let started = Instant::now();
    let per_writer = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers.max(1))
            .map(|i| scope.spawn(move || sync_loop(dir, i, record_bytes, duration, min_syncs)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a probe writer panicked")))
            })
            .collect::<std::io::Result<Vec<_>>>()
    })?;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = per_writer.into_iter().flatten().collect();
    latencies.sort_unstable();
    let pick = |q: f64| {
        // Empty only when asked for no syncs over no time; the figures are then zero.
        let at = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(at).copied().unwrap_or_default()
    };
    Ok(FsyncStats {
        syncs: latencies.len() as u64,
        syncs_per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: pick(0.50),
        p99: pick(0.99),
    })
}

/// One writer's loop; the latency of each append + sync.
fn sync_loop(
    dir: &Path,
    writer: usize,
    record_bytes: usize,
    duration: Duration,
    min_syncs: u64,
) -> std::io::Result<Vec<Duration>> {
    let path = dir.join(format!(
        ".raftkv-fsync-probe-{}-{writer}",
        std::process::id()
    ));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let record = vec![0x5a_u8; record_bytes.max(1)];
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration || (latencies.len() as u64) < min_syncs {
        let at = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        latencies.push(at.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_counts_its_syncs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let stats = measure(dir.path(), 256, Duration::ZERO, 20).unwrap();
        assert_eq!(stats.syncs, 20);
        assert!(stats.p50 <= stats.p99);
        assert!(stats.syncs_per_sec > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_writers_each_sync_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let stats = measure_concurrent(dir.path(), 3, 256, Duration::ZERO, 10).unwrap();
        assert_eq!(stats.syncs, 30, "every writer made its syncs");
        assert!(stats.p50 <= stats.p99);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
