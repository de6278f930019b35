//! The workload both libraries run, written once against the [`Cluster`] trait.

use bytes::Bytes;

/// How many applied entries a node keeps in its log before the harness compacts it, so a
/// long run does not grow memory without bound.
pub const COMPACT_LAG_ENTRIES: u64 = 4096;

/// A cluster of voters in one process, driven through one Raft library's Ready loop, with
/// messages passed in memory and every node persisting into its own in-memory storage.
///
/// Node ids are `1..=voters`; node 1 is the leader once [`Cluster::new`] returns. Every
/// implementation does the same work per [`round`](Cluster::round): each node handles its
/// Readies (send `messages`, persist entries and hard state, send `persisted_messages`,
/// apply committed entries, advance), then every queued message is delivered.
pub trait Cluster: Sized {
    /// The library's name, as the benchmark reports it.
    const NAME: &'static str;

    /// Bootstraps `voters` voters and elects node 1; returns once every node has applied
    /// the leader's empty entry and the cluster is quiet.
    fn new(voters: u64) -> Self;

    /// Proposes one entry carrying `data` on the leader; returns the index it got.
    fn propose(&mut self, data: Bytes) -> u64;

    /// Handles every node's Readies, then delivers every queued message. Returns whether
    /// anything happened.
    fn round(&mut self) -> bool;

    /// The highest index node `id` has applied.
    fn applied(&self, id: u64) -> u64;

    /// The node ids, ascending.
    fn ids(&self) -> std::ops::RangeInclusive<u64>;

    /// Discards log entries up to `index` from node `id`'s storage (all applied).
    fn compact(&mut self, id: u64, index: u64);

    /// The first index still in node `id`'s storage.
    fn first_index(&self, id: u64) -> u64;

    /// The lowest applied index over all nodes.
    fn min_applied(&self) -> u64 {
        self.ids().map(|id| self.applied(id)).min().unwrap_or(0)
    }

    /// Runs rounds until every node has applied `index`.
    ///
    /// # Panics
    /// If the cluster goes quiet first (a harness or library bug).
    fn run_until_applied(&mut self, index: u64) {
        while self.min_applied() < index {
            assert!(
                self.round(),
                "{}: cluster went quiet with applied {} < {index}",
                Self::NAME,
                self.min_applied()
            );
        }
    }

    /// Runs rounds until nothing more happens.
    fn run_until_quiet(&mut self) {
        while self.round() {}
    }

    /// Compacts every node's log once it holds more than [`COMPACT_LAG_ENTRIES`] applied
    /// entries, as an application would after snapshotting its state machine.
    fn maybe_compact(&mut self) {
        for id in self.ids() {
            let applied = self.applied(id);
            if applied >= self.first_index(id) + COMPACT_LAG_ENTRIES {
                self.compact(id, applied);
            }
        }
    }
}

/// One benchmark case: `batch` proposals of `payload_bytes` each.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Payload bytes of each proposed entry.
    pub payload_bytes: usize,
    /// Proposals made on the leader before the cluster runs.
    pub batch: usize,
}

impl Case {
    /// The case's name in reports, e.g. `256B_x64`.
    pub fn name(self) -> String {
        format!("{}B_x{}", self.payload_bytes, self.batch)
    }

    /// The payload every proposal carries (shared, so cloning it copies nothing).
    pub fn payload(self) -> Bytes {
        Bytes::from(vec![0xA5; self.payload_bytes])
    }
}

/// One iteration of the throughput workload: propose `batch` entries on the leader, then
/// run the cluster until every node has committed and applied all of them.
pub fn replicate_batch<C: Cluster>(cluster: &mut C, batch: usize, payload: &Bytes) {
    let mut last = 0;
    for _ in 0..batch {
        last = cluster.propose(payload.clone());
    }
    cluster.run_until_applied(last);
    cluster.maybe_compact();
}
