//! Raft messages arriving from other stores: routed to their peer, or creating it (a
//! leader's or candidate's message for a region this store lacks), and the stores
//! reported unreachable.

use engines::Engine;
use raft_core::eraftpb::{self, MessageType};
use tracing::{debug, info, warn};

use super::Store;
use crate::error::Result;
use crate::keys;
use crate::pb::metapb::Region;
use crate::pb::raft_serverpb::RaftMessage;
use crate::sender::RaftMessageSender;

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    pub(super) fn on_store_unreachable(&mut self, store_id: u64) {
        for peer in self.peers.values_mut() {
            if !peer.is_leader() {
                continue;
            }
            let targets: Vec<u64> = peer
                .region()
                .peers
                .iter()
                .filter(|p| p.store_id == store_id)
                .map(|p| p.id)
                .collect();
            for id in targets {
                peer.raft_group_mut().report_unreachable(id);
            }
        }
    }

    pub(super) fn on_raft_message(&mut self, m: RaftMessage) -> Result<()> {
        let region_id = m.region_id;
        let to = m.to_peer.unwrap_or_default();
        if to.store_id != self.store_id {
            warn!(
                store_id = self.store_id,
                region_id,
                to_store = to.store_id,
                "message for another store; dropped"
            );
            return Ok(());
        }
        if m.is_tombstone {
            return self.on_tombstone_message(&m);
        }
        let Some(msg) = m.message.clone() else {
            // No payload: an uninitialized peer asks whether it is still a member.
            if !self.reply_if_sender_removed(&m) {
                debug!(
                    region_id,
                    "membership check: no peer of the region here, or none newer lacking the sender"
                );
            }
            return Ok(());
        };
        if self.reply_if_sender_removed(&m) {
            return Ok(());
        }
        if msg.msg_type() == MessageType::MsgSnapshot && !self.check_snapshot(&m, &msg) {
            crate::store_metrics::snapshot_failed("check");
            return Ok(());
        }
        self.maybe_destroy_stale_peer(&m)?;
        if !self.peers.contains_key(&region_id) && !self.maybe_create_peer(&m, &msg)? {
            return Ok(());
        }
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
        if peer.meta().id != to.id {
            debug!(
                region_id,
                ours = peer.meta().id,
                theirs = to.id,
                "message for another peer id; dropped"
            );
            return Ok(());
        }
        let _span = tracing::debug_span!("peer", region_id, peer_id = to.id).entered();
        if let Some(from) = m.from_peer {
            peer.remember_peer(from);
        }
        peer.addressed_at(m.region_epoch.unwrap_or_default().conf_ver);
        if let Err(e) = peer.raft_group_mut().step(msg) {
            debug!(region_id, "step: {e}");
        }
        Ok(())
    }

    /// Creates an uninitialized peer for a region this store does not have, when a leader
    /// or a candidate contacts it (the peer was added); its data arrives by snapshot.
    ///
    /// Vote requests create it too: a group whose new members do not exist yet may have no
    /// quorum without them (a voter added while another was down), and then no leader
    /// would ever contact them. An uninitialized peer never acknowledged anything, so its
    /// vote, given on an empty log, is one Raft allows.
    fn maybe_create_peer(&mut self, m: &RaftMessage, msg: &eraftpb::Message) -> Result<bool> {
        let initial = matches!(
            msg.msg_type(),
            MessageType::MsgAppend
                | MessageType::MsgHeartbeat
                | MessageType::MsgSnapshot
                | MessageType::MsgRequestVote
                | MessageType::MsgRequestPreVote
        );
        if !initial {
            return Ok(false);
        }
        if self.pending_destroys.contains(&m.region_id) {
            debug!(
                region_id = m.region_id,
                "a destroyed peer of the region is still being cleaned up; dropped"
            );
            return Ok(false);
        }
        let epoch = m.region_epoch.unwrap_or_default();
        // A tombstone's conf_ver is one at which the destroyed peer was no longer a member:
        // configurations from it on never name that peer id again (ids are not reused).
        if let Some(dead) = self.tombstones.get(&m.region_id)
            && epoch.conf_ver < dead.conf_ver
        {
            debug!(
                region_id = m.region_id,
                "message for a destroyed peer; dropped"
            );
            return Ok(false);
        }
        let start = keys::data_key(&m.start_key);
        let overlaps = self
            .region_ranges
            .range::<[u8], _>((
                std::ops::Bound::Excluded(start.as_slice()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .and_then(|(_, id)| self.peers.get(id))
            .is_some_and(|p| m.end_key.is_empty() || p.region().start_key < m.end_key);
        if overlaps {
            debug!(
                region_id = m.region_id,
                "new region overlaps an existing one; dropped"
            );
            return Ok(false);
        }
        let region = Region {
            id: m.region_id,
            ..Default::default()
        };
        let meta = m.to_peer.unwrap_or_default();
        info!(
            store_id = self.store_id,
            region_id = m.region_id,
            peer_id = meta.id,
            "creating peer on demand"
        );
        self.insert_peer(region, meta)?;
        Ok(true)
    }
}
