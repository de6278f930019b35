//! The leader's view of one peer's replication.

use std::fmt;

use super::Inflights;

/// How the leader replicates to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressState {
    /// Where the peer's log matches is unknown: send one append at a time and wait.
    #[default]
    Probe,
    /// The peer's log matches: stream appends optimistically, within the inflight window.
    Replicate,
    /// The peer needs a snapshot; appends pause until it is applied or fails.
    Snapshot,
}

impl fmt::Display for ProgressState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Probe => "probe",
            Self::Replicate => "replicate",
            Self::Snapshot => "snapshot",
        })
    }
}

/// Replication progress of one peer, as the leader tracks it.
///
/// Invariants: `matched < next_idx`; in `Snapshot` state `pending_snapshot > 0`; in
/// `Replicate` state every index in `inflights` is `< next_idx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The highest index known to match the leader's log.
    pub matched: u64,
    /// The next index to send.
    pub next_idx: u64,
    /// How appends are sent.
    pub state: ProgressState,
    /// In `Snapshot` state, the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// Whether the peer was heard from since the last quorum check.
    pub recent_active: bool,
    /// In `Probe` state, whether a probe is outstanding (no more appends until it answers).
    pub probe_sent: bool,
    /// Append messages in flight (used in `Replicate` state).
    pub inflights: Inflights,
    /// Whether the peer is a learner.
    pub is_learner: bool,
}

impl Progress {
    /// Progress of a peer about to be probed at `next_idx`.
    #[must_use]
    pub fn new(next_idx: u64, max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            recent_active: false,
            probe_sent: false,
            inflights: Inflights::new(max_inflight_msgs, max_inflight_bytes),
            is_learner: false,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    /// Moves to `Probe`, resuming after the snapshot if one was just sent.
    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
    }

    /// Moves to `Replicate`, sending from just after the matched index.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    /// Moves to `Snapshot` while the snapshot at `snapshot_index` is sent.
    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// Forgets the snapshot being sent (it failed).
    pub fn snapshot_failure(&mut self) {
        self.pending_snapshot = 0;
    }

    /// Records that the peer holds everything up to `index`. Returns whether the matched
    /// index advanced (a stale acknowledgement returns false).
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = self.matched < index;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next_idx = self.next_idx.max(index + 1);
        updated
    }

    /// Records that entries up to `last` were sent (optimistically, in `Replicate`).
    pub fn optimistic_update(&mut self, last: u64) {
        self.next_idx = last + 1;
    }

    /// Handles a rejected append at `rejected` with the peer's hint `match_hint` (the
    /// highest index that may match). Returns false when the rejection is stale.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // Appends are pipelined: a rejection at or below `matched` answers an old one.
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        // One probe is outstanding: any rejection not of `next_idx - 1` is stale.
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        // The hint comes from the network: never let it overflow.
        self.next_idx = rejected
            .min(match_hint.saturating_add(1))
            .max(self.matched + 1)
            .max(1);
        self.probe_sent = false;
        true
    }

    /// Whether appends to this peer are paused.
    #[must_use]
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decr_to_ignores_stale_rejections() {
        let mut p = Progress::new(10, 8, 1 << 20);
        p.matched = 5;
        p.state = ProgressState::Replicate;
        assert!(!p.maybe_decr_to(5, 5), "rejection at matched is stale");
        assert!(p.maybe_decr_to(9, 6));
        assert_eq!(p.next_idx, 6);
        let mut p = Progress::new(10, 8, 1 << 20);
        assert!(
            !p.maybe_decr_to(5, 3),
            "probe state: only next-1 may be rejected"
        );
        assert!(p.maybe_decr_to(9, 3));
        assert_eq!(p.next_idx, 4, "jumps to the hint");
    }

    #[test]
    fn probe_after_snapshot_resumes_past_it() {
        let mut p = Progress::new(5, 8, 1 << 20);
        p.matched = 1;
        p.become_snapshot(10);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next_idx, 11);
    }
}
