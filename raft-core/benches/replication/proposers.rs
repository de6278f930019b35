//! The concurrent-proposers workload: a closed loop of N proposers on the leader.
//!
//! Model: N proposals are kept in flight. Each proposer proposes one entry and waits
//! until the leader has committed it (the leader applies an entry in the same Ready that
//! reports it committed, which is when a client would be answered); then it proposes the
//! next one at once. The cluster advances in rounds (see [`Cluster::round`]); after each
//! round the proposals the leader has committed complete and as many new ones are
//! proposed, so the next round carries them. Every event of a round is stamped with one
//! clock reading taken after it, which keeps clock reads out of the measured work.
//!
//! With N = 1 this is the batch-of-one case; with large N the proposals of all the
//! proposers that completed in a round share the leader's next append, as in a server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cluster::Cluster;
use crate::cpu_time::thread_cpu_time;

/// The leader's id (see [`Cluster::new`]).
const LEADER: u64 = 1;

/// Committed entries and propose-to-commit latencies of one timed run.
#[derive(Debug, Default)]
pub struct Sample {
    /// Proposals committed on the leader.
    pub committed: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time this thread spent on a CPU during the run, where the kernel reports it.
    pub cpu: Option<Duration>,
    /// Propose-to-commit latency of every committed proposal, in nanoseconds.
    pub latencies_ns: Vec<u64>,
}

impl Sample {
    /// Committed entries per second of wall time.
    pub fn entries_per_sec(&self) -> f64 {
        self.committed as f64 / self.elapsed.as_secs_f64()
    }

    /// Committed entries per second on a CPU (wall time where that is not reported).
    pub fn entries_per_cpu_sec(&self) -> f64 {
        self.committed as f64 / self.cpu.unwrap_or(self.elapsed).as_secs_f64()
    }
}

/// When a run stops: after `budget` of wall time or `max_committed` proposals, whichever
/// comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Wall time.
    pub budget: Duration,
    /// Committed proposals.
    pub max_committed: u64,
}

/// Keeps `proposers` proposals in flight on `cluster` until `limit`.
///
/// # Panics
/// If the cluster goes quiet with proposals outstanding (a harness or library bug).
pub fn run_proposers<C: Cluster>(
    cluster: &mut C,
    proposers: usize,
    payload: &Bytes,
    limit: Limit,
) -> Sample {
    // Outstanding proposals, oldest (lowest index) first: (index, proposed at).
    let mut outstanding: VecDeque<(u64, Instant)> = VecDeque::with_capacity(proposers);
    let mut sample = Sample::default();
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    let mut now = start;
    loop {
        while outstanding.len() < proposers {
            outstanding.push_back((cluster.propose(payload.clone()), now));
        }
        assert!(
            cluster.round(),
            "{}: cluster went quiet with {} proposals outstanding",
            C::NAME,
            outstanding.len()
        );
        now = Instant::now();
        let committed = cluster.applied(LEADER);
        let mut completed = false;
        while let Some(&(index, at)) = outstanding.front() {
            if index > committed {
                break;
            }
            outstanding.pop_front();
            sample.latencies_ns.push((now - at).as_nanos() as u64);
            sample.committed += 1;
            completed = true;
        }
        if completed {
            cluster.maybe_compact();
        }
        if now - start >= limit.budget || sample.committed >= limit.max_committed {
            break;
        }
    }
    sample.elapsed = now - start;
    sample.cpu = thread_cpu_time()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start));
    // Let the proposals still in flight finish so the next run starts from a quiet
    // cluster (not timed).
    cluster.run_until_quiet();
    sample
}

/// The `q`-quantile (0..=1) of `values`, which it sorts.
pub fn quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((values.len() - 1) as f64 * q).round() as usize;
    values[rank]
}
