//! Oracles: what the whole run has seen, to check each node against.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;

use raft_core::MemStorage;
use raft_core::eraftpb::Entry;

use super::Check;
use super::rng::Fnv;

/// The identity of an entry's content: term, type and payload.
pub fn digest(term: u64, entry_type: i32, data: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write_u64(term);
    h.write_i32(entry_type);
    h.write(data);
    h.finish()
}

pub fn entry_digest(e: &Entry) -> u64 {
    digest(e.term, e.entry_type, &e.data)
}

/// What the whole run has seen, kept outside every node so that crashes cannot hide a
/// violation.
#[derive(Debug, Default)]
pub struct Oracle {
    /// Election safety: the leader of each term.
    pub leaders: BTreeMap<u64, u64>,
    /// Log matching: `(index, term)` → (term at `index - 1` if known, content digest), for
    /// every entry that was persisted or sent (entries a node held only in memory before
    /// crashing never existed for anyone else: it may even lead the same term again, as its
    /// vote in that term was not durable and nothing of that term left it).
    pub entries: HashMap<(u64, u64), (Option<u64>, u64)>,
    /// Committed entries: index → (term, the lowest node term at which it was seen
    /// committed). Every leader of that term or later must hold it.
    pub committed: BTreeMap<u64, (u64, u64)>,
    /// State machine safety: index → digest of the entry applied there.
    pub applied: HashMap<u64, u64>,
}

impl Oracle {
    pub fn check_entry(
        &mut self,
        id: u64,
        e: &Entry,
        prev_term: Option<u64>,
    ) -> Result<(), String> {
        let d = entry_digest(e);
        match self.entries.get_mut(&(e.index, e.term)) {
            None => {
                self.entries.insert((e.index, e.term), (prev_term, d));
            }
            Some((seen_prev, seen_d)) => {
                if *seen_d != d {
                    return Err(format!(
                        "log matching: node {id} holds entry {}/{} with other content than \
                         seen before",
                        e.index, e.term
                    ));
                }
                match (*seen_prev, prev_term) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(format!(
                            "log matching: node {id} has entry {}/{} after term {b} at {}, \
                             another log had it after term {a}",
                            e.index,
                            e.term,
                            e.index - 1
                        ));
                    }
                    (None, Some(b)) => *seen_prev = Some(b),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    pub fn check_applied(&mut self, id: u64, index: u64, d: u64) -> Result<(), String> {
        match self.applied.get(&index) {
            None => {
                self.applied.insert(index, d);
                Ok(())
            }
            Some(&seen) if seen == d => Ok(()),
            Some(_) => Err(format!(
                "state machine safety: node {id} applied a different entry at index {index} \
                 than another node"
            )),
        }
    }
}

/// Leader completeness for one committed entry: the leader `id` of `term` must hold
/// entry `index` with term `eterm` (unless compacted into its snapshot).
pub fn check_holds(
    id: u64,
    term: u64,
    log: &raft_core::RaftLog<MemStorage>,
    index: u64,
    eterm: u64,
    seen_term: u64,
) -> Check {
    if index < log.first_index() {
        return Ok(());
    }
    match log.term(index) {
        Ok(t) if t == eterm => Ok(()),
        other => Err(format!(
            "leader completeness: leader {id} of term {term} has {other:?} at index {index}, \
             but entry {index}/{eterm} was committed by term {seen_term}"
        )),
    }
}
