//! Membership changes on a running node.

use prost::Message as _;
use tracing::{debug, info};

use super::{INVALID_ID, Raft, StateRole};
use crate::confchange::Changer;
use crate::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType};
use crate::error::Result;
use crate::storage::Storage;
use crate::tracker::{ProgressMap, TrackerConfig};

impl<S: Storage> Raft<S> {
    /// Applies a committed conf change and returns the new membership, which the
    /// application persists with the applied index.
    ///
    /// # Errors
    /// [`Error::ConfChangeInvalid`](crate::Error::ConfChangeInvalid) when the change does
    /// not fit the current configuration (every node rejects it alike, so membership
    /// stays consistent), or a storage failure.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState> {
        let changer = Changer::new(&self.trk, self.raft_log.last_index());
        let (cfg, prs) = if cc.leave_joint() {
            changer.leave_joint()?
        } else if let Some(auto_leave) = cc.enter_joint() {
            changer.enter_joint(auto_leave, &cc.changes)?
        } else {
            changer.simple(&cc.changes)?
        };
        self.switch_to_config(cfg, prs)
    }

    fn switch_to_config(&mut self, cfg: TrackerConfig, prs: ProgressMap) -> Result<ConfState> {
        self.trk.conf = cfg;
        self.trk.progress = prs;
        let cs = self.trk.conf_state();
        info!(id = self.id, conf = ?cs, "switched configuration");
        let still_voter = self.promotable();
        if self.state == StateRole::Leader && !still_voter {
            // A leader removed or demoted to learner steps down; the remaining voters
            // elect a new leader.
            info!(id = self.id, "removed from the voters: stepping down");
            self.become_follower(self.term, INVALID_ID);
            return Ok(cs);
        }
        if self.state != StateRole::Leader || cs.voters.is_empty() {
            return Ok(cs);
        }
        if self.lead_transferee != INVALID_ID
            && !self.trk.conf.voters.contains(self.lead_transferee)
        {
            self.abort_leader_transfer();
        }
        // The quorum changed, so the commit index may move; new peers are probed now
        // rather than after a heartbeat interval.
        if self.maybe_commit()? {
            self.on_commit_advanced();
        } else {
            for &id in self.trk.member_id_list().as_slice() {
                if id != self.id {
                    self.maybe_send_append(id, false)?;
                }
            }
        }
        Ok(cs)
    }

    /// Proposes the empty change that leaves an auto-leave joint configuration.
    pub(super) fn propose_leave_joint(&mut self) -> Result<()> {
        let entry = Entry {
            entry_type: EntryType::EntryConfChangeV2 as i32,
            data: ConfChangeV2::default().encode_to_vec().into(),
            ..Default::default()
        };
        // The entry carries no payload, so the uncommitted budget never refuses it.
        if self.append_entries(vec![entry]) {
            self.pending_conf_index = self.raft_log.last_index();
            self.bcast_pending = true;
            debug!(
                id = self.id,
                index = self.pending_conf_index,
                "proposed leaving joint config"
            );
        }
        Ok(())
    }
}
