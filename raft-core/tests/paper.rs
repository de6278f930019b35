//! Protocol tests labelled by the section of the Raft paper ("In Search of an
//! Understandable Consensus Algorithm", extended version) whose rule they check, in the
//! manner of etcd's `raft_paper_test.go`. Bare `Raft` instances are driven message by
//! message; scenarios that need a cluster use the test network.

#[path = "support/network.rs"]
mod network;

use network::{
    Network, ent, ent_data, make_leader, msg, new_raft, new_raft_peers, read_messages,
    storage_with_log,
};
use raft_core::eraftpb::{Entry, HardState, Message, MessageType};
use raft_core::{MemStorage, Raft, StateRole};

use MessageType::*;

/// Acknowledges the leader's empty entry from every peer so that peers replicate, and
/// discards the resulting messages.
fn commit_noop(r: &mut Raft<MemStorage>) {
    let last = r.raft_log().last_index();
    let term = r.term();
    let peers: Vec<u64> = r.tracker().member_ids().filter(|&p| p != r.id()).collect();
    for p in peers {
        let mut m = msg(p, r.id(), MsgAppendResponse, term);
        m.index = last;
        r.step(m).expect("ack");
    }
    read_messages(r);
    assert_eq!(r.raft_log().committed, last, "the empty entry commits");
}

fn propose(r: &mut Raft<MemStorage>, data: &[u8]) {
    let mut m = msg(r.id(), r.id(), MsgPropose, 0);
    m.entries = vec![Entry {
        data: data.to_vec().into(),
        ..Default::default()
    }];
    r.step(m).expect("propose");
}

fn append_resp(from: u64, to: u64, term: u64, index: u64) -> Message {
    let mut m = msg(from, to, MsgAppendResponse, term);
    m.index = index;
    m
}

fn log_terms(r: &Raft<MemStorage>) -> Vec<(u64, u64)> {
    let log = r.raft_log();
    log.slice(log.first_index(), log.last_index() + 1, None)
        .expect("log readable")
        .iter()
        .map(|e| (e.index, e.term))
        .collect()
}

// ----- §5.1 terms ------------------------------------------------------------------------

/// §5.1: a node of any role that sees a higher term adopts it and reverts to follower.
#[test]
fn higher_term_makes_any_role_adopt_term_and_follow() {
    for role in [StateRole::Follower, StateRole::Candidate, StateRole::Leader] {
        let mut r = new_raft_peers(1, &[1, 2, 3]);
        match role {
            StateRole::Candidate => r.become_candidate(),
            StateRole::Leader => make_leader(&mut r),
            _ => r.become_follower(1, 3),
        }
        assert_eq!(r.term(), 1);
        r.step(msg(2, 1, MsgAppend, 2)).unwrap();
        assert_eq!(r.term(), 2, "{role:?} adopts the higher term");
        assert_eq!(
            r.state(),
            StateRole::Follower,
            "{role:?} reverts to follower"
        );
        assert_eq!(r.leader_id(), 2, "{role:?} learns the new leader");
    }
}

/// §5.1: a request from a stale term is rejected: nothing changes, and the stale leader
/// is told the current term so it steps down.
#[test]
fn stale_term_request_is_ignored() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    r.become_follower(2, 2);
    let mut m = msg(3, 1, MsgAppend, 1);
    m.entries = vec![ent(1, 1)];
    m.commit = 1;
    r.step(m).unwrap();
    assert_eq!((r.term(), r.leader_id()), (2, 2));
    assert_eq!(r.raft_log().last_index(), 0, "stale entries not appended");
    assert_eq!(r.raft_log().committed, 0);
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 1, "one rejection: {msgs:?}");
    assert_eq!(msgs[0].msg_type(), MsgAppendResponse);
    assert_eq!(
        (msgs[0].to, msgs[0].term),
        (3, 2),
        "carries the current term"
    );
}

// ----- §5.2 leader election ----------------------------------------------------------------

/// §5.2: servers start up as followers, in term 0 when storage is empty.
#[test]
fn nodes_start_as_followers() {
    let r = new_raft_peers(1, &[1, 2, 3]);
    assert_eq!(r.state(), StateRole::Follower);
    assert_eq!((r.term(), r.vote(), r.leader_id()), (0, 0, 0));
}

/// §5.2: a leader sends periodic heartbeats to every follower to maintain its authority.
#[test]
fn leader_broadcasts_heartbeats_every_interval() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    for _ in 0..3 {
        r.tick().unwrap(); // heartbeat_ticks = 1
        let mut to: Vec<u64> = read_messages(&mut r)
            .into_iter()
            .filter(|m| m.msg_type() == MsgHeartbeat)
            .inspect(|m| assert_eq!(m.term, 1))
            .map(|m| m.to)
            .collect();
        to.sort_unstable();
        assert_eq!(to, vec![2, 3]);
    }
}

/// §5.2: a follower or candidate that hears nothing for an election timeout starts an
/// election: it increments its term, votes for itself and asks every other server.
#[test]
fn election_timeout_starts_election_with_new_term_and_self_vote() {
    for start_as_candidate in [false, true] {
        let mut r = new_raft_peers(1, &[1, 2, 3]);
        if start_as_candidate {
            r.become_candidate();
            read_messages(&mut r);
        }
        let term = r.term();
        let mut ticks = 0;
        while r.term() == term {
            r.tick().unwrap();
            ticks += 1;
            assert!(
                ticks < 2 * 10,
                "election timeout is below 2 * election_ticks"
            );
        }
        assert!(ticks >= 10, "no election before election_ticks ({ticks})");
        assert_eq!(r.state(), StateRole::Candidate);
        assert_eq!((r.term(), r.vote()), (term + 1, 1));
        let mut to: Vec<u64> = read_messages(&mut r)
            .into_iter()
            .inspect(|m| assert_eq!((m.msg_type(), m.term), (MsgRequestVote, term + 1)))
            .map(|m| m.to)
            .collect();
        to.sort_unstable();
        assert_eq!(to, vec![2, 3]);
    }
}

/// §5.2: a candidate wins with votes from a majority, loses once a majority refuse, and
/// otherwise keeps waiting.
#[test]
fn candidate_wins_with_majority_of_votes() {
    use StateRole::*;
    type Votes = Vec<(u64, bool)>;
    let cases: Vec<(u64, Votes, StateRole)> = vec![
        (1, vec![], Leader),
        (3, vec![(2, true), (3, true)], Leader),
        (3, vec![(2, true)], Leader),
        (5, vec![(2, true), (3, true), (4, true), (5, true)], Leader),
        (5, vec![(2, true), (3, true), (4, true)], Leader),
        (5, vec![(2, true), (3, true)], Leader),
        (3, vec![(2, false), (3, false)], Follower),
        (
            5,
            vec![(2, false), (3, false), (4, false), (5, false)],
            Follower,
        ),
        (
            5,
            vec![(2, true), (3, false), (4, false), (5, false)],
            Follower,
        ),
        (3, vec![], Candidate),
        (5, vec![(2, true)], Candidate),
        (5, vec![(2, false), (3, false)], Candidate),
        (5, vec![], Candidate),
    ];
    for (i, (size, votes, want)) in cases.into_iter().enumerate() {
        let peers: Vec<u64> = (1..=size).collect();
        let mut r = new_raft_peers(1, &peers);
        r.step(msg(1, 1, MsgHup, 0)).unwrap();
        for (from, granted) in votes {
            let mut m = msg(from, 1, MsgRequestVoteResponse, r.term());
            m.reject = !granted;
            r.step(m).unwrap();
        }
        assert_eq!(r.state(), want, "case {i}");
        assert_eq!(r.term(), 1, "case {i}");
    }
}

/// §5.2: each server votes for at most one candidate in a term, first come first served.
#[test]
fn follower_votes_at_most_once_per_term() {
    let cases = [
        (0, 2, false),
        (0, 3, false),
        (2, 2, false),
        (3, 3, false),
        (2, 3, true),
        (3, 2, true),
    ];
    for (vote, from, want_reject) in cases {
        let storage = storage_with_log(&[1, 2, 3], &[], 1);
        storage.wl().set_hard_state(HardState {
            term: 1,
            vote,
            commit: 0,
        });
        let mut r = new_raft(1, storage, |_| {});
        r.step(msg(from, 1, MsgRequestVote, 1)).unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].msg_type(), MsgRequestVoteResponse);
        assert_eq!((msgs[0].to, msgs[0].term), (from, 1));
        assert_eq!(msgs[0].reject, want_reject, "vote {vote}, candidate {from}");
        let expected_vote = if want_reject { vote } else { from };
        assert_eq!(r.vote(), expected_vote);
    }
}

/// §5.2: a candidate that receives AppendEntries from a leader of a term at least as large
/// as its own recognizes that leader and returns to follower.
#[test]
fn candidate_falls_back_to_follower_on_leader_append() {
    for term in [1, 2] {
        let mut r = new_raft_peers(1, &[1, 2, 3]);
        r.become_candidate();
        r.step(msg(2, 1, MsgAppend, term)).unwrap();
        assert_eq!(r.state(), StateRole::Follower);
        assert_eq!((r.term(), r.leader_id()), (term, 2));
    }
}

/// §5.2: election timeouts are chosen randomly from a fixed interval, so split votes are
/// rare; they stay within [election_ticks, 2 * election_ticks).
#[test]
fn election_timeouts_are_randomized_within_range() {
    let mut seen = std::collections::BTreeSet::new();
    for id in 1..=20 {
        let mut r = new_raft_peers(id, &[1, 2, 3]);
        for term in 1..=5 {
            r.become_follower(term, 0);
            let t = r.randomized_election_timeout();
            assert!((10..20).contains(&t), "timeout {t} out of range");
            seen.insert(t);
        }
    }
    assert!(seen.len() >= 5, "timeouts barely vary: {seen:?}");
}

// ----- §5.3 log replication ------------------------------------------------------------

/// §5.3: the leader appends a command to its log as a new entry, then sends AppendEntries
/// carrying it, with the index and term of the entry before it, to every follower.
#[test]
fn leader_appends_proposal_and_replicates_it() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    commit_noop(&mut r);
    propose(&mut r, b"some data");
    assert_eq!(r.raft_log().last_index(), 2);
    let mut msgs = read_messages(&mut r);
    msgs.sort_by_key(|m| m.to);
    assert_eq!(msgs.len(), 2);
    for (m, to) in msgs.iter().zip([2, 3]) {
        assert_eq!((m.msg_type(), m.to, m.term), (MsgAppend, to, 1));
        assert_eq!((m.index, m.log_term, m.commit), (1, 1, 1));
        assert_eq!(m.entries, vec![ent_data(2, 1, b"some data")]);
    }
}

/// §5.3: an entry is committed once the leader has replicated it on a majority; the leader
/// includes the commit index in later AppendEntries so followers learn it.
#[test]
fn leader_commits_entry_on_majority_and_announces_it() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    commit_noop(&mut r);
    propose(&mut r, b"some data");
    let msgs = read_messages(&mut r);
    for m in msgs {
        r.step(append_resp(m.to, 1, 1, m.index + m.entries.len() as u64))
            .unwrap();
    }
    assert_eq!(r.raft_log().committed, 2);
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs.iter()
            .all(|m| m.msg_type() == MsgAppend && m.commit == 2)
    );
}

/// §5.3 (with ARCHITECTURE "a leader counts itself only once persisted"): the leader's
/// own copy counts toward the majority only after it is persisted.
#[test]
fn leader_counts_its_own_copy_only_after_persisting() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    commit_noop(&mut r);
    propose(&mut r, b"x");
    let msgs = r.take_messages().unwrap(); // sent before persisting
    assert_eq!(msgs.len(), 2);
    r.step(append_resp(2, 1, 1, 2)).unwrap();
    assert_eq!(
        r.raft_log().committed,
        1,
        "one follower copy is not a majority of durable copies"
    );
    network::persist(&mut r);
    assert_eq!(
        r.raft_log().committed,
        2,
        "leader's durable copy completes the majority"
    );
}

/// §5.3: the leader commits an entry once a majority acknowledges it, whatever the
/// cluster size.
#[test]
fn leader_commit_needs_majority_acknowledgement() {
    let cases: Vec<(u64, Vec<u64>, bool)> = vec![
        (1, vec![], true),
        (3, vec![], false),
        (3, vec![2], true),
        (3, vec![2, 3], true),
        (5, vec![], false),
        (5, vec![2], false),
        (5, vec![2, 3], true),
        (5, vec![2, 3, 4], true),
        (5, vec![2, 3, 4, 5], true),
    ];
    for (size, acceptors, want) in cases {
        let peers: Vec<u64> = (1..=size).collect();
        let mut r = new_raft_peers(1, &peers);
        make_leader(&mut r);
        commit_noop(&mut r);
        let li = r.raft_log().last_index();
        propose(&mut r, b"some data");
        for m in read_messages(&mut r) {
            if acceptors.contains(&m.to) {
                r.step(append_resp(m.to, 1, 1, m.index + m.entries.len() as u64))
                    .unwrap();
            }
        }
        let committed = r.raft_log().committed > li;
        assert_eq!(committed, want, "size {size}, acceptors {acceptors:?}");
    }
}

/// §5.3: committing an entry also commits all preceding entries in the leader's log,
/// including entries created by previous leaders.
#[test]
fn leader_commit_includes_preceding_entries() {
    let priors: [&[u64]; 4] = [&[], &[2], &[1, 2], &[1]];
    for prior in priors {
        let mut r = new_raft(1, storage_with_log(&[1, 2, 3], prior, 2), |_| {});
        make_leader(&mut r);
        assert_eq!(r.term(), 3);
        propose(&mut r, b"some data");
        read_messages(&mut r);
        let last = r.raft_log().last_index();
        for peer in [2, 3] {
            r.step(append_resp(peer, 1, 3, last)).unwrap();
        }
        let last = r.raft_log().last_index();
        assert_eq!(last, prior.len() as u64 + 2);
        assert_eq!(r.raft_log().committed, last, "prior log {prior:?}");
        let committed = r.raft_log().next_committed_entries().unwrap();
        assert_eq!(
            committed.len() as u64,
            last,
            "every entry is handed out for applying"
        );
    }
}

/// §5.3: once a follower learns an entry is committed (through the leader's commit
/// index), it applies it; it never commits past the entries it holds from that leader.
#[test]
fn follower_commits_up_to_leader_commit() {
    let cases: Vec<(Vec<Entry>, u64)> = vec![
        (vec![ent_data(1, 1, b"a")], 1),
        (vec![ent_data(1, 1, b"a"), ent_data(2, 1, b"b")], 2),
        (vec![ent_data(1, 1, b"a"), ent_data(2, 1, b"b")], 1),
        (vec![ent_data(1, 1, b"a")], 5),
    ];
    for (entries, commit) in cases {
        let mut r = new_raft_peers(1, &[1, 2, 3]);
        r.become_follower(1, 2);
        let mut m = msg(2, 1, MsgAppend, 1);
        m.entries = entries.clone();
        m.commit = commit;
        r.step(m).unwrap();
        let want = commit.min(entries.len() as u64);
        assert_eq!(r.raft_log().committed, want);
        network::persist(&mut r);
        let applied = r.raft_log().next_committed_entries().unwrap();
        assert_eq!(applied, entries[..want as usize].to_vec());
    }
}

/// §5.3: a follower refuses AppendEntries whose previous entry (index and term) it does
/// not hold, answering with a hint for the leader (thesis §4.2.1).
#[test]
fn follower_consistency_check_rejects_mismatched_previous_entry() {
    // (log_term, index) -> (reject, response index, reject_hint, hint term)
    let cases = [
        ((0, 0), (false, 1, 0, 0)), // before the commit index: acknowledged as committed
        ((1, 1), (false, 1, 0, 0)),
        ((2, 2), (false, 2, 0, 0)),
        ((1, 2), (true, 2, 1, 1)), // term mismatch at 2
        ((3, 3), (true, 3, 2, 2)), // index past the log
    ];
    for ((log_term, index), (reject, windex, hint, hint_term)) in cases {
        let storage = storage_with_log(&[1, 2, 3], &[1, 2], 2);
        storage.wl().set_commit(1);
        let mut r = new_raft(1, storage, |_| {});
        r.become_follower(2, 2);
        let mut m = msg(2, 1, MsgAppend, 2);
        (m.log_term, m.index, m.commit) = (log_term, index, 1);
        r.step(m).unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1);
        let resp = &msgs[0];
        assert_eq!(resp.msg_type(), MsgAppendResponse);
        assert_eq!(
            (resp.reject, resp.index, resp.reject_hint, resp.log_term),
            (reject, windex, hint, hint_term),
            "append after ({index}, {log_term})"
        );
    }
}

/// §5.3: a follower appends entries not already in its log and deletes an existing entry
/// that conflicts with a new one, together with all that follow it.
#[test]
fn follower_appends_and_truncates_conflicting_suffix() {
    type Log = Vec<(u64, u64)>;
    let cases: Vec<(u64, u64, Vec<Entry>, Log)> = vec![
        (2, 2, vec![ent(3, 3)], vec![(1, 1), (2, 2), (3, 3)]),
        (
            1,
            1,
            vec![ent(2, 3), ent(3, 4)],
            vec![(1, 1), (2, 3), (3, 4)],
        ),
        (0, 0, vec![ent(1, 1)], vec![(1, 1), (2, 2)]),
        (0, 0, vec![ent(1, 3)], vec![(1, 3)]),
    ];
    for (index, log_term, entries, want) in cases {
        let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1, 2], 2), |_| {});
        r.become_follower(2, 2);
        let mut m = msg(2, 1, MsgAppend, 2);
        (m.index, m.log_term, m.entries) = (index, log_term, entries);
        r.step(m).unwrap();
        assert_eq!(log_terms(&r), want);
        network::persist(&mut r);
        let stored: Vec<(u64, u64)> = r
            .store()
            .rl()
            .entries()
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(stored, want, "the Ready carried the truncation to storage");
    }
}

/// §5.3: AppendEntries is idempotent; a duplicated or reordered old append leaves the log
/// unchanged (in particular, it never truncates entries that follow it).
#[test]
fn duplicate_append_is_idempotent() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    r.become_follower(1, 2);
    let mut first = msg(2, 1, MsgAppend, 1);
    first.entries = vec![ent(1, 1)];
    let mut second = msg(2, 1, MsgAppend, 1);
    (second.index, second.log_term, second.entries) = (1, 1, vec![ent(2, 1), ent(3, 1)]);
    r.step(first.clone()).unwrap();
    r.step(second.clone()).unwrap();
    r.step(first).unwrap();
    r.step(second).unwrap();
    assert_eq!(log_terms(&r), vec![(1, 1), (2, 1), (3, 1)]);
}

/// §5.3, Figure 7: whatever the follower's log — missing entries (a, b), extra uncommitted
/// entries (c, d), or both (e, f) — the leader finds the point where they agree, removes
/// the follower's conflicting entries and sends its own.
#[test]
fn figure_7_leader_reconciles_every_follower_log() {
    let leader: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [(&str, &[u64]); 6] = [
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower) in followers {
        let mut net = Network::with_storages(
            &[1, 2, 3],
            |id| match id {
                1 => storage_with_log(&[1, 2, 3], leader, 8),
                2 => storage_with_log(&[1, 2, 3], follower, 7),
                _ => storage_with_log(&[1, 2, 3], &[], 7),
            },
            |_| {},
        );
        net.elect(1);
        assert_eq!(net.raft(1).term(), 9);
        net.propose(1, b"x").unwrap();
        let want = net.log_of(1);
        assert_eq!(
            want.len(),
            leader.len() + 2,
            "({name}) the leader's log only grew"
        );
        assert_eq!(net.log_of(2), want, "({name}) follower log reconciled");
        assert_eq!(net.log_of(3), want, "({name}) empty follower filled");
        for id in [1, 2, 3] {
            assert_eq!(net.raft(id).raft_log().committed, 12, "({name}) node {id}");
        }
        net.assert_safety();
    }
}

// ----- §5.4 safety -----------------------------------------------------------------------

/// §5.4.1: a RequestVote carries the candidate's last log index and term.
#[test]
fn vote_request_carries_last_log_position() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1, 2], 2), |_| {});
    r.step(msg(1, 1, MsgHup, 0)).unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        assert_eq!(m.msg_type(), MsgRequestVote);
        assert_eq!((m.term, m.index, m.log_term), (3, 2, 2));
    }
}

/// §5.4.1: a voter denies its vote when its own log is more up-to-date than the
/// candidate's (later last term, or same last term and longer).
#[test]
fn voter_denies_candidate_with_less_up_to_date_log() {
    // (voter log terms, candidate last term, candidate last index, reject)
    let cases: [(&[u64], u64, u64, bool); 9] = [
        (&[1], 1, 1, false),
        (&[1], 1, 2, false),
        (&[1, 1], 1, 1, true),
        (&[1], 2, 1, false),
        (&[1], 2, 2, false),
        (&[1, 1], 2, 1, false),
        (&[2], 1, 1, true),
        (&[2], 1, 2, true),
        (&[2, 1], 1, 1, true),
    ];
    for (log, log_term, index, reject) in cases {
        let mut r = new_raft(1, storage_with_log(&[1, 2], log, 2), |_| {});
        let mut m = msg(2, 1, MsgRequestVote, 3);
        (m.log_term, m.index) = (log_term, index);
        r.step(m).unwrap();
        let msgs = read_messages(&mut r);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].msg_type(), MsgRequestVoteResponse);
        assert_eq!(
            msgs[0].reject, reject,
            "voter {log:?}, candidate ({index}, {log_term})"
        );
    }
}

/// §5.4.2: a leader never commits an entry from a previous term by counting replicas; only
/// an entry of its own term commits that way, and with it every earlier one (Figure 8).
#[test]
fn leader_only_commits_entries_of_its_term_by_counting_replicas() {
    for (acked, want_commit) in [(1, 0), (2, 0), (3, 3)] {
        let mut r = new_raft(1, storage_with_log(&[1, 2], &[1, 2], 2), |_| {});
        make_leader(&mut r);
        assert_eq!((r.term(), r.raft_log().last_index()), (3, 3));
        r.step(append_resp(2, 1, 3, acked)).unwrap();
        assert_eq!(
            r.raft_log().committed,
            want_commit,
            "acknowledged up to {acked}"
        );
    }
}

/// Campaigns on `id` until it wins (a first try may lose to earlier votes in that term).
fn elect_with_retries(net: &mut Network, id: u64) {
    for _ in 0..3 {
        net.campaign(id);
        if net.state(id) == StateRole::Leader {
            return;
        }
    }
    panic!("node {id} could not be elected");
}

/// §5.4.2, Figure 8 replayed on a 5-node cluster: an entry of an old term stored on a
/// majority is still not committed, and a later leader may legitimately overwrite it;
/// nobody ever applies it.
#[test]
fn figure_8_old_term_entry_on_majority_is_not_committed() {
    // One entry per append, so the hooks below can tell entries apart.
    let mut net = Network::with_config(&[1, 2, 3, 4, 5], |c| c.max_msg_bytes = 1);
    net.elect(1);
    // (a) S1 (term 1) replicates index 2 to S2 only.
    net.set_hook(|m| !(m.from == 1 && m.msg_type() == MsgAppend && m.to != 2));
    net.propose(1, b"a").unwrap();
    assert_eq!(net.log_of(2), vec![(1, 1), (2, 1)]);
    // (b) S1 crashes; S5 is elected by S3, S4 and itself and appends at index 2 alone.
    net.recover();
    net.isolate(1);
    net.set_hook(|m| !(m.from == 5 && m.msg_type() == MsgAppend));
    net.campaign(5);
    assert_eq!((net.state(5), net.raft(5).term()), (StateRole::Leader, 2));
    assert_eq!(net.log_of(5), vec![(1, 1), (2, 2)]);
    // (c) S5 crashes; S1 restarts, is elected and spreads index 2 (term 1) to S3, but
    // its own term's entry at index 3 reaches nobody. (S1's first probe to S3 carries
    // index 3 after index 2, which S3 lacks: S3 rejects it, so it may pass.)
    net.recover();
    net.isolate(5);
    net.restart(1);
    let mut first_probe_to_3 = true;
    net.set_hook(move |m| {
        if m.from != 1 || m.msg_type() != MsgAppend || m.entries.iter().all(|e| e.index < 3) {
            return true;
        }
        let pass = m.to == 3 && m.index == 2 && first_probe_to_3;
        first_probe_to_3 &= !pass;
        pass
    });
    elect_with_retries(&mut net, 1);
    assert_eq!(net.raft(1).term(), 3);
    for id in [1, 2, 3] {
        assert_eq!(net.log_of(id)[1], (2, 1), "S{id} holds index 2 of term 1");
    }
    assert_eq!(
        net.raft(1).raft_log().committed,
        1,
        "index 2 is on a majority but from an old term: not committed"
    );
    // (d) S1 crashes; S5 restarts, wins with S2, S3, S4 and overwrites index 2.
    net.recover();
    net.isolate(1);
    net.restart(5);
    elect_with_retries(&mut net, 5);
    assert_eq!(net.raft(5).term(), 4);
    for id in [2, 3, 4, 5] {
        assert_eq!(net.log_of(id), vec![(1, 1), (2, 2), (3, 4)], "S{id}");
        assert_eq!(net.raft(id).raft_log().committed, 3);
    }
    // S1 rejoins and is brought in line.
    net.recover();
    net.tick(5, 2);
    assert_eq!(net.log_of(1), net.log_of(5));
    for id in 1..=5 {
        assert!(
            net.applied_data(id).is_empty(),
            "S{id} never applies the overwritten entry"
        );
    }
    net.assert_safety();
}

// ----- §8 client interaction -----------------------------------------------------------

/// §8: each leader commits a blank no-op entry at the start of its term, which also
/// commits everything before it.
#[test]
fn new_leader_commits_noop_entry_of_its_term() {
    let mut net = Network::with_storages(
        &[1, 2, 3],
        |_| storage_with_log(&[1, 2, 3], &[1, 1], 1),
        |_| {},
    );
    assert_eq!(net.raft(1).raft_log().committed, 0);
    net.elect(1);
    let log = net.raft(1).raft_log();
    assert_eq!(log.last_index(), 3);
    let noop = &log.slice(3, 4, None).unwrap()[0];
    assert_eq!(
        (noop.term, noop.data.len()),
        (2, 0),
        "an empty entry of the new term"
    );
    for id in [1, 2, 3] {
        assert_eq!(net.raft(id).raft_log().committed, 3, "node {id}");
    }
}
