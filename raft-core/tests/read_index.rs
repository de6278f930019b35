//! Linearizable reads without log writes: ReadIndex (thesis §6.4) in its safe and
//! lease-based forms, served by the leader or forwarded by followers.

#[path = "support/network.rs"]
mod network;

use bytes::Bytes;
use network::{Network, make_leader, msg, new_raft_peers, read_messages};
use raft_core::eraftpb::MessageType::*;
use raft_core::{Error, MemStorage, Raft, ReadOnlyOption, ReadState};

fn read(ctx: &'static [u8], index: u64) -> ReadState {
    ReadState {
        index,
        request_ctx: Bytes::from_static(ctx),
    }
}

fn request(r: &mut Raft<MemStorage>, ctx: &'static [u8]) {
    let mut m = msg(0, r.id(), MsgReadIndex, 0);
    m.context = Bytes::from_static(ctx);
    r.step(m).expect("test helper");
}

fn heartbeat_ack(r: &mut Raft<MemStorage>, from: u64, ctx: &'static [u8]) {
    let mut m = msg(from, r.id(), MsgHeartbeatResponse, r.term());
    m.context = Bytes::from_static(ctx);
    r.step(m).expect("test helper");
}

/// Thesis §6.4 (Safe): the leader confirms it is still leader with a round of heartbeats
/// acknowledged by a majority before answering with its commit index.
#[test]
fn safe_read_waits_for_heartbeat_quorum() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"x").unwrap();
    net.ignore(MsgHeartbeatResponse);
    net.raw(1).read_index(Bytes::from_static(b"ctx")).unwrap();
    net.drain();
    assert!(
        net.nodes[&1].read_states.is_empty(),
        "no quorum confirmed leadership yet"
    );
    net.recover();
    net.tick(1, 1); // the next heartbeat carries the pending read's context
    assert_eq!(net.nodes[&1].read_states, vec![read(b"ctx", 2)]);
}

/// Thesis §6.4: the heartbeat acknowledgement of one follower plus the leader is a
/// quorum of three.
#[test]
fn safe_read_is_confirmed_by_one_follower_of_three() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    for p in [2, 3] {
        let mut m = msg(p, 1, MsgAppendResponse, 1);
        m.index = 1;
        r.step(m).unwrap();
    }
    read_messages(&mut r);
    request(&mut r, b"a");
    let hbs: Vec<_> = read_messages(&mut r)
        .into_iter()
        .filter(|m| m.msg_type() == MsgHeartbeat)
        .collect();
    assert_eq!(hbs.len(), 2);
    assert!(hbs.iter().all(|m| &m.context[..] == b"a"));
    assert!(r.take_read_states().is_empty());
    heartbeat_ack(&mut r, 2, b"a");
    assert_eq!(r.take_read_states(), vec![read(b"a", 1)]);
}

/// Thesis §6.4: a new leader does not know the commit index of its term until an entry
/// of its term commits, so reads wait until its empty entry commits.
#[test]
fn read_waits_until_leader_commits_in_its_term() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    request(&mut r, b"early");
    let msgs = read_messages(&mut r);
    assert!(
        msgs.iter().all(|m| m.msg_type() != MsgHeartbeat),
        "read held back"
    );
    heartbeat_ack(&mut r, 2, b"early");
    assert!(r.take_read_states().is_empty());
    let mut ack = msg(2, 1, MsgAppendResponse, 1);
    ack.index = 1;
    r.step(ack).unwrap();
    assert_eq!(r.raft_log().committed, 1);
    let msgs = read_messages(&mut r);
    assert!(
        msgs.iter()
            .any(|m| m.msg_type() == MsgHeartbeat && &m.context[..] == b"early"),
        "the held read is released once the empty entry commits"
    );
    heartbeat_ack(&mut r, 2, b"early");
    assert_eq!(r.take_read_states(), vec![read(b"early", 1)]);
}

/// Thesis §6.4: a quorum acknowledging a later heartbeat also confirms every earlier
/// pending read, which are answered in order.
#[test]
fn later_confirmation_releases_earlier_reads_in_order() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    let mut ack = msg(2, 1, MsgAppendResponse, 1);
    ack.index = 1;
    r.step(ack).unwrap();
    read_messages(&mut r);
    request(&mut r, b"a");
    request(&mut r, b"b");
    read_messages(&mut r);
    heartbeat_ack(&mut r, 3, b"b");
    assert_eq!(r.take_read_states(), vec![read(b"a", 1), read(b"b", 1)]);
    heartbeat_ack(&mut r, 2, b"a");
    assert!(r.take_read_states().is_empty(), "answered once only");
}

/// Thesis §6.4.1 (LeaseBased): with CheckQuorum, the leader trusts its lease and answers
/// without a heartbeat round.
#[test]
fn lease_based_read_needs_no_round_trip() {
    let mut net = Network::with_config(&[1, 2, 3], |c| {
        c.check_quorum = true;
        c.read_only_option = ReadOnlyOption::LeaseBased;
    });
    net.elect(1);
    net.ignore(MsgHeartbeat);
    net.ignore(MsgHeartbeatResponse);
    net.raw(1).read_index(Bytes::from_static(b"lease")).unwrap();
    net.drain();
    assert_eq!(net.nodes[&1].read_states, vec![read(b"lease", 1)]);
}

/// Thesis §6.4: a follower forwards a read to the leader and receives the read index
/// in return; it serves the read once it has applied that index.
#[test]
fn follower_read_is_forwarded_to_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.propose(1, b"x").unwrap();
    net.raw(2).read_index(Bytes::from_static(b"f")).unwrap();
    net.drain();
    assert_eq!(net.nodes[&2].read_states, vec![read(b"f", 2)]);
    assert!(net.nodes[&1].read_states.is_empty());
    assert!(net.raft(2).raft_log().applied >= 2);
}

/// Thesis §6.4: without a known leader there is nobody to confirm a read: it is refused.
#[test]
fn read_without_leader_is_dropped() {
    let mut net = Network::new(&[1, 2, 3]);
    let res = net.raw(2).read_index(Bytes::from_static(b"x"));
    assert!(matches!(res, Err(Error::ProposalDropped)));
    net.isolate(1);
    net.campaign(1);
    let res = net.raw(1).read_index(Bytes::from_static(b"x"));
    assert!(
        matches!(res, Err(Error::ProposalDropped)),
        "a candidate cannot serve reads"
    );
}

/// Thesis §6.4: a single-voter leader is its own quorum and answers at once.
#[test]
fn single_voter_answers_reads_at_once() {
    let mut net = Network::new(&[1]);
    net.elect(1);
    net.raw(1).read_index(Bytes::from_static(b"solo")).unwrap();
    net.drain();
    assert_eq!(net.nodes[&1].read_states, vec![read(b"solo", 1)]);
}
