//! The Raft state machine of one node: roles, terms, elections and the message rules
//! common to every role. Each role's behaviour lives in its own submodule.

mod candidate;
mod follower;
mod leader;
mod membership;

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::confchange;
use crate::config::Config;
use crate::eraftpb::{EntryType, HardState, Message, MessageType};
use crate::error::{Error, Result};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadState};
use crate::storage::Storage;
use crate::tracker::{Progress, ProgressTracker};

/// The id that means "no node" (no leader, no vote).
pub const INVALID_ID: u64 = 0;

/// The outgoing queue keeps at most this many slots between Readies, so one burst does
/// not pin its memory.
const MSGS_CAPACITY_KEPT: usize = 256;

/// Context of a vote request sent by a leadership transfer: it may disturb a live leader.
pub(crate) const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateRole {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Runs a pre-election that changes no term (thesis §9.6).
    PreCandidate,
    /// Runs an election.
    Candidate,
    /// Leads the cluster.
    Leader,
}

/// State that is useful to observe but need not be persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftState {
    /// The leader this node knows of, or [`INVALID_ID`].
    pub leader_id: u64,
    /// This node's role.
    pub raft_state: StateRole,
}

/// Which kind of election a campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

/// A small deterministic generator (SplitMix64) for election timeouts: the core reads no
/// global randomness, so a seeded run replays exactly.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One node's Raft state machine. Drive it through [`RawNode`](crate::RawNode); the
/// methods here are public for tests and for callers that manage persistence themselves.
///
/// Invariants: `state == Leader` implies `leader_id == id` and `vote == id`; a leader's own
/// progress `matched` never exceeds `raft_log.persisted`.
#[derive(Debug)]
pub struct Raft<S: Storage> {
    id: u64,
    term: u64,
    vote: u64,
    raft_log: RaftLog<S>,
    trk: ProgressTracker,
    state: StateRole,
    leader_id: u64,
    /// The peer a leadership transfer goes to, or `INVALID_ID`.
    lead_transferee: u64,
    /// The index of the latest conf change entry the leader appended; another may be
    /// proposed only once it is applied.
    pending_conf_index: u64,
    read_states: Vec<ReadState>,
    /// Outgoing messages, in order.
    msgs: Vec<Message>,
    read_only: ReadOnly,
    /// ReadIndex requests that arrived before the leader committed an entry of its term.
    pending_read_index_messages: Vec<Message>,
    /// Payload bytes of uncommitted entries (leader only).
    uncommitted_bytes: u64,
    election_elapsed: usize,
    heartbeat_elapsed: usize,
    randomized_election_timeout: usize,
    election_timeout: usize,
    heartbeat_timeout: usize,
    check_quorum: bool,
    pre_vote: bool,
    max_msg_bytes: u64,
    max_uncommitted_bytes: u64,
    disable_proposal_forwarding: bool,
    /// Whether a leader leaves followers to learn a new commit index from the next
    /// append or heartbeat (see [`Config::skip_bcast_commit`]).
    skip_bcast_commit: bool,
    /// Entries whose commit followers learn at once even when commits are not
    /// broadcast. Each leaves once it commits; all leave at every term change.
    urgent_commit_indexes: Vec<u64>,
    rng: Rng,
    /// New entries or a new commit index wait to be broadcast; appends are coalesced and
    /// sent once per `Ready` rather than once per proposal.
    bcast_pending: bool,
}

impl<S: Storage> Raft<S> {
    /// A node over `store`, restored from what the store holds.
    ///
    /// # Errors
    /// An invalid config, a storage failure, or a persisted state that contradicts the
    /// log (commit index past the last index).
    pub fn new(config: &Config, store: S) -> Result<Self> {
        config.validate()?;
        let raft_state = store.initial_state()?;
        let mut raft_log = RaftLog::new(store, config.max_committed_bytes_per_ready);
        let mut trk = ProgressTracker::new(config.max_inflight_msgs, config.max_inflight_bytes);
        confchange::restore(&mut trk, raft_log.last_index(), &raft_state.conf_state)?;
        let hs = raft_state.hard_state;
        if hs != HardState::default() {
            if hs.commit < raft_log.committed || hs.commit > raft_log.last_index() {
                return Err(Error::ConfigInvalid(format!(
                    "persisted commit {} is outside the log [{}, {}]",
                    hs.commit,
                    raft_log.committed,
                    raft_log.last_index()
                )));
            }
            raft_log.committed = hs.commit;
        }
        if config.applied > 0 {
            let applied = config.applied.min(raft_log.committed);
            raft_log.applying = raft_log.applying.max(applied);
            raft_log.applied_to(applied);
        }
        let mut r = Self {
            id: config.id,
            term: hs.term,
            vote: hs.vote,
            raft_log,
            trk,
            state: StateRole::Follower,
            leader_id: INVALID_ID,
            lead_transferee: INVALID_ID,
            pending_conf_index: 0,
            read_states: Vec::new(),
            msgs: Vec::new(),
            read_only: ReadOnly::new(config.read_only_option),
            pending_read_index_messages: Vec::new(),
            uncommitted_bytes: 0,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: 0,
            election_timeout: config.election_ticks,
            heartbeat_timeout: config.heartbeat_ticks,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            max_msg_bytes: config.max_msg_bytes,
            max_uncommitted_bytes: config.max_uncommitted_bytes,
            disable_proposal_forwarding: config.disable_proposal_forwarding,
            skip_bcast_commit: config.skip_bcast_commit,
            urgent_commit_indexes: Vec::new(),
            rng: Rng(config.random_seed ^ config.id.wrapping_mul(0xA24B_AED4_963E_E407)),
            bcast_pending: false,
        };
        r.become_follower(r.term, INVALID_ID);
        info!(
            id = r.id,
            term = r.term,
            commit = r.raft_log.committed,
            applied = r.raft_log.applied,
            last_index = r.raft_log.last_index(),
            voters = ?r.trk.conf.voters.ids(),
            "raft node started"
        );
        Ok(r)
    }

    // ----- accessors -------------------------------------------------------------------

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current term.
    #[must_use]
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Whom this node voted for in the current term, or [`INVALID_ID`].
    #[must_use]
    pub fn vote(&self) -> u64 {
        self.vote
    }

    /// This node's role.
    #[must_use]
    pub fn state(&self) -> StateRole {
        self.state
    }

    /// The leader this node knows of, or [`INVALID_ID`].
    #[must_use]
    pub fn leader_id(&self) -> u64 {
        self.leader_id
    }

    /// The target of a leadership transfer in progress, or [`INVALID_ID`].
    #[must_use]
    pub fn lead_transferee(&self) -> u64 {
        self.lead_transferee
    }

    /// The log.
    #[must_use]
    pub fn raft_log(&self) -> &RaftLog<S> {
        &self.raft_log
    }

    /// The log, mutably (for applications that write storage themselves).
    pub fn raft_log_mut(&mut self) -> &mut RaftLog<S> {
        &mut self.raft_log
    }

    /// The store under the log.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.raft_log.store
    }

    /// Membership, progress and votes.
    #[must_use]
    pub fn tracker(&self) -> &ProgressTracker {
        &self.trk
    }

    /// The index of the latest conf change entry appended by this leader.
    #[must_use]
    pub fn pending_conf_index(&self) -> u64 {
        self.pending_conf_index
    }

    /// Payload bytes of uncommitted entries (leader only).
    #[must_use]
    pub fn uncommitted_bytes(&self) -> u64 {
        self.uncommitted_bytes
    }

    /// The current election timeout in ticks.
    #[must_use]
    pub fn randomized_election_timeout(&self) -> usize {
        self.randomized_election_timeout
    }

    /// Overrides the current election timeout (tests pin it to make timing exact).
    pub fn set_randomized_election_timeout(&mut self, ticks: usize) {
        debug_assert!(ticks >= self.election_timeout && ticks < 2 * self.election_timeout);
        self.randomized_election_timeout = ticks;
    }

    /// Ticks since the last election timeout reset.
    #[must_use]
    pub fn election_elapsed(&self) -> usize {
        self.election_elapsed
    }

    /// The soft state.
    #[must_use]
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.leader_id,
            raft_state: self.state,
        }
    }

    /// The hard state to persist.
    #[must_use]
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// Whether this node is a voter that may campaign.
    #[must_use]
    pub fn promotable(&self) -> bool {
        self.trk
            .progress
            .get(&self.id)
            .is_some_and(|p| !p.is_learner)
    }

    /// Whether outgoing messages or a broadcast wait to be collected.
    #[must_use]
    pub fn has_pending_messages(&self) -> bool {
        !self.msgs.is_empty() || self.bcast_pending
    }

    /// Takes the outgoing messages, after sending any coalesced broadcast.
    ///
    /// # Errors
    /// A storage failure while reading entries to send.
    pub fn take_messages(&mut self) -> Result<Vec<Message>> {
        self.flush_broadcast()?;
        // Hand out an exactly sized Vec and keep the queue's buffer: taking the queue
        // itself would make every Ready regrow it from empty (a reallocation per Ready).
        let mut msgs = Vec::with_capacity(self.msgs.len());
        msgs.append(&mut self.msgs);
        if self.msgs.capacity() > MSGS_CAPACITY_KEPT {
            self.msgs.shrink_to(MSGS_CAPACITY_KEPT);
        }
        Ok(msgs)
    }

    /// Takes the reads confirmed since the last call.
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// Whether confirmed reads wait to be taken.
    #[must_use]
    pub fn has_read_states(&self) -> bool {
        !self.read_states.is_empty()
    }

    // ----- sending ---------------------------------------------------------------------

    /// Queues a message, stamping `from` (except on a forwarded transfer request, whose
    /// `from` is the transferee) and (except for votes and forwarded requests,
    /// whose term is set by the caller or left 0) the current term.
    fn send(&mut self, mut m: Message) {
        let msg_type = m.msg_type();
        // A transfer request names its transferee in `from`; a follower forwarding one to
        // the leader must keep it, or the leader would hand leadership to the forwarder.
        if msg_type != MessageType::MsgTransferLeader || m.from == INVALID_ID {
            m.from = self.id;
        }
        match msg_type {
            MessageType::MsgRequestVote
            | MessageType::MsgRequestPreVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgRequestPreVoteResponse => {
                debug_assert!(m.term != 0, "vote message {msg_type:?} sent without a term");
            }
            MessageType::MsgPropose | MessageType::MsgReadIndex => {
                // Forwarded to the leader as local messages (term 0): they are never
                // rejected for their term, and the leader answers with its own.
            }
            _ => m.term = self.term,
        }
        self.msgs.push(m);
    }

    // ----- role transitions ------------------------------------------------------------

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = INVALID_ID;
        }
        self.leader_id = INVALID_ID;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.abort_leader_transfer();
        self.trk.reset_votes();
        let last_index = self.raft_log.last_index();
        let persisted = self.raft_log.persisted;
        let (msgs, bytes) = (self.trk.max_inflight_msgs, self.trk.max_inflight_bytes);
        let id = self.id;
        for (&pid, pr) in self.trk.progress.iter_mut() {
            let is_learner = pr.is_learner;
            *pr = Progress::new(last_index + 1, msgs, bytes);
            pr.is_learner = is_learner;
            if pid == id {
                // The leader counts only what it has persisted itself.
                pr.matched = persisted;
                pr.recent_active = true;
            }
        }
        self.pending_conf_index = 0;
        self.urgent_commit_indexes.clear();
        self.uncommitted_bytes = 0;
        self.read_only = ReadOnly::new(self.read_only.option);
        self.pending_read_index_messages.clear();
        self.bcast_pending = false;
    }

    fn reset_randomized_election_timeout(&mut self) {
        let spread = self.election_timeout as u64;
        self.randomized_election_timeout =
            self.election_timeout + (self.rng.next_u64() % spread) as usize;
    }

    /// Becomes a follower of `leader_id` in `term`.
    pub fn become_follower(&mut self, term: u64, leader_id: u64) {
        self.reset(term);
        self.leader_id = leader_id;
        self.state = StateRole::Follower;
        debug!(id = self.id, term, leader_id, "became follower");
    }

    /// Becomes a candidate: a new term, voting for itself.
    ///
    /// # Panics
    /// When called on a leader (a leader never campaigns).
    pub fn become_candidate(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Leader,
            "invalid transition leader -> candidate"
        );
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.state = StateRole::Candidate;
        debug!(id = self.id, term, "became candidate");
    }

    /// Becomes a pre-candidate: asks for votes for the next term without changing its own.
    ///
    /// # Panics
    /// When called on a leader.
    pub fn become_pre_candidate(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Leader,
            "invalid transition leader -> pre-candidate"
        );
        self.trk.reset_votes();
        self.leader_id = INVALID_ID;
        self.state = StateRole::PreCandidate;
        debug!(id = self.id, term = self.term, "became pre-candidate");
    }

    /// Becomes the leader of the current term and appends an empty entry, which commits
    /// every entry of earlier terms once it commits (§5.4.2).
    ///
    /// # Panics
    /// When called on a follower (only a candidate wins elections).
    pub fn become_leader(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Follower,
            "invalid transition follower -> leader"
        );
        let term = self.term;
        self.reset(term);
        self.leader_id = self.id;
        self.state = StateRole::Leader;
        let id = self.id;
        if let Some(pr) = self.trk.progress.get_mut(&id) {
            pr.become_replicate();
            pr.recent_active = true;
        }
        // Conservatively treat every entry not yet applied as a possible conf change.
        self.pending_conf_index = self.raft_log.last_index();
        let noop = crate::eraftpb::Entry::default();
        let appended = self.append_entries(vec![noop]);
        debug_assert!(
            appended,
            "the empty entry never exceeds the uncommitted limit"
        );
        // The empty entry does not count toward the uncommitted budget.
        self.uncommitted_bytes = 0;
        self.bcast_pending = true;
        info!(id, term, "became leader");
    }

    // ----- ticking ---------------------------------------------------------------------

    /// Advances the logical clock by one tick.
    ///
    /// # Errors
    /// A storage failure while campaigning or sending.
    pub fn tick(&mut self) -> Result<()> {
        match self.state {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    fn past_election_timeout(&self) -> bool {
        self.election_elapsed >= self.randomized_election_timeout
    }

    fn tick_election(&mut self) -> Result<()> {
        self.election_elapsed += 1;
        if self.promotable() && self.past_election_timeout() {
            self.election_elapsed = 0;
            return self.step(local(MessageType::MsgHup));
        }
        Ok(())
    }

    fn tick_heartbeat(&mut self) -> Result<()> {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                self.step(local(MessageType::MsgCheckQuorum))?;
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if self.state == StateRole::Leader && self.lead_transferee != INVALID_ID {
                self.abort_leader_transfer();
            }
        }
        if self.state != StateRole::Leader {
            return Ok(());
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.step(local(MessageType::MsgBeat))?;
        }
        Ok(())
    }

    // ----- stepping --------------------------------------------------------------------

    /// Handles one message: a local input or a message from a peer.
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] for a proposal that cannot be appended,
    /// [`Error::InvalidMessage`] for a malformed message, or a storage failure.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let Ok(msg_type) = MessageType::try_from(m.msg_type) else {
            return Err(Error::InvalidMessage(format!(
                "unknown message type {}",
                m.msg_type
            )));
        };
        if msg_type == MessageType::MsgUnspecified {
            return Err(Error::InvalidMessage("message type unspecified".into()));
        }
        // Term 0 means "local": only local input and requests forwarded to the leader
        // travel without a term. Any other message without one is corrupt; taking it as
        // current-term would let it install a leader or, through `become_follower(0)`,
        // lower this node's term and forget its vote.
        if m.term == 0 && !may_omit_term(msg_type) {
            return Err(Error::InvalidMessage(format!(
                "{msg_type:?} from {} carries no term",
                m.from
            )));
        }
        // Only peers send these types; one "from" this node is corrupt. Accepting it
        // would make this follower take itself for the leader and forward proposals to
        // itself forever.
        if m.from == self.id && !may_omit_term(msg_type) {
            return Err(Error::InvalidMessage(format!(
                "{msg_type:?} claims to come from this node"
            )));
        }
        if m.term > self.term {
            if !self.on_higher_term(&m, msg_type) {
                return Ok(());
            }
        } else if m.term != 0 && m.term < self.term {
            self.on_lower_term(&m, msg_type);
            return Ok(());
        }

        match msg_type {
            MessageType::MsgHup => self.hup(false),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => {
                self.on_vote_request(&m, msg_type)
            }
            _ => match self.state {
                StateRole::Leader => self.step_leader(m, msg_type),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m, msg_type),
                StateRole::Follower => self.step_follower(m, msg_type),
            },
        }
    }

    /// The rules for a message from a higher term. Returns whether to go on handling it.
    fn on_higher_term(&mut self, m: &Message, msg_type: MessageType) -> bool {
        let is_vote = matches!(
            msg_type,
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        );
        if is_vote {
            let forced = m.context[..] == *CAMPAIGN_TRANSFER;
            let in_lease = self.check_quorum
                && self.leader_id != INVALID_ID
                && self.election_elapsed < self.election_timeout;
            if !forced && in_lease {
                // Within a live leader's lease, a disruptive (removed or partitioned) node
                // must not make us abandon it (thesis §4.2.3).
                debug!(
                    id = self.id,
                    term = self.term,
                    from = m.from,
                    "ignored a vote request inside the leader lease"
                );
                return false;
            }
        }
        match msg_type {
            // A pre-vote never changes our term.
            MessageType::MsgRequestPreVote => {}
            // A granted pre-vote is for a term we have not started yet: the real election
            // will raise the term.
            MessageType::MsgRequestPreVoteResponse if !m.reject => {}
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                self.become_follower(m.term, m.from);
            }
            _ => self.become_follower(m.term, INVALID_ID),
        }
        true
    }

    /// The rules for a message from a lower term (it is never acted upon).
    fn on_lower_term(&mut self, m: &Message, msg_type: MessageType) {
        let from_stale_leader =
            matches!(msg_type, MessageType::MsgHeartbeat | MessageType::MsgAppend);
        if from_stale_leader {
            // A leader of an older term may never hear of the current one otherwise: with
            // CheckQuorum or PreVote nobody raises terms to reach it, and without them the
            // vote requests that would may not go to it (a node whose configuration is
            // stale does not count it as a voter) while it waits for this node's
            // acknowledgements. Tell it the current term so it steps down.
            self.send(Message {
                msg_type: MessageType::MsgAppendResponse as i32,
                to: m.from,
                ..Default::default()
            });
        } else if msg_type == MessageType::MsgRequestPreVote {
            // Reject so the pre-candidate learns the current term.
            self.send(Message {
                msg_type: MessageType::MsgRequestPreVoteResponse as i32,
                to: m.from,
                term: self.term,
                reject: true,
                ..Default::default()
            });
        } else {
            debug!(
                id = self.id,
                term = self.term,
                msg_term = m.term,
                from = m.from,
                ?msg_type,
                "ignored a message from a lower term"
            );
        }
    }

    fn on_vote_request(&mut self, m: &Message, msg_type: MessageType) -> Result<()> {
        let pre = msg_type == MessageType::MsgRequestPreVote;
        // We can vote if we already voted for this candidate (a repeated request), if we
        // have voted for nobody and know no leader in this term, or if this is a pre-vote
        // for a later term.
        let can_vote = self.vote == m.from
            || (self.vote == INVALID_ID && self.leader_id == INVALID_ID)
            || (pre && m.term > self.term);
        let resp_type = if pre {
            MessageType::MsgRequestPreVoteResponse
        } else {
            MessageType::MsgRequestVoteResponse
        };
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term)? {
            debug!(
                id = self.id,
                term = self.term,
                candidate = m.from,
                pre,
                "granted vote"
            );
            // A granted vote carries the candidate's term: for a pre-vote that is the
            // future term the pre-candidate will campaign in.
            self.send(Message {
                msg_type: resp_type as i32,
                to: m.from,
                term: m.term,
                ..Default::default()
            });
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            debug!(
                id = self.id,
                term = self.term,
                candidate = m.from,
                pre,
                "rejected vote"
            );
            // A rejection carries what this node knows committed (`commit`, and the term
            // of that entry in `log_term`), as raft-rs does: see `maybe_commit_by_vote`.
            let commit = self.raft_log.committed;
            let commit_term = self.raft_log.term_or_zero(commit)?;
            self.send(Message {
                msg_type: resp_type as i32,
                to: m.from,
                term: self.term,
                reject: true,
                commit,
                log_term: commit_term,
                ..Default::default()
            });
        }
        Ok(())
    }

    /// Starts an election unless this node may not campaign now.
    fn hup(&mut self, transfer: bool) -> Result<()> {
        if self.state == StateRole::Leader {
            return Ok(());
        }
        if !self.promotable() {
            debug!(id = self.id, "not promotable: not campaigning");
            return Ok(());
        }
        // Terms only come from peers' messages; a corrupt or forged one may carry the
        // last possible term. Campaigning would need the next one: refuse rather than
        // wrap to term 0 (which would let this node vote twice in old terms).
        if self.term == u64::MAX {
            warn!(id = self.id, "term space exhausted: not campaigning");
            return Ok(());
        }
        // A conf change that is committed but not applied could change who may vote:
        // campaigning now could let two configurations elect two leaders.
        if self.has_unapplied_conf_changes()? {
            debug!(id = self.id, "unapplied conf changes: not campaigning");
            return Ok(());
        }
        let kind = if transfer {
            CampaignType::Transfer
        } else if self.pre_vote {
            CampaignType::PreElection
        } else {
            CampaignType::Election
        };
        self.campaign(kind)
    }

    fn has_unapplied_conf_changes(&self) -> Result<bool> {
        let lo = self.raft_log.applied + 1;
        let hi = self.raft_log.committed + 1;
        if lo >= hi {
            return Ok(false);
        }
        let entries = self
            .raft_log
            .slice(lo.max(self.raft_log.first_index()), hi, None)?;
        Ok(entries
            .iter()
            .any(|e| e.entry_type() != EntryType::EntryNormal))
    }

    /// Takes the leader role away from a transfer in progress.
    pub fn abort_leader_transfer(&mut self) {
        self.lead_transferee = INVALID_ID;
    }

    /// Proposes entries: a leader appends them, any other node steps them as a local
    /// `MsgPropose` (forwarded to the leader, or dropped). The same as stepping that
    /// message, without building it on the leader, where every proposal goes.
    ///
    /// # Errors
    /// [`Error::ProposalDropped`] when they cannot be appended or forwarded now,
    /// [`Error::InvalidMessage`] for no entries or a malformed conf change.
    pub fn propose(&mut self, entries: Vec<crate::eraftpb::Entry>) -> Result<()> {
        if self.state == StateRole::Leader {
            return self.on_propose(entries);
        }
        self.step(Message {
            msg_type: MessageType::MsgPropose as i32,
            from: self.id,
            entries,
            ..Default::default()
        })
    }

    // ----- persistence feedback --------------------------------------------------------

    /// Records that the entries up to `(index, term)` are persisted. A leader counts its
    /// own acknowledgement only now, which may commit entries.
    ///
    /// # Errors
    /// A storage failure while computing the commit index.
    pub fn on_persist_entries(&mut self, index: u64, term: u64) -> Result<()> {
        self.raft_log.stable_to(index, term);
        if self.state == StateRole::Leader {
            let persisted = self.raft_log.persisted;
            let id = self.id;
            let advanced = self
                .trk
                .progress
                .get_mut(&id)
                .is_some_and(|pr| pr.maybe_update(persisted));
            if advanced && self.maybe_commit()? {
                self.on_commit_advanced();
            }
        }
        Ok(())
    }

    /// Records that the snapshot at `index` is persisted and applied to the state machine.
    pub fn on_persist_snapshot(&mut self, index: u64) {
        self.raft_log.stable_snap_to(index);
    }

    /// Records that the application applied the entries up to `applied`; a leader in an
    /// auto-leave joint configuration proposes leaving it once the change is applied.
    ///
    /// # Errors
    /// A storage failure.
    pub fn commit_apply(&mut self, applied: u64) -> Result<()> {
        self.raft_log.applied_to(applied);
        if self.trk.conf.auto_leave
            && self.state == StateRole::Leader
            && self.raft_log.applied >= self.pending_conf_index
        {
            self.propose_leave_joint()?;
        }
        Ok(())
    }
}

/// A local message of `msg_type` (term 0, no sender).
pub(crate) fn local(msg_type: MessageType) -> Message {
    Message {
        msg_type: msg_type as i32,
        ..Default::default()
    }
}

/// Whether `msg_type` is only ever produced locally and must not arrive from a peer.
#[must_use]
pub fn is_local_msg(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgHup
            | MessageType::MsgBeat
            | MessageType::MsgUnreachable
            | MessageType::MsgSnapStatus
            | MessageType::MsgCheckQuorum
    )
}

/// Whether a message of `msg_type` may carry term 0: local input, and the requests a
/// follower forwards to its leader (proposals, reads, transfer requests), which the leader
/// answers in its own term.
fn may_omit_term(msg_type: MessageType) -> bool {
    is_local_msg(msg_type)
        || matches!(
            msg_type,
            MessageType::MsgPropose | MessageType::MsgReadIndex | MessageType::MsgTransferLeader
        )
}

/// Whether `msg_type` answers a request this node sent.
#[must_use]
pub fn is_response_msg(msg_type: MessageType) -> bool {
    matches!(
        msg_type,
        MessageType::MsgAppendResponse
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgUnreachable
            | MessageType::MsgRequestPreVoteResponse
    )
}

/// Copies the context of a read request.
pub(crate) fn read_ctx(m: &Message) -> Bytes {
    m.context.clone()
}
