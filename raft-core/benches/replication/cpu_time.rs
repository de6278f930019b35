//! On-CPU time of the calling thread, for ratios that background load does not skew.
//!
//! Wall-clock throughput on a shared machine drops whenever another process takes the
//! CPU. The time this thread actually ran (Linux `/proc/thread-self/schedstat`, first
//! field, in nanoseconds) drops with it, so entries per CPU-second stay comparable
//! between the two libraries even under load (cache sharing still costs something).

use std::time::Duration;

/// The time the calling thread has spent on a CPU, or `None` where the kernel does not
/// report it.
pub fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
