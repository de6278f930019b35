//! The properties checked after every step, and the liveness phase that ends a run.

use std::fmt::Write as _;

use bytes::Bytes;
use raft_core::StateRole;
use raft_core::eraftpb::{Entry, Message, MessageType};

use super::oracle::check_holds;
use super::trace::Event;
use super::{Check, Sim, value_bytes};

impl Sim {
    /// Checks a message as it leaves `id`: no message of a term leaves before the node's
    /// hard state of that term is durable, a granted vote is durable, and an
    /// acknowledged entry is on disk.
    pub(super) fn check_outgoing(&mut self, id: u64, m: &Message, after_persist: bool) -> Check {
        // Log matching, checked on every entry that leaves a node (a leader sends before it
        // persists).
        let mut prev = Some(m.log_term);
        if m.msg_type() == MessageType::MsgAppend {
            for e in &m.entries {
                self.oracle.check_entry(id, e, prev)?;
                prev = Some(e.term);
            }
        }
        let node = &self.nodes[&id];
        let hs = *node.storage.rl().hard_state();
        let ty = m.msg_type();
        let future_term = matches!(
            ty,
            MessageType::MsgRequestPreVote | MessageType::MsgRequestPreVoteResponse
        );
        if m.term != 0 && !future_term && m.term > hs.term {
            return Err(format!(
                "node {id} sent {ty:?} of term {} to {} while its durable term is {} \
                 (sent {} persisting)",
                m.term,
                m.to,
                hs.term,
                if after_persist { "after" } else { "before" }
            ));
        }
        if ty == MessageType::MsgRequestVoteResponse
            && !m.reject
            && !(hs.term > m.term || (hs.term == m.term && hs.vote == m.to))
        {
            return Err(format!(
                "node {id} granted its vote to {} in term {} before persisting it (disk hs \
                 term {} vote {})",
                m.to, m.term, hs.term, hs.vote
            ));
        }
        // An acknowledgement of an older term may trail a truncation by a newer leader (as
        // when the ack is delayed in the network); only one of the durable term must be on
        // disk.
        if ty == MessageType::MsgAppendResponse && !m.reject && m.term == hs.term {
            let last = raft_core::Storage::last_index(&node.storage);
            if m.index > last {
                return Err(format!(
                    "node {id} acknowledged index {} to {} but its disk ends at {last}",
                    m.index, m.to
                ));
            }
        }
        Ok(())
    }
    /// The properties checked after every step.
    pub(super) fn check_step(&mut self) -> Check {
        let mut new_leaders = Vec::new();
        let mut new_commits = Vec::new();
        for node in self.nodes.values_mut() {
            let id = node.id;
            let Some(live) = node.live.as_mut() else {
                continue;
            };
            let r = live.raw.raft();
            let log = r.raft_log();
            let (applied, applying, committed) = (log.applied, log.applying, log.committed);
            let (last, persisted, first) = (log.last_index(), log.persisted, log.first_index());
            // While a snapshot from the leader is pending, the log starts after it and
            // `applied` catches up only once it is persisted.
            let floor_ok = first - 1 <= applied || log.has_pending_snapshot();
            if !(floor_ok
                && applied <= applying
                && applying <= committed
                && committed <= last
                && persisted <= last)
            {
                return Err(format!(
                    "node {id} log invariant broken: first {first} applied {applied} applying \
                     {applying} committed {committed} persisted {persisted} last {last}"
                ));
            }
            if committed < live.seen_committed {
                return Err(format!(
                    "node {id} commit index went back from {} to {committed}",
                    live.seen_committed
                ));
            }
            if applied < live.seen_applied {
                return Err(format!(
                    "node {id} applied index went back from {} to {applied}",
                    live.seen_applied
                ));
            }
            if r.term() < live.seen_term {
                return Err(format!(
                    "node {id} term went back from {} to {}",
                    live.seen_term,
                    r.term()
                ));
            }
            if applied > node.sm.applied {
                return Err(format!(
                    "node {id} believes {applied} applied, its state machine is at {}",
                    node.sm.applied
                ));
            }
            for index in live.seen_committed + 1..=committed {
                if let Ok(term) = log.term(index) {
                    new_commits.push((id, index, term, r.term()));
                }
            }
            if r.state() == StateRole::Leader {
                match self.oracle.leaders.get(&r.term()) {
                    Some(&other) if other != id => {
                        return Err(format!(
                            "election safety: nodes {other} and {id} both led term {}",
                            r.term()
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.oracle.leaders.insert(r.term(), id);
                        new_leaders.push((id, r.term()));
                    }
                }
            }
            live.seen_committed = committed;
            live.seen_applied = applied;
            live.seen_term = r.term();
            self.stats.max_commit = self.stats.max_commit.max(committed);
        }
        for &(id, term) in &new_leaders {
            self.stats.leaders += 1;
            self.record(Event::Leader { id, term });
            // Leader completeness: the new leader holds every entry committed in an
            // earlier (or its own) term.
            let log = self.nodes[&id]
                .live()
                .expect("leader is up")
                .raw
                .raft()
                .raft_log();
            for (&index, &(eterm, seen_term)) in &self.oracle.committed {
                if seen_term <= term {
                    check_holds(id, term, log, index, eterm, seen_term)?;
                }
            }
        }
        for (id, index, eterm, node_term) in new_commits {
            let entry = self
                .oracle
                .committed
                .entry(index)
                .or_insert((eterm, node_term));
            if entry.0 != eterm {
                return Err(format!(
                    "node {id} committed entry {index} of term {eterm}, but an entry of term {} \
                     was committed there before",
                    entry.0
                ));
            }
            entry.1 = entry.1.min(node_term);
            let seen_term = entry.1;
            for node in self.nodes.values() {
                let Some(live) = node.live() else { continue };
                let r = live.raw.raft();
                if r.state() == StateRole::Leader && r.term() >= seen_term {
                    check_holds(node.id, r.term(), r.raft_log(), index, eterm, seen_term)?;
                }
            }
        }
        Ok(())
    }
    /// Log matching over whole logs: for every two live nodes, if they hold an entry with
    /// the same index and term, every earlier entry both still hold is identical.
    pub(super) fn check_logs_pairwise(&self) -> Check {
        let mut logs = Vec::new();
        for node in self.nodes.values() {
            let Some(live) = node.live() else { continue };
            let log = live.raw.raft().raft_log();
            let first = log.first_index();
            let entries = log
                .slice(first, log.last_index() + 1, None)
                .map_err(|e| format!("node {} log unreadable: {e}", node.id))?;
            logs.push((node.id, first, entries));
        }
        for (i, (a, a_first, a_ents)) in logs.iter().enumerate() {
            for (b, b_first, b_ents) in &logs[i + 1..] {
                let lo = (*a_first).max(*b_first);
                let hi = (a_first + a_ents.len() as u64).min(b_first + b_ents.len() as u64);

                // The highest common index with matching terms.
                let Some(top) = (lo..hi)
                    .rev()
                    .find(|&x| at(a_ents, *a_first, x).term == at(b_ents, *b_first, x).term)
                else {
                    continue;
                };
                for x in lo..=top {
                    let (ea, eb) = (at(a_ents, *a_first, x), at(b_ents, *b_first, x));
                    if ea != eb {
                        return Err(format!(
                            "log matching: nodes {a} and {b} agree on entry {top} (term {}) \
                             but differ at {x}: {}/{} vs {}/{}",
                            at(a_ents, *a_first, top).term,
                            ea.term,
                            ea.index,
                            eb.term,
                            eb.index
                        ));
                    }
                }
            }
        }
        Ok(())
    }
    /// Heals every fault and requires a fresh proposal to be applied on every voter of the
    /// current leader's configuration within `liveness_rounds` rounds.
    pub(super) fn liveness(&mut self) -> Check {
        self.record(Event::LivenessPhase);
        self.faults = false;
        if self.partition.take().is_some() {
            self.record(Event::Heal);
        }
        let down = self.down_ids();
        for id in down {
            self.start(id)?;
        }
        let mut markers: Vec<Bytes> = Vec::new();
        let mut last_proposal_round = None;
        for round in 0..self.params.liveness_rounds {
            self.step += 1;
            for id in self.live_ids() {
                self.tick(id)?;
            }
            self.settle()?;
            self.check_step()?;
            let Some(leader) = self.current_leader() else {
                continue;
            };
            let voters: Vec<u64> = {
                let conf = &self.nodes[&leader]
                    .live()
                    .expect("leader is up")
                    .raw
                    .raft()
                    .tracker()
                    .conf;
                let mut v = conf.voters.incoming.ids().to_vec();
                v.extend(conf.voters.outgoing.ids());
                v
            };
            let done = markers.iter().any(|m| {
                voters
                    .iter()
                    .all(|id| self.nodes.get(id).is_some_and(|n| n.sm.contains_value(m)))
            });
            if done {
                self.stats.heal_rounds = round;
                return self.check_logs_pairwise();
            }
            if last_proposal_round
                .is_none_or(|r| round >= r + 3 * self.params.election_ticks as u64)
            {
                self.next_value += 1;
                let value = self.next_value;
                let live = self.live_mut(leader).expect("leader is up");
                let accepted = live.raw.propose(Bytes::new(), value_bytes(value)).is_ok();
                self.record(Event::Propose {
                    id: leader,
                    value,
                    accepted,
                });
                if accepted {
                    markers.push(value_bytes(value));
                    last_proposal_round = Some(round);
                }
            }
        }
        let mut state = String::new();
        for node in self.nodes.values() {
            let _ = writeln!(state, "    {}", self.describe_node(node));
        }
        Err(format!(
            "liveness: no proposal committed on every voter within {} rounds after healing \
             (leader {:?})\n{state}",
            self.params.liveness_rounds,
            self.current_leader()
        ))
    }
    /// Runs every node's Readies, writes and applies, and delivers every message in FIFO
    /// order, until the cluster is quiet (bounded).
    pub(super) fn settle(&mut self) -> Check {
        for _ in 0..64 {
            let mut busy = false;
            for id in self.live_ids() {
                while self.live_mut(id).is_some_and(|l| l.raw.has_ready()) {
                    busy = true;
                    self.handle_ready(id)?;
                }
                while self.live_mut(id).is_some_and(|l| !l.writes.is_empty()) {
                    busy = true;
                    self.complete_write(id)?;
                }
                self.apply(id, usize::MAX)?;
            }
            let msgs = std::mem::take(&mut self.net);
            busy |= !msgs.is_empty();
            for m in msgs {
                self.net.push(m);
                let last = self.net.len() - 1;
                self.deliver(last)?;
            }
            if !busy {
                break;
            }
        }
        Ok(())
    }
    pub(super) fn current_leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter_map(|n| n.live().map(|l| (n.id, l.raw.raft())))
            .filter(|(_, r)| r.state() == StateRole::Leader)
            .max_by_key(|(_, r)| r.term())
            .map(|(id, _)| id)
    }
}

fn at(ents: &[Entry], first: u64, index: u64) -> &Entry {
    &ents[(index - first) as usize]
}
