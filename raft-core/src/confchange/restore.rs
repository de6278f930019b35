//! Rebuilding a tracker's configuration from a persisted `ConfState`.

use crate::eraftpb::{ConfChangeSingle, ConfChangeType, ConfState};
use crate::error::Result;
use crate::tracker::ProgressTracker;

use super::Changer;

/// Installs the membership described by `cs` into `tracker` (which must be empty), by
/// replaying it as a sequence of changes that the changer validates: first the outgoing
/// voters one at a time, then (when joint) one joint step that yields the incoming half.
///
/// # Errors
/// When `cs` describes an impossible configuration.
pub fn restore(tracker: &mut ProgressTracker, last_index: u64, cs: &ConfState) -> Result<()> {
    let add = |t, ids: &[u64]| -> Vec<ConfChangeSingle> {
        ids.iter()
            .map(|&id| ConfChangeSingle::with(t, id))
            .collect()
    };
    let outgoing = add(ConfChangeType::AddNode, &cs.voters_outgoing);
    let mut incoming = add(ConfChangeType::RemoveNode, &cs.voters_outgoing);
    incoming.extend(add(ConfChangeType::AddNode, &cs.voters));
    incoming.extend(add(ConfChangeType::AddLearnerNode, &cs.learners));
    incoming.extend(add(ConfChangeType::AddLearnerNode, &cs.learners_next));

    let steps = if outgoing.is_empty() {
        &incoming
    } else {
        &outgoing
    };
    // Voters come before learners in `incoming`, so no intermediate step is voterless.
    for step in steps {
        let (cfg, prs) = Changer::new(tracker, last_index).simple(std::slice::from_ref(step))?;
        tracker.conf = cfg;
        tracker.progress = prs;
    }
    if !outgoing.is_empty() {
        let (cfg, prs) = Changer::new(tracker, last_index).enter_joint(cs.auto_leave, &incoming)?;
        tracker.conf = cfg;
        tracker.progress = prs;
    }
    Ok(())
}
