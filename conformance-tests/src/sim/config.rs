//! [`SimConfig`]: what one simulated run does.

use raft_store::Config;

/// Virtual microseconds.
pub type Micros = u64;

/// The shape of one simulated run; everything random in it is drawn from `seed`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed of every random choice of the run.
    pub seed: u64,
    /// Virtual seconds of workload under faults (the heal, the quiet period and the
    /// final reads come after).
    pub seconds: u64,
    /// Stores in the cluster; the first region starts with a peer on the first three.
    pub stores: u64,
    /// Concurrent simulated clients.
    pub clients: usize,
    /// Keys the clients share (`k0`, `k1`, ...).
    pub keys: u64,
    /// The virtual time of one tick.
    pub tick_us: Micros,
    /// Network delay range of one message, `[min, max)`.
    pub delay_us: (Micros, Micros),
    /// Probability that a message (or a client's reply) is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Mean virtual time between two injected faults.
    pub fault_interval_us: Micros,
    /// Inject partitions (into groups, and one-way).
    pub partitions: bool,
    /// Crash stores (dropping their unsynced writes) and restart them.
    pub crashes: bool,
    /// Add and remove peers.
    pub conf_changes: bool,
    /// Split regions.
    pub splits: bool,
}

impl SimConfig {
    /// The default run of `seed`: 5 stores, 3 clients on 6 keys, 10 virtual seconds
    /// with every fault kind, conf changes and splits included.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            seconds: 10,
            stores: 5,
            clients: 3,
            keys: 6,
            tick_us: 10_000,
            delay_us: (100, 4_000),
            loss: 0.03,
            duplicate: 0.02,
            fault_interval_us: 600_000,
            partitions: true,
            crashes: true,
            conf_changes: true,
            splits: true,
        }
    }

    /// The stores' configuration: short election timeouts and a tiny log GC limit, so
    /// followers that fall behind catch up by snapshot.
    #[must_use]
    pub fn store_config(&self) -> Config {
        Config {
            raft_base_tick_ms: self.tick_us / 1000,
            raft_election_ticks: 10,
            raft_heartbeat_ticks: 2,
            raft_log_gc_tick_ticks: 5,
            raft_log_gc_count_limit: 24,
            // Splits are injected as admin commands; the size-based check stays quiet.
            split_check_tick_ticks: 1_000_000,
            snap_gc_tick_ticks: 50,
            // Peers added and removed before their snapshot arrived ask often.
            uninitialized_peer_check_ticks: 20,
            // A few entries' worth: eviction and reads past the cache happen all the time.
            raft_entry_cache_bytes: 2048,
            // Below what the regions of a store would hold together: the store budget
            // evicts too.
            raft_entry_cache_store_bytes: 4096,
            // Every other seed writes raft batches asynchronously (at the store's next
            // run): acknowledgements an iteration late, the kv batch ahead of the raft
            // batch, several rounds gathered, crashes in between.
            raft_async_write: self.seed % 2 == 1,
            ..Config::default()
        }
    }
}
