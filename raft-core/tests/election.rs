//! Elections beyond the basic paper rules: PreVote (thesis §9.6), CheckQuorum and the
//! leader lease (thesis §6.2, paper §4.2.3 of the thesis on disruptive servers).

#[path = "support/network.rs"]
mod network;

use network::{Network, msg, new_raft, read_messages, storage_with_log};
use raft_core::StateRole;
use raft_core::eraftpb::MessageType::*;

fn with(pre_vote: bool, check_quorum: bool) -> Network {
    Network::with_config(&[1, 2, 3], |c| {
        c.pre_vote = pre_vote;
        c.check_quorum = check_quorum;
    })
}

fn terms(net: &Network) -> Vec<u64> {
    [1, 2, 3].iter().map(|&id| net.raft(id).term()).collect()
}

// ----- PreVote ---------------------------------------------------------------------------

/// Thesis §9.6: a pre-election does not change any term: an isolated node that keeps
/// timing out stays a pre-candidate in its old term instead of inflating it.
#[test]
fn prevote_does_not_bump_term_of_isolated_node() {
    let mut net = with(true, false);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 100);
    assert_eq!(net.state(3), StateRole::PreCandidate);
    assert_eq!(terms(&net), vec![1, 1, 1]);
}

/// Thesis §9.6: without PreVote, the same isolated node inflates its term, and on
/// rejoining forces the healthy leader out (the disruption PreVote prevents).
#[test]
fn without_prevote_rejoining_node_disrupts_the_leader() {
    let mut net = with(false, false);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 100);
    assert!(net.raft(3).term() > 2);
    net.recover();
    net.tick(3, 20); // its next election reaches the cluster in a higher term
    assert_ne!(
        net.raft(1).term(),
        1,
        "the leader was forced into a new term"
    );
}

/// Thesis §9.6: a partitioned node that rejoins with a stale log is refused in its
/// pre-election, so it does not disrupt the leader; terms stay unchanged.
#[test]
fn rejoining_node_with_stale_log_does_not_disrupt_with_prevote() {
    let mut net = with(true, false);
    net.elect(1);
    net.isolate(3);
    net.propose(1, b"while 3 is away").unwrap();
    net.tick(3, 100);
    net.recover();
    net.tick(3, 30); // keeps pre-campaigning until the leader's heartbeat reaches it
    net.tick(1, 1);
    assert_eq!(net.leader(), Some(1));
    assert_eq!(terms(&net), vec![1, 1, 1]);
    assert_eq!(net.raft(3).leader_id(), 1);
    assert_eq!(net.applied_data(3), vec![b"while 3 is away".to_vec()]);
}

/// Thesis §9.6 with CheckQuorum: even with an up-to-date log, a rejoining node's
/// pre-election is refused by followers that hear from a leader, so nothing is disrupted.
#[test]
fn rejoining_node_with_current_log_does_not_disrupt_with_prevote_and_check_quorum() {
    let mut net = with(true, true);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 100);
    net.recover();
    for _ in 0..30 {
        net.tick_all();
    }
    assert_eq!(net.leader(), Some(1));
    assert_eq!(terms(&net), vec![1, 1, 1]);
}

/// Thesis §9.6: a voter grants a pre-vote for a later term without adopting that term or
/// recording a vote.
#[test]
fn granted_prevote_changes_neither_term_nor_vote() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1], 1), |c| {
        c.pre_vote = true
    });
    let mut m = msg(2, 1, MsgRequestPreVote, 2);
    (m.index, m.log_term) = (1, 1);
    r.step(m).unwrap();
    let resp = read_messages(&mut r);
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].msg_type(), MsgRequestPreVoteResponse);
    assert!(!resp[0].reject);
    assert_eq!(resp[0].term, 2, "the grant carries the future term");
    assert_eq!((r.term(), r.vote()), (1, 0));
}

/// Thesis §9.6: a pre-vote is refused to a candidate whose log is not up to date
/// (§5.4.1), answered in the voter's term.
#[test]
fn prevote_refused_for_stale_log() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1, 2], 2), |c| {
        c.pre_vote = true
    });
    let mut m = msg(2, 1, MsgRequestPreVote, 3);
    (m.index, m.log_term) = (5, 1);
    r.step(m).unwrap();
    let resp = read_messages(&mut r);
    assert!(resp[0].reject);
    assert_eq!(resp[0].term, 2);
    assert_eq!(r.term(), 2);
}

/// Thesis §9.6: a pre-candidate asks for votes for the next term without moving to it,
/// and starts the real election (raising its term) only once a quorum grants.
#[test]
fn precandidate_campaigns_only_after_prevote_quorum() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[], 0), |c| {
        c.pre_vote = true
    });
    r.step(msg(1, 1, MsgHup, 0)).unwrap();
    assert_eq!((r.state(), r.term()), (StateRole::PreCandidate, 0));
    let msgs = read_messages(&mut r);
    assert!(
        msgs.iter()
            .all(|m| m.msg_type() == MsgRequestPreVote && m.term == 1)
    );
    assert_eq!(msgs.len(), 2);
    r.step(msg(2, 1, MsgRequestPreVoteResponse, 1)).unwrap();
    assert_eq!(
        (r.state(), r.term(), r.vote()),
        (StateRole::Candidate, 1, 1)
    );
    let msgs = read_messages(&mut r);
    assert!(
        msgs.iter()
            .all(|m| m.msg_type() == MsgRequestVote && m.term == 1)
    );
}

/// Thesis §9.6: a pre-candidate refused by a quorum returns to follower in its own term.
#[test]
fn precandidate_refused_by_quorum_returns_to_follower() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[], 0), |c| {
        c.pre_vote = true
    });
    r.step(msg(1, 1, MsgHup, 0)).unwrap();
    for from in [2, 3] {
        let mut m = msg(from, 1, MsgRequestPreVoteResponse, 0);
        m.term = 1;
        m.reject = true;
        r.step(m).unwrap();
    }
    assert_eq!(r.state(), StateRole::Follower);
    assert!(r.term() <= 1, "at most adopts the rejecting voter's term");
}

// ----- CheckQuorum -----------------------------------------------------------------------

/// Thesis §6.2 (CheckQuorum): a leader that has not heard from a quorum during a whole
/// election timeout steps down (at the second quorum check at the latest).
#[test]
fn leader_steps_down_without_quorum() {
    let mut net = with(false, true);
    net.elect(1);
    net.isolate(1);
    net.tick(1, 10);
    assert_eq!(
        net.state(1),
        StateRole::Leader,
        "peers were active at the first check"
    );
    net.tick(1, 10);
    assert_eq!(net.state(1), StateRole::Follower);
    assert_eq!(net.raft(1).term(), 1, "stepping down needs no new term");
}

/// Thesis §6.2: a leader in contact with a quorum keeps its role through any number of
/// quorum checks, even with one follower gone.
#[test]
fn leader_with_quorum_stays_leader() {
    let mut net = with(false, true);
    net.elect(1);
    net.isolate(3);
    for _ in 0..50 {
        net.tick(1, 1);
        net.tick(2, 1);
    }
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.raft(1).term(), 1);
}

/// Thesis §4.2.3 / §6.2: with CheckQuorum, a follower (and the leader) that heard from
/// the leader within the election timeout ignores a vote request from a disruptive node,
/// keeping its term and leader.
#[test]
fn follower_in_lease_ignores_disruptive_vote_request() {
    let mut net = with(false, true);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 30);
    let term3 = net.raft(3).term();
    assert!(term3 > 1);
    net.recover();
    net.campaign(3);
    assert_eq!(net.raft(3).term(), term3 + 1);
    assert_eq!((net.raft(1).term(), net.raft(2).term()), (1, 1));
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.raft(2).leader_id(), 1);
}

/// Thesis §6.2: a follower past its lease (no leader contact for an election timeout)
/// does answer a vote request from a higher term.
#[test]
fn follower_past_lease_grants_votes_again() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1], 1), |c| {
        c.check_quorum = true
    });
    r.step(msg(2, 1, MsgHeartbeat, 1)).unwrap();
    read_messages(&mut r);
    let vote = |r: &mut raft_core::Raft<_>| {
        let mut m = msg(3, 1, MsgRequestVote, 2);
        (m.index, m.log_term) = (1, 1);
        r.step(m).unwrap();
        read_messages(r)
    };
    assert!(
        vote(&mut r).is_empty(),
        "inside the lease the request is ignored"
    );
    assert_eq!(r.term(), 1);
    for _ in 0..10 {
        r.tick().unwrap();
        if r.state() != StateRole::Follower {
            break;
        }
    }
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1], 1), |c| {
        c.check_quorum = true
    });
    r.step(msg(2, 1, MsgHeartbeat, 1)).unwrap();
    read_messages(&mut r);
    for _ in 0..10 {
        r.tick().unwrap(); // election_ticks = 10: the lease has run out
    }
    let resp = vote(&mut r);
    let resp: Vec<_> = resp
        .iter()
        .filter(|m| m.msg_type() == MsgRequestVoteResponse)
        .collect();
    assert_eq!(resp.len(), 1);
    assert!(!resp[0].reject);
    assert_eq!(r.term(), 2);
}

/// Thesis §6.2: with CheckQuorum, a node that kept raising its term while partitioned is
/// not stuck forever: the leader's heartbeat tells it the old term, it answers with its
/// own, and the cluster converges on a single leader in the new term.
#[test]
fn stuck_candidate_is_freed_with_check_quorum() {
    let mut net = with(false, true);
    net.elect(1);
    net.isolate(3);
    net.tick(3, 30);
    let term3 = net.raft(3).term();
    net.recover();
    net.tick(1, 1); // heartbeat → 3 answers in its higher term → 1 steps down
    assert_eq!(net.state(1), StateRole::Follower);
    assert_eq!(net.raft(1).term(), term3);
    for _ in 0..60 {
        net.tick_all();
        if net.leader().is_some() {
            break;
        }
    }
    let leader = net.leader().expect("a new leader");
    let t = net.raft(leader).term();
    assert!(t > term3 - 1);
    assert_eq!(terms(&net), vec![t, t, t]);
    net.assert_safety();
}

/// §5.1 with CheckQuorum / PreVote: a node that gets an append or heartbeat from a stale
/// leader answers with its own term so the stale leader learns it must step down.
#[test]
fn stale_leader_is_told_the_current_term() {
    for (pre_vote, check_quorum) in [(true, false), (false, true)] {
        let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[], 3), |c| {
            c.pre_vote = pre_vote;
            c.check_quorum = check_quorum;
        });
        for t in [MsgHeartbeat, MsgAppend] {
            r.step(msg(2, 1, t, 2)).unwrap();
            let resp = read_messages(&mut r);
            assert_eq!(resp.len(), 1);
            assert_eq!(
                (resp[0].msg_type(), resp[0].to, resp[0].term),
                (MsgAppendResponse, 2, 3)
            );
        }
    }
}

/// §5.2: two candidates that split the vote do not both win; a later election settles on
/// one leader and everyone converges on its term.
#[test]
fn dueling_candidates_settle_on_one_leader() {
    let mut net = with(false, false);
    net.cut(1, 3);
    net.campaign(1);
    net.campaign(3);
    assert_eq!(net.state(1), StateRole::Leader);
    assert_eq!(
        net.state(3),
        StateRole::Candidate,
        "3's log is behind 2's: no vote"
    );
    net.recover();
    net.campaign(3);
    // 3's log lacks the leader's empty entry, so it cannot win; a quorum still rejects it
    // and a later election elects an up-to-date node.
    assert_ne!(net.state(3), StateRole::Leader);
    for _ in 0..60 {
        net.tick_all();
        if net
            .leader()
            .is_some_and(|l| net.raft(l).term() >= net.raft(3).term())
        {
            break;
        }
    }
    let leader = net.leader().expect("leader");
    assert_ne!(leader, 3);
    net.propose(leader, b"x").unwrap();
    for id in [1, 2, 3] {
        assert_eq!(net.applied_data(id), vec![b"x".to_vec()]);
    }
}
