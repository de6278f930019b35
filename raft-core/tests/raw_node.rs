//! The application interface: config validation, what `RawNode::step` accepts, and the
//! Ready contract with asynchronous persistence (ARCHITECTURE: `messages` versus
//! `persisted_messages`; commit and apply never run ahead of local persistence).

use raft_core::eraftpb::{Message, MessageType};
use raft_core::{Config, Error, MemStorage, RawNode, StateRole};

fn node(id: u64, voters: &[u64]) -> RawNode<MemStorage> {
    let mut cfg = Config::new(id);
    cfg.pre_vote = false;
    RawNode::new(
        &cfg,
        MemStorage::new_with_conf_state((voters.to_vec(), vec![])),
    )
    .expect("valid config")
}

fn persist(node: &RawNode<MemStorage>, rd: &raft_core::Ready) {
    let s = node.store().clone();
    s.wl().append(rd.entries()).expect("append");
    if let Some(hs) = rd.hard_state() {
        s.wl().set_hard_state(*hs);
    }
}

/// `RawNode::new` refuses an invalid config with `ConfigInvalid` naming the setting (each
/// setting's check is `Config::validate`'s unit test).
#[test]
fn invalid_config_is_refused() {
    let cfg = Config {
        max_committed_bytes_per_ready: 0,
        ..Config::new(1)
    };
    match RawNode::new(&cfg, MemStorage::new()) {
        Err(Error::ConfigInvalid(msg)) => {
            assert!(msg.contains("max_committed_bytes_per_ready"), "{msg}");
        }
        other => panic!("expected ConfigInvalid, got {:?}", other.map(|_| ())),
    }
}

/// A persisted commit index past the persisted log is refused at start-up.
#[test]
fn commit_past_log_is_refused_at_startup() {
    let s = MemStorage::new_with_conf_state((vec![1], vec![]));
    s.wl().set_commit(5);
    s.wl().set_hard_state(raft_core::eraftpb::HardState {
        term: 1,
        vote: 0,
        commit: 5,
    });
    assert!(matches!(
        RawNode::new(&Config::new(1), s),
        Err(Error::ConfigInvalid(_))
    ));
}

/// `RawNode::step` refuses local-only message types from the network.
#[test]
fn step_refuses_local_messages() {
    let mut n = node(1, &[1, 2, 3]);
    for t in [
        MessageType::MsgHup,
        MessageType::MsgBeat,
        MessageType::MsgUnreachable,
        MessageType::MsgSnapStatus,
        MessageType::MsgCheckQuorum,
    ] {
        let m = Message {
            msg_type: t as i32,
            from: 2,
            term: 1,
            ..Default::default()
        };
        assert!(matches!(n.step(m), Err(Error::StepLocalMsg)), "{t:?}");
    }
    assert_eq!(
        n.raft().state(),
        StateRole::Follower,
        "MsgHup did not start an election"
    );
}

/// `RawNode::step` refuses responses from peers outside the configuration.
#[test]
fn step_refuses_responses_from_unknown_peers() {
    let mut n = node(1, &[1, 2, 3]);
    for t in [
        MessageType::MsgAppendResponse,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgRequestPreVoteResponse,
    ] {
        let m = Message {
            msg_type: t as i32,
            from: 9,
            term: 1,
            ..Default::default()
        };
        assert!(matches!(n.step(m), Err(Error::StepPeerNotFound)), "{t:?}");
    }
}

/// ARCHITECTURE: a candidate's vote requests may leave only after its new term and vote
/// are durable, so they come in `persisted_messages`, with a hard state to sync.
#[test]
fn vote_requests_wait_for_persistence() {
    let mut n = node(1, &[1, 2, 3]);
    n.campaign().unwrap();
    let rd = n.ready().unwrap();
    assert!(rd.messages().is_empty());
    assert_eq!(rd.persisted_messages().len(), 2);
    assert!(rd.must_sync());
    assert_eq!(rd.hard_state().unwrap().vote, 1);
}

/// ARCHITECTURE: a leader whose term is durable sends appends before persisting (they are
/// in `messages`); its first Ready as leader still waits for the term to be durable.
#[test]
fn durable_leader_sends_appends_before_persisting() {
    let mut n = node(1, &[1, 2]);
    n.campaign().unwrap();
    let rd = n.ready().unwrap();
    persist(&n, &rd);
    n.advance(rd).unwrap();
    let vote = Message {
        msg_type: MessageType::MsgRequestVoteResponse as i32,
        from: 2,
        to: 1,
        term: 1,
        ..Default::default()
    };
    n.step(vote).unwrap();
    assert_eq!(n.raft().state(), StateRole::Leader);
    let rd = n.ready().unwrap();
    assert!(
        !rd.messages().is_empty(),
        "the term is durable: the first append leaves now"
    );
    persist(&n, &rd);
    n.advance(rd).unwrap();
    let ack = Message {
        msg_type: MessageType::MsgAppendResponse as i32,
        from: 2,
        to: 1,
        term: 1,
        index: 1,
        ..Default::default()
    };
    n.step(ack).unwrap();
    let rd = n.ready().unwrap();
    persist(&n, &rd);
    n.advance(rd).unwrap();
    n.propose(Default::default(), "x".into()).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(
        rd.messages().len(),
        1,
        "the append leaves before persisting"
    );
    assert_eq!(rd.messages()[0].msg_type(), MessageType::MsgAppend);
    assert!(rd.persisted_messages().is_empty());
}

/// ARCHITECTURE: with several Readies outstanding, nothing commits or is handed out for
/// applying past what `on_persist_ready` confirmed; confirming the later Ready confirms
/// the earlier ones too.
#[test]
fn async_persistence_with_several_readies_outstanding() {
    let mut n = node(1, &[1]);
    n.campaign().unwrap();
    let rd = n.ready().unwrap();
    persist(&n, &rd);
    n.advance(rd).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.committed_entries().len(), 1, "the empty entry");
    n.advance(rd).unwrap();
    n.propose(Default::default(), "a".into()).unwrap();
    let rd1 = n.ready().unwrap();
    n.propose(Default::default(), "b".into()).unwrap();
    let rd2 = n.ready().unwrap();
    assert_eq!((rd1.entries().len(), rd2.entries().len()), (1, 1));
    assert!(rd2.committed_entries().is_empty());
    assert_eq!(
        n.raft().raft_log().committed,
        1,
        "the leader's own copy is not durable yet"
    );
    assert!(!n.has_ready());
    persist(&n, &rd1);
    persist(&n, &rd2);
    n.on_persist_ready(rd1.number()).unwrap();
    assert_eq!(n.raft().raft_log().committed, 2);
    n.on_persist_ready(rd2.number()).unwrap();
    assert_eq!(n.raft().raft_log().committed, 3);
    let rd3 = n.ready().unwrap();
    let data: Vec<_> = rd3
        .committed_entries()
        .iter()
        .map(|e| e.data.to_vec())
        .collect();
    assert_eq!(data, vec![b"a".to_vec(), b"b".to_vec()]);
    n.advance_apply_to(2).unwrap();
    assert_eq!(n.raft().raft_log().applied, 2);
    n.advance_apply().unwrap();
    assert_eq!(n.raft().raft_log().applied, 3);
}

/// ARCHITECTURE: a follower learns a commit index beyond what it has persisted, but hands
/// out for applying only entries it has persisted itself; its acknowledgement waits in
/// `persisted_messages`.
#[test]
fn follower_applies_only_persisted_entries() {
    let mut n = node(2, &[1, 2]);
    let append = Message {
        msg_type: MessageType::MsgAppend as i32,
        from: 1,
        to: 2,
        term: 1,
        entries: vec![raft_core::eraftpb::Entry {
            index: 1,
            term: 1,
            data: "a".into(),
            ..Default::default()
        }],
        commit: 1,
        ..Default::default()
    };
    n.step(append).unwrap();
    assert_eq!(n.raft().raft_log().committed, 1);
    let rd = n.ready().unwrap();
    assert!(
        rd.committed_entries().is_empty(),
        "entry 1 is not persisted yet"
    );
    assert!(rd.messages().is_empty());
    assert_eq!(
        rd.persisted_messages().len(),
        1,
        "the ack waits for persistence"
    );
    persist(&n, &rd);
    n.on_persist_ready(rd.number()).unwrap();
    let rd = n.ready().unwrap();
    assert_eq!(rd.committed_entries().len(), 1);
}

/// `has_ready` is false when there is nothing to do, and `status` reports progress only
/// for a leader.
#[test]
fn quiet_node_has_no_ready_and_status_reflects_role() {
    let mut n = node(1, &[1]);
    assert!(!n.has_ready());
    assert!(n.status().progress.is_none());
    n.campaign().unwrap();
    while n.has_ready() {
        let rd = n.ready().unwrap();
        persist(&n, &rd);
        n.advance(rd).unwrap();
    }
    assert_eq!(n.status().soft_state.raft_state, StateRole::Leader);
    assert!(n.status().progress.is_some());
    assert_eq!(n.status().applied, 1);
}
