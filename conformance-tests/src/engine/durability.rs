//! Persistence across a reopen and durability across a crash.
//!
//! The crash case writes numbered batches. Batch `n` puts 8 keys `b/<n>/<j>` with values
//! derived from `(n, j)` (up to 64 KiB each), moves the single `scratch/<n>` key forward
//! (put the new one, delete the previous one) and sets `meta/last` to `n`. After a crash the
//! recovered engine must hold exactly batches `0..=last`, each whole, with `last` at least
//! the last acknowledged synced batch.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engines::{Direction, Engine, WriteBatch, WriteOptions};
use rand::Rng;

use super::support::{delete, get, must, put, rng, scan, scan_all};
use super::{CRASH_CHILD_ENV, CrashModel, Ctx, EngineFactory};

const CFS: [&str; 2] = ["data", "meta"];
const KEYS_PER_BATCH: u64 = 8;
const ROUNDS: usize = 3;
/// Prefix of the child's acknowledgement lines. libtest may print on the same line before
/// it (`test engine_suite ... `), so the parent looks for it anywhere in a line.
const ACK: &str = "raftkv-crash-ack ";
/// Prefix of the child's error lines.
const CHILD_ERROR: &str = "raftkv-crash-error ";
/// A watchdog kills a child that makes no progress for this long, so a hung backend fails
/// the case instead of hanging the test run. It is never the thing being measured.
const CHILD_WATCHDOG: Duration = Duration::from_secs(300);

/// Data written, dropped and reopened three times is all there, synced or not.
pub(crate) fn reopen_persistence<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let path = ctx.path("db");
    for cycle in 0..3u8 {
        let engine = ctx.open(&path, &CFS);
        for earlier in 0..cycle {
            let key = [b'k', earlier];
            assert_eq!(
                get(&engine, "data", &key),
                Some(vec![earlier]),
                "cycle {earlier} lost"
            );
            assert_eq!(get(&engine, "meta", &key), None, "a deleted key came back");
            assert_eq!(
                get(&engine, "data", &[b'r', earlier, 1]),
                None,
                "range delete undone"
            );
        }
        put(&engine, "data", &[b'k', cycle], &[cycle], true);
        put(&engine, "meta", &[b'k', cycle], &[cycle], false);
        delete(&engine, "meta", &[b'k', cycle]);
        let mut batch = engine.write_batch();
        for i in 0..4u8 {
            must(batch.put("data", &[b'r', cycle, i], b"v"), "put");
        }
        must(
            batch.delete_range("data", &[b'r', cycle, 1][..]..),
            "delete_range",
        );
        must(engine.write(&batch, WriteOptions::unsynced()), "write");
        assert_eq!(
            get(&engine, "data", &[b'r', cycle, 0]).as_deref(),
            Some(&b"v"[..])
        );
        if cycle == 1 {
            must(engine.sync(), "sync");
        }
    }
    let engine = ctx.open(&path, &CFS);
    assert_eq!(
        scan_all(&engine, "data").len(),
        6,
        "3 k keys and 3 r keys survive"
    );
}

/// Every acknowledged synced batch survives a crash, and every batch is all or nothing.
pub(crate) fn crash_durability<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    match ctx.factory.crash_model() {
        CrashModel::KillProcess => kill_child_rounds(ctx),
        CrashModel::Simulated(crash) => simulated_crash_rounds(ctx, crash),
    }
}

/// The value of key `j` of batch `n`: 1 byte to 64 KiB, content derived from `(n, j)`.
fn crash_value(n: u64, j: u64) -> Vec<u8> {
    let mut mix = (n * KEYS_PER_BATCH + j).wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix = (mix ^ (mix >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mix = (mix ^ (mix >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let len = 1 + (mix ^ (mix >> 31)) as usize % (64 * 1024);
    let mut value = Vec::with_capacity(len);
    value.extend_from_slice(&n.to_le_bytes());
    value.push(j as u8);
    value.resize(len.max(value.len()), (n + j) as u8);
    value
}

fn data_key(n: u64, j: u64) -> Vec<u8> {
    format!("b/{n:08}/{j}").into_bytes()
}

fn scratch_key(n: u64) -> Vec<u8> {
    format!("scratch/{n:08}").into_bytes()
}

/// Writes crash batch `n`.
fn write_crash_batch<E: Engine>(engine: &E, n: u64, sync: bool) -> engines::Result<()> {
    let mut batch = engine.write_batch();
    for j in 0..KEYS_PER_BATCH {
        batch.put("data", &data_key(n, j), &crash_value(n, j))?;
    }
    batch.put("data", &scratch_key(n), b"x")?;
    if let Some(previous) = n.checked_sub(1) {
        batch.delete("data", &scratch_key(previous))?;
    }
    batch.put("meta", b"last", &n.to_be_bytes())?;
    engine.write(&batch, WriteOptions { sync })
}

/// The last crash batch in `engine`, if any.
fn last_batch<E: Engine>(engine: &E) -> Option<u64> {
    let last = get(engine, "meta", b"last")?;
    Some(u64::from_be_bytes(must(
        last[..].try_into(),
        "an 8-byte batch number",
    )))
}

/// Checks that `engine` holds exactly whole batches `0..=last` and that `last` lies within
/// `lowest..=highest`; returns `last`.
fn verify_crash_state<E: Engine>(
    engine: &E,
    lowest: Option<u64>,
    highest: Option<u64>,
) -> Option<u64> {
    let last = last_batch(engine);
    if let Some(lowest) = lowest {
        assert!(
            last.is_some_and(|last| last >= lowest),
            "acknowledged synced batch {lowest} lost: recovered last batch is {last:?}"
        );
    }
    if let (Some(highest), Some(last)) = (highest, last) {
        assert!(
            last <= highest,
            "batch {last} recovered, but only {highest} were written"
        );
    }
    let batches = last.map_or(0, |last| last + 1);
    let entries = scan(
        engine,
        "data",
        b"b/".as_slice()..b"b0".as_slice(),
        Direction::Forward,
    );
    assert_eq!(
        entries.len() as u64,
        batches * KEYS_PER_BATCH,
        "recovered last batch {last:?}, but a batch is partial or a later one is present"
    );
    for (index, (key, value)) in entries.iter().enumerate() {
        let (n, j) = (index as u64 / KEYS_PER_BATCH, index as u64 % KEYS_PER_BATCH);
        assert_eq!(key, &data_key(n, j), "unexpected key");
        assert!(
            value == &crash_value(n, j),
            "value of batch {n} key {j} is damaged"
        );
    }
    let scratch = scan(
        engine,
        "data",
        b"scratch/".as_slice()..b"scratch0".as_slice(),
        Direction::Forward,
    );
    let expected: Vec<Vec<u8>> = last.map(scratch_key).into_iter().collect();
    let scratch: Vec<Vec<u8>> = scratch.into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        scratch, expected,
        "the put and the delete of one batch were split"
    );
    last
}

/// The child side of the crash case: writes synced batches after the last one present,
/// printing an acknowledgement line after each write returns, until killed. Never returns.
pub(crate) fn crash_child<F: EngineFactory>(factory: &F, dir: &Path) -> ! {
    let mut out = std::io::stdout().lock();
    let engine = match factory.open(dir, &CFS) {
        Ok(engine) => engine,
        Err(error) => {
            let _ = writeln!(out, "\n{CHILD_ERROR}opening the engine: {error}");
            std::process::exit(3);
        }
    };
    let first = last_batch(&engine).map_or(0, |last| last + 1);
    if writeln!(out).is_err() {
        std::process::exit(4);
    }
    for n in first.. {
        if let Err(error) = write_crash_batch(&engine, n, true) {
            let _ = writeln!(out, "{CHILD_ERROR}writing batch {n}: {error}");
            std::process::exit(3);
        }
        if writeln!(out, "{ACK}{n}")
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(4);
        }
    }
    std::process::exit(5)
}

/// Rounds of: run the child, kill it with SIGKILL after a random number of
/// acknowledgements, reopen, verify.
fn kill_child_rounds<F: EngineFactory>(ctx: &Ctx<'_, F>) {
    let path = ctx.path("db");
    let mut rng = rng(ctx, "crash_durability");
    let exe = must(std::env::current_exe(), "current_exe");
    let mut recovered = None;
    for round in 0..ROUNDS {
        let kill_after_acks = rng.random_range(2..=25usize);
        let mut child = must(
            Command::new(&exe)
                .args(["--exact", ctx.test_name, "--nocapture", "--test-threads=1"])
                .env(CRASH_CHILD_ENV, &path)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn(),
            "spawning the crash child",
        );
        let stdout = must(child.stdout.take().ok_or("no stdout"), "child stdout");
        let mut stderr = must(child.stderr.take().ok_or("no stderr"), "child stderr");
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let child = Arc::new(Mutex::new(child));
        let (stop_watchdog, watchdog_stop) = mpsc::channel::<()>();
        let watchdog = {
            let child = Arc::clone(&child);
            std::thread::spawn(move || {
                let fired = watchdog_stop.recv_timeout(CHILD_WATCHDOG).is_err();
                if fired && let Ok(mut child) = child.lock() {
                    let _ = child.kill();
                }
                fired
            })
        };

        let mut acks = Vec::new();
        let mut errors = Vec::new();
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(ACK) {
                acks.push(must(
                    line[at + ACK.len()..].trim().parse::<u64>(),
                    "parsing an ack",
                ));
                if acks.len() == kill_after_acks && !killed {
                    // SIGKILL on Unix: no destructor, no flush, no clean shutdown.
                    must(
                        must(child.lock().map_err(|_| "poisoned"), "lock").kill(),
                        "kill",
                    );
                    killed = true;
                }
            } else if line.contains(CHILD_ERROR) {
                errors.push(line);
            }
        }
        let status = must(
            must(child.lock().map_err(|_| "poisoned"), "lock").wait(),
            "wait",
        );
        let _ = stop_watchdog.send(());
        let watchdog_fired = must(watchdog.join().map_err(|_| "watchdog panicked"), "watchdog");
        let stderr_text = stderr_reader.join().unwrap_or_default();
        assert!(
            !watchdog_fired,
            "round {round}: the crash child made no progress for {CHILD_WATCHDOG:?}"
        );
        assert!(
            killed && errors.is_empty(),
            "round {round}: the crash child stopped by itself ({status}) after {} acks; errors \
             {errors:?}; is {:?} exactly the name of the #[test] calling engine::run? \
             child stderr:\n{stderr_text}",
            acks.len(),
            ctx.test_name
        );
        for pair in acks.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "the child acknowledged batches out of order"
            );
        }
        let expected_first = recovered.map_or(0, |last: u64| last + 1);
        assert_eq!(
            acks.first().copied(),
            Some(expected_first),
            "round {round}: child resumed at a wrong batch; acks {acks:?}"
        );
        let last_ack = acks.last().copied();
        let engine = ctx.open(&path, &CFS);
        recovered = verify_crash_state(&engine, last_ack, last_ack.map(|n| n + 1));
    }
}

/// Rounds of: a writer thread writes batches (every third one synced), the engine is
/// crashed in-process after a random number of acknowledgements, reopened and verified.
fn simulated_crash_rounds<F: EngineFactory>(ctx: &Ctx<'_, F>, crash: fn(&F::Engine)) {
    let path = ctx.path("db");
    let mut rng = rng(ctx, "crash_durability");
    let mut recovered = None;
    for _ in 0..ROUNDS {
        let engine = ctx.open(&path, &CFS);
        let first = recovered.map_or(0, |last: u64| last + 1);
        let crash_after_acks = rng.random_range(2..=25usize);
        let (ack, acks) = mpsc::channel();
        let writer = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for n in first..first + 10_000 {
                    let sync = n % 3 == 0;
                    if write_crash_batch(&engine, n, sync).is_err() {
                        return;
                    }
                    if ack.send((n, sync)).is_err() {
                        return;
                    }
                }
            })
        };
        let mut received = Vec::new();
        while received.len() < crash_after_acks {
            received.push(must(acks.recv(), "an ack from the writer"));
        }
        crash(&engine);
        must(writer.join().map_err(|_| "writer panicked"), "writer");
        received.extend(acks.try_iter());
        let last_synced = received
            .iter()
            .filter(|(_, sync)| *sync)
            .map(|(n, _)| *n)
            .max();
        let lowest = last_synced.or(recovered);
        let highest = received.last().map(|(n, _)| *n);
        let engine = ctx.open(&path, &CFS);
        recovered = verify_crash_state(&engine, lowest, highest);
    }
    assert!(recovered.is_some(), "some batch must have survived");
}
