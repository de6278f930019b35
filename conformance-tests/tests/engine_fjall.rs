//! The engine conformance suite on the fjall backend.
#![cfg(feature = "fjall")]

use std::path::Path;

use conformance_tests::engine::{self, EngineFactory};
use engines::FjallEngine;

struct FjallFactory;

impl EngineFactory for FjallFactory {
    type Engine = FjallEngine;

    fn open(&self, path: &Path, cfs: &[&str]) -> engines::Result<FjallEngine> {
        FjallEngine::open(path, cfs)
    }

    fn fail_next_sync(&self, engine: &FjallEngine) {
        engine.fail_next_sync();
    }
}

#[test]
fn engine_suite() {
    engine::run("engine_suite", FjallFactory);
}
