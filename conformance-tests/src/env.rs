//! Knobs of the randomized tests read from the environment: soak lengths and replay seeds.

use std::time::{SystemTime, UNIX_EPOCH};

/// The number in environment variable `name`; `None` when it is unset or not a number.
#[must_use]
pub fn u64_var(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The seed of a randomized run: the number in `name` (set to replay a run), otherwise one
/// drawn from the clock. The caller reports it, so that a failure can be replayed.
#[must_use]
pub fn seed(name: &str) -> u64 {
    u64_var(name).unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    })
}
