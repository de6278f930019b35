//! Malformed or unexpected input — wrong terms, unknown peers and message types,
//! out-of-range indexes, corrupt entries and snapshots — never panics a node and never
//! breaks safety. Unit cases first, then property tests that feed generated messages into
//! a live three-node network.

#[path = "support/network.rs"]
mod network;

use network::{
    Network, ent, make_leader, msg, new_raft, new_raft_peers, read_messages, snapshot,
    storage_with_log,
};
use proptest::prelude::*;
use raft_core::eraftpb::{
    ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft_core::{Error, StateRole};

use MessageType::*;

/// Unknown message type numbers and `MsgUnspecified` (a default or corrupt message) are
/// refused with `InvalidMessage`, never mistaken for another type.
#[test]
fn unknown_and_unspecified_message_types_are_invalid() {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    for t in [0, 20, 99, -1, i32::MAX] {
        let mut m = msg(2, 1, MsgAppend, 1);
        m.msg_type = t;
        assert!(
            matches!(net.raw(1).step(m.clone()), Err(Error::InvalidMessage(_))),
            "type {t}"
        );
        assert!(
            matches!(net.raw(2).raft_mut().step(m), Err(Error::InvalidMessage(_))),
            "type {t}"
        );
    }
    assert_eq!(net.state(1), StateRole::Leader);
}

/// §5.1: a message that carries no term (term 0) is only meaningful for local input and
/// forwarded requests; a peer message of another type without a term must not be taken
/// as coming from the current term — in particular it must never lower a node's term.
#[test]
fn termless_peer_message_never_lowers_term_or_installs_leader() {
    for t in [
        MsgAppend,
        MsgHeartbeat,
        MsgSnapshot,
        MsgTimeoutNow,
        MsgRequestVote,
    ] {
        let mut r = new_raft_peers(1, &[1, 2, 3]);
        r.become_candidate();
        r.become_candidate(); // term 2
        let mut m = msg(2, 1, t, 0);
        m.snapshot = Some(Box::new(snapshot(5, 1, &[1, 2, 3])));
        let _ = r.step(m);
        assert_eq!(r.term(), 2, "{t:?} without a term changed the term");
        assert_eq!(r.vote(), 1, "{t:?} without a term reset the vote");
        assert_eq!(
            r.raft_log().last_index(),
            0,
            "{t:?} without a term changed the log"
        );
        assert_ne!(r.leader_id(), 2, "{t:?} without a term installed a leader");
    }
}

/// A message from the highest possible term must not overflow the term when the node
/// later campaigns: the node refuses to campaign rather than wrap or panic.
#[test]
fn highest_possible_term_does_not_overflow() {
    for pre_vote in [false, true] {
        let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[], 0), |c| {
            c.pre_vote = pre_vote
        });
        let _ = r.step(msg(2, 1, MsgHeartbeat, u64::MAX));
        assert_eq!(r.term(), u64::MAX);
        for _ in 0..40 {
            r.tick().unwrap();
        }
        let _ = r.step(msg(1, 1, MsgHup, 0));
        assert_eq!(r.term(), u64::MAX, "the term never wraps");
        assert_ne!(r.state(), StateRole::Leader);
        read_messages(&mut r);
    }
}

/// Appends with indexes past the log, or at the very end of the index space, are rejected
/// with a hint; they never panic or change the log.
#[test]
fn append_with_out_of_range_index_is_rejected() {
    for index in [5, 1 << 40, u64::MAX - 1, u64::MAX] {
        let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1, 1], 1), |_| {});
        let mut m = msg(2, 1, MsgAppend, 1);
        (m.index, m.log_term, m.commit) = (index, 1, u64::MAX);
        m.entries = vec![ent(index.wrapping_add(1), 1)];
        r.step(m).unwrap();
        let resp = read_messages(&mut r);
        assert_eq!(resp.len(), 1);
        assert!(resp[0].reject);
        assert_eq!(resp[0].reject_hint, 2, "hint is our last index");
        assert_eq!((r.raft_log().last_index(), r.raft_log().committed), (2, 0));
    }
}

/// Entries whose indexes do not follow the append's previous index are malformed and
/// refused; an append reaching back before the commit index never rewrites committed
/// entries, while the uncommitted suffix may still be replaced (§5.3).
#[test]
fn corrupt_entry_indexes_and_committed_overwrites_are_refused() {
    let storage = storage_with_log(&[1, 2, 3], &[1, 1, 1], 1);
    storage.wl().set_commit(2);
    let mut r = new_raft(1, storage, |_| {});
    let mut gap = msg(2, 1, MsgAppend, 1);
    (gap.index, gap.log_term, gap.entries) = (3, 1, vec![ent(4, 1), ent(6, 1)]);
    assert!(matches!(r.step(gap), Err(Error::InvalidMessage(_))));
    assert_eq!(r.raft_log().last_index(), 3);
    let mut rewrite = msg(2, 1, MsgAppend, 2);
    (rewrite.index, rewrite.log_term, rewrite.entries) = (1, 1, vec![ent(2, 2), ent(3, 2)]);
    r.step(rewrite).unwrap();
    assert_eq!(r.raft_log().term(2).unwrap(), 1, "committed entry 2 kept");
    let resp = read_messages(&mut r);
    assert_eq!(
        (resp[0].index, resp[0].reject),
        (2, false),
        "answered with the commit index"
    );
    let mut replace = msg(2, 1, MsgAppend, 2);
    (replace.index, replace.log_term, replace.entries) = (2, 1, vec![ent(3, 2)]);
    r.step(replace).unwrap();
    let log = r.raft_log();
    assert_eq!((log.term(2).unwrap(), log.term(3).unwrap()), (1, 2));
}

/// A heartbeat's commit index past the follower's log is ignored rather than trusted.
#[test]
fn heartbeat_commit_past_last_index_is_ignored() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1, 1], 1), |_| {});
    let mut m = msg(2, 1, MsgHeartbeat, 1);
    m.commit = 100;
    r.step(m).unwrap();
    assert_eq!(r.raft_log().committed, 0);
    let mut m = msg(2, 1, MsgHeartbeat, 1);
    m.commit = 2;
    r.step(m).unwrap();
    assert_eq!(r.raft_log().committed, 2);
}

/// Acknowledgements past the leader's log, rejections with absurd hints and messages from
/// peers the leader does not track change nothing.
#[test]
fn leader_ignores_impossible_responses_and_unknown_peers() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    let before = r.tracker().progress.clone();
    let mut ack = msg(2, 1, MsgAppendResponse, 1);
    ack.index = u64::MAX;
    r.step(ack).unwrap();
    let mut reject = msg(3, 1, MsgAppendResponse, 1);
    (
        reject.reject,
        reject.index,
        reject.reject_hint,
        reject.log_term,
    ) = (true, u64::MAX, u64::MAX, u64::MAX);
    r.step(reject).unwrap();
    for t in [
        MsgAppendResponse,
        MsgHeartbeatResponse,
        MsgTransferLeader,
        MsgRequestVoteResponse,
    ] {
        let mut m = msg(9, 1, t, 1);
        m.index = 1;
        r.step(m).unwrap();
    }
    assert_eq!(r.state(), StateRole::Leader);
    assert_eq!(r.raft_log().committed, 0, "nothing was really acknowledged");
    assert_eq!(r.tracker().progress.len(), 3);
    assert_eq!(r.tracker().progress[&2].matched, before[&2].matched);
    assert_eq!(r.lead_transferee(), 0);
}

/// A snapshot message without a snapshot or without metadata is invalid; a snapshot that
/// does not include the node, or an impossible membership, is ignored; none panics.
#[test]
fn malformed_snapshots_are_refused() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    assert!(matches!(
        r.step(msg(2, 1, MsgSnapshot, 1)),
        Err(Error::InvalidMessage(_))
    ));
    let mut m = msg(2, 1, MsgSnapshot, 1);
    m.snapshot = Some(Box::new(Snapshot::default()));
    assert!(matches!(r.step(m), Err(Error::InvalidMessage(_))));
    let mut m = msg(2, 1, MsgSnapshot, 1);
    m.snapshot = Some(Box::new(snapshot(5, 1, &[2, 3])));
    r.step(m).unwrap();
    assert_eq!(
        r.raft_log().last_index(),
        0,
        "a snapshot without us is ignored"
    );
    let mut m = msg(2, 1, MsgSnapshot, 1);
    let mut s = snapshot(5, 1, &[]);
    s.metadata
        .as_mut()
        .unwrap()
        .conf_state
        .as_mut()
        .unwrap()
        .learners = vec![1];
    m.snapshot = Some(Box::new(s));
    assert!(r.step(m).is_err(), "a voterless membership is refused");
    assert_eq!(r.raft_log().last_index(), 0);
    for index in [u64::MAX, u64::MAX - 1] {
        let mut m = msg(2, 1, MsgSnapshot, 1);
        m.snapshot = Some(Box::new(snapshot(index, 1, &[1, 2, 3])));
        let _ = r.step(m);
        read_messages(&mut r);
        for _ in 0..30 {
            let _ = r.tick();
        }
        read_messages(&mut r);
    }
}

/// A proposed conf change whose payload does not decode is refused as invalid, and an
/// unknown entry type too; the log is unchanged.
#[test]
fn corrupt_conf_change_proposals_are_refused() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    make_leader(&mut r);
    let last = r.raft_log().last_index();
    for entry_type in [
        EntryType::EntryConfChange as i32,
        EntryType::EntryConfChangeV2 as i32,
        7,
    ] {
        let mut m = msg(1, 1, MsgPropose, 0);
        m.entries = vec![Entry {
            entry_type,
            data: vec![0xff; 7].into(),
            ..Default::default()
        }];
        assert!(
            matches!(r.step(m), Err(Error::InvalidMessage(_))),
            "entry type {entry_type}"
        );
    }
    let empty = msg(1, 1, MsgPropose, 0);
    assert!(
        matches!(r.step(empty), Err(Error::InvalidMessage(_))),
        "proposal without entries"
    );
    assert_eq!(r.raft_log().last_index(), last);
}

// ----- property tests --------------------------------------------------------------------

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..4u64,
        0..40u64,
        Just(u64::MAX),
        Just(u64::MAX - 1),
        any::<u64>()
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0..4i32,
        number(),
        number(),
        prop::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(entry_type, index, term, data)| Entry {
            entry_type,
            index,
            term,
            data: data.into(),
            ..Default::default()
        })
}

fn snapshot_strategy() -> impl Strategy<Value = Option<Snapshot>> {
    prop::option::of(
        (number(), number(), prop::collection::vec(0..5u64, 0..4)).prop_map(
            |(index, term, voters)| Snapshot {
                data: Default::default(),
                metadata: Some(SnapshotMetadata {
                    conf_state: Some(ConfState {
                        voters,
                        ..Default::default()
                    }),
                    index,
                    term,
                }),
            },
        ),
    )
}

/// Any message at all: type numbers beyond the enum, any sender, term and index.
fn any_message() -> impl Strategy<Value = Message> {
    (
        (-1..24i32, 0..6u64, 1..4u64, number(), number(), number()),
        (
            prop::collection::vec(entry(), 0..3),
            number(),
            snapshot_strategy(),
            any::<bool>(),
            number(),
        ),
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(
            |(
                (msg_type, from, to, term, log_term, index),
                (entries, commit, snapshot, reject, reject_hint),
                context,
            )| {
                Message {
                    msg_type,
                    to,
                    from,
                    term,
                    log_term,
                    index,
                    entries,
                    commit,
                    snapshot: snapshot.map(Box::new),
                    reject,
                    reject_hint,
                    context: context.into(),
                }
            },
        )
}

#[derive(Debug, Clone)]
enum Action {
    Deliver(Box<Message>),
    Tick(u64),
    Propose(u64),
    Replay(usize),
}

fn actions(message: impl Strategy<Value = Message>) -> impl Strategy<Value = Vec<Action>> {
    prop::collection::vec(
        prop_oneof![
            4 => message.prop_map(|m| Action::Deliver(Box::new(m))),
            2 => (1..4u64).prop_map(Action::Tick),
            1 => (1..4u64).prop_map(Action::Propose),
            2 => any::<usize>().prop_map(Action::Replay),
        ],
        1..40,
    )
}

fn live_network(pre_vote: bool) -> Network {
    let mut net = Network::with_config(&[1, 2, 3], |c| {
        c.pre_vote = pre_vote;
        c.check_quorum = pre_vote;
    });
    net.elect(1);
    net.propose(1, b"before").expect("healthy cluster");
    net
}

fn run(net: &mut Network, actions: Vec<Action>, stale_terms_only: bool) {
    for (i, action) in actions.into_iter().enumerate() {
        match action {
            Action::Deliver(m) => {
                let mut m = *m;
                if stale_terms_only {
                    // A faulty but honest network: content is arbitrary, but the message
                    // comes from a term the receiver has left.
                    let term = net.raft(m.to).term();
                    if term < 2 {
                        continue;
                    }
                    m.term = 1 + m.term % (term - 1);
                }
                net.send(vec![m]);
            }
            Action::Tick(id) => net.tick(id, 1),
            Action::Propose(id) => {
                let _ = net.propose(id, format!("p{i}").as_bytes());
            }
            Action::Replay(k) => {
                if !net.delivered.is_empty() {
                    let m = net.delivered[k % net.delivered.len()].clone();
                    net.send(vec![m]);
                }
            }
        }
        net.assert_safety();
    }
}

/// After the faults stop, the cluster elects a leader and commits a new proposal on
/// every node.
fn assert_recovers(net: &mut Network) {
    for _ in 0..200 {
        if net
            .leader()
            .is_some_and(|l| net.propose(l, b"after").is_ok())
        {
            break;
        }
        net.tick_all();
    }
    for _ in 0..20 {
        net.tick_all();
    }
    for id in [1, 2, 3] {
        assert!(
            net.applied_data(id).iter().any(|d| d == b"after"),
            "node {id} applied the proposal made after the faults"
        );
    }
    net.assert_safety();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Arbitrary messages of any type (including unknown type numbers), from any sender,
    /// with any term, indexes, entries, commit index and snapshot, delivered to the nodes
    /// of a live cluster among ticks and proposals, never panic a node, and every node
    /// keeps `applied <= committed <= last_index`. (Safety across nodes is not asserted:
    /// Raft does not tolerate forged messages from the current term, which may
    /// impersonate a leader or a voter.)
    #[test]
    fn arbitrary_messages_never_panic(pre_vote in any::<bool>(), actions in actions(any_message())) {
        let mut net = live_network(pre_vote);
        for action in actions {
            match action {
                Action::Deliver(m) => net.send(vec![*m]),
                Action::Tick(id) => net.tick(id, 1),
                Action::Propose(id) => { let _ = net.propose(id, b"p"); }
                Action::Replay(k) => {
                    let m = net.delivered[k % net.delivered.len()].clone();
                    net.send(vec![m]);
                }
            }
            for id in [1, 2, 3] {
                let log = net.raft(id).raft_log();
                prop_assert!(log.applied <= log.committed && log.committed <= log.last_index());
                prop_assert!(log.persisted <= log.last_index());
            }
        }
    }

    /// Messages from stale terms with arbitrary content (unknown types, out-of-range
    /// indexes, bogus entries, snapshots and commit indexes), together with duplicated,
    /// delayed and reordered replays of real traffic, never break safety: committed
    /// prefixes and applied entries agree on every node, and the cluster still makes
    /// progress afterwards.
    #[test]
    fn stale_and_replayed_messages_preserve_safety(pre_vote in any::<bool>(), actions in actions(any_message())) {
        let mut net = live_network(pre_vote);
        run(&mut net, actions, true);
        assert_recovers(&mut net);
    }
}
