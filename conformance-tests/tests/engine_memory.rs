//! The engine conformance suite on the memory backend.

use std::path::Path;

use conformance_tests::engine::{self, CrashModel, EngineFactory};
use engines::{MemoryDisk, MemoryEngine};

/// Memory engines by path; the crash case crashes them in-process.
struct MemoryFactory {
    disk: MemoryDisk,
}

impl EngineFactory for MemoryFactory {
    type Engine = MemoryEngine;

    fn open(&self, path: &Path, cfs: &[&str]) -> engines::Result<MemoryEngine> {
        self.disk.open(path, cfs)
    }

    fn fail_next_sync(&self, engine: &MemoryEngine) {
        engine.fail_next_sync();
    }

    fn crash_model(&self) -> CrashModel<MemoryEngine> {
        CrashModel::Simulated(MemoryEngine::simulate_crash)
    }
}

#[test]
fn engine_suite() {
    engine::run(
        "engine_suite",
        MemoryFactory {
            disk: MemoryDisk::new(),
        },
    );
}
