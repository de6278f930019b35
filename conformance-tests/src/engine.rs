//! The engine conformance suite: every [`engines::Engine`] backend must pass it.
//!
//! One entry point, [`run`], takes a factory that opens an engine at a path and runs every
//! case: CRUD and key ordering, large values, column family isolation, every kind of range
//! bound in both directions, snapshot isolation across threads and handles, batch atomicity
//! and order, range deletion edges, concurrent writers and readers, reopen persistence,
//! durability across a real `SIGKILL` of a child process, and error behaviour (unknown
//! column family, poisoning after a failed sync, a path that is a regular file). No case is
//! optional: a backend passes all of them or fails.
//!
//! # Certify your backend in 20 lines
//!
//! Put this in `tests/engine_conformance.rs` of your crate (with `conformance-tests` and
//! `engines` as dev-dependencies) and run `cargo test --test engine_conformance`:
//!
//! ```no_run
//! use std::path::Path;
//!
//! use conformance_tests::engine::{self, EngineFactory};
//! use engines::FjallEngine as MyEngine; // your `engines::Engine` implementation
//!
//! struct MyFactory;
//!
//! impl EngineFactory for MyFactory {
//!     type Engine = MyEngine;
//!
//!     fn open(&self, path: &Path, cfs: &[&str]) -> engines::Result<MyEngine> {
//!         MyEngine::open(path, cfs)
//!     }
//!
//!     fn fail_next_sync(&self, engine: &MyEngine) {
//!         engine.fail_next_sync(); // make the next fsync fail, as a dying disk would
//!     }
//! }
//!
//! #[test]
//! fn engine_suite() {
//!     // The name must be the test's own name: the crash case re-runs it in a child.
//!     engine::run("engine_suite", MyFactory);
//! }
//! ```
//!
//! The crash case re-executes the test binary (`std::env::current_exe()`) with
//! `--exact <test_name> --nocapture --test-threads=1` and the environment variable
//! [`CRASH_CHILD_ENV`] set to a directory; [`run`] then acts as the child: it writes synced
//! batches forever, printing an acknowledgement line after each returns, until the parent kills it with
//! `SIGKILL`. The parent reopens the engine and checks that every acknowledged batch is
//! present and that every batch is all-or-nothing. A backend whose data cannot outlive the
//! process (an in-memory one) returns [`CrashModel::Simulated`] from
//! [`EngineFactory::crash_model`] instead, and the case crashes it in-process.
//!
//! The suite prints its seed; set [`SEED_ENV`] to replay a run. Failures are collected per
//! case and reported together at the end.

mod concurrency;
mod crud;
mod durability;
mod errors;
mod iteration;
mod snapshot;
mod support;
mod write_batch;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use engines::Engine;

/// Environment variable that turns [`run`] into the crash-test child writer; its value is
/// the directory of the engine to write to.
pub const CRASH_CHILD_ENV: &str = "RAFTKV_ENGINE_CRASH_CHILD";

/// Environment variable holding the seed of the suite's random choices (kill points, data
/// sizes). Unset: a seed is derived from the clock and printed.
pub const SEED_ENV: &str = "RAFTKV_ENGINE_SEED";

/// Opens engines of the backend under test.
pub trait EngineFactory: Send + Sync + 'static {
    /// The backend under test.
    type Engine: Engine;

    /// Opens the engine stored at `path` with the column families `cfs`, creating it if
    /// `path` does not exist yet.
    ///
    /// Opening a path again after every handle of the engine was dropped must show the
    /// data written before (a reopen, as after a restart).
    ///
    /// # Errors
    ///
    /// Whatever the backend returns; the suite expects an error (not a panic) for a path
    /// that is a regular file.
    fn open(&self, path: &Path, cfs: &[&str]) -> engines::Result<Self::Engine>;

    /// Makes the next sync of `engine` (a synced write or [`Engine::sync`]) fail as a failed
    /// fsync would. The suite then expects the engine to refuse every later write with
    /// [`engines::Error::Poisoned`].
    fn fail_next_sync(&self, engine: &Self::Engine);

    /// How the durability case crashes the engine. The default kills a child process.
    fn crash_model(&self) -> CrashModel<Self::Engine> {
        CrashModel::KillProcess
    }
}

/// How the durability case produces a crash.
#[derive(Debug, Clone, Copy)]
pub enum CrashModel<E> {
    /// Run a child process that writes synced batches and kill it with `SIGKILL` at a
    /// random moment. For backends that store data on disk.
    KillProcess,
    /// Call this function, which must drop every write not yet synced and make existing
    /// handles unusable, then reopen through [`EngineFactory::open`]. For backends whose
    /// data does not outlive the process, such as `engines::MemoryEngine`.
    Simulated(fn(&E)),
}

/// The context of one case: the factory, a private temporary directory and the seed.
pub(crate) struct Ctx<'a, F> {
    pub(crate) factory: &'a F,
    pub(crate) test_name: &'a str,
    pub(crate) seed: u64,
    dir: &'a Path,
}

impl<F: EngineFactory> Ctx<'_, F> {
    /// A path for an engine inside the case's temporary directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens the engine at `path`, panicking with the error if that fails.
    pub(crate) fn open(&self, path: &Path, cfs: &[&str]) -> F::Engine {
        match self.factory.open(path, cfs) {
            Ok(engine) => engine,
            Err(error) => panic!("opening the engine at {} failed: {error}", path.display()),
        }
    }
}

/// A case of the suite.
type Case<F> = (&'static str, fn(&Ctx<'_, F>));

fn cases<F: EngineFactory>() -> Vec<Case<F>> {
    vec![
        ("crud", crud::crud),
        ("empty_values", crud::empty_values),
        ("key_validation", crud::key_validation),
        ("binary_key_order", crud::binary_key_order),
        ("large_values", crud::large_values),
        ("many_column_families", crud::many_column_families),
        ("every_bound_kind", iteration::every_bound_kind),
        ("scan_stops_when_asked", iteration::scan_stops_when_asked),
        ("seek_past_the_end", iteration::seek_past_the_end),
        (
            "empty_and_inverted_ranges",
            iteration::empty_and_inverted_ranges,
        ),
        (
            "iteration_while_writing",
            iteration::iteration_while_writing,
        ),
        ("snapshot_isolation", snapshot::snapshot_isolation),
        (
            "snapshot_on_another_thread",
            snapshot::snapshot_on_another_thread,
        ),
        (
            "snapshot_outlives_engine",
            snapshot::snapshot_outlives_engine,
        ),
        ("batch_bookkeeping", write_batch::batch_bookkeeping),
        ("batch_order", write_batch::batch_order),
        ("batch_atomicity", write_batch::batch_atomicity),
        ("delete_range_edges", write_batch::delete_range_edges),
        ("large_batch", write_batch::large_batch),
        (
            "concurrent_writers_and_readers",
            concurrency::concurrent_writers_and_readers,
        ),
        ("reopen_persistence", durability::reopen_persistence),
        ("crash_durability", durability::crash_durability),
        ("unknown_column_family", errors::unknown_column_family),
        (
            "invalid_column_family_names",
            errors::invalid_column_family_names,
        ),
        (
            "poisoned_after_failed_sync",
            errors::poisoned_after_failed_sync,
        ),
        ("path_is_a_regular_file", errors::path_is_a_regular_file),
    ]
}

/// Runs the whole engine suite against the backend that `factory` opens, and panics with
/// the list of failed cases if any fails.
///
/// `test_name` must be the exact libtest name of the `#[test]` function calling `run`
/// (`"engine_suite"` for a top-level `fn engine_suite` in an integration test file): the
/// crash case re-runs that test in a child process. When [`CRASH_CHILD_ENV`] is set, `run`
/// is that child and never returns.
///
/// # Panics
///
/// If any case fails; the message lists every failed case and the seed.
#[allow(clippy::print_stderr)] // progress and the seed are part of the suite's report
pub fn run<F: EngineFactory>(test_name: &str, factory: F) {
    if let Some(dir) = std::env::var_os(CRASH_CHILD_ENV) {
        durability::crash_child(&factory, Path::new(&dir));
    }
    let seed = crate::env::seed(SEED_ENV);
    eprintln!("engine suite: seed {seed} (replay with {SEED_ENV}={seed})");
    let mut failures = Vec::new();
    for (name, case) in cases::<F>() {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(error) => panic!("cannot create a temporary directory: {error}"),
        };
        let ctx = Ctx {
            factory: &factory,
            test_name,
            seed,
            dir: dir.path(),
        };
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| case(&ctx)));
        let elapsed_ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => eprintln!("engine suite: {name} ok ({elapsed_ms} ms)"),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "non-string panic".to_owned());
                eprintln!("engine suite: {name} FAILED: {message}");
                failures.push(format!("{name}: {message}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} engine conformance case(s) failed (seed {seed}, replay with {SEED_ENV}={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
