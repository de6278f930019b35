//! Membership changes (paper §6, thesis §4): learners, single-step changes, joint
//! consensus with automatic and explicit leave, one change at a time.

#[path = "support/network.rs"]
mod network;

use network::{Network, make_leader, msg, new_raft, read_messages};
use raft_core::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, EntryType,
    MessageType,
};
use raft_core::{Error, MemStorage, StateRole};

use ConfChangeType::*;

fn cc(change_type: ConfChangeType, node_id: u64) -> ConfChange {
    ConfChange {
        change_type: change_type as i32,
        node_id,
        ..Default::default()
    }
}

fn cc_v2(transition: ConfChangeTransition, changes: &[(ConfChangeType, u64)]) -> ConfChangeV2 {
    ConfChangeV2 {
        transition: transition as i32,
        changes: changes
            .iter()
            .map(|&(t, id)| ConfChangeSingle::with(t, id))
            .collect(),
        ..Default::default()
    }
}

fn leave_joint() -> ConfChangeV2 {
    ConfChangeV2::default()
}

/// Voters 1, 2 and learner 3.
fn with_learner() -> Network {
    Network::with_storages(
        &[1, 2, 3],
        |_| MemStorage::new_with_conf_state((vec![1, 2], vec![3])),
        |_| {},
    )
}

fn voters(net: &Network, id: u64) -> (Vec<u64>, Vec<u64>) {
    let cs = &net.nodes[&id].conf_state;
    (cs.voters.clone(), cs.voters_outgoing.clone())
}

// ----- learners --------------------------------------------------------------------------

/// Thesis §4.2.1: a learner (non-voting member) never times out into an election, even
/// when asked to campaign.
#[test]
fn learner_never_campaigns() {
    let mut net = with_learner();
    net.tick(3, 100);
    net.campaign(3);
    assert_eq!(net.state(3), StateRole::Follower);
    assert_eq!(net.raft(3).term(), 0);
    assert!(!net.raft(3).promotable());
}

/// Thesis §4.2.1: a learner receives the log, but its acknowledgement does not count
/// toward the commit quorum.
#[test]
fn learner_receives_log_without_counting_for_commit() {
    let mut net = with_learner();
    net.elect(1);
    net.isolate(2);
    net.propose(1, b"x").unwrap();
    assert_eq!(
        net.raft(3).raft_log().last_index(),
        2,
        "the learner has the entry"
    );
    assert_eq!(
        net.raft(1).raft_log().committed,
        1,
        "1 + learner is not a quorum of {{1, 2}}"
    );
    net.recover();
    net.tick(1, 1);
    assert_eq!(net.applied_data(3), vec![b"x".to_vec()]);
}

/// Thesis §4.2.1: a learner's vote does not count toward an election.
#[test]
fn learner_vote_is_not_counted() {
    let storage = MemStorage::new_with_conf_state((vec![1, 2], vec![3]));
    let mut r = new_raft(1, storage, |_| {});
    r.step(msg(1, 1, MessageType::MsgHup, 0)).unwrap();
    let to: Vec<u64> = read_messages(&mut r).iter().map(|m| m.to).collect();
    assert_eq!(to, vec![2], "vote requests go to voters only");
    r.step(msg(3, 1, MessageType::MsgRequestVoteResponse, 1))
        .unwrap();
    assert_eq!(r.state(), StateRole::Candidate);
    r.step(msg(2, 1, MessageType::MsgRequestVoteResponse, 1))
        .unwrap();
    assert_eq!(r.state(), StateRole::Leader);
}

/// Thesis §4.2.1: a learner promoted to voter may campaign and win.
#[test]
fn promoted_learner_can_campaign_and_win() {
    let mut net = with_learner();
    net.elect(1);
    net.propose_conf_change(1, &cc(AddNode, 3)).unwrap();
    assert_eq!(voters(&net, 3).0, vec![1, 2, 3]);
    assert!(net.raft(3).promotable());
    net.isolate(1);
    net.campaign(3);
    assert_eq!(net.state(3), StateRole::Leader);
}

// ----- single-step changes (§6 / thesis §4.1) ---------------------------------------------

/// Thesis §4.1: a new server added with an empty log catches up on the whole log, and
/// afterwards counts toward the (larger) majority.
#[test]
fn added_node_catches_up_and_joins_the_quorum() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"a").unwrap();
    net.add_joining_node(4, &[1, 2, 3]);
    net.propose_conf_change(1, &cc(AddNode, 4)).unwrap();
    assert_eq!(net.applied_data(4), vec![b"a".to_vec()]);
    assert_eq!(voters(&net, 4).0, vec![1, 2, 3, 4]);
    assert_eq!(net.log_of(4), net.log_of(1));
    // Quorum of four is three: the leader and one follower are not enough.
    net.isolate(3);
    net.isolate(4);
    net.propose(1, b"b").unwrap();
    let committed = net.raft(1).raft_log().committed;
    assert!(committed < net.raft(1).raft_log().last_index());
    net.recover();
    net.tick(1, 1);
    assert_eq!(net.applied_data(4), vec![b"a".to_vec(), b"b".to_vec()]);
}

/// Thesis §4.1: after a node is removed the leader stops replicating to it and the
/// remaining voters form the quorum.
#[test]
fn removed_node_leaves_the_quorum() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose_conf_change(1, &cc(RemoveNode, 3)).unwrap();
    assert_eq!(voters(&net, 1).0, vec![1, 2]);
    assert!(!net.raft(1).tracker().progress.contains_key(&3));
    let before = net.raft(3).raft_log().last_index();
    net.propose(1, b"x").unwrap();
    assert_eq!(net.applied_data(2), vec![b"x".to_vec()]);
    assert_eq!(
        net.raft(3).raft_log().last_index(),
        before,
        "no more appends to 3"
    );
}

/// A configuration change's commit reaches the followers at once even when the leader
/// does not broadcast commits: they apply it without waiting for the next message.
#[test]
fn conf_change_commit_is_broadcast_when_commits_are_not() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.skip_bcast_commit = true);
    net.elect(1);
    net.propose_conf_change(1, &cc(RemoveNode, 3)).unwrap();
    assert_eq!(voters(&net, 1).0, vec![1, 2]);
    assert_eq!(voters(&net, 2).0, vec![1, 2], "applied on the follower too");
}

/// ARCHITECTURE (thesis §4.2.2): a leader that removes itself steps down once it applies
/// the change; the remaining voters elect a new leader among themselves.
#[test]
fn removed_leader_steps_down() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose_conf_change(1, &cc(RemoveNode, 1)).unwrap();
    assert_eq!(net.state(1), StateRole::Follower);
    assert!(!net.raft(1).promotable());
    for _ in 0..40 {
        net.tick_all();
        if net.leader().is_some() {
            break;
        }
    }
    let leader = net.leader().expect("a new leader");
    assert_ne!(leader, 1);
    net.propose(leader, b"after").unwrap();
    assert_eq!(voters(&net, leader).0, vec![2, 3]);
    assert_eq!(net.applied_data(leader), vec![b"after".to_vec()]);
}

/// Thesis §4.1: only one membership change may be pending at a time; while one is
/// appended but not applied, the next is refused with `ProposalDropped` (ARCHITECTURE:
/// refused conf changes are errors, not empty entries). Normal proposals still pass.
#[test]
fn one_pending_conf_change_at_a_time() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.ignore(MessageType::MsgAppend);
    net.propose_conf_change(1, &cc(AddLearnerNode, 4)).unwrap();
    let second = net.propose_conf_change(1, &cc(AddLearnerNode, 5));
    assert!(matches!(second, Err(Error::ProposalDropped)));
    net.propose(1, b"normal").unwrap();
    net.recover();
    net.tick(1, 1);
    assert_eq!(net.nodes[&1].conf_state.learners, vec![4]);
    net.propose_conf_change(1, &cc(AddLearnerNode, 5)).unwrap();
    assert_eq!(net.nodes[&1].conf_state.learners, vec![4, 5]);
}

/// Thesis §4.1: two entries of one proposal cannot both be conf changes accepted while the
/// first is pending.
#[test]
fn two_conf_changes_in_one_proposal_are_refused() {
    let storage = MemStorage::new_with_conf_state((vec![1, 2, 3], vec![]));
    let mut r = new_raft(1, storage, |_| {});
    make_leader(&mut r);
    let last = r.raft_log().last_index();
    let entry = |id| raft_core::eraftpb::Entry {
        entry_type: EntryType::EntryConfChange as i32,
        data: prost::Message::encode_to_vec(&cc(AddLearnerNode, id)).into(),
        ..Default::default()
    };
    let mut m = msg(1, 1, MessageType::MsgPropose, 0);
    m.entries = vec![entry(4), entry(5)];
    assert!(matches!(r.step(m), Err(Error::ProposalDropped)));
    assert_eq!(
        r.raft_log().last_index(),
        last,
        "nothing of the proposal was appended"
    );
    let mut m = msg(1, 1, MessageType::MsgPropose, 0);
    m.entries = vec![entry(4)];
    r.step(m).unwrap();
    assert_eq!(r.pending_conf_index(), last + 1);
}

// ----- joint consensus (thesis §4.3) -------------------------------------------------------

/// Thesis §4.3: several changes at once go through the joint configuration, which is left
/// automatically once it is applied (transition Auto).
#[test]
fn joint_consensus_with_auto_leave() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.add_joining_node(4, &[1, 2, 3]);
    let change = cc_v2(ConfChangeTransition::Auto, &[(AddNode, 4), (RemoveNode, 3)]);
    net.propose_conf_change(1, &change).unwrap();
    for id in [1, 2, 4] {
        assert_eq!(
            voters(&net, id),
            (vec![1, 2, 4], vec![]),
            "node {id} left the joint config"
        );
    }
    let conf_entries: Vec<_> = net
        .raft(1)
        .raft_log()
        .slice(1, net.raft(1).raft_log().last_index() + 1, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.entry_type() == EntryType::EntryConfChangeV2)
        .collect();
    assert_eq!(
        conf_entries.len(),
        2,
        "an enter entry and an automatic leave entry"
    );
    assert!(!net.raft(1).tracker().conf.voters.is_joint());
    net.propose(1, b"x").unwrap();
    assert_eq!(net.applied_data(4), vec![b"x".to_vec()]);
}

/// Thesis §4.3: with transition Explicit the joint configuration stays until the
/// application proposes leaving it; no other change is accepted meanwhile.
#[test]
fn joint_consensus_with_explicit_leave() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.add_joining_node(4, &[1, 2, 3]);
    let change = cc_v2(
        ConfChangeTransition::Explicit,
        &[(AddNode, 4), (RemoveNode, 3)],
    );
    net.propose_conf_change(1, &change).unwrap();
    assert_eq!(
        voters(&net, 1),
        (vec![1, 2, 4], vec![1, 2, 3]),
        "still joint"
    );
    let other = net.propose_conf_change(1, &cc(AddLearnerNode, 5));
    assert!(
        matches!(other, Err(Error::ProposalDropped)),
        "must leave first"
    );
    net.propose_conf_change(1, &leave_joint()).unwrap();
    for id in [1, 2, 4] {
        assert_eq!(voters(&net, id), (vec![1, 2, 4], vec![]));
    }
}

/// Thesis §4.3: leaving is only possible from a joint configuration.
#[test]
fn leave_joint_outside_joint_config_is_refused() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let res = net.propose_conf_change(1, &leave_joint());
    assert!(matches!(res, Err(Error::ProposalDropped)));
    let res = net.raw(2).apply_conf_change(&leave_joint());
    assert!(matches!(res, Err(Error::ConfChangeInvalid(_))));
    assert_eq!(net.raft(2).tracker().conf_state().voters, vec![1, 2, 3]);
}

/// Thesis §4.3: in the joint configuration, commitment needs separate majorities of both
/// the old and the new configuration.
#[test]
fn joint_commit_needs_majorities_of_both_configurations() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.add_joining_node(4, &[1, 2, 3]);
    net.add_joining_node(5, &[1, 2, 3]);
    let change = cc_v2(
        ConfChangeTransition::Explicit,
        &[(AddNode, 4), (AddNode, 5), (RemoveNode, 2), (RemoveNode, 3)],
    );
    net.propose_conf_change(1, &change).unwrap();
    assert_eq!(voters(&net, 1), (vec![1, 4, 5], vec![1, 2, 3]));
    for (cut, other) in [([4, 5], [2, 3]), ([2, 3], [4, 5])] {
        net.isolate(cut[0]);
        net.isolate(cut[1]);
        let before = net.raft(1).raft_log().committed;
        net.propose(1, b"x").unwrap();
        assert_eq!(
            net.raft(1).raft_log().committed,
            before,
            "{other:?} with the leader are a majority of one half only"
        );
        net.recover();
        net.tick(1, 1);
        assert_eq!(
            net.raft(1).raft_log().committed,
            net.raft(1).raft_log().last_index()
        );
    }
}

/// Thesis §4.3: a voter demoted to learner while joint stays a voter of the outgoing half
/// (`learners_next`) and becomes a learner when the joint configuration is left.
#[test]
fn demoted_voter_becomes_learner_on_leaving_joint() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    let change = cc_v2(ConfChangeTransition::Explicit, &[(AddLearnerNode, 3)]);
    net.propose_conf_change(1, &change).unwrap();
    let cs = net.nodes[&1].conf_state.clone();
    assert_eq!(
        (cs.voters, cs.voters_outgoing, cs.learners_next),
        (vec![1, 2], vec![1, 2, 3], vec![3])
    );
    net.propose_conf_change(1, &leave_joint()).unwrap();
    let cs = net.nodes[&3].conf_state.clone();
    assert_eq!(
        (cs.voters, cs.learners, cs.learners_next),
        (vec![1, 2], vec![3], vec![])
    );
    assert!(!net.raft(3).promotable());
}

/// Thesis §4.2.3: a removed server no longer receiving heartbeats campaigns, but with
/// PreVote and CheckQuorum its requests do not disturb the remaining cluster.
#[test]
fn removed_server_does_not_disrupt_with_prevote_and_check_quorum() {
    let mut net = Network::with_config(&[1, 2, 3], |c| {
        c.pre_vote = true;
        c.check_quorum = true;
    });
    net.elect(1);
    net.propose_conf_change(1, &cc(RemoveNode, 3)).unwrap();
    // Node 3 may not have applied its own removal: it keeps ticking and campaigning.
    for _ in 0..50 {
        net.tick_all();
    }
    assert_eq!(net.leader(), Some(1));
    assert_eq!((net.raft(1).term(), net.raft(2).term()), (1, 1));
}
