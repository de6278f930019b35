//! Log compaction and snapshots (paper §7, thesis §5): the leader sends a snapshot to a
//! follower whose next entries were compacted away, the follower restores it, and stale
//! snapshots are ignored.

#[path = "support/network.rs"]
mod network;

use bytes::Bytes;
use network::{Network, msg, new_raft, new_raft_peers, read_messages, snapshot, storage_with_log};
use raft_core::eraftpb::MessageType::*;
use raft_core::tracker::ProgressState;
use raft_core::{SnapshotStatus, StateRole, Storage};

/// A cluster where node 3 missed entries 2..=4, which the leader has compacted into a
/// snapshot at index 4.
fn compacted_cluster() -> Network {
    let mut net = Network::new(&[1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for d in [b"a", b"b", b"c"] {
        net.propose(1, d).expect("test helper");
    }
    let storage = net.nodes[&1].storage.clone();
    storage
        .wl()
        .create_snapshot(4, None, Bytes::from_static(b"state"))
        .expect("test helper");
    storage.wl().compact(4).expect("test helper");
    assert_eq!(net.raft(1).raft_log().first_index(), 4);
    net.recover();
    net
}

/// §7: the leader sends a snapshot to a follower that needs entries it has discarded;
/// the follower replaces its log with it and then follows normal replication.
#[test]
fn leader_sends_snapshot_to_follower_behind_compaction() {
    let mut net = compacted_cluster();
    net.tick(1, 1);
    assert!(
        net.delivered
            .iter()
            .any(|m| m.msg_type() == MsgSnapshot && m.to == 3)
    );
    let log = net.raft(3).raft_log();
    assert_eq!((log.first_index(), log.committed, log.applied), (5, 4, 4));
    let stored = net.nodes[&3].storage.snapshot(0).unwrap().data;
    assert_eq!(&stored[..], b"state");
    let pr = &net.raft(1).tracker().progress[&3];
    assert_eq!((pr.state, pr.matched), (ProgressState::Replicate, 4));
    net.propose(1, b"d").unwrap();
    assert_eq!(net.applied_data(3), vec![b"d".to_vec()]);
    net.assert_safety();
}

/// §7: while a snapshot is in flight the leader sends no appends to that follower.
#[test]
fn snapshot_in_flight_pauses_appends() {
    let mut net = compacted_cluster();
    net.ignore(MsgSnapshot);
    net.tick(1, 1);
    assert_eq!(
        net.raft(1).tracker().progress[&3].state,
        ProgressState::Snapshot
    );
    net.delivered.clear();
    net.propose(1, b"d").unwrap();
    assert!(
        net.delivered
            .iter()
            .all(|m| !(m.msg_type() == MsgAppend && m.to == 3))
    );
}

/// §7: `report_snapshot(Finish)` moves the follower back to probing just past the
/// snapshot; `Failure` forgets the snapshot and probes from what the follower matched.
/// Either way the leader waits for the follower's answer before probing.
#[test]
fn report_snapshot_moves_progress_to_probe() {
    for (status, next) in [(SnapshotStatus::Finish, 5), (SnapshotStatus::Failure, 2)] {
        let mut net = compacted_cluster();
        net.ignore(MsgSnapshot);
        net.tick(1, 1);
        let pr = &net.raft(1).tracker().progress[&3];
        assert_eq!(
            (pr.state, pr.pending_snapshot),
            (ProgressState::Snapshot, 4)
        );
        net.raw(1).report_snapshot(3, status);
        let pr = &net.raft(1).tracker().progress[&3];
        assert_eq!(pr.state, ProgressState::Probe, "{status:?}");
        assert_eq!(pr.next_idx, next, "{status:?}");
        assert!(
            pr.is_paused(),
            "{status:?}: waits for the follower before probing"
        );
    }
}

/// §7: a follower that receives a snapshot beyond its log discards the log and takes the
/// snapshot's index, term and membership.
#[test]
fn follower_restores_snapshot() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    let mut m = msg(2, 1, MsgSnapshot, 2);
    m.snapshot = Some(Box::new(snapshot(11, 2, &[1, 2])));
    r.step(m).unwrap();
    let log = r.raft_log();
    assert_eq!((log.last_index(), log.committed), (11, 11));
    assert_eq!(log.term(11).unwrap(), 2);
    assert_eq!(r.tracker().conf_state().voters, vec![1, 2]);
    assert_eq!(r.leader_id(), 2);
    let resp = read_messages(&mut r);
    assert_eq!(resp.len(), 1);
    assert_eq!(
        (resp[0].msg_type(), resp[0].index, resp[0].reject),
        (MsgAppendResponse, 11, false)
    );
    assert_eq!(r.store().rl().hard_state().commit, 11);
    assert_eq!(
        r.raft_log().applied,
        11,
        "a persisted snapshot counts as applied"
    );
}

/// §7: a snapshot that is not newer than what the follower has committed is ignored;
/// the follower answers with its commit index.
#[test]
fn stale_snapshot_is_ignored() {
    let storage = storage_with_log(&[1, 2, 3], &[1, 1, 1, 1, 1], 1);
    storage.wl().set_commit(5);
    let mut r = new_raft(1, storage, |_| {});
    let mut m = msg(2, 1, MsgSnapshot, 2);
    m.snapshot = Some(Box::new(snapshot(3, 1, &[1, 2])));
    r.step(m).unwrap();
    assert_eq!(r.raft_log().last_index(), 5);
    assert!(r.raft_log().unstable.snapshot.is_none());
    assert_eq!(r.tracker().conf_state().voters, vec![1, 2, 3]);
    let resp = read_messages(&mut r);
    assert_eq!((resp[0].index, resp[0].reject), (5, false));
}

/// §7: when the follower already holds the snapshot's last entry, it keeps its log
/// (including entries past the snapshot) and only moves its commit index.
#[test]
fn snapshot_matching_log_only_moves_commit() {
    let mut r = new_raft(1, storage_with_log(&[1, 2, 3], &[1, 1, 1], 1), |_| {});
    let mut m = msg(2, 1, MsgSnapshot, 1);
    m.snapshot = Some(Box::new(snapshot(2, 1, &[1, 2, 3])));
    r.step(m).unwrap();
    let log = r.raft_log();
    assert_eq!((log.last_index(), log.committed), (3, 2));
    assert!(log.unstable.snapshot.is_none());
}

/// §7: only followers restore snapshots; a candidate of that term first steps down.
#[test]
fn candidate_steps_down_and_restores_snapshot() {
    let mut r = new_raft_peers(1, &[1, 2, 3]);
    r.become_candidate();
    let mut m = msg(2, 1, MsgSnapshot, 1);
    m.snapshot = Some(Box::new(snapshot(7, 1, &[1, 2, 3])));
    r.step(m).unwrap();
    assert_eq!(r.state(), StateRole::Follower);
    assert_eq!(r.raft_log().committed, 7);
}
