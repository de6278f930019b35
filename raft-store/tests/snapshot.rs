//! Region snapshots on the deterministic cluster: catch-up with a region of many chunks,
//! a crash in the middle of an apply, lost or corrupt staged data, stale snapshots, the
//! region worker driven by the caller, and the asynchronous cleanup of destroyed peers.
#![allow(clippy::unwrap_used)] // test bodies shared by the per-engine #[test]s

#[path = "support/inspect.rs"]
mod inspect;

use conformance_tests::cluster::{self, Cluster, EngineFactory, change_peer, put, test_config};
use conformance_tests::on_every_engine;
use engines::{Engine, Peekable};
use inspect::data;
use raft_core::eraftpb::{ConfChangeType, Message, MessageType};
use raft_store::keys::{self, CF_DEFAULT, CF_RAFT};
use raft_store::pb::raft_serverpb::{PeerState, RaftMessage, RegionLocalState, SnapshotMeta};
use raft_store::snapshot::generate::generate_snapshot;
use raft_store::snapshot::{SnapKey, SnapKind, snap_manager, to_raft_snapshot};
use raft_store::worker::Scheduler;
use raft_store::{Config, StoreMsg};

/// Small frames and batches and an eager log GC, so a modest region makes a snapshot of
/// many chunks, applied in many batches.
fn snap_config() -> Config {
    Config {
        raft_log_gc_count_limit: 5,
        raft_log_gc_tick_ticks: 1,
        snap_chunk_bytes: 512,
        snap_apply_batch_bytes: 4096,
        ..test_config()
    }
}

const KEYS: usize = 300;

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn region_state<E: Engine>(kv: &E) -> Option<RegionLocalState> {
    inspect::region_state(kv, 1)
}

/// Stops a follower, writes `KEYS` keys of 100 bytes and compacts the log past it.
/// Returns (leader, lagging follower).
fn lagging_follower<F: EngineFactory>(c: &mut Cluster<F>) -> (u64, u64) {
    let leader = c.leader(1);
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    c.stop(lagging);
    for batch in 0..KEYS / 20 {
        let puts = (batch * 20..batch * 20 + 20)
            .map(|i| put(&key(i), &[i as u8; 100]))
            .collect();
        c.must_call(puts);
    }
    for _ in 0..3 {
        c.tick();
    }
    let truncated = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .store()
        .truncated_index();
    assert!(truncated > 10, "the leader compacted its log: {truncated}");
    (leader, lagging)
}

fn tick_until<F: EngineFactory>(
    c: &mut Cluster<F>,
    what: &str,
    done: impl Fn(&Cluster<F>) -> bool,
) {
    for _ in 0..100 {
        if done(c) {
            return;
        }
        c.tick();
    }
    panic!("never happened: {what}");
}

fn replicates_a_new_write<F: EngineFactory>(c: &mut Cluster<F>, follower: u64) {
    c.must_put(b"after", b"snapshot");
    tick_until(c, "the follower replicates a new write", |c| {
        c.kv(follower)
            .get(CF_DEFAULT, &keys::data_key(b"after"))
            .unwrap()
            .is_some()
    });
}

fn follower_catches_up_by_a_snapshot_of_many_chunks<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, snap_config(), b"", b"");
    let (leader, lagging) = lagging_follower(&mut c);
    c.start(lagging);
    tick_until(&mut c, "the follower has every key", |c| {
        data(c.kv(lagging)).len() == KEYS
    });
    assert_eq!(data(c.kv(lagging)), data(c.kv(leader)));
    // The snapshot was streamed and applied in many pieces.
    let staged = c.snap_mgrs[&leader].list();
    let (kind, snap) = *staged
        .first()
        .expect("the leader keeps its staged snapshot");
    assert_eq!(kind, SnapKind::Generated);
    let size = std::fs::metadata(c.snap_mgrs[&leader].path(kind, snap))
        .unwrap()
        .len();
    assert!(size > 50 * 512, "a snapshot of many chunks: {size} bytes");
    // The receiver's staged copy is gone once applied.
    assert!(c.snap_mgrs[&lagging].list().is_empty());
    let state = region_state(c.kv(lagging)).unwrap();
    assert_eq!(state.state(), PeerState::Normal);
    // And it keeps replicating from the log.
    replicates_a_new_write(&mut c, lagging);
}

/// Restarts a follower whose snapshot apply was interrupted (its Apply task is held in a
/// manual queue, never run), after `damage` to its staged data. Returns (leader, lagging).
fn interrupted_apply<F: EngineFactory>(
    c: &mut Cluster<F>,
    damage: impl FnOnce(&std::path::Path),
) -> (u64, u64) {
    let (leader, lagging) = lagging_follower(c);
    c.start(lagging);
    let (scheduler, tasks) = Scheduler::manual(16);
    c.stores
        .get_mut(&lagging)
        .unwrap()
        .set_region_scheduler(scheduler);
    tick_until(c, "the follower starts applying", |c| {
        c.stores[&lagging]
            .peer(1)
            .is_some_and(|p| p.is_applying_snapshot())
    });
    assert_eq!(tasks.len(), 1, "one apply task, held");
    let key = c.stores[&lagging]
        .peer(1)
        .unwrap()
        .applying_snapshot()
        .unwrap();
    let state = region_state(c.kv(lagging)).unwrap();
    assert_eq!(state.state(), PeerState::Applying);
    assert_eq!(
        SnapKey::of(state.applying_snapshot.as_ref().unwrap()),
        key,
        "the state names the staged data"
    );
    assert!(data(c.kv(lagging)).is_empty(), "nothing applied yet");
    // Crash: the task never runs.
    c.stop(lagging);
    drop(tasks);
    damage(&c.snap_mgrs[&lagging].path(SnapKind::Received, key));
    c.start(lagging);
    (leader, lagging)
}

fn restart_mid_apply_finishes_the_apply<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, snap_config(), b"", b"");
    let (leader, lagging) = interrupted_apply(&mut c, |_| {});
    assert!(
        c.stores[&lagging].peer(1).unwrap().is_applying_snapshot(),
        "reopened in the middle of the apply"
    );
    // The first iteration runs the resumed apply (inline).
    c.stores.get_mut(&lagging).unwrap().handle_msgs([]).unwrap();
    assert!(!c.stores[&lagging].peer(1).unwrap().is_applying_snapshot());
    assert_eq!(
        region_state(c.kv(lagging)).unwrap().state(),
        PeerState::Normal
    );
    assert_eq!(data(c.kv(lagging)), data(c.kv(leader)));
    replicates_a_new_write(&mut c, lagging);
}

/// Lost or corrupt staged data: the peer clears the region, forgets the snapshot, and
/// catches up by a new one; it never serves half-applied data.
fn lost_or_corrupt_staged_data_means_a_new_snapshot(damage: fn(&std::path::Path)) {
    let mut c = Cluster::with_factory(
        cluster::MemoryFactory::default(),
        3,
        snap_config(),
        b"",
        b"",
    );
    let (leader, lagging) = interrupted_apply(&mut c, damage);
    c.stores.get_mut(&lagging).unwrap().handle_msgs([]).unwrap();
    let peer = c.stores[&lagging].peer(1).unwrap();
    assert!(!peer.is_applying_snapshot());
    assert!(
        !peer.raft_group().store().is_initialized(),
        "the peer starts over, uninitialized"
    );
    assert!(data(c.kv(lagging)).is_empty(), "no half-applied data");
    assert!(region_state(c.kv(lagging)).is_none());
    tick_until(&mut c, "the follower has every key again", |c| {
        data(c.kv(lagging)).len() == KEYS
    });
    assert_eq!(data(c.kv(lagging)), data(c.kv(leader)));
    assert_eq!(
        region_state(c.kv(lagging)).unwrap().state(),
        PeerState::Normal
    );
}

#[test]
fn deleted_staged_data_means_a_new_snapshot() {
    lost_or_corrupt_staged_data_means_a_new_snapshot(|path| std::fs::remove_file(path).unwrap());
}

#[test]
fn corrupt_staged_data_means_a_new_snapshot() {
    lost_or_corrupt_staged_data_means_a_new_snapshot(|path| {
        let mut bytes = std::fs::read(path).unwrap();
        // Late in the stream: part of the data is written before the damage is found.
        let at = bytes.len() * 3 / 4;
        bytes[at] ^= 0x10;
        std::fs::write(path, bytes).unwrap();
    });
}

/// Stages `meta`'s data on `to` and hands it the snapshot message from `from`.
fn deliver_snapshot<F: EngineFactory>(c: &mut Cluster<F>, from: u64, to: u64, meta: &SnapshotMeta) {
    snap_manager::transfer(&c.snap_mgrs[&from], &c.snap_mgrs[&to], meta).unwrap();
    let region = meta.region.clone().unwrap();
    let peer = |store: u64| *region.peers.iter().find(|p| p.store_id == store).unwrap();
    let term = c.stores[&from].peer(1).unwrap().raft_group().raft().term();
    let msg = RaftMessage {
        region_id: 1,
        from_peer: Some(peer(from)),
        to_peer: Some(peer(to)),
        message: Some(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            from: peer(from).id,
            to: peer(to).id,
            term,
            snapshot: Some(Box::new(to_raft_snapshot(meta))),
            ..Default::default()
        }),
        region_epoch: region.region_epoch,
        ..Default::default()
    };
    c.stores
        .get_mut(&to)
        .unwrap()
        .handle_msgs([StoreMsg::RaftMessage(Box::new(msg))])
        .unwrap();
}

fn stale_snapshots_are_rejected<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"old");
    let leader = c.leader(1);
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let storage = c.stores[&leader].peer(1).unwrap().raft_group().store();
    let (region, index, term) = (
        storage.region().clone(),
        storage.applied_index(),
        storage.apply_state().applied_term,
    );
    let view = c.kv(leader).snapshot().unwrap();
    let old = generate_snapshot(&c.snap_mgrs[&leader], &view, &region, index, term).unwrap();
    c.must_put(b"k", b"new");
    for _ in 0..3 {
        c.tick();
    }
    let committed = |c: &Cluster<F>| {
        c.stores[&follower]
            .peer(1)
            .unwrap()
            .raft_group()
            .raft()
            .raft_log()
            .committed
    };
    let before = committed(&c);
    assert!(before > index);

    // An index the follower's log already covers.
    deliver_snapshot(&mut c, leader, follower, &old);
    let k = |c: &Cluster<F>| {
        c.kv(follower)
            .get(CF_DEFAULT, &keys::data_key(b"k"))
            .unwrap()
    };
    assert_eq!(k(&c), Some(b"new".to_vec()));
    assert!(!c.stores[&follower].peer(1).unwrap().is_applying_snapshot());
    assert!(
        !c.snap_mgrs[&follower].contains(SnapKind::Received, SnapKey::of(&old)),
        "a refused snapshot's staged data is deleted"
    );

    // An older region epoch, at an index raft alone would accept.
    let mut stale_region = region.clone();
    stale_region.region_epoch.as_mut().unwrap().conf_ver -= 1;
    let view = c.kv(leader).snapshot().unwrap();
    let current_term = c.stores[&leader]
        .peer(1)
        .unwrap()
        .raft_group()
        .raft()
        .term();
    let stale = generate_snapshot(
        &c.snap_mgrs[&leader],
        &view,
        &stale_region,
        before + 1000,
        current_term,
    )
    .unwrap();
    deliver_snapshot(&mut c, leader, follower, &stale);
    assert!(!c.stores[&follower].peer(1).unwrap().is_applying_snapshot());
    assert!(
        committed(&c) < before + 1000,
        "the stale snapshot was not restored"
    );
    assert_eq!(k(&c), Some(b"new".to_vec()));
    c.must_put(b"k", b"newer");
    for _ in 0..3 {
        c.tick();
    }
    assert_eq!(k(&c), Some(b"newer".to_vec()));
}

/// The simulator's way: the leader's region tasks go to a queue the test drains, running
/// each task with the store's runner and feeding its result back as a `StoreMsg`.
fn caller_driven_region_worker_generates_the_snapshot<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, snap_config(), b"", b"");
    let (leader, lagging) = lagging_follower(&mut c);
    let (scheduler, tasks) = Scheduler::manual(16);
    let (results_tx, results) = std::sync::mpsc::channel();
    let mut runner = c.stores[&leader].region_runner(Box::new(move |msg| {
        results_tx.send(msg).unwrap();
    }));
    c.stores
        .get_mut(&leader)
        .unwrap()
        .set_region_scheduler(scheduler);
    c.start(lagging);
    tick_until(&mut c, "the leader asks for a snapshot", |_| {
        !tasks.is_empty()
    });
    // Raft was told to wait: nothing reaches the follower while the task is held.
    for _ in 0..5 {
        c.tick();
    }
    assert!(data(c.kv(lagging)).is_empty());
    assert_eq!(tasks.len(), 1, "one generation at a time");
    let task = tasks.try_recv().unwrap();
    assert!(format!("{task:?}").starts_with("Generate"), "{task:?}");
    raft_store::worker::Runnable::run(&mut runner, task);
    let done = results.try_recv().unwrap();
    c.stores
        .get_mut(&leader)
        .unwrap()
        .handle_msgs([done])
        .unwrap();
    tick_until(&mut c, "the follower has every key", |c| {
        data(c.kv(lagging)).len() == KEYS
    });
    assert_eq!(data(c.kv(lagging)), data(c.kv(leader)));
}

fn destroyed_peer_data_is_deleted_and_a_restart_finishes_the_cleanup<F: EngineFactory>(factory: F) {
    let mut c = Cluster::with_factory(factory, 3, test_config(), b"", b"");
    c.must_put(b"k", b"v");
    let leader = c.leader(1);
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let (scheduler, tasks) = Scheduler::manual(16);
    c.stores
        .get_mut(&victim)
        .unwrap()
        .set_region_scheduler(scheduler);
    c.must_admin(change_peer(ConfChangeType::RemoveNode, victim, victim));
    tick_until(&mut c, "the peer is destroyed", |c| {
        c.stores[&victim].peer(1).is_none()
    });
    // Tombstoned at once; the data goes asynchronously.
    assert_eq!(
        region_state(c.kv(victim)).unwrap().state(),
        PeerState::Tombstone
    );
    assert!(c.stores[&victim].is_destroy_pending(1));
    assert_eq!(tasks.len(), 1, "one cleanup task, held");
    assert!(!data(c.kv(victim)).is_empty());
    // Crash before the cleanup ran; the restart finishes it.
    c.stop(victim);
    drop(tasks);
    c.start(victim);
    assert!(c.stores[&victim].is_destroy_pending(1));
    c.stores.get_mut(&victim).unwrap().handle_msgs([]).unwrap();
    assert!(!c.stores[&victim].is_destroy_pending(1));
    assert!(data(c.kv(victim)).is_empty(), "data deleted");
    assert!(
        c.raft_engine(victim)
            .get(CF_RAFT, &keys::raft_state_key(1))
            .unwrap()
            .is_none(),
        "raft state deleted last"
    );
    // A finished cleanup is not redone.
    c.stop(victim);
    c.start(victim);
    assert!(!c.stores[&victim].is_destroy_pending(1));
    assert!(c.stores[&victim].peer(1).is_none());
    c.must_put(b"k2", b"v2");
    assert_eq!(c.must_get(b"k2"), Some(b"v2".to_vec()));
}

/// A deposed leader whose proposal its successor committed, and which then catches up by
/// a snapshot covering that entry, answers the proposal with its real outcome, never as
/// stale (found by the conf-change scenario: the write was answered `StaleCommand`, which
/// means "not applied", although it had applied; the checker saw a lost write reappear).
fn proposal_covered_by_a_snapshot_is_answered_with_its_outcome<F: EngineFactory>(factory: F) {
    use raft_store::pb::raft_cmdpb::RaftCmdResponse;
    use std::sync::{Arc, Mutex};
    let mut c = Cluster::with_factory(factory, 3, snap_config(), b"", b"");
    c.must_put(b"k0", b"v0");
    let old = c.leader(1);
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    // The followers get the entry; the leader never hears back, so never commits it.
    let deaf = c
        .filters()
        .add(move |_: u64, to: u64, _: &RaftMessage| to == old);
    let mut req = c.request(old, vec![put(b"k", b"v")]);
    let header = req.header.as_mut().unwrap();
    (
        header.client_id,
        header.sequence,
        header.first_awaited_sequence,
    ) = (7, 1, 1);
    let answer: Arc<Mutex<Option<RaftCmdResponse>>> = Arc::default();
    let slot = answer.clone();
    c.stores
        .get_mut(&old)
        .unwrap()
        .handle_msgs([StoreMsg::Command {
            request: Box::new(req),
            callback: Box::new(move |resp| *slot.lock().unwrap() = Some(resp)),
        }])
        .unwrap();
    c.run();
    let cut = c
        .filters()
        .add(cluster::filter::Partition::new(&[&[old], &others]));
    c.filters().remove(deaf);
    // The others elect a leader, which commits the entry, and compact past it.
    tick_until(&mut c, "a leader among the others", |c| {
        c.current_leader(1).is_some_and(|l| l != old)
    });
    for i in 0..20u8 {
        c.must_put(&[b'x', i], b"v");
    }
    assert!(answer.lock().unwrap().is_none(), "cut off, no answer yet");
    c.filters().remove(cut);
    tick_until(&mut c, "the old leader catches up", |c| {
        c.kv(old)
            .get(CF_DEFAULT, &keys::data_key(&[b'x', 19]))
            .unwrap()
            .is_some()
    });
    assert_eq!(
        c.kv(old).get(CF_DEFAULT, &keys::data_key(b"k")).unwrap(),
        Some(b"v".to_vec()),
        "the write applied"
    );
    replicates_a_new_write(&mut c, old);
    let resp = answer
        .lock()
        .unwrap()
        .take()
        .expect("the proposal was answered");
    let error = resp.header.and_then(|h| h.error);
    assert!(error.is_none(), "the write applied, yet answered {error:?}");
}

on_every_engine!(
    proposal_covered_by_a_snapshot_is_answered_with_its_outcome,
    follower_catches_up_by_a_snapshot_of_many_chunks,
    restart_mid_apply_finishes_the_apply,
    stale_snapshots_are_rejected,
    caller_driven_region_worker_generates_the_snapshot,
    destroyed_peer_data_is_deleted_and_a_restart_finishes_the_cleanup,
);
