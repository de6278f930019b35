//! The pair of engines a store runs on.

/// The two engines of a store: `kv` holds the state machine (region data, applied index),
/// `raft` holds the raft log and raft state.
///
/// They may be two instances of one backend, two different backends, or two handles of one
/// engine (with distinct column families).
///
/// # Correctness
///
/// Nothing is atomic across the two engines: a store must write the raft log durably before
/// it applies entries to `kv`, and recover `kv`'s applied index from `kv` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Engines<K, R> {
    /// The state machine engine.
    pub kv: K,
    /// The raft log engine.
    pub raft: R,
}

impl<K, R> Engines<K, R> {
    /// Pairs a state machine engine with a raft log engine.
    pub const fn new(kv: K, raft: R) -> Self {
        Self { kv, raft }
    }
}
