//! The engine conformance suite on the log backend.
#![cfg(unix)]

use std::path::Path;

use conformance_tests::engine::{self, EngineFactory};
use engines::{LogEngine, LogOptions};

/// Opens log engines with `LogOptions`.
struct LogFactory(LogOptions);

impl EngineFactory for LogFactory {
    type Engine = LogEngine;

    fn open(&self, path: &Path, cfs: &[&str]) -> engines::Result<LogEngine> {
        LogEngine::open_with(path, cfs, self.0)
    }

    fn fail_next_sync(&self, engine: &LogEngine) {
        engine.fail_next_sync();
    }
}

#[test]
fn engine_suite() {
    engine::run("engine_suite", LogFactory(LogOptions::default()));
}

/// Segments of 4 KiB, so the suite's writes roll over, purge and rewrite segments all the
/// time, the crash case included.
#[test]
fn engine_suite_small_segments() {
    let options = LogOptions {
        segment_bytes: 4096,
    };
    engine::run("engine_suite_small_segments", LogFactory(options));
}
