//! Settings of a store, loadable from TOML.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest snapshot frame payload any store writes or accepts: it bounds the memory a
/// receiver commits to one frame before its checksum is verified.
pub const MAX_SNAP_CHUNK_BYTES: u64 = 64 << 20;

/// Settings of a store. Every field has a documented default; unknown fields in a TOML
/// file are an error, so a typo never silently keeps a default.
///
/// ```
/// let cfg: raft_store::Config = toml::from_str("raft_election_ticks = 20").unwrap();
/// assert_eq!(cfg.raft_election_ticks, 20);
/// assert_eq!(cfg.raft_heartbeat_ticks, 2);
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The interval of one raft tick. Default 100 ms.
    pub raft_base_tick_ms: u64,
    /// Ticks before a follower without a leader campaigns. Default 10.
    pub raft_election_ticks: usize,
    /// Ticks between a leader's heartbeats. Default 2.
    pub raft_heartbeat_ticks: usize,
    /// Append messages in flight per peer. Default 256.
    pub raft_max_inflight_msgs: usize,
    /// Bytes of append messages in flight per peer. Default 64 MiB.
    pub raft_max_inflight_bytes: u64,
    /// Maximum bytes of entries in one append message. Default 1 MiB.
    pub raft_max_size_per_msg_bytes: u64,
    /// Maximum bytes of one proposed entry; larger requests get `RaftEntryTooLarge`.
    /// Default 8 MiB.
    pub raft_entry_max_bytes: u64,
    /// Maximum payload bytes of uncommitted entries per region; proposals past it get
    /// `ServerIsBusy`. Default 128 MiB.
    pub raft_max_uncommitted_bytes: u64,
    /// Whether a leader lets followers learn a new commit index from its next append or
    /// heartbeat instead of sending an empty append for it at once. Halves the messages
    /// of a lightly loaded region (each write otherwise costs two rounds to every
    /// follower); followers apply later, which nothing here waits for: reads are served
    /// by leaders, and the commits of splits and membership changes are still sent at
    /// once. Default true.
    pub raft_skip_bcast_commit: bool,
    /// Bytes of the newest log entries each peer keeps in memory, so applying and
    /// replicating them does not read them back from the raft engine; 0 turns it off.
    /// Default 1 MiB.
    pub raft_entry_cache_bytes: u64,
    /// Bytes of cached entries all peers of a store hold together: a peer whose append
    /// goes past it evicts its own oldest entries (keeping its newest). A leader keeps
    /// the entries a lagging follower lacks, so with a store down each leader region
    /// would otherwise hold `raft_entry_cache_bytes`. An appending peer evicts its own
    /// oldest entries; every `raft_log_gc_tick_ticks`, while the caches hold more than
    /// half of this, peers that appended nothing since the previous check drop theirs
    /// (read back from the raft engine if needed), so busy regions get the room. At 0
    /// each peer keeps only its newest entry (`raft_entry_cache_bytes = 0` turns caching
    /// off). Default 64 MiB.
    pub raft_entry_cache_store_bytes: u64,
    /// Ticks between the checks of peers still uninitialized (created by a leader's or a
    /// candidate's message, no snapshot yet): each asks the stores it knows whether it
    /// is still a member, and is destroyed if one answers with a newer configuration
    /// that lacks it (it was added and removed before it ever got its data). Default
    /// 600 (a minute at 100 ms ticks).
    pub uninitialized_peer_check_ticks: usize,
    /// Ticks between log GC checks. Default 10.
    pub raft_log_gc_tick_ticks: usize,
    /// Entries kept after the applied index before the leader proposes compaction.
    /// Default 10,000.
    pub raft_log_gc_count_limit: u64,
    /// Ticks between split checks. Default 100.
    pub split_check_tick_ticks: usize,
    /// A region larger than this is split. Default 96 MiB.
    pub region_max_size_bytes: u64,
    /// The size of each half after a split. Default 64 MiB.
    pub region_split_size_bytes: u64,
    /// Largest payload of one checksummed frame of a staged snapshot (generation writes
    /// frames of this size; a receiver refuses a snapshot whose frames are larger than
    /// [`MAX_SNAP_CHUNK_BYTES`]). Default 1 MiB.
    pub snap_chunk_bytes: u64,
    /// Snapshots streamed out at once, and (counted separately) snapshots received at
    /// once; past it a send is reported failed (raft retries later) and a receive is
    /// refused. Generation and apply run one at a time on the region worker. Default 4.
    pub max_concurrent_snapshots: usize,
    /// Bytes per kv-engine write batch while applying a snapshot or clearing a range: the
    /// memory an apply holds, and the largest write it makes. Default 4 MiB.
    pub snap_apply_batch_bytes: u64,
    /// The largest snapshot (staged bytes) a store accepts. Default 8 GiB.
    pub snap_max_bytes: u64,
    /// Ticks between sweeps of staged snapshot data no longer needed; an unreferenced
    /// file is deleted by the second sweep that finds it so. Default 100.
    pub snap_gc_tick_ticks: usize,
    /// Maximum messages handled in one loop iteration. Default 4096.
    pub max_batch_msgs: usize,
    /// Whether the raft log is fsynced before acknowledging (turning it off risks losing
    /// acknowledged writes on power loss). Default true.
    pub sync_log: bool,
    /// Whether raft batches are written on a writer thread, so the raft worker goes on
    /// handling messages, committing and applying while the fsync runs (what waits for
    /// durability still waits; rounds made meanwhile gather into the next write). Pays
    /// when the fsync is slow against the CPU (1.27x puts/s at 64 clients with 1 ms
    /// added to each fsync); costs two thread hand-offs per write, a loss where CPU is
    /// the limit (0.94x at 64 clients and 0.85x at one on the 2-vCPU benchmark machine). A store driven by hand rather than
    /// by a [`RaftWorker`](crate::RaftWorker) writes at the start of its next iteration
    /// instead. Off: the raft worker writes each batch before its round ends. Default
    /// false.
    pub raft_async_write: bool,
    /// Serve reads on the leader's lease instead of a heartbeat round per batch of reads:
    /// no round trip, but linearizable only while clock drift between nodes stays below
    /// the election timeout. Default false (ReadIndex with a quorum round).
    pub lease_read: bool,
    /// An exactly-once client session idle this long (by the region clock, the largest
    /// command timestamp applied) is dropped. Part of the replicated state machine: must be
    /// equal on every store. Default 30 minutes.
    pub client_session_ttl_ms: u64,
    /// Exactly-once client sessions kept per region; past it the least recently used is
    /// dropped. Must be equal on every store. Default 10,000.
    pub client_session_max_per_region: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            raft_base_tick_ms: 100,
            raft_election_ticks: 10,
            raft_heartbeat_ticks: 2,
            raft_max_inflight_msgs: 256,
            raft_max_inflight_bytes: 64 << 20,
            raft_max_size_per_msg_bytes: 1 << 20,
            raft_entry_max_bytes: 8 << 20,
            raft_max_uncommitted_bytes: 128 << 20,
            raft_skip_bcast_commit: true,
            raft_entry_cache_bytes: 1 << 20,
            raft_entry_cache_store_bytes: 64 << 20,
            uninitialized_peer_check_ticks: 600,
            raft_log_gc_tick_ticks: 10,
            raft_log_gc_count_limit: 10_000,
            split_check_tick_ticks: 100,
            region_max_size_bytes: 96 << 20,
            region_split_size_bytes: 64 << 20,
            snap_chunk_bytes: 1 << 20,
            max_concurrent_snapshots: 4,
            snap_apply_batch_bytes: 4 << 20,
            snap_max_bytes: 8 << 30,
            snap_gc_tick_ticks: 100,
            max_batch_msgs: 4096,
            sync_log: true,
            raft_async_write: false,
            lease_read: false,
            client_session_ttl_ms: 30 * 60 * 1000,
            client_session_max_per_region: 10_000,
        }
    }
}

impl Config {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Other`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::Other(format!("invalid store config: {msg}")));
        if self.raft_base_tick_ms == 0 {
            return bad("raft_base_tick_ms must be greater than 0");
        }
        if self.raft_heartbeat_ticks == 0 || self.raft_election_ticks <= self.raft_heartbeat_ticks {
            return bad("raft_election_ticks must be greater than raft_heartbeat_ticks > 0");
        }
        if self.raft_max_inflight_msgs == 0 || self.raft_max_inflight_bytes == 0 {
            return bad("raft_max_inflight_msgs and raft_max_inflight_bytes must be > 0");
        }
        if self.raft_entry_max_bytes == 0 || self.raft_max_size_per_msg_bytes == 0 {
            return bad("raft_entry_max_bytes and raft_max_size_per_msg_bytes must be > 0");
        }
        if self.raft_log_gc_tick_ticks == 0
            || self.split_check_tick_ticks == 0
            || self.uninitialized_peer_check_ticks == 0
        {
            return bad("raft_log_gc_tick_ticks, split_check_tick_ticks and \
                 uninitialized_peer_check_ticks must be > 0");
        }
        if self.raft_log_gc_count_limit == 0 {
            return bad("raft_log_gc_count_limit must be greater than 0");
        }
        if self.region_split_size_bytes == 0
            || self.region_split_size_bytes > self.region_max_size_bytes
        {
            return bad("region_split_size_bytes must be in (0, region_max_size_bytes]");
        }
        if self.snap_chunk_bytes == 0 || self.snap_chunk_bytes > MAX_SNAP_CHUNK_BYTES {
            return bad("snap_chunk_bytes must be in (0, 64 MiB]");
        }
        if self.max_concurrent_snapshots == 0 || self.snap_gc_tick_ticks == 0 {
            return bad("max_concurrent_snapshots and snap_gc_tick_ticks must be > 0");
        }
        if self.snap_apply_batch_bytes == 0 || self.snap_max_bytes == 0 {
            return bad("snap_apply_batch_bytes and snap_max_bytes must be > 0");
        }
        if self.max_batch_msgs == 0 {
            return bad("max_batch_msgs must be greater than 0");
        }
        if self.client_session_ttl_ms == 0 || self.client_session_max_per_region == 0 {
            return bad("client_session_ttl_ms and client_session_max_per_region must be > 0");
        }
        Ok(())
    }

    /// The raft-core config of peer `peer_id`, whose applied index is `applied`.
    #[must_use]
    pub fn raft_config(&self, peer_id: u64, applied: u64) -> raft_core::Config {
        let mut c = raft_core::Config::new(peer_id);
        c.election_ticks = self.raft_election_ticks;
        c.heartbeat_ticks = self.raft_heartbeat_ticks;
        c.applied = applied;
        c.max_msg_bytes = self.raft_max_size_per_msg_bytes;
        c.max_inflight_msgs = self.raft_max_inflight_msgs;
        c.max_inflight_bytes = self.raft_max_inflight_bytes;
        c.max_uncommitted_bytes = self.raft_max_uncommitted_bytes;
        c.check_quorum = true;
        c.pre_vote = true;
        c.skip_bcast_commit = self.raft_skip_bcast_commit;
        if self.lease_read {
            c.read_only_option = raft_core::ReadOnlyOption::LeaseBased;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let mut c = Config {
            raft_heartbeat_ticks: 10,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("raft_election_ticks")
        );
        c = Config {
            region_split_size_bytes: 200 << 20,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("region_split_size_bytes")
        );
        c = Config {
            snap_chunk_bytes: MAX_SNAP_CHUNK_BYTES + 1,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("snap_chunk_bytes")
        );
        c = Config {
            snap_apply_batch_bytes: 0,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("snap_apply_batch_bytes")
        );
        assert!(toml::from_str::<Config>("no_such_setting = 1").is_err());
    }
}
