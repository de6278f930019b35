//! Candidates and pre-candidates: campaigning and counting votes.

use tracing::{debug, info};

use super::{CAMPAIGN_TRANSFER, CampaignType, INVALID_ID, Raft, StateRole};
use crate::eraftpb::{Message, MessageType};
use crate::error::{Error, Result};
use crate::quorum::VoteResult;
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    pub(super) fn step_candidate(&mut self, m: Message, msg_type: MessageType) -> Result<()> {
        let my_vote_response = if self.state == StateRole::PreCandidate {
            MessageType::MsgRequestPreVoteResponse
        } else {
            MessageType::MsgRequestVoteResponse
        };
        match msg_type {
            MessageType::MsgPropose | MessageType::MsgReadIndex => {
                debug!(
                    id = self.id,
                    term = self.term,
                    "no leader: dropping request"
                );
                Err(Error::ProposalDropped)
            }
            // A leader of this term exists: follow it (§5.2).
            MessageType::MsgAppend => {
                self.become_follower(m.term, m.from);
                self.handle_append_entries(m)
            }
            MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                self.become_follower(m.term, m.from);
                self.step_follower(m, msg_type)
            }
            t if t == my_vote_response => {
                if m.reject && self.maybe_commit_by_vote(&m)? {
                    // A committed membership change it has not applied may change who
                    // votes: this election counts by a stale configuration; give it up.
                    self.become_follower(self.term, INVALID_ID);
                    return Ok(());
                }
                match self.poll(m.from, !m.reject) {
                    VoteResult::Won => {
                        if self.state == StateRole::PreCandidate {
                            self.campaign(CampaignType::Election)?;
                        } else {
                            self.become_leader();
                        }
                    }
                    VoteResult::Lost => self.become_follower(self.term, INVALID_ID),
                    VoteResult::Pending => {}
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Advances the commit index to what a rejecting voter reports committed (`commit`,
    /// with that entry's term in `log_term`) when this log holds that entry. Returns
    /// whether the newly committed entries include a membership change not yet applied.
    ///
    /// Configurations take effect when applied, so a node that missed the commit of a
    /// change may count votes by the old configuration and need votes from nodes the
    /// change removed or demoted. Those never campaign, and refuse a candidate whose log
    /// is shorter than theirs (a removed leader's often is), so without this the cluster
    /// can stay leaderless for good. Safe: an entry known committed commits every log that
    /// holds it with the same term (log matching).
    fn maybe_commit_by_vote(&mut self, m: &Message) -> Result<bool> {
        if m.commit == 0 || m.log_term == 0 || m.commit <= self.raft_log.committed {
            return Ok(false);
        }
        let before = self.raft_log.committed;
        if !self.raft_log.maybe_commit(m.commit, m.log_term)? {
            return Ok(false);
        }
        info!(
            id = self.id,
            term = self.term,
            from = m.from,
            before,
            committed = self.raft_log.committed,
            "commit index fast-forwarded by a vote rejection"
        );
        self.has_unapplied_conf_changes()
    }

    /// Records a vote and returns the election's outcome so far.
    fn poll(&mut self, from: u64, granted: bool) -> VoteResult {
        self.trk.record_vote(from, granted);
        let (granted_n, rejected_n, result) = self.trk.tally_votes();
        debug!(
            id = self.id,
            term = self.term,
            from,
            granted,
            granted_n,
            rejected_n,
            ?result,
            "vote tallied"
        );
        result
    }

    /// Runs a (pre-)election: asks every voter for its vote.
    pub(super) fn campaign(&mut self, kind: CampaignType) -> Result<()> {
        let (vote_type, term) = if kind == CampaignType::PreElection {
            self.become_pre_candidate();
            // Ask for the next term without moving to it.
            (MessageType::MsgRequestPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::MsgRequestVote, self.term)
        };
        let id = self.id;
        if self.poll(id, true) == VoteResult::Won {
            // A single voter wins at once.
            if kind == CampaignType::PreElection {
                return self.campaign(CampaignType::Election);
            }
            self.become_leader();
            return Ok(());
        }
        let last_index = self.raft_log.last_index();
        let last_term = self.raft_log.last_term()?;
        let context = if kind == CampaignType::Transfer {
            bytes::Bytes::from_static(CAMPAIGN_TRANSFER)
        } else {
            bytes::Bytes::new()
        };
        info!(id, term, ?kind, last_index, last_term, "campaigning");
        for voter in self.trk.conf.voters.ids() {
            if voter == id {
                continue;
            }
            self.send(Message {
                msg_type: vote_type as i32,
                to: voter,
                term,
                index: last_index,
                log_term: last_term,
                context: context.clone(),
                ..Default::default()
            });
        }
        Ok(())
    }
}
