//! Leadership transfer (thesis §3.10): the leader brings the transferee up to date, then
//! sends it TimeoutNow so it campaigns at once.

#[path = "support/network.rs"]
mod network;

use network::Network;
use raft_core::eraftpb::MessageType::*;
use raft_core::{Error, MemStorage, StateRole};

fn count(net: &Network, t: raft_core::eraftpb::MessageType) -> usize {
    net.delivered.iter().filter(|m| m.msg_type() == t).count()
}

/// Three nodes led by 1, with a transfer to 3 pending: 3 is isolated, so it never
/// catches up and the transfer stays in progress.
fn transfer_pending_to_isolated_3() -> Network {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    net.raw(1)
        .transfer_leader(3)
        .expect("a leader accepts a transfer to a member");
    net.drain();
    net
}

/// Thesis §3.10: the leader sends TimeoutNow to an up-to-date transferee, which starts an
/// election at once and wins it.
#[test]
fn transfer_to_up_to_date_follower() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.raw(1).transfer_leader(2).unwrap();
    net.drain();
    assert_eq!(net.leader(), Some(2));
    assert_eq!(net.raft(2).term(), 2);
    assert_eq!(net.state(1), StateRole::Follower);
    assert_eq!(count(&net, MsgTimeoutNow), 1);
}

/// Thesis §3.10: a lagging transferee is first brought up to date with appends; only then
/// does it receive TimeoutNow.
#[test]
fn lagging_transferee_is_caught_up_before_timeout_now() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    net.propose(1, b"x").unwrap();
    net.recover();
    net.delivered.clear();
    net.raw(1).transfer_leader(3).unwrap();
    net.drain();
    assert_eq!(net.leader(), Some(3));
    let timeout_now = net
        .delivered
        .iter()
        .position(|m| m.msg_type() == MsgTimeoutNow)
        .expect("TimeoutNow sent");
    assert!(
        net.delivered[..timeout_now]
            .iter()
            .any(|m| m.msg_type() == MsgAppend && m.to == 3 && !m.entries.is_empty()),
        "the missing entry went to 3 before TimeoutNow"
    );
    assert_eq!(net.applied_data(3), vec![b"x".to_vec()]);
}

/// Thesis §3.10: a transfer that does not complete within an election timeout is
/// aborted and the leader resumes accepting proposals.
#[test]
fn transfer_aborts_after_election_timeout() {
    let mut net = transfer_pending_to_isolated_3();
    assert_eq!(net.raft(1).lead_transferee(), 3);
    net.tick(1, 9);
    assert_eq!(
        net.raft(1).lead_transferee(),
        3,
        "still within the election timeout"
    );
    net.tick(1, 1);
    assert_eq!(net.raft(1).lead_transferee(), 0);
    assert_eq!(net.state(1), StateRole::Leader);
    net.propose(1, b"x").unwrap();
    assert_eq!(net.applied_data(2), vec![b"x".to_vec()]);
}

/// Thesis §3.10: during a transfer the leader stops accepting client requests, so the
/// transferee can catch up and the transfer can finish.
#[test]
fn proposals_are_dropped_while_transferring() {
    let mut net = transfer_pending_to_isolated_3();
    let last = net.raft(1).raft_log().last_index();
    assert!(matches!(net.propose(1, b"x"), Err(Error::ProposalDropped)));
    // A proposal forwarded by a follower is dropped by the leader as well.
    net.propose(2, b"y").unwrap();
    assert_eq!(net.raft(1).raft_log().last_index(), last);
}

/// Thesis §3.10: a transfer to a learner, to the leader itself or to a node outside the
/// configuration is ignored: the leader keeps leading and accepts proposals.
#[test]
fn transfer_to_learner_self_or_non_member_is_ignored() {
    for transferee in [1, 3, 9] {
        let mut net = Network::with_storages(
            &[1, 2, 3],
            |_| MemStorage::new_with_conf_state((vec![1, 2], vec![3])),
            |_| {},
        );
        net.elect(1);
        net.raw(1).transfer_leader(transferee).unwrap();
        net.drain();
        assert_eq!(net.raft(1).lead_transferee(), 0, "transfer to {transferee}");
        assert_eq!(net.leader(), Some(1));
        assert_eq!(count(&net, MsgTimeoutNow), 0);
        net.propose(1, b"x").unwrap();
        assert_eq!(net.applied_data(2), vec![b"x".to_vec()]);
    }
}

/// Thesis §3.10: a transfer request made on a follower is forwarded to the leader.
#[test]
fn transfer_request_on_follower_is_forwarded() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.raw(2).transfer_leader(3).unwrap();
    net.drain();
    assert_eq!(net.leader(), Some(3));
}

/// Thesis §3.10 with §4.2.3: the transferee's vote requests override the followers'
/// leader lease (CheckQuorum), and it skips the pre-election (PreVote), since the leader
/// itself asked for the election.
#[test]
fn transfer_overrides_lease_and_skips_prevote() {
    let mut net = Network::with_config(&[1, 2, 3], |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    net.elect(1);
    net.delivered.clear();
    net.raw(1).transfer_leader(2).unwrap();
    net.drain();
    assert_eq!(net.leader(), Some(2));
    assert_eq!(net.raft(2).term(), 2);
    assert_eq!(
        count(&net, MsgRequestPreVote),
        0,
        "no pre-election for a transfer"
    );
}

/// Thesis §3.10: a new transfer to another node replaces one in progress.
#[test]
fn new_transfer_replaces_pending_one() {
    let mut net = transfer_pending_to_isolated_3();
    assert_eq!(net.raft(1).lead_transferee(), 3);
    net.raw(1).transfer_leader(2).unwrap();
    net.drain();
    assert_eq!(net.leader(), Some(2));
}

/// Thesis §3.10: a TimeoutNow reaching a node that may not campaign (a learner) is
/// ignored.
#[test]
fn timeout_now_to_learner_is_ignored() {
    let mut net = Network::with_storages(
        &[1, 2, 3],
        |_| MemStorage::new_with_conf_state((vec![1, 2], vec![3])),
        |_| {},
    );
    net.elect(1);
    let mut m = network::msg(1, 3, MsgTimeoutNow, 1);
    m.term = 1;
    net.send(vec![m]);
    assert_eq!(net.state(3), StateRole::Follower);
    assert_eq!(net.raft(3).term(), 1);
    assert_eq!(net.leader(), Some(1));
}
