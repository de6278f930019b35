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
    let path = dir.join(format!(".raftkv-fsync-probe-{}", std::process::id()));
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
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
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
}
