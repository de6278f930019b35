//! End-to-end checks of the Ready loop on the test network.

#[path = "support/network.rs"]
mod network;

use network::Network;
use raft_core::StateRole;

#[test]
fn three_nodes_elect_and_replicate() {
    let mut net = Network::new(&[1, 2, 3]);
    net.campaign(1);
    assert_eq!(net.state(1), StateRole::Leader);
    assert_eq!(net.state(2), StateRole::Follower);
    for i in 0..10u8 {
        net.propose(1, &[i]).unwrap();
    }
    for id in [1, 2, 3] {
        let data: Vec<u8> = net.nodes[&id].applied.iter().map(|e| e.data[0]).collect();
        assert_eq!(data, (0..10).collect::<Vec<u8>>(), "node {id} applied log");
    }
    assert_eq!(
        net.raft(2).raft_log().committed,
        11,
        "no-op plus ten entries"
    );
}

#[test]
fn follower_forwards_proposals() {
    let mut net = Network::new(&[1, 2, 3]);
    net.campaign(1);
    net.propose(3, b"via-follower").unwrap();
    assert_eq!(&net.nodes[&1].applied[0].data[..], b"via-follower");
}

#[test]
fn restart_keeps_persisted_state() {
    let mut net = Network::new(&[1, 2, 3]);
    net.campaign(1);
    net.propose(1, b"a").unwrap();
    net.restart(2);
    assert_eq!(net.raft(2).term(), 1);
    assert_eq!(net.raft(2).raft_log().last_index(), 2);
    net.propose(1, b"b").unwrap();
    assert_eq!(net.raft(2).raft_log().committed, 3);
}

/// A full inflight window whose appends were all lost must not stall replication: the
/// heartbeat response prompts an empty append, whose rejection resets the progress.
#[test]
fn lost_appends_filling_the_window_do_not_stall_replication() {
    use raft_core::eraftpb::MessageType;
    let mut net = Network::with_config(&[1, 2, 3], |c| c.max_inflight_msgs = 2);
    net.campaign(1);
    net.set_hook(|m| !(m.from == 1 && m.to == 2 && m.msg_type() == MessageType::MsgAppend));
    for i in 0..5u8 {
        net.propose(1, &[i]).unwrap();
    }
    let leader_commit = net.raft(1).raft_log().committed;
    assert!(net.raft(2).raft_log().committed < leader_commit);
    net.recover();
    // Only heartbeats go out now: the window toward 2 is full of lost appends.
    for _ in 0..3 {
        net.tick(1, 1);
    }
    assert_eq!(
        net.raft(2).raft_log().committed,
        leader_commit,
        "node 2 caught up"
    );
    assert_eq!(net.nodes[&2].applied.len(), 5);
}
