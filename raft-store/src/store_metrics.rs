//! The store's metrics, through the `metrics` facade (any exporter can collect them;
//! the KV server exposes them to Prometheus).
//!
//! | name | kind | what |
//! |---|---|---|
//! | `raftstore_proposals_total` | counter | commands proposed to the log |
//! | `raftstore_applied_entries_total` | counter | log entries applied |
//! | `raftstore_ready_batch_peers` | histogram | peers whose Ready one group commit carried |
//! | `raftstore_raft_write_seconds` | histogram | duration of the group-commit write (fsync included) |
//! | `raftstore_snapshot_bytes_total` | counter | bytes of snapshot data applied |
//! | `raftstore_log_gc_entries_total` | counter | raft log entries deleted by compaction |
//! | `raftstore_messages_dropped_total` | counter | inbound messages dropped (full mailbox) |

/// Counts `n` proposed commands.
pub fn proposal(n: usize) {
    metrics::counter!("raftstore_proposals_total").increment(n as u64);
}

/// Counts applied entries.
pub fn applied_entries(n: usize) {
    metrics::counter!("raftstore_applied_entries_total").increment(n as u64);
}

/// Records one group commit: how many peers it carried and how long the write took.
pub fn group_commit(peers: usize, seconds: f64) {
    metrics::histogram!("raftstore_ready_batch_peers").record(peers as f64);
    metrics::histogram!("raftstore_raft_write_seconds").record(seconds);
}

/// Counts applied snapshot bytes.
pub fn snapshot_applied(bytes: usize) {
    metrics::counter!("raftstore_snapshot_bytes_total").increment(bytes as u64);
}

/// Counts raft log entries deleted by compaction.
pub fn log_gc(entries: u64) {
    metrics::counter!("raftstore_log_gc_entries_total").increment(entries);
}

/// Counts an inbound message dropped because the mailbox was full.
pub fn message_dropped() {
    metrics::counter!("raftstore_messages_dropped_total").increment(1);
}
