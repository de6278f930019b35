//! Validating and applying a membership change to a copy of the configuration.

use crate::eraftpb::{ConfChangeSingle, ConfChangeType};
use crate::error::{Error, Result};
use crate::tracker::{Progress, ProgressMap, ProgressTracker, TrackerConfig};

/// Computes the configuration and progress that result from a change, without touching
/// the tracker: the caller installs the result only once it is known to be valid.
#[derive(Debug)]
pub struct Changer<'a> {
    tracker: &'a ProgressTracker,
    last_index: u64,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::ConfChangeInvalid(msg.into())
}

impl<'a> Changer<'a> {
    /// A changer over `tracker`; new peers are probed from `last_index`.
    #[must_use]
    pub fn new(tracker: &'a ProgressTracker, last_index: u64) -> Self {
        Self {
            tracker,
            last_index,
        }
    }

    /// Enters a joint configuration: the current voters become the outgoing half and the
    /// changes apply to the incoming half.
    ///
    /// # Errors
    /// When already joint, when there are no voters, or when a change is invalid.
    pub fn enter_joint(
        &self,
        auto_leave: bool,
        changes: &[ConfChangeSingle],
    ) -> Result<(TrackerConfig, ProgressMap)> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.voters.is_joint() {
            return Err(invalid("configuration is already joint"));
        }
        if cfg.voters.incoming.is_empty() {
            return Err(invalid("cannot make a zero-voter configuration joint"));
        }
        cfg.voters.outgoing = cfg.voters.incoming.clone();
        self.apply(&mut cfg, &mut prs, changes)?;
        cfg.auto_leave = auto_leave;
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    /// Leaves the joint configuration: the incoming half alone remains, and the nodes
    /// staged in `learners_next` become learners.
    ///
    /// # Errors
    /// When the configuration is not joint.
    pub fn leave_joint(&self) -> Result<(TrackerConfig, ProgressMap)> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if !cfg.voters.is_joint() {
            return Err(invalid("cannot leave a non-joint configuration"));
        }
        for id in std::mem::take(&mut cfg.learners_next) {
            cfg.learners.insert(id);
            if let Some(pr) = prs.get_mut(&id) {
                pr.is_learner = true;
            }
        }
        for &id in cfg.voters.outgoing.ids() {
            if !cfg.voters.incoming.contains(id) && !cfg.learners.contains(&id) {
                prs.remove(&id);
            }
        }
        cfg.voters.outgoing.clear();
        cfg.auto_leave = false;
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    /// Applies a change that alters at most one voter, without joint consensus.
    ///
    /// # Errors
    /// When joint, when more than one voter would change, or when a change is invalid.
    pub fn simple(&self, changes: &[ConfChangeSingle]) -> Result<(TrackerConfig, ProgressMap)> {
        let (mut cfg, mut prs) = self.check_and_copy()?;
        if cfg.voters.is_joint() {
            return Err(invalid(
                "cannot apply a simple change to a joint configuration",
            ));
        }
        self.apply(&mut cfg, &mut prs, changes)?;
        let before = self.tracker.conf.voters.incoming.ids();
        let after = cfg.voters.incoming.ids();
        let changed = before.iter().filter(|id| !after.contains(id)).count()
            + after.iter().filter(|id| !before.contains(id)).count();
        if changed > 1 {
            return Err(invalid(
                "more than one voter changed without entering joint consensus",
            ));
        }
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }

    fn apply(
        &self,
        cfg: &mut TrackerConfig,
        prs: &mut ProgressMap,
        changes: &[ConfChangeSingle],
    ) -> Result<()> {
        for cc in changes {
            if cc.node_id == 0 {
                // Id 0 is "no node": such a step changes nothing.
                continue;
            }
            match ConfChangeType::try_from(cc.change_type) {
                Ok(ConfChangeType::AddNode) => self.make_voter(cfg, prs, cc.node_id),
                Ok(ConfChangeType::AddLearnerNode) => self.make_learner(cfg, prs, cc.node_id),
                Ok(ConfChangeType::RemoveNode) => remove(cfg, prs, cc.node_id),
                Err(_) => return Err(invalid(format!("unknown change type {}", cc.change_type))),
            }
        }
        if cfg.voters.incoming.is_empty() {
            return Err(invalid("removed all voters"));
        }
        Ok(())
    }

    fn make_voter(&self, cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: u64) {
        let Some(pr) = prs.get_mut(&id) else {
            self.init_progress(cfg, prs, id, false);
            return;
        };
        pr.is_learner = false;
        cfg.learners.remove(&id);
        cfg.learners_next.remove(&id);
        cfg.voters.incoming.insert(id);
    }

    fn make_learner(&self, cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: u64) {
        let Some(pr) = prs.get(&id) else {
            self.init_progress(cfg, prs, id, true);
            return;
        };
        if pr.is_learner {
            return;
        }
        // Drop it as a voter of the incoming half but keep its progress.
        let pr = pr.clone();
        remove(cfg, prs, id);
        let mut pr = pr;
        // A voter of the outgoing half cannot be a learner until the joint config is
        // left: stage it in `learners_next`.
        if cfg.voters.outgoing.contains(id) {
            cfg.learners_next.insert(id);
        } else {
            pr.is_learner = true;
            cfg.learners.insert(id);
        }
        prs.insert(id, pr);
    }

    fn init_progress(
        &self,
        cfg: &mut TrackerConfig,
        prs: &mut ProgressMap,
        id: u64,
        learner: bool,
    ) {
        let mut pr = Progress::new(
            self.last_index.max(1),
            self.tracker.max_inflight_msgs,
            self.tracker.max_inflight_bytes,
        );
        pr.is_learner = learner;
        // A new peer counts as active so that adding it cannot make the leader step down
        // at the next quorum check before it had a chance to answer.
        pr.recent_active = true;
        if learner {
            cfg.learners.insert(id);
        } else {
            cfg.voters.incoming.insert(id);
        }
        prs.insert(id, pr);
    }

    fn check_and_copy(&self) -> Result<(TrackerConfig, ProgressMap)> {
        let cfg = self.tracker.conf.clone();
        let prs = self.tracker.progress.clone();
        check_invariants(&cfg, &prs)?;
        Ok((cfg, prs))
    }
}

fn remove(cfg: &mut TrackerConfig, prs: &mut ProgressMap, id: u64) {
    if !prs.contains_key(&id) {
        return;
    }
    cfg.voters.incoming.remove(id);
    cfg.learners.remove(&id);
    cfg.learners_next.remove(&id);
    // A voter of the outgoing half keeps its progress until the joint config is left.
    if !cfg.voters.outgoing.contains(id) {
        prs.remove(&id);
    }
}

/// Checks the invariants documented on [`TrackerConfig`].
fn check_invariants(cfg: &TrackerConfig, prs: &ProgressMap) -> Result<()> {
    let voters = cfg.voters.ids();
    for id in voters.iter().chain(&cfg.learners).chain(&cfg.learners_next) {
        if !prs.contains_key(id) {
            return Err(invalid(format!("no progress for {id}")));
        }
    }
    for id in &cfg.learners_next {
        if !cfg.voters.outgoing.contains(*id) {
            return Err(invalid(format!(
                "{id} is in learners_next but not an outgoing voter"
            )));
        }
        if prs.get(id).is_some_and(|p| p.is_learner) {
            return Err(invalid(format!(
                "{id} is in learners_next but already a learner"
            )));
        }
    }
    for id in &cfg.learners {
        if cfg.voters.contains(*id) {
            return Err(invalid(format!("{id} is both a learner and a voter")));
        }
        if !prs.get(id).is_some_and(|p| p.is_learner) {
            return Err(invalid(format!(
                "{id} is a learner whose progress says voter"
            )));
        }
    }
    if !cfg.voters.is_joint() {
        if !cfg.learners_next.is_empty() {
            return Err(invalid(
                "learners_next must be empty outside joint consensus",
            ));
        }
        if cfg.auto_leave {
            return Err(invalid("auto_leave must be false outside joint consensus"));
        }
    }
    Ok(())
}
