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
                self.handle_append_entries(&m)
            }
            MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                self.become_follower(m.term, m.from);
                self.step_follower(m, msg_type)
            }
            t if t == my_vote_response => {
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
