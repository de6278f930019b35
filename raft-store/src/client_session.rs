//! Exactly-once client sessions (Raft thesis §6.3), kept by apply for each region.
//!
//! A write command whose header carries a `client_id` and a `sequence` (both non-zero) is
//! deduplicated: the region keeps, per client, the responses of the sequences the client
//! may still retry. A retried command gets its original response without applying again.
//!
//! # Rules (all decided in apply, so every replica reaches the same state)
//! - **Sessions are implicit**: the first deduplicated command of a client creates its
//!   session in that region.
//! - **Acknowledgement**: every command carries `first_awaited_sequence`, the lowest
//!   sequence the client still awaits (0 means `sequence`). The session forgets results
//!   below it; a later command with a sequence below the highest acknowledgement seen gets
//!   [`Error::SequenceForgotten`](crate::Error::SequenceForgotten): whether it applied is
//!   unknown to the store. A client may have several commands in flight.
//! - **Only applied commands are recorded.** A command rejected in apply (stale epoch,
//!   key outside the region, bad request) changes nothing and is not recorded, so a retry
//!   applies it normally.
//! - **At most [`MAX_RESULTS_PER_SESSION`] results** per session: past that the oldest is
//!   forgotten (a client that never acknowledges cannot grow a session without bound).
//! - **Expiry.** raft-store reads no clock: the command's builder stamps
//!   `header.timestamp_ms` (raftkv's KV service uses the node's wall clock; commands are
//!   proposed by the leader's store, so it is the leader's clock). The region clock is the
//!   largest stamp applied so far (never goes back). A session idle for longer than
//!   `client_session_ttl_ms` of region clock is dropped, and when a region has more than
//!   `client_session_max_per_region` sessions the least recently used is dropped (by the
//!   region clock, then the log index of the last use, then the client id). A client whose
//!   session was dropped starts a new one with its next command; a command of it still in
//!   flight at that moment may apply twice, so the TTL must exceed the clients' retry
//!   deadlines by far. The two settings must be equal on every store of a cluster.
//! - **Persistence.** Sessions live in the kv engine (`CF_META`, under
//!   [`keys::client_session_range`]) and are written in the apply batch of the entries that
//!   changed them, with the applied index; a restarted store loads them. A split copies
//!   every session of the parent to the new regions in the split's batch. A snapshot must
//!   carry the range, since it is part of the replicated state.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use engines::{Direction, Engine};
use prost::Message as _;

use crate::apply_overlay::ApplyOverlay;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::{self, CF_META};
use crate::pb::raft_cmdpb::RaftCmdResponse;
use crate::pb::raft_serverpb::{ClientSession, SessionClock, SessionResult};

/// Results kept per session at most; past it the oldest is forgotten.
pub const MAX_RESULTS_PER_SESSION: usize = 1024;

/// When sessions are dropped. Must be the same on every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Idle time (region clock) after which a session is dropped.
    pub ttl_ms: u64,
    /// Sessions kept per region at most; the least recently used goes first.
    pub max_sessions: usize,
}

impl From<&Config> for SessionPolicy {
    fn from(cfg: &Config) -> Self {
        Self {
            ttl_ms: cfg.client_session_ttl_ms,
            max_sessions: cfg.client_session_max_per_region,
        }
    }
}

/// What a deduplicated command should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Not seen before: apply it, then [`SessionTable::record`] the response.
    New,
    /// Applied before: answer with this response and apply nothing.
    Duplicate(Box<RaftCmdResponse>),
    /// Below what the session keeps (from `first_kept_sequence` on): answer
    /// [`Error::SequenceForgotten`].
    Forgotten {
        /// The lowest sequence the session still knows.
        first_kept_sequence: u64,
    },
}

/// The order in which sessions are dropped: least recently used first.
type LruKey = (u64, u64, u64);

fn lru_key(s: &ClientSession) -> LruKey {
    (s.last_active_ms, s.last_used_index, s.client_id)
}

/// The exactly-once sessions of one region, mirrored in memory.
///
/// Invariants: `lru` holds exactly one key per session, `lru_key` of its current state;
/// `dirty` names every client whose session changed (or was dropped) since the last
/// [`flush`](Self::flush); the in-memory state equals the engine's plus the unflushed
/// changes, as of applied index `synced_index` once flushed.
#[derive(Debug)]
pub struct SessionTable {
    region_id: u64,
    policy: SessionPolicy,
    clock_ms: u64,
    clock_dirty: bool,
    sessions: BTreeMap<u64, ClientSession>,
    lru: BTreeSet<LruKey>,
    dirty: BTreeSet<u64>,
    synced_index: u64,
}

impl SessionTable {
    /// An empty table (a new region, or one with no deduplicated writes yet).
    #[must_use]
    pub fn new(region_id: u64, policy: SessionPolicy, synced_index: u64) -> Self {
        Self {
            region_id,
            policy,
            clock_ms: 0,
            clock_dirty: false,
            sessions: BTreeMap::new(),
            lru: BTreeSet::new(),
            dirty: BTreeSet::new(),
            synced_index,
        }
    }

    /// Loads the sessions of `region_id` from `engine`, which holds the state applied up
    /// to `applied_index`.
    ///
    /// # Errors
    /// An engine failure, or [`Error::Corruption`] for a value that does not decode.
    pub fn load<E: Engine>(
        engine: &E,
        region_id: u64,
        policy: SessionPolicy,
        applied_index: u64,
    ) -> Result<Self> {
        let mut table = Self::new(region_id, policy, applied_index);
        let (start, end) = keys::client_session_range(region_id);
        let clock_key = keys::client_session_clock_key(region_id);
        let mut failure = None;
        engine.scan(
            CF_META,
            start.as_slice()..end.as_slice(),
            Direction::Forward,
            |k, v| {
                let decoded = if k == clock_key.as_slice() {
                    SessionClock::decode(v).map(|c| table.clock_ms = c.now_ms)
                } else {
                    ClientSession::decode(v).map(|s| {
                        table.lru.insert(lru_key(&s));
                        table.sessions.insert(s.client_id, s);
                    })
                };
                if let Err(e) = decoded {
                    failure = Some(Error::Corruption(format!(
                        "client session {k:?} of region {region_id}: {e}"
                    )));
                }
                failure.is_none()
            },
        )?;
        match failure {
            Some(e) => Err(e),
            None => Ok(table),
        }
    }

    /// The applied index the table mirrors the engine at (after the last flush). When the
    /// peer's applied index differs, something else (a snapshot) replaced the region's
    /// state, and the table must be reloaded.
    #[must_use]
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    /// The region clock: the largest command timestamp applied.
    #[must_use]
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// How many sessions the region keeps.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the region keeps no session.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session of `client_id`, if kept.
    #[must_use]
    pub fn session(&self, client_id: u64) -> Option<&ClientSession> {
        self.sessions.get(&client_id)
    }

    /// Moves the region clock to `timestamp_ms` (if later) and drops the sessions idle for
    /// longer than the TTL. Called for every applied data command, before [`check`](Self::check).
    pub fn advance_clock(&mut self, timestamp_ms: u64) {
        if timestamp_ms <= self.clock_ms {
            return;
        }
        self.clock_ms = timestamp_ms;
        self.clock_dirty = true;
        // The LRU order is by last activity first, so the expired sessions lead it.
        while let Some(&(last_active, _, client_id)) = self.lru.first() {
            if last_active.saturating_add(self.policy.ttl_ms) >= self.clock_ms {
                break;
            }
            self.drop_session(client_id);
        }
    }

    /// What to do with command `sequence` of `client_id`.
    #[must_use]
    pub fn check(&self, client_id: u64, sequence: u64) -> Check {
        let Some(s) = self.sessions.get(&client_id) else {
            return Check::New;
        };
        if sequence < s.first_kept_sequence {
            return Check::Forgotten {
                first_kept_sequence: s.first_kept_sequence,
            };
        }
        match s.results.binary_search_by_key(&sequence, |r| r.sequence) {
            Ok(i) => Check::Duplicate(s.results[i].response.clone().unwrap_or_default()),
            Err(_) => Check::New,
        }
    }

    /// Marks the session of `client_id` used by the entry at `index`, forgetting the
    /// results below `first_awaited` (0 = `sequence`). Called for a duplicate.
    pub fn touch(&mut self, client_id: u64, sequence: u64, first_awaited: u64, index: u64) {
        self.update(client_id, sequence, first_awaited, index, None);
    }

    /// Records the response of command `sequence` of `client_id`, applied at `index`,
    /// creating the session if needed, and forgets results below `first_awaited`.
    pub fn record(
        &mut self,
        client_id: u64,
        sequence: u64,
        first_awaited: u64,
        index: u64,
        response: RaftCmdResponse,
    ) {
        self.update(client_id, sequence, first_awaited, index, Some(response));
        // The session just used is the most recent, so it is never the one dropped.
        while self.sessions.len() > self.policy.max_sessions {
            let Some(&(_, _, oldest)) = self.lru.first() else {
                break;
            };
            self.drop_session(oldest);
        }
    }

    fn update(
        &mut self,
        client_id: u64,
        sequence: u64,
        first_awaited: u64,
        index: u64,
        response: Option<RaftCmdResponse>,
    ) {
        // A client cannot have acknowledged the command it is sending.
        let first_awaited = if first_awaited == 0 {
            sequence
        } else {
            first_awaited.min(sequence)
        };
        let clock_ms = self.clock_ms;
        let s = self
            .sessions
            .entry(client_id)
            .or_insert_with(|| ClientSession {
                client_id,
                first_kept_sequence: first_awaited,
                ..Default::default()
            });
        self.lru.remove(&lru_key(s));
        s.first_kept_sequence = s.first_kept_sequence.max(first_awaited);
        let keep_from = s.first_kept_sequence;
        // `results` is sorted by sequence (inserted at its search position), so what is
        // forgotten is a prefix, found by a binary search rather than a scan of every
        // result on each command.
        let forgotten = s.results.partition_point(|r| r.sequence < keep_from);
        s.results.drain(..forgotten);
        if let Some(response) = response {
            if let Err(i) = s.results.binary_search_by_key(&sequence, |r| r.sequence) {
                s.results.insert(
                    i,
                    SessionResult {
                        sequence,
                        response: Some(Box::new(response)),
                    },
                );
            }
            if s.results.len() > MAX_RESULTS_PER_SESSION {
                let dropped = s.results.remove(0);
                s.first_kept_sequence = dropped.sequence + 1;
            }
        }
        s.last_active_ms = clock_ms;
        s.last_used_index = index;
        self.lru.insert(lru_key(s));
        self.dirty.insert(client_id);
    }

    fn drop_session(&mut self, client_id: u64) {
        if let Some(s) = self.sessions.remove(&client_id) {
            self.lru.remove(&lru_key(&s));
            self.dirty.insert(client_id);
        }
    }

    /// Stages every change since the last flush into `batch` and records that the table
    /// mirrors the engine at `applied_index` once the batch is written.
    ///
    /// # Errors
    /// An engine failure while staging.
    pub(crate) fn flush<E: Engine>(
        &mut self,
        batch: &mut ApplyOverlay<'_, E>,
        applied_index: u64,
    ) -> Result<()> {
        if self.clock_dirty {
            let clock = SessionClock {
                now_ms: self.clock_ms,
            };
            batch.put(
                CF_META,
                keys::client_session_clock_key(self.region_id),
                clock.encode_to_vec().into(),
            )?;
            self.clock_dirty = false;
        }
        for client_id in std::mem::take(&mut self.dirty) {
            let key = keys::client_session_key(self.region_id, client_id);
            match self.sessions.get(&client_id) {
                Some(s) => batch.put(CF_META, key, Bytes::from(s.encode_to_vec()))?,
                None => batch.delete(CF_META, key)?,
            }
        }
        self.synced_index = applied_index;
        Ok(())
    }

    /// Stages a copy of every session and of the clock as the state of `region_id` (a
    /// region split off this one). The copies count as used before anything the new
    /// region applies: their log index is reset, since the new region's log starts over.
    ///
    /// # Errors
    /// An engine failure while staging.
    pub(crate) fn copy_to<E: Engine>(
        &self,
        region_id: u64,
        batch: &mut ApplyOverlay<'_, E>,
    ) -> Result<()> {
        let clock = SessionClock {
            now_ms: self.clock_ms,
        };
        batch.put(
            CF_META,
            keys::client_session_clock_key(region_id),
            clock.encode_to_vec().into(),
        )?;
        for s in self.sessions.values() {
            let copy = ClientSession {
                last_used_index: 0,
                ..s.clone()
            };
            batch.put(
                CF_META,
                keys::client_session_key(region_id, s.client_id),
                copy.encode_to_vec().into(),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use engines::{MemoryEngine, WriteOptions};

    use super::*;
    use crate::keys::CF_DEFAULT;
    use crate::pb::raft_cmdpb::Response;

    const POLICY: SessionPolicy = SessionPolicy {
        ttl_ms: 1_000,
        max_sessions: 3,
    };

    fn response(tag: i32) -> RaftCmdResponse {
        RaftCmdResponse {
            responses: vec![Response {
                cmd_type: tag,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn engine() -> MemoryEngine {
        MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap()
    }

    fn flush(table: &mut SessionTable, engine: &MemoryEngine, index: u64) {
        let mut wb = engine.write_batch();
        let mut batch = ApplyOverlay::new(engine.clone(), &mut wb);
        table.flush(&mut batch, index).unwrap();
        drop(batch);
        engine.write(&wb, WriteOptions::default()).unwrap();
    }

    #[test]
    fn a_recorded_sequence_is_a_duplicate_until_acknowledged_then_forgotten() {
        let mut t = SessionTable::new(1, POLICY, 0);
        assert_eq!(t.check(7, 1), Check::New);
        t.record(7, 1, 1, 10, response(1));
        t.record(7, 2, 1, 11, response(2));
        assert_eq!(t.check(7, 1), Check::Duplicate(Box::new(response(1))));
        assert_eq!(t.check(7, 2), Check::Duplicate(Box::new(response(2))));
        assert_eq!(t.check(7, 3), Check::New);
        assert_eq!(t.check(8, 1), Check::New, "sessions are per client");
        // Sequence 3 says the client awaits nothing below 2: result 1 is forgotten.
        t.record(7, 3, 2, 12, response(3));
        assert_eq!(
            t.check(7, 1),
            Check::Forgotten {
                first_kept_sequence: 2
            }
        );
        assert_eq!(t.check(7, 2), Check::Duplicate(Box::new(response(2))));
        // An acknowledgement never moves back, and 0 means "this sequence".
        t.touch(7, 4, 0, 13);
        assert_eq!(t.session(7).unwrap().first_kept_sequence, 4);
        t.touch(7, 5, 1, 14);
        assert_eq!(t.session(7).unwrap().first_kept_sequence, 4);
        assert!(t.session(7).unwrap().results.is_empty());
    }

    #[test]
    fn idle_sessions_expire_by_the_region_clock_only() {
        let mut t = SessionTable::new(1, POLICY, 0);
        t.advance_clock(5_000);
        t.record(1, 1, 1, 1, response(1));
        t.advance_clock(5_500);
        t.record(2, 1, 1, 2, response(1));
        // A clock going back (another leader's skew) changes nothing.
        t.advance_clock(100);
        assert_eq!(t.clock_ms(), 5_500);
        // Exactly the TTL idle is still alive; one more millisecond is not.
        t.advance_clock(6_000);
        assert_eq!(t.len(), 2);
        t.advance_clock(6_001);
        assert!(t.session(1).is_none());
        assert!(t.session(2).is_some());
        assert_eq!(t.check(1, 1), Check::New, "a dropped session starts over");
        // Using a session keeps it alive.
        t.touch(2, 1, 1, 3);
        t.advance_clock(7_001);
        assert!(t.session(2).is_some());
        t.advance_clock(7_002);
        assert!(t.is_empty());
    }

    #[test]
    fn past_the_maximum_the_least_recently_used_session_is_dropped() {
        let mut t = SessionTable::new(1, POLICY, 0);
        for client in 1..=3 {
            t.record(client, 1, 1, client, response(1));
        }
        // Client 1 is used again, so client 2 is now the least recently used.
        t.touch(1, 1, 1, 4);
        t.record(4, 1, 1, 5, response(1));
        assert_eq!(t.len(), 3);
        assert!(t.session(2).is_none());
        for client in [1, 3, 4] {
            assert!(t.session(client).is_some(), "client {client}");
        }
    }

    #[test]
    fn a_client_that_never_acknowledges_keeps_a_bounded_session() {
        let mut t = SessionTable::new(1, POLICY, 0);
        let n = MAX_RESULTS_PER_SESSION as u64 + 10;
        for seq in 1..=n {
            t.record(9, seq, 1, seq, response(1));
        }
        let s = t.session(9).unwrap();
        assert_eq!(s.results.len(), MAX_RESULTS_PER_SESSION);
        assert_eq!(s.first_kept_sequence, 11);
        assert!(matches!(t.check(9, 10), Check::Forgotten { .. }));
        assert!(matches!(t.check(9, 11), Check::Duplicate(_)));
    }

    #[test]
    fn flushed_sessions_and_clock_load_back_and_dropped_ones_are_deleted() {
        let engine = engine();
        let mut t = SessionTable::new(1, POLICY, 0);
        t.advance_clock(1_000);
        t.record(1, 1, 1, 1, response(1));
        t.record(2, 5, 3, 2, response(5));
        flush(&mut t, &engine, 2);
        assert_eq!(t.synced_index(), 2);
        let loaded = SessionTable::load(&engine, 1, POLICY, 2).unwrap();
        assert_eq!(loaded.clock_ms(), 1_000);
        assert_eq!(loaded.session(1), t.session(1));
        assert_eq!(loaded.session(2), t.session(2));
        assert_eq!(loaded.check(2, 5), Check::Duplicate(Box::new(response(5))));
        assert!(matches!(loaded.check(2, 2), Check::Forgotten { .. }));
        // Another region's sessions are not mixed in.
        assert!(
            SessionTable::load(&engine, 2, POLICY, 0)
                .unwrap()
                .is_empty()
        );
        // Expiry deletes from the engine at the next flush.
        t.advance_clock(3_000);
        assert!(t.is_empty());
        flush(&mut t, &engine, 3);
        let loaded = SessionTable::load(&engine, 1, POLICY, 3).unwrap();
        assert!(loaded.is_empty());
        assert_eq!(loaded.clock_ms(), 3_000);
    }

    #[test]
    fn a_copy_for_a_split_region_answers_the_same_and_ranks_oldest() {
        let engine = engine();
        let mut t = SessionTable::new(1, POLICY, 0);
        t.advance_clock(1_000);
        t.record(1, 1, 1, 40, response(1));
        t.record(2, 1, 1, 41, response(2));
        let mut wb = engine.write_batch();
        let mut batch = ApplyOverlay::new(engine.clone(), &mut wb);
        t.copy_to(9, &mut batch).unwrap();
        drop(batch);
        engine.write(&wb, WriteOptions::default()).unwrap();
        let mut copy = SessionTable::load(&engine, 9, POLICY, 5).unwrap();
        assert_eq!(copy.clock_ms(), 1_000);
        assert_eq!(copy.check(1, 1), Check::Duplicate(Box::new(response(1))));
        assert_eq!(copy.check(2, 1), Check::Duplicate(Box::new(response(2))));
        // A client new to the split region at its own small log index is still the most
        // recent: the copies are evicted first.
        copy.record(3, 1, 1, 6, response(3));
        copy.record(4, 1, 1, 7, response(4));
        assert!(copy.session(1).is_none());
        assert!(copy.session(3).is_some() && copy.session(4).is_some());
    }
}
