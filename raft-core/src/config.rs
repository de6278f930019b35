//! Settings of one Raft node.

use crate::error::{Error, Result};
use crate::read_only::ReadOnlyOption;

/// Settings of one Raft node. Start from [`Config::new`] and adjust; [`Config::validate`]
/// runs when a node is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout
    /// is drawn from `[election_ticks, 2 * election_ticks)` each time.
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats; must be below `election_ticks`.
    pub heartbeat_ticks: usize,
    /// The index the application has already applied (when restarting).
    pub applied: u64,
    /// The maximum bytes of entries in one append message (at least one entry is sent).
    pub max_msg_bytes: u64,
    /// The maximum bytes of committed entries handed out in one `Ready`.
    pub max_committed_bytes_per_ready: u64,
    /// The maximum payload bytes of uncommitted entries a leader accepts; proposals past
    /// it are dropped. Protects memory when followers fall behind.
    pub max_uncommitted_bytes: u64,
    /// The maximum append messages in flight to one peer.
    pub max_inflight_msgs: usize,
    /// The maximum bytes of append messages in flight to one peer.
    pub max_inflight_bytes: u64,
    /// Whether a leader steps down when it has not heard from a quorum within an election
    /// timeout, and followers in contact with a leader ignore disruptive vote requests.
    pub check_quorum: bool,
    /// Whether candidates first run a pre-election that cannot disturb the cluster
    /// (thesis §9.6).
    pub pre_vote: bool,
    /// How ReadIndex confirms leadership.
    pub read_only_option: ReadOnlyOption,
    /// Whether followers drop proposals instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// Whether a leader skips the empty appends that tell followers a new commit index.
    /// Followers then learn it from the next append or heartbeat, which halves the
    /// messages of a lightly loaded cluster (every entry otherwise costs two rounds:
    /// the append and its ack, then the commit and its ack) at the price of followers
    /// applying later. A pending configuration change is always broadcast at once.
    /// Change it at run time with `RawNode::set_skip_bcast_commit`.
    pub skip_bcast_commit: bool,
    /// Seeds the randomized election timeout, so a run replays exactly. Mixed with `id`,
    /// so nodes sharing a seed still time out differently.
    pub random_seed: u64,
}

impl Config {
    /// Defaults suitable for a LAN: election after 10 ticks, heartbeat every 2, PreVote
    /// and CheckQuorum on.
    #[must_use]
    pub fn new(id: u64) -> Self {
        Self {
            id,
            election_ticks: 10,
            heartbeat_ticks: 2,
            applied: 0,
            max_msg_bytes: 1 << 20,
            max_committed_bytes_per_ready: 16 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 32 << 20,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            skip_bcast_commit: false,
            random_seed: 0,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::ConfigInvalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::ConfigInvalid(msg.to_owned()));
        if self.id == 0 {
            return bad("id must not be 0 (0 means \"no node\")");
        }
        if self.heartbeat_ticks == 0 {
            return bad("heartbeat_ticks must be greater than 0");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return bad("election_ticks must be greater than heartbeat_ticks");
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs must be greater than 0");
        }
        if self.max_inflight_bytes == 0 {
            return bad("max_inflight_bytes must be greater than 0");
        }
        if self.max_msg_bytes == 0 {
            return bad("max_msg_bytes must be greater than 0");
        }
        if self.max_committed_bytes_per_ready == 0 {
            return bad("max_committed_bytes_per_ready must be greater than 0");
        }
        if self.max_uncommitted_bytes == 0 {
            return bad("max_uncommitted_bytes must be greater than 0");
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return bad("read_only_option LeaseBased requires check_quorum");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_bad_setting() {
        assert!(Config::new(1).validate().is_ok());
        type Mutation = fn(&mut Config);
        let cases: Vec<(Mutation, &str)> = vec![
            (|c| c.id = 0, "id"),
            (|c| c.heartbeat_ticks = 0, "heartbeat_ticks"),
            (|c| c.election_ticks = c.heartbeat_ticks, "election_ticks"),
            (|c| c.max_inflight_msgs = 0, "max_inflight_msgs"),
            (|c| c.max_inflight_bytes = 0, "max_inflight_bytes"),
            (|c| c.max_msg_bytes = 0, "max_msg_bytes"),
            (
                |c| c.max_committed_bytes_per_ready = 0,
                "max_committed_bytes_per_ready",
            ),
            (|c| c.max_uncommitted_bytes = 0, "max_uncommitted_bytes"),
            (
                |c| {
                    c.read_only_option = ReadOnlyOption::LeaseBased;
                    c.check_quorum = false;
                },
                "LeaseBased",
            ),
        ];
        for (mutate, needle) in cases {
            let mut c = Config::new(1);
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
