//! One replica of one region on this store: the Raft group and what waits on it.
//! Behaviour lives in `peer/`: proposing, applying, reading.

mod apply;
mod propose;
mod read;

use std::collections::{HashMap, VecDeque};

use engines::Engine;
use raft_core::{RawNode, StateRole};
use tracing::info;

pub use apply::ApplyResult;

use crate::client_session::{SessionPolicy, SessionTable};
use crate::config::Config;
use crate::entry_cache::CacheBudget;
use crate::error::{Error, Result};
use crate::msg::Callback;
use crate::pb::metapb::{self, Region};
use crate::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, ResponseHeader};
use crate::peer_storage::PeerStorage;
use crate::snapshot::SnapKey;

/// A proposed command waiting for its entry to apply.
struct Proposal {
    index: u64,
    term: u64,
    /// One per command in the entry, in order (a batch entry carries several).
    commands: Vec<ProposedCommand>,
}

/// One command of a proposed entry.
struct ProposedCommand {
    callback: Callback,
    /// The command's exactly-once session `(client_id, sequence)`, `(0, 0)` for none. It
    /// tells the command's outcome when a snapshot covers its entry
    /// ([`Peer::answer_proposals_covered_by_snapshot`]).
    session: (u64, u64),
}

/// The context that marks an entry whose data is a `RaftCmdBatch`.
pub const BATCH_CONTEXT: &[u8] = b"batch";

/// Read commands waiting for a ReadIndex round and then for the applied index.
struct PendingRead {
    id: u64,
    commands: Vec<(RaftCmdRequest, Callback)>,
    /// The commit index confirmed by the round; the reads are served once applied.
    read_index: Option<u64>,
}

/// One replica of one region on this store.
///
/// Invariants: `proposals` are in increasing index order; each is answered exactly once
/// (when its index applies, or as stale when another entry took its place).
pub struct Peer<ER: Engine, EK: Engine> {
    meta: metapb::Peer,
    raft_group: RawNode<PeerStorage<ER, EK>>,
    proposals: VecDeque<Proposal>,
    pending_reads: VecDeque<PendingRead>,
    /// Reads that arrived in this loop iteration; one ReadIndex round serves them all.
    read_batch: Vec<(RaftCmdRequest, Callback)>,
    /// Writes that arrived in this loop iteration; they go into as few entries as the
    /// entry size limit allows.
    write_batch: Vec<propose::PendingWrite>,
    next_read_id: u64,
    /// Set once the peer was removed from its region; the store destroys it.
    pending_remove: bool,
    /// The snapshot the region worker is applying to this peer. Meanwhile the peer takes
    /// no Ready (so it applies no entries and persists nothing), serves no reads and does
    /// not tick; messages are still stepped (as in TiKV), and answered once it is done.
    applying_snapshot: Option<SnapKey>,
    /// What the Ready that carried the snapshot had to send once persisted (its ack
    /// above all), held until the snapshot is applied: the leader must not count this
    /// peer as holding the snapshot's index while its data could still be lost, or it
    /// could never send a new one (it ignores rejections below what a peer acked).
    held_messages: Vec<raft_core::eraftpb::Message>,
    /// Peers heard from, so a peer that does not know its region's membership yet (it
    /// awaits its first snapshot) can still answer the leader.
    peer_cache: HashMap<u64, metapb::Peer>,
    /// The newest configuration (conf_ver) whose member addressed this peer: the peer
    /// was a member of it. An uninitialized peer names it when it asks whether it still
    /// is one (see `store/stale_peer.rs`).
    member_at_conf_ver: u64,
    /// The highest index a CompactLog entry applied here compacted to: every replica that
    /// applied as far has truncated at least there. Not this peer's own truncated index,
    /// which a snapshot may have moved further; 0 after a restart (the log GC then
    /// proposes one compaction it may not need).
    log_compacted_to: u64,
    /// The region's exactly-once client sessions, as of the applied index.
    sessions: SessionTable,
    session_policy: SessionPolicy,
}

impl<ER: Engine, EK: Engine> std::fmt::Debug for Peer<ER, EK> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("region_id", &self.region_id())
            .field("peer_id", &self.meta.id)
            .finish_non_exhaustive()
    }
}

/// A response carrying only an error.
#[must_use]
pub fn error_response(e: &Error) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(ResponseHeader {
            error: Some(Box::new(e.to_pb())),
            current_term: 0,
        }),
        ..Default::default()
    }
}

impl<ER: Engine, EK: Engine> Peer<ER, EK> {
    /// The peer `meta` of `region`, loaded from (or initialized in) the engines; its
    /// entry cache counts in `entry_cache_budget`, its store's.
    ///
    /// # Errors
    /// An engine failure or inconsistent persisted state.
    pub fn new(
        cfg: &Config,
        raft_engine: ER,
        kv_engine: EK,
        region: Region,
        meta: metapb::Peer,
        entry_cache_budget: CacheBudget,
    ) -> Result<Self> {
        let mut storage = PeerStorage::new(raft_engine, kv_engine, region)?;
        storage.set_entry_cache(cfg.raft_entry_cache_bytes, entry_cache_budget);
        let session_policy = SessionPolicy::from(cfg);
        let sessions = SessionTable::load(
            storage.kv_engine(),
            storage.region().id,
            session_policy,
            storage.applied_index(),
        )?;
        let mut raft_cfg = cfg.raft_config(meta.id, storage.applied_index());
        // Different peers of one region must not time out in lockstep.
        raft_cfg.random_seed = meta.id ^ (storage.region().id << 32);
        let raft_group = RawNode::new(&raft_cfg, storage)?;
        info!(
            region_id = raft_group.store().region().id,
            peer_id = meta.id,
            "peer created"
        );
        Ok(Self {
            meta,
            raft_group,
            proposals: VecDeque::new(),
            pending_reads: VecDeque::new(),
            read_batch: Vec::new(),
            write_batch: Vec::new(),
            next_read_id: 1,
            pending_remove: false,
            applying_snapshot: None,
            held_messages: Vec::new(),
            peer_cache: HashMap::new(),
            member_at_conf_ver: 0,
            log_compacted_to: 0,
            sessions,
            session_policy,
        })
    }

    /// The region id.
    #[must_use]
    pub fn region_id(&self) -> u64 {
        self.raft_group.store().region().id
    }

    /// The region.
    #[must_use]
    pub fn region(&self) -> &Region {
        self.raft_group.store().region()
    }

    /// This peer's id and store.
    #[must_use]
    pub fn meta(&self) -> &metapb::Peer {
        &self.meta
    }

    /// The Raft group.
    #[must_use]
    pub fn raft_group(&self) -> &RawNode<PeerStorage<ER, EK>> {
        &self.raft_group
    }

    /// The Raft group, mutably.
    pub fn raft_group_mut(&mut self) -> &mut RawNode<PeerStorage<ER, EK>> {
        &mut self.raft_group
    }

    /// Whether this peer leads its region.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft().state() == StateRole::Leader
    }

    /// Drops the cached entries nobody will read again, so an idle region holds none: a
    /// follower reads an entry from storage only to apply it, a leader also to send it
    /// to a follower that lacks it.
    pub fn trim_entry_cache(&mut self) {
        let applied = self.raft_group.store().applied_index();
        let needed_after = if self.is_leader() {
            let tracker = self.raft_group.raft().tracker();
            let replicated = tracker.progress.values().map(|p| p.matched).min();
            replicated.unwrap_or(applied).min(applied)
        } else {
            applied
        };
        self.raft_group
            .store_mut()
            .compact_entry_cache(needed_after);
    }

    /// Whether the peer was removed and waits to be destroyed.
    #[must_use]
    pub fn pending_remove(&self) -> bool {
        self.pending_remove
    }

    /// The snapshot being applied to this peer, if any.
    #[must_use]
    pub fn applying_snapshot(&self) -> Option<SnapKey> {
        self.applying_snapshot
    }

    /// Whether a snapshot is being applied to this peer.
    #[must_use]
    pub fn is_applying_snapshot(&self) -> bool {
        self.applying_snapshot.is_some()
    }

    /// Marks the start (`Some`) or the end (`None`) of a snapshot apply.
    pub fn set_applying_snapshot(&mut self, key: Option<SnapKey>) {
        self.applying_snapshot = key;
    }

    /// Keeps messages until the snapshot being applied is applied.
    pub fn hold_messages(&mut self, msgs: Vec<raft_core::eraftpb::Message>) {
        debug_assert!(
            self.is_applying_snapshot(),
            "only an applying peer holds messages"
        );
        self.held_messages.extend(msgs);
    }

    /// The messages held while applying, to send (or drop) now that it ended.
    pub fn take_held_messages(&mut self) -> Vec<raft_core::eraftpb::Message> {
        std::mem::take(&mut self.held_messages)
    }

    /// The peer of this region with id `peer_id`, if it is a member.
    #[must_use]
    pub fn find_peer(&self, peer_id: u64) -> Option<metapb::Peer> {
        self.region()
            .peers
            .iter()
            .find(|p| p.id == peer_id)
            .copied()
    }

    /// Where to reach `peer_id`: a member of the region, or a peer heard from.
    #[must_use]
    pub fn resolve_peer(&self, peer_id: u64) -> Option<metapb::Peer> {
        self.find_peer(peer_id)
            .or_else(|| self.peer_cache.get(&peer_id).copied())
    }

    /// Remembers where a peer that sent us a message lives.
    pub fn remember_peer(&mut self, peer: metapb::Peer) {
        if peer.id != 0 && peer.store_id != 0 {
            self.peer_cache.insert(peer.id, peer);
        }
    }

    /// The peers heard from (see [`Self::remember_peer`]).
    pub fn peers_heard_from(&self) -> impl Iterator<Item = &metapb::Peer> {
        self.peer_cache.values()
    }

    /// Records that a message stamped with configuration `conf_ver` addressed this peer.
    /// A leader or a candidate only addresses the members of its configuration, and the
    /// stamp is its region's when the message leaves, never older than the configuration
    /// the message was made in: so this peer was a member at or before `conf_ver`, and
    /// any configuration newer than it that lacks the peer proves its removal.
    pub fn addressed_at(&mut self, conf_ver: u64) {
        self.member_at_conf_ver = self.member_at_conf_ver.max(conf_ver);
    }

    /// The newest configuration this peer is known to have been a member of (0: none).
    #[must_use]
    pub fn member_at_conf_ver(&self) -> u64 {
        self.member_at_conf_ver
    }

    /// The leader this peer knows of.
    #[must_use]
    pub fn leader(&self) -> Option<metapb::Peer> {
        self.find_peer(self.raft_group.raft().leader_id())
    }

    /// The `NotLeader` error for this region.
    #[must_use]
    pub fn not_leader(&self) -> Error {
        Error::NotLeader {
            region_id: self.region_id(),
            leader: self.leader(),
        }
    }

    /// Where the region's log is compacted on every replica that applied as far as this
    /// one: the truncation the log GC must count from (see the field).
    #[must_use]
    pub fn log_compacted_to(&self) -> u64 {
        self.log_compacted_to
    }

    /// The region's exactly-once client sessions.
    #[must_use]
    pub fn client_sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Advances the peer's logical clock.
    ///
    /// # Errors
    /// A storage failure.
    pub fn tick(&mut self) -> Result<()> {
        Ok(self.raft_group.tick()?)
    }

    /// Answers every waiting proposal and read with `err` (the peer is going away).
    pub fn fail_all(&mut self, err: &Error) {
        for p in self.proposals.drain(..) {
            for c in p.commands {
                (c.callback)(error_response(err));
            }
        }
        for w in self.write_batch.drain(..) {
            (w.callback)(error_response(err));
        }
        for r in self.pending_reads.drain(..) {
            for (_, cb) in r.commands {
                cb(error_response(err));
            }
        }
        for (_, cb) in self.read_batch.drain(..) {
            cb(error_response(err));
        }
    }
}
