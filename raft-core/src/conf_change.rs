//! Conversions and predicates over the two conf change wire types.

use crate::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2,
};

/// Either kind of conf change, as proposed through
/// [`RawNode::propose_conf_change`](crate::RawNode::propose_conf_change).
pub trait ConfChangeI {
    /// The change as a `ConfChangeV2` (a V1 change is a one-step simple change).
    fn as_v2(&self) -> ConfChangeV2;
    /// The V1 form, when this is one.
    fn as_v1(&self) -> Option<&ConfChange>;
}

impl ConfChangeI for ConfChange {
    fn as_v2(&self) -> ConfChangeV2 {
        ConfChangeV2 {
            transition: ConfChangeTransition::Auto as i32,
            changes: vec![ConfChangeSingle {
                change_type: self.change_type,
                node_id: self.node_id,
            }],
            context: self.context.clone(),
        }
    }

    fn as_v1(&self) -> Option<&ConfChange> {
        Some(self)
    }
}

impl ConfChangeI for ConfChangeV2 {
    fn as_v2(&self) -> ConfChangeV2 {
        self.clone()
    }

    fn as_v1(&self) -> Option<&ConfChange> {
        None
    }
}

impl ConfChangeV2 {
    /// Whether this change enters joint consensus, and if so whether the joint
    /// configuration is left automatically. Several changes at once always go through
    /// joint consensus; a single change only when asked to explicitly.
    #[must_use]
    pub fn enter_joint(&self) -> Option<bool> {
        let transition = ConfChangeTransition::try_from(self.transition).ok()?;
        if transition != ConfChangeTransition::Auto || self.changes.len() > 1 {
            return Some(transition != ConfChangeTransition::Explicit);
        }
        None
    }

    /// Whether this is the empty change that leaves a joint configuration.
    #[must_use]
    pub fn leave_joint(&self) -> bool {
        self.transition == ConfChangeTransition::Auto as i32 && self.changes.is_empty()
    }
}

impl ConfChangeSingle {
    /// A single step of `change_type` for `node_id`.
    #[must_use]
    pub fn with(change_type: ConfChangeType, node_id: u64) -> Self {
        Self {
            change_type: change_type as i32,
            node_id,
        }
    }
}
