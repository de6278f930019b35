//! The engine conformance suite on the heed (LMDB) backend.
#![cfg(feature = "heed")]

use std::path::Path;

use conformance_tests::engine::{self, EngineFactory};
use engines::HeedEngine;

struct HeedFactory;

impl EngineFactory for HeedFactory {
    type Engine = HeedEngine;

    fn open(&self, path: &Path, cfs: &[&str]) -> engines::Result<HeedEngine> {
        HeedEngine::open(path, cfs)
    }

    fn fail_next_sync(&self, engine: &HeedEngine) {
        engine.fail_next_sync();
    }
}

#[test]
fn engine_suite() {
    engine::run("engine_suite", HeedFactory);
}
