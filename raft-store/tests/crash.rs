//! Apply atomicity and durability across a real crash: a child process runs a
//! single-node store on fjall and acknowledges puts on stdout; the parent kills it with
//! SIGKILL at a seeded random moment, then checks the engines it left behind. Once with
//! raft batches written inline, and twice written asynchronously (`raft_async_write`:
//! the kv batch of a round may land before its raft batch): at the store's next
//! iteration (a store driven by hand) and on a `RaftWorker`'s writer thread.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a test and its child process

#[path = "support/crash_child.rs"]
mod crash_child;

use std::io::{BufRead, BufReader};

use conformance_tests::cluster::{self, Cluster, EngineFactory, FjallFactory, live, test_config};
use engines::{Direction, FjallEngine, Iterable, Peekable};
use prost::Message as _;
use raft_core::eraftpb::{Entry, EntryType};
use raft_store::keys::{self, CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::pb::raft_cmdpb::{CmdType, RaftCmdRequest};
use raft_store::pb::raft_serverpb::RaftApplyState;

const CHILD_ENV: &str = "RAFT_STORE_CRASH_CHILD_DIR";
const ASYNC_CHILD_ENV: &str = "RAFT_STORE_ASYNC_CRASH_CHILD_DIR";
const TEST_NAME: &str = "killed_store_keeps_acknowledged_writes_and_consistent_apply_state";
const ASYNC_TEST_NAME: &str = "killed_store_with_async_raft_writes_keeps_acknowledged_writes";
const WRITER_CHILD_ENV: &str = "RAFT_STORE_WRITER_CRASH_CHILD_DIR";
const WRITER_TEST_NAME: &str =
    "killed_raft_worker_with_a_log_writer_thread_keeps_acknowledged_writes";

fn config(async_raft_writes: bool) -> raft_store::Config {
    raft_store::Config {
        raft_async_write: async_raft_writes,
        ..test_config()
    }
}

fn data_key(seq: u64) -> Vec<u8> {
    format!("data/{seq:08}").into_bytes()
}

/// The child: put (data/i, i) and (last, i) in one command, forever; print each ack.
fn run_child(dir: &str, cfg: raft_store::Config, worker: bool) -> ! {
    if worker {
        run_worker_child(dir, cfg);
    }
    let mut c = Cluster::with_factory(FjallFactory::at(dir.as_ref()), 1, cfg, b"", b"");
    for seq in 1.. {
        let value = seq.to_string().into_bytes();
        c.must_call(vec![
            cluster::put(&data_key(seq), &value),
            cluster::put(b"last", &value),
        ]);
        println!("ack {seq}");
    }
    unreachable!("the loop never ends")
}

/// A single-node store has no one to send to.
struct NoPeers;

impl raft_store::RaftMessageSender for NoPeers {
    fn send(&mut self, _: u64, _: raft_store::pb::raft_serverpb::RaftMessage) {}
    fn flush(&mut self) {}
}

/// [`run_child`] on a `RaftWorker` thread with its raft log writer thread.
fn run_worker_child(dir: &str, cfg: raft_store::Config) -> ! {
    let mut factory = FjallFactory::at(dir.as_ref());
    let region = cluster::first_region(1, b"", b"");
    cluster::bootstrap(&mut factory, 1, &region);
    let (raft, kv) = factory.open(1);
    let snap_mgr = raft_store::SnapManager::open(factory.snap_dir(1), &cfg).unwrap();
    let store = raft_store::Store::open(1, cfg.clone(), raft, kv, NoPeers, snap_mgr).unwrap();
    let (mailbox, rx) = raft_store::StoreMailbox::new(raft_store::raft_worker::MAILBOX_CAPACITY);
    let tick = std::time::Duration::from_millis(cfg.raft_base_tick_ms);
    let _worker =
        raft_store::RaftWorker::spawn(store, mailbox.clone(), rx, tick, cfg.max_batch_msgs)
            .unwrap();
    let mailboxes = [(1, mailbox)];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        for seq in 1.. {
            let value = seq.to_string().into_bytes();
            let mut req = live::request(vec![
                cluster::put(&data_key(seq), &value),
                cluster::put(b"last", &value),
            ]);
            req.header.as_mut().unwrap().region_epoch = region.region_epoch;
            live::on_leader(&mailboxes, req).await;
            println!("ack {seq}");
        }
    });
    unreachable!("the loop never ends")
}

/// The highest put sequence number among the log entries up to `applied`.
fn last_seq_in_log(raft: &FjallEngine, applied: u64) -> u64 {
    let mut last = 0;
    let from = keys::raft_log_key(1, 0);
    let to = keys::raft_log_key(1, applied + 1);
    raft.scan(
        CF_RAFT,
        from.as_slice()..to.as_slice(),
        Direction::Forward,
        |_, v| {
            let entry = Entry::decode(v).unwrap();
            if entry.entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                let cmd = RaftCmdRequest::decode(entry.data.clone()).unwrap();
                for r in cmd.requests.iter().filter(|r| r.cmd_type() == CmdType::Put) {
                    let put = r.put.as_ref().unwrap();
                    if &put.key[..] == b"last" {
                        last = String::from_utf8_lossy(&put.value).parse().unwrap();
                    }
                }
            }
            true
        },
    )
    .unwrap();
    last
}

#[test]
fn killed_store_keeps_acknowledged_writes_and_consistent_apply_state() {
    crash_rounds(TEST_NAME, CHILD_ENV, false, false);
}

#[test]
fn killed_store_with_async_raft_writes_keeps_acknowledged_writes() {
    crash_rounds(ASYNC_TEST_NAME, ASYNC_CHILD_ENV, true, false);
}

#[test]
fn killed_raft_worker_with_a_log_writer_thread_keeps_acknowledged_writes() {
    crash_rounds(WRITER_TEST_NAME, WRITER_CHILD_ENV, true, true);
}

/// Three children killed at seeded moments (this test's child when `child_env` is set);
/// `worker`: the child runs its store on a `RaftWorker`.
fn crash_rounds(test_name: &str, child_env: &str, async_raft_writes: bool, worker: bool) {
    if let Ok(dir) = std::env::var(child_env) {
        run_child(&dir, config(async_raft_writes), worker);
    }
    let seed = crash_child::seed("RAFT_STORE_CRASH_SEED");
    println!("crash test seed={seed} (replay with RAFT_STORE_CRASH_SEED={seed})");
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let kill_after = 20
            + (seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(round * 7919)
                >> 33)
                % 150;
        let mut child = crash_child::spawn(test_name, child_env, dir.path());
        let mut acked = 0u64;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(seq) = line.strip_prefix("ack ") {
                acked = seq.parse().unwrap();
                if acked >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(
            acked >= kill_after,
            "seed={seed}: the child stopped after {acked} acks"
        );

        // The engines as the crash left them, before any replay.
        let base = dir.path().join("store-1");
        {
            let raft = FjallEngine::open(&base.join("raft"), &[CF_RAFT]).unwrap();
            let kv = FjallEngine::open(&base.join("kv"), &[CF_DEFAULT, CF_META]).unwrap();
            let state = kv.get(CF_META, &keys::apply_state_key(1)).unwrap().unwrap();
            let applied = RaftApplyState::decode(&state[..]).unwrap().applied_index;
            let last: u64 = kv
                .get(CF_DEFAULT, &keys::data_key(b"last"))
                .unwrap()
                .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap());
            assert_eq!(
                last,
                last_seq_in_log(&raft, applied),
                "seed={seed}: data and applied index disagree"
            );
            for seq in 1..=last + 1 {
                let present = kv
                    .get(CF_DEFAULT, &keys::data_key(&data_key(seq)))
                    .unwrap()
                    .is_some();
                assert_eq!(
                    present,
                    seq <= last,
                    "seed={seed}: data/{seq} with last={last}"
                );
            }
        }
        // After a restart every acknowledged write is there.
        let mut c = Cluster::reopen(FjallFactory::at(dir.path()), 1, config(async_raft_writes));
        for seq in 1..=acked {
            assert_eq!(
                c.must_get(&data_key(seq)),
                Some(seq.to_string().into_bytes()),
                "seed={seed}: ack {seq} lost"
            );
        }
    }
}
