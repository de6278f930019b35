//! Stale peers: a peer removed from its region without learning it (it was cut off when
//! the removal committed, or it never got its data) is told so, and gives way.
//!
//! Three ways out, all driven by messages (there is no placement service to ask):
//! - the stale peer keeps campaigning (pre-vote) to its old configuration; a member whose
//!   region is newer and does not include it answers with an `is_tombstone` message and
//!   the stale peer destroys itself ([`Store::reply_if_sender_removed`],
//!   [`Store::on_tombstone_message`]);
//! - an uninitialized peer (added, then removed before its snapshot arrived; or created
//!   by a vote request of a removed candidate) never campaigns: every
//!   `uninitialized_peer_check_ticks` it sends a payload-less message naming the newest
//!   configuration it was addressed in to the stores it knows, which answer as above
//!   ([`Store::ask_whether_uninitialized_peers_are_members`]);
//! - its store is added back under a new peer id: the first message for the new peer
//!   replaces the stale one ([`Store::maybe_destroy_stale_peer`]).
//!
//! Why a reply is safe: conf_ver only grows along the one committed history, and peer ids
//! are never reused. An initialized peer's region always includes itself, so a sender at
//! conf_ver `Y > 0` was a member at `Y`; an uninitialized one names the newest conf_ver
//! `Y` of a leader or candidate that addressed it, and those address only the members of
//! their configuration. A member at `X > Y` whose region lacks it proves it was removed
//! in between, for good. An uninitialized peer's ordinary messages carry conf_ver 0 and
//! prove nothing (it may be a new peer a lagging member has not heard of): they get no
//! reply.

use engines::Engine;
use tracing::{debug, info};

use std::collections::BTreeSet;

use super::{Store, TombstoneWrite};
use crate::error::Result;
use crate::pb::metapb::{self, RegionEpoch};
use crate::pb::raft_serverpb::RaftMessage;
use crate::peer::Peer;
use crate::sender::RaftMessageSender;

impl<ER: Engine, EK: Engine, S: RaftMessageSender> Store<ER, EK, S> {
    /// Sends, for each uninitialized peer that was addressed as a member, a membership
    /// check to every other store it knows: those of the peers it heard from and those
    /// holding peers of this store's regions (a removed candidate that created it may
    /// know nothing newer; the region's current members are most likely among the
    /// others). A store whose region is newer and lacks the peer answers with an
    /// `is_tombstone` message ([`Self::reply_if_sender_removed`]).
    pub(super) fn ask_whether_uninitialized_peers_are_members(&mut self) {
        let asking: Vec<&Peer<ER, EK>> = self
            .peers
            .values()
            .filter(|p| {
                !p.raft_group().store().is_initialized()
                    && !p.is_applying_snapshot()
                    && p.member_at_conf_ver() > 0
            })
            .collect();
        if asking.is_empty() {
            return;
        }
        let stores: BTreeSet<u64> = self
            .peers
            .values()
            .flat_map(|p| p.region().peers.iter().map(|m| m.store_id))
            .collect();
        let mut checks = Vec::new();
        for peer in asking {
            let conf_ver = peer.member_at_conf_ver();
            let heard_from = peer.peers_heard_from().map(|p| p.store_id);
            let targets: BTreeSet<u64> = stores
                .iter()
                .copied()
                .chain(heard_from)
                .filter(|&s| s != self.store_id)
                .collect();
            debug!(
                store_id = self.store_id,
                region_id = peer.region_id(),
                peer_id = peer.meta().id,
                conf_ver,
                stores = ?targets,
                "uninitialized peer: asking whether it is still a member"
            );
            for store_id in targets {
                let check = RaftMessage {
                    region_id: peer.region_id(),
                    from_peer: Some(*peer.meta()),
                    to_peer: Some(metapb::Peer {
                        store_id,
                        ..Default::default()
                    }),
                    region_epoch: Some(RegionEpoch {
                        conf_ver,
                        version: 0,
                    }),
                    is_tombstone: false,
                    message: None,
                    start_key: Default::default(),
                    end_key: Default::default(),
                };
                checks.push((store_id, check));
            }
        }
        for (store_id, check) in checks {
            self.sender.send(store_id, check);
        }
    }

    /// Answers a message from a peer that was removed from the region (see the module
    /// docs) with an `is_tombstone` message; whether it did (the message is then dropped).
    pub(super) fn reply_if_sender_removed(&mut self, m: &RaftMessage) -> bool {
        let Some(from) = m.from_peer.filter(|p| p.id != 0 && p.store_id != 0) else {
            return false;
        };
        let Some(peer) = self.peers.get(&m.region_id) else {
            return false;
        };
        let region = peer.region();
        let ours = region.region_epoch.unwrap_or_default();
        let theirs = m.region_epoch.unwrap_or_default().conf_ver;
        let removed = !region.peers.is_empty()
            && theirs > 0
            && theirs < ours.conf_ver
            && !region.peers.iter().any(|p| p.id == from.id);
        if !removed {
            return false;
        }
        debug!(
            store_id = self.store_id,
            region_id = m.region_id,
            stale = from.id,
            theirs,
            ours = ours.conf_ver,
            "message from a removed peer: telling it"
        );
        let gc = RaftMessage {
            region_id: m.region_id,
            from_peer: Some(*peer.meta()),
            to_peer: Some(from),
            region_epoch: Some(ours),
            is_tombstone: true,
            message: None,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        };
        self.sender.send(from.store_id, gc);
        true
    }

    /// Destroys the peer an `is_tombstone` message names, when the message's region is
    /// newer than the peer's (a reply from [`Self::reply_if_sender_removed`]).
    pub(super) fn on_tombstone_message(&mut self, m: &RaftMessage) -> Result<()> {
        let to = m.to_peer.unwrap_or_default();
        let Some(peer) = self.peers.get(&m.region_id) else {
            return Ok(());
        };
        let ours = peer.region().region_epoch.unwrap_or_default().conf_ver;
        let theirs = m.region_epoch.unwrap_or_default().conf_ver;
        if peer.meta().id != to.id || theirs <= ours {
            debug!(
                region_id = m.region_id,
                peer_id = peer.meta().id,
                "stale tombstone message; dropped"
            );
            return Ok(());
        }
        if peer.is_applying_snapshot() {
            // Its apply task would write the region back to Normal after the tombstone;
            // the stale peer campaigns again and is told again once the apply is done.
            debug!(
                region_id = m.region_id,
                "tombstone message for a peer applying a snapshot; deferred"
            );
            return Ok(());
        }
        info!(
            store_id = self.store_id,
            region_id = m.region_id,
            peer_id = to.id,
            theirs,
            ours,
            "told this peer was removed from its region: destroying it"
        );
        self.destroy_peer(m.region_id, TombstoneWrite::Needed { removed_by: theirs })
    }

    /// Destroys this store's peer of the message's region if the message is for a newer
    /// peer of it on this store: the local peer was removed without learning it (it was
    /// cut off when the removal committed) and the store was added back under a new id.
    /// Without this the new peer could never be created and the store never caught up.
    /// A peer applying a snapshot is left alone until the apply is done (the leader
    /// retries).
    pub(super) fn maybe_destroy_stale_peer(&mut self, m: &RaftMessage) -> Result<()> {
        let Some(peer) = self.peers.get(&m.region_id) else {
            return Ok(());
        };
        let to = m.to_peer.unwrap_or_default();
        let theirs = m.region_epoch.unwrap_or_default().conf_ver;
        let ours = peer.region().region_epoch.unwrap_or_default().conf_ver;
        // Peer ids come from several allocators (an operator's, each store's for split
        // peers), so they say nothing about age: a message of a newer configuration to
        // another peer of this region on this store means ours was removed from it.
        if to.id == peer.meta().id || theirs <= ours {
            return Ok(());
        }
        if peer.is_applying_snapshot() {
            debug!(
                region_id = m.region_id,
                "a newer peer of the region is on this store, but the stale one is \
                 applying a snapshot; deferred"
            );
            return Ok(());
        }
        info!(
            store_id = self.store_id,
            region_id = m.region_id,
            stale = peer.meta().id,
            new = to.id,
            "a newer peer of the region is on this store: destroying the stale one"
        );
        self.destroy_peer(m.region_id, TombstoneWrite::Needed { removed_by: theirs })
    }
}
