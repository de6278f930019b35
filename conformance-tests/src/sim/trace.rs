//! [`Trace`]: a digest of everything a run did, to show that a seed replays exactly.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Hashes the delivered events and the outcomes of a run, in order. `DefaultHasher::new`
/// has fixed keys, so equal runs give equal digests within one build.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    hasher: DefaultHasher,
    events: u64,
}

impl Trace {
    /// Adds one event (or outcome) to the trace.
    pub(crate) fn record(&mut self, item: impl Hash) {
        item.hash(&mut self.hasher);
        self.events += 1;
    }

    /// Items recorded so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// The digest of everything recorded so far.
    pub(crate) fn digest(&self) -> u64 {
        self.hasher.finish()
    }
}
