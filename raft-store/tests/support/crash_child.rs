//! Crash tests run their own test binary as a child process and kill it.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The seed in the environment variable `var`, or one from the clock (the caller prints
/// it, so a failure replays).
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Starts this test binary running only `test_name`, with `env_var` (the child's cue)
/// set to `dir`, its stdout piped to the caller.
pub fn spawn(test_name: &str, env_var: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env_var, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
