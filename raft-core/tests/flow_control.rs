//! Replication flow control (thesis §4.2.1 and §10.2): probe and replicate states, the
//! inflight window, fast backtracking with the conflict hint, the uncommitted-size limit,
//! and where proposals are dropped.

#[path = "support/network.rs"]
mod network;

use network::{Network, make_leader, msg, new_raft, read_messages, storage_with_log};
use raft_core::eraftpb::{Entry, MessageType::*};
use raft_core::tracker::ProgressState;
use raft_core::{Error, MemStorage, Raft};

fn propose(r: &mut Raft<MemStorage>, data: &[u8]) -> raft_core::Result<()> {
    let mut m = msg(1, 1, MsgPropose, 0);
    m.entries = vec![Entry {
        data: data.to_vec().into(),
        ..Default::default()
    }];
    r.step(m)
}

fn appends_to(msgs: &[raft_core::eraftpb::Message], to: u64) -> usize {
    msgs.iter()
        .filter(|m| m.msg_type() == MsgAppend && m.to == to)
        .count()
}

/// Thesis §10.2: in probe state the leader sends one append and waits for the answer
/// before sending more; an acknowledgement moves the peer to replicate state.
#[test]
fn probe_sends_one_append_until_acknowledged() {
    let mut r = new_raft(1, storage_with_log(&[1, 2], &[], 0), |_| {});
    make_leader(&mut r);
    assert_eq!(r.tracker().progress[&2].state, ProgressState::Probe);
    assert!(
        r.tracker().progress[&2].is_paused(),
        "the first probe is outstanding"
    );
    propose(&mut r, b"a").unwrap();
    propose(&mut r, b"b").unwrap();
    assert_eq!(
        appends_to(&read_messages(&mut r), 2),
        0,
        "paused while probing"
    );
    let mut ack = msg(2, 1, MsgAppendResponse, 1);
    ack.index = 1;
    r.step(ack).unwrap();
    assert_eq!(r.tracker().progress[&2].state, ProgressState::Replicate);
    let msgs = read_messages(&mut r);
    let with_entries: Vec<_> = msgs
        .iter()
        .filter(|m| m.msg_type() == MsgAppend && m.to == 2 && !m.entries.is_empty())
        .collect();
    assert_eq!(with_entries.len(), 1);
    assert_eq!(
        with_entries[0].entries.len(),
        2,
        "everything pending in one append"
    );
}

/// Thesis §10.2: in replicate state appends are pipelined up to the inflight window; a
/// full window pauses the peer until acknowledgements free it.
#[test]
fn full_inflight_window_pauses_replication() {
    let mut r = new_raft(1, storage_with_log(&[1, 2], &[], 0), |c| {
        c.max_inflight_msgs = 3
    });
    make_leader(&mut r);
    let mut ack = msg(2, 1, MsgAppendResponse, 1);
    ack.index = 1;
    r.step(ack).unwrap();
    read_messages(&mut r);
    let mut sent = 0;
    for i in 0..6u8 {
        propose(&mut r, &[i]).unwrap();
        sent += appends_to(&read_messages(&mut r), 2);
    }
    assert_eq!(sent, 3, "the window holds three appends");
    assert!(r.tracker().progress[&2].is_paused());
    let mut ack = msg(2, 1, MsgAppendResponse, 1);
    ack.index = 2;
    r.step(ack).unwrap();
    let msgs = read_messages(&mut r);
    assert_eq!(
        appends_to(&msgs, 2),
        1,
        "one slot freed, the rest goes in one append"
    );
    assert_eq!(msgs.iter().find(|m| m.to == 2).unwrap().entries.len(), 3);
}

/// ARCHITECTURE (coalesced broadcast): proposals between two Readies cost one append per
/// follower, carrying all of them.
#[test]
fn proposals_between_readies_are_coalesced() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.delivered.clear();
    for i in 0..5u8 {
        net.raw(1)
            .propose(Default::default(), vec![i].into())
            .unwrap();
    }
    net.drain();
    let appends: Vec<_> = net
        .delivered
        .iter()
        .filter(|m| m.msg_type() == MsgAppend && !m.entries.is_empty())
        .collect();
    assert_eq!(appends.len(), 2);
    assert!(appends.iter().all(|m| m.entries.len() == 5));
    assert_eq!(net.applied_data(3).len(), 5);
}

/// Thesis §4.2.1 / §5.3: with the conflict hint the leader skips a whole conflicting
/// term per round trip instead of one entry: a follower with a long divergent tail of
/// one term is reconciled in a couple of rejections.
#[test]
fn fast_backtracking_skips_conflicting_terms() {
    let mut leader_log = vec![1u64; 2];
    leader_log.extend([3; 50]);
    let mut follower_log = vec![1u64; 2];
    follower_log.extend([2; 50]);
    let mut net = Network::with_storages(
        &[1, 2, 3],
        |id| match id {
            1 | 3 => storage_with_log(&[1, 2, 3], &leader_log, 3),
            _ => storage_with_log(&[1, 2, 3], &follower_log, 3),
        },
        |_| {},
    );
    net.elect(1);
    let rejections = net
        .delivered
        .iter()
        .filter(|m| m.msg_type() == MsgAppendResponse && m.from == 2 && m.reject)
        .count();
    assert!(
        rejections <= 2,
        "{rejections} rejections for a 50-entry conflicting term"
    );
    assert_eq!(net.log_of(2), net.log_of(1));
}

/// Thesis §10.2.1: a leader caps the bytes of uncommitted entries; past the limit
/// proposals are dropped, and accepted again once entries commit.
#[test]
fn uncommitted_size_limit_drops_proposals() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.max_uncommitted_bytes = 100);
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    let data = [7u8; 40];
    net.propose(1, &data).unwrap();
    net.propose(1, &data).unwrap();
    assert!(matches!(net.propose(1, &data), Err(Error::ProposalDropped)));
    assert_eq!(net.raft(1).uncommitted_bytes(), 80);
    net.recover();
    net.tick(1, 1);
    assert_eq!(net.applied_data(2).len(), 2);
    assert_eq!(net.raft(1).uncommitted_bytes(), 0);
    net.propose(1, &data).unwrap();
}

/// A single proposal bigger than the limit is still accepted when nothing is
/// uncommitted, so progress is always possible.
#[test]
fn oversized_proposal_accepted_on_empty_budget() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.max_uncommitted_bytes = 10);
    net.elect(1);
    net.propose(1, &[1u8; 50]).unwrap();
    assert_eq!(net.applied_data(2).len(), 1);
}

/// §5.1/§8: without a leader a proposal cannot be forwarded and is dropped; with
/// forwarding disabled, followers drop proposals too.
#[test]
fn proposals_without_leader_or_forwarding_are_dropped() {
    let mut net = Network::new(&[1, 2, 3]);
    assert!(matches!(net.propose(1, b"x"), Err(Error::ProposalDropped)));
    net.isolate(1);
    net.campaign(1);
    assert!(
        matches!(net.propose(1, b"x"), Err(Error::ProposalDropped)),
        "candidate"
    );
    let mut net = Network::with_config(&[1, 2, 3], |c| c.disable_proposal_forwarding = true);
    net.elect(1);
    assert!(matches!(net.propose(2, b"x"), Err(Error::ProposalDropped)));
    assert!(net.applied_data(1).is_empty());
}

/// Thesis §10.2: an unreachable peer in replicate state goes back to probing.
#[test]
fn unreachable_peer_returns_to_probe() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    assert_eq!(
        net.raft(1).tracker().progress[&2].state,
        ProgressState::Replicate
    );
    net.raw(1).report_unreachable(2);
    assert_eq!(
        net.raft(1).tracker().progress[&2].state,
        ProgressState::Probe
    );
}

/// `max_msg_bytes` bounds each append (at least one entry always goes).
#[test]
fn max_msg_bytes_limits_entries_per_append() {
    let mut net = Network::with_config(&[1, 2], |c| c.max_msg_bytes = 1);
    net.elect(1);
    net.isolate(2);
    for i in 0..4u8 {
        net.propose(1, &[i]).unwrap();
    }
    net.recover();
    net.delivered.clear();
    net.tick(1, 1);
    let appends: Vec<_> = net
        .delivered
        .iter()
        .filter(|m| m.msg_type() == MsgAppend && !m.entries.is_empty())
        .collect();
    assert!(appends.len() >= 4);
    assert!(appends.iter().all(|m| m.entries.len() == 1));
    assert_eq!(net.applied_data(2).len(), 4);
}

/// The appends (with or without entries) node 1 sent while proposing `data` and running
/// the network until quiet.
fn appends_for_one_proposal(net: &mut Network, data: &[u8]) -> usize {
    net.delivered.clear();
    net.propose(1, data).expect("a leader accepts the proposal");
    net.delivered
        .iter()
        .filter(|m| m.msg_type() == MsgAppend && m.from == 1)
        .count()
}

/// With `skip_bcast_commit`, a commit costs no second round of appends: followers learn
/// the commit index from the next append or heartbeat. Without it, each commit is
/// broadcast (an empty append per follower) as soon as the leader learns it.
#[test]
fn skipped_commit_broadcast_reaches_followers_with_the_next_message() {
    let mut eager = Network::new(&[1, 2, 3]);
    eager.elect(1);
    assert_eq!(appends_for_one_proposal(&mut eager, b"a"), 4);
    assert_eq!(eager.applied_data(2), [b"a".to_vec()]);

    let mut net = Network::with_config(&[1, 2, 3], |c| c.skip_bcast_commit = true);
    net.elect(1);
    assert_eq!(appends_for_one_proposal(&mut net, b"a"), 2);
    let committed = net.raft(1).raft_log().committed;
    assert_eq!(net.applied_data(1), [b"a".to_vec()]);
    for id in [2, 3] {
        assert!(net.raft(id).raft_log().committed < committed);
        assert!(net.applied_data(id).is_empty());
    }
    // The next proposal's append carries the commit of the first.
    assert_eq!(appends_for_one_proposal(&mut net, b"b"), 2);
    assert_eq!(net.applied_data(2), [b"a".to_vec()]);
    // A heartbeat carries the commit of the second.
    net.tick(1, 1);
    for id in [2, 3] {
        assert_eq!(net.raft(id).raft_log().committed, committed + 1);
        assert_eq!(net.applied_data(id), [b"a".to_vec(), b"b".to_vec()]);
    }
}

/// An entry marked with `broadcast_commit_of` has its commit broadcast at once even when
/// commits are not: a follower must apply it soon (e.g. a region split).
#[test]
fn urgent_commit_is_broadcast_even_when_commits_are_not() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.skip_bcast_commit = true);
    net.elect(1);
    let next = net.raft(1).raft_log().last_index() + 1;
    net.raw(1).broadcast_commit_of(next);
    assert_eq!(appends_for_one_proposal(&mut net, b"split"), 4);
    for id in [2, 3] {
        assert_eq!(net.raft(id).raft_log().committed, next);
        assert_eq!(net.applied_data(id), [b"split".to_vec()]);
    }
    // Only that entry: the next commit waits again.
    assert_eq!(appends_for_one_proposal(&mut net, b"after"), 2);
    net.raw(1).set_skip_bcast_commit(false);
    assert_eq!(appends_for_one_proposal(&mut net, b"eager"), 4);
}

/// Two entries marked urgent commit one after the other: each commit is broadcast, the
/// first without waiting for the second.
#[test]
fn each_urgent_commit_is_broadcast_in_turn() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.skip_bcast_commit = true);
    net.elect(1);
    let next = net.raft(1).raft_log().last_index() + 1;
    net.raw(1).broadcast_commit_of(next);
    net.raw(1).broadcast_commit_of(next + 1);
    assert_eq!(appends_for_one_proposal(&mut net, b"first"), 4);
    assert_eq!(net.applied_data(2), [b"first".to_vec()]);
    assert_eq!(appends_for_one_proposal(&mut net, b"second"), 4);
    assert_eq!(net.applied_data(2), [b"first".to_vec(), b"second".to_vec()]);
    // Marking an entry already committed, or on a follower, changes nothing.
    net.raw(1).broadcast_commit_of(next);
    net.raw(2).broadcast_commit_of(next + 5);
    assert_eq!(appends_for_one_proposal(&mut net, b"third"), 2);
}
