//! Snapshot apply across a real crash: a child process runs three stores on fjall and,
//! round after round, stops a follower, rewrites every key, compacts the log and restarts
//! the follower, which catches up by snapshot. The child runs the follower's region tasks
//! itself and announces each one, so the parent can kill it with SIGKILL at a seeded
//! moment inside (or just around) the apply. Then it checks the engines left behind: the
//! follower's region is either `Applying` or holds one round's data whole, never a mix;
//! and a restart brings it to the leader's data.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a test and its child process

#[path = "support/crash_child.rs"]
mod crash_child;
#[path = "support/inspect.rs"]
mod inspect;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use conformance_tests::cluster::{Cluster, FjallFactory, put, test_config};
use engines::FjallEngine;
use inspect::{data, region_state};
use raft_store::Config;
use raft_store::keys::{CF_DEFAULT, CF_META};
use raft_store::pb::raft_serverpb::PeerState;
use raft_store::worker::{Runnable, Scheduler};

const CHILD_ENV: &str = "RAFT_STORE_SNAP_CRASH_CHILD_DIR";
const TEST_NAME: &str = "killed_during_snapshot_catch_up_never_leaves_a_half_applied_region";
const KEYS: usize = 400;

fn cfg() -> Config {
    Config {
        raft_log_gc_count_limit: 5,
        raft_log_gc_tick_ticks: 1,
        snap_chunk_bytes: 512,
        snap_apply_batch_bytes: 1024,
        ..test_config()
    }
}

/// Every key holds its round number, padded: a region holds one round's data whole or
/// is a mix.
fn value(round: u64) -> Vec<u8> {
    format!("{round:0200}").into_bytes()
}

/// The child: rounds of (stop a follower, rewrite every key, compact, restart it, wait
/// until it caught up), printing `task <round> <store>` before running each of the
/// follower's region tasks, and `synced <round>`.
fn run_child(dir: &str) -> ! {
    let mut c = Cluster::with_factory(FjallFactory::at(dir.as_ref()), 3, cfg(), b"", b"");
    for round in 1.. {
        let leader = c.leader(1);
        let lagging = (1..=3).find(|&id| id != leader).unwrap();
        c.stop(lagging);
        for batch in 0..KEYS / 40 {
            let puts = (batch * 40..batch * 40 + 40)
                .map(|i| put(format!("key-{i:04}").as_bytes(), &value(round)))
                .collect();
            c.must_call(puts);
        }
        for _ in 0..3 {
            c.tick();
        }
        c.start(lagging);
        let (scheduler, tasks) = Scheduler::manual(16);
        let (results_tx, results) = std::sync::mpsc::channel();
        let store = c.stores.get_mut(&lagging).unwrap();
        store.set_region_scheduler(scheduler);
        let mut runner = store.region_runner(Box::new(move |msg| {
            let _ = results_tx.send(msg);
        }));
        for _ in 0..200 {
            let leader = c.current_leader(1).unwrap_or(leader);
            if data(c.kv(lagging)) == data(c.kv(leader)) {
                break;
            }
            while let Ok(task) = tasks.try_recv() {
                println!("task {round} {lagging}");
                Runnable::run(&mut runner, task);
            }
            let done: Vec<_> = results.try_iter().collect();
            c.stores
                .get_mut(&lagging)
                .unwrap()
                .handle_msgs(done)
                .unwrap();
            c.tick();
        }
        println!("synced {round}");
    }
    unreachable!("the loop never ends")
}

/// One round's data whole: every key, all with the same value.
fn is_whole_round(pairs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    pairs.len() == KEYS && pairs.iter().all(|(_, v)| *v == pairs[0].1)
}

#[test]
fn killed_during_snapshot_catch_up_never_leaves_a_half_applied_region() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        run_child(&dir);
    }
    let seed = crash_child::seed("RAFT_STORE_SNAP_CRASH_SEED");
    println!("snapshot crash test seed={seed} (replay with RAFT_STORE_SNAP_CRASH_SEED={seed})");
    // About two seconds a round in debug; raise it for a soak.
    let rounds: u64 = std::env::var("RAFT_STORE_SNAP_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut mid_apply = 0;
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mix = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(round.wrapping_mul(1442695040888963407));
        let kill_round = 2 + (mix >> 40) % 2;
        // Applying 400 keys takes 10-20 ms here: most kills land inside it, some after.
        let delay = Duration::from_micros((mix >> 20) % 25_000);
        let mut child = crash_child::spawn(TEST_NAME, CHILD_ENV, dir.path());
        let mut lagging = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let mut words = line.split(' ');
            if let (Some("task"), Some(r), Some(id)) = (words.next(), words.next(), words.next())
                && r.parse::<u64>().unwrap() == kill_round
            {
                lagging = id.parse().unwrap();
                break;
            }
        }
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_ne!(lagging, 0, "seed={seed}: the child stopped early");

        // The follower's engines as the crash left them.
        let base = dir.path().join(format!("store-{lagging}"));
        {
            let kv = FjallEngine::open(&base.join("kv"), &[CF_DEFAULT, CF_META]).unwrap();
            let state = region_state(&kv, 1).unwrap();
            match state.state() {
                PeerState::Applying => mid_apply += 1,
                PeerState::Normal => assert!(
                    is_whole_round(&data(&kv)),
                    "seed={seed}: a Normal region holds a mix of rounds"
                ),
                PeerState::Tombstone => panic!("seed={seed}: the follower was destroyed"),
            }
        }
        // A restart finishes whatever was interrupted and catches up.
        let mut c = Cluster::reopen(FjallFactory::at(dir.path()), 3, cfg());
        let mut caught_up = false;
        for _ in 0..300 {
            let leader = c.leader(1);
            let (ours, theirs) = (data(c.kv(lagging)), data(c.kv(leader)));
            if ours == theirs && is_whole_round(&ours) {
                caught_up = true;
                break;
            }
            c.tick();
        }
        assert!(caught_up, "seed={seed}: store {lagging} never caught up");
        assert_eq!(
            region_state(c.kv(lagging), 1).unwrap().state(),
            PeerState::Normal
        );
    }
    println!("killed mid-apply in {mid_apply} of {rounds} rounds");
}
