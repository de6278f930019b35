//! The store's metrics, through the `metrics` facade (any exporter can collect them;
//! the KV server exposes them to Prometheus).
//!
//! | name | kind | what |
//! |---|---|---|
//! | `raftstore_proposals_total` | counter | commands proposed to the log |
//! | `raftstore_applied_entries_total` | counter | log entries applied |
//! | `raftstore_ready_batch_peers` | histogram | peers whose Ready one group commit carried |
//! | `raftstore_raft_write_seconds` | histogram | duration of the group-commit write (fsync included) |
//! | `raftstore_raft_sync_write_seconds` | histogram | duration of the group-commit writes that fsync |
//! | `raftstore_apply_seconds` | histogram | one round of applying committed entries and writing them to the kv engine |
//! | `raftstore_snapshot_generated_bytes_total` | counter | bytes of snapshots staged by generation |
//! | `raftstore_snapshot_generated_keys_total` | counter | records in generated snapshots |
//! | `raftstore_snapshot_generate_seconds` | histogram | duration of one generation |
//! | `raftstore_snapshot_sent_bytes_total` | counter | bytes of snapshots streamed out (completed sends) |
//! | `raftstore_snapshot_send_seconds` | histogram | duration of one send |
//! | `raftstore_snapshot_received_bytes_total` | counter | bytes of snapshots received and staged |
//! | `raftstore_snapshot_receive_seconds` | histogram | duration of one receive |
//! | `raftstore_snapshot_applied_bytes_total` | counter | bytes of snapshots applied |
//! | `raftstore_snapshot_applied_keys_total` | counter | records of snapshots applied |
//! | `raftstore_snapshot_apply_seconds` | histogram | duration of one apply |
//! | `raftstore_snapshot_failures_total` | counter | snapshots refused or failed, by `stage` (send, receive, check, apply, generate) |
//! | `raftstore_region_destroy_seconds` | histogram | duration of deleting a destroyed peer's data |
//! | `raftstore_log_gc_entries_total` | counter | raft log entries deleted by compaction |
//! | `raftstore_messages_dropped_total` | counter | inbound messages dropped (full mailbox) |
//! | `raftstore_entry_cache_bytes` | gauge | bytes of log entries the store's peers cache (sampled every tick) |

/// Counts `n` proposed commands.
pub fn proposal(n: usize) {
    metrics::counter!("raftstore_proposals_total").increment(n as u64);
}

/// Counts applied entries.
pub fn applied_entries(n: usize) {
    metrics::counter!("raftstore_applied_entries_total").increment(n as u64);
}

/// Records one group commit: how many peers it carried, whether it was fsynced and how
/// long the write took.
pub fn group_commit(peers: usize, synced: bool, seconds: f64) {
    metrics::histogram!("raftstore_ready_batch_peers").record(peers as f64);
    metrics::histogram!("raftstore_raft_write_seconds").record(seconds);
    if synced {
        metrics::histogram!("raftstore_raft_sync_write_seconds").record(seconds);
    }
}

/// Records one round of applying committed entries (the kv-engine write included).
pub fn apply_round(seconds: f64) {
    metrics::histogram!("raftstore_apply_seconds").record(seconds);
}

/// Records one generated snapshot.
pub fn snapshot_generated(bytes: u64, keys: u64, seconds: f64) {
    metrics::counter!("raftstore_snapshot_generated_bytes_total").increment(bytes);
    metrics::counter!("raftstore_snapshot_generated_keys_total").increment(keys);
    metrics::histogram!("raftstore_snapshot_generate_seconds").record(seconds);
}

/// Records one snapshot streamed out.
pub fn snapshot_sent(bytes: u64, seconds: f64) {
    metrics::counter!("raftstore_snapshot_sent_bytes_total").increment(bytes);
    metrics::histogram!("raftstore_snapshot_send_seconds").record(seconds);
}

/// Records one snapshot received and staged.
pub fn snapshot_received(bytes: u64, seconds: f64) {
    metrics::counter!("raftstore_snapshot_received_bytes_total").increment(bytes);
    metrics::histogram!("raftstore_snapshot_receive_seconds").record(seconds);
}

/// Records one applied snapshot.
pub fn snapshot_applied(bytes: u64, keys: u64, seconds: f64) {
    metrics::counter!("raftstore_snapshot_applied_bytes_total").increment(bytes);
    metrics::counter!("raftstore_snapshot_applied_keys_total").increment(keys);
    metrics::histogram!("raftstore_snapshot_apply_seconds").record(seconds);
}

/// Counts a snapshot refused or failed at `stage` (send, receive, check, apply, generate).
pub fn snapshot_failed(stage: &'static str) {
    metrics::counter!("raftstore_snapshot_failures_total", "stage" => stage).increment(1);
}

/// Records the deletion of a destroyed peer's data.
pub fn region_destroyed(seconds: f64) {
    metrics::histogram!("raftstore_region_destroy_seconds").record(seconds);
}

/// Counts raft log entries deleted by compaction.
pub fn log_gc(entries: u64) {
    metrics::counter!("raftstore_log_gc_entries_total").increment(entries);
}

/// Counts an inbound message dropped because the mailbox was full.
pub fn message_dropped() {
    metrics::counter!("raftstore_messages_dropped_total").increment(1);
}

/// Records the bytes of log entries the store's peers cache.
pub fn entry_cache_bytes(bytes: u64) {
    metrics::gauge!("raftstore_entry_cache_bytes").set(bytes as f64);
}
