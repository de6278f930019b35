//! A node's data directory and the identity file that ties it to one store.
//!
//! The first start writes `data_dir/IDENTITY` (TOML: cluster id, store id, engine, raft
//! engine); every later start reads it back and refuses a directory that belongs to another
//! store, was written by another engine or keeps its raft log in another engine, before any
//! engine opens it. The store id recorded inside the engine (`bootstrap_store`) is a second
//! check behind this one.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::node::{CLUSTER_ID, EngineKind, RaftEngineKind};

/// The identity file's name inside the data directory.
pub const IDENTITY_FILE: &str = "IDENTITY";

/// What the identity file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    cluster_id: u64,
    store_id: u64,
    engine: EngineKind,
    /// Absent from identities written before the raft engine was selectable.
    #[serde(default = "raft_engine_before_the_setting")]
    raft_engine: RaftEngineKind,
}

/// The raft engine of a directory whose identity does not name one: it was written before
/// [`RaftEngineKind::Log`] existed, when the raft log was always on the kv backend.
fn raft_engine_before_the_setting() -> RaftEngineKind {
    RaftEngineKind::Kv
}

/// Claims `dir` for store `store_id` with `engine` and its raft log in `raft_engine`:
/// creates the directory and its identity file on first use, and otherwise checks that the
/// recorded identity matches.
///
/// # Errors
/// [`Error::StoreNotMatch`] when the directory belongs to another store,
/// [`Error::DataDir`] when it was written by another engine or cluster, keeps its raft log
/// in another engine, or its identity file is unreadable, [`Error::Io`] when the directory
/// cannot be created or written.
pub fn claim(
    dir: &Path,
    store_id: u64,
    engine: EngineKind,
    raft_engine: RaftEngineKind,
) -> Result<()> {
    let wanted = Identity {
        cluster_id: CLUSTER_ID,
        store_id,
        engine,
        raft_engine,
    };
    let path = dir.join(IDENTITY_FILE);
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str::<Identity>(&text).map_err(|e| Error::DataDir {
            dir: dir.display().to_string(),
            reason: format!("unreadable {IDENTITY_FILE} file: {e}"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_identity(dir, &wanted)?;
            return Ok(());
        }
        Err(e) => return Err(Error::Io(e)),
    };
    if found.store_id != store_id {
        return Err(Error::StoreNotMatch {
            dir: dir.display().to_string(),
            store_id,
            actual_store_id: found.store_id,
        });
    }
    let mismatch = |what: String| Error::DataDir {
        dir: dir.display().to_string(),
        reason: what,
    };
    if found.cluster_id != wanted.cluster_id {
        return Err(mismatch(format!(
            "it belongs to cluster {}, not {}",
            found.cluster_id, wanted.cluster_id
        )));
    }
    if found.engine != engine {
        return Err(mismatch(format!(
            "it was written by the {:?} engine, not {engine:?}; start with that engine",
            found.engine
        )));
    }
    if found.raft_engine != raft_engine {
        // Opening the other directory would start an empty raft log beside the real one.
        return Err(mismatch(format!(
            "it keeps its raft log in {}/ (raft_engine = \"{}\"), not {}/; start with \
             raft_engine = \"{}\"",
            found.raft_engine.dir_name(),
            found.raft_engine.name(),
            raft_engine.dir_name(),
            found.raft_engine.name(),
        )));
    }
    Ok(())
}

/// Writes the identity durably: a temporary file, fsynced, renamed into place, and the
/// directory fsynced, so a crash leaves either no identity or the whole one.
fn write_identity(dir: &Path, identity: &Identity) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = toml::to_string(identity).map_err(|e| Error::DataDir {
        dir: dir.display().to_string(),
        reason: format!("cannot encode the identity: {e}"),
    })?;
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(IDENTITY_FILE))?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_first_claim_writes_the_identity_and_later_ones_check_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        claim(&data, 3, EngineKind::Fjall, RaftEngineKind::Log).unwrap();
        assert!(data.join(IDENTITY_FILE).is_file());
        claim(&data, 3, EngineKind::Fjall, RaftEngineKind::Log).unwrap();

        let err = claim(&data, 4, EngineKind::Fjall, RaftEngineKind::Log).unwrap_err();
        assert!(
            matches!(
                err,
                Error::StoreNotMatch {
                    store_id: 4,
                    actual_store_id: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = claim(&data, 3, EngineKind::Memory, RaftEngineKind::Log).unwrap_err();
        assert!(err.to_string().contains("Fjall engine"), "{err}");
        let err = claim(&data, 3, EngineKind::Fjall, RaftEngineKind::Kv).unwrap_err();
        assert!(matches!(err, Error::DataDir { .. }), "{err}");
        assert!(err.to_string().contains("raft_engine = \"log\""), "{err}");
    }

    #[test]
    fn an_identity_without_a_raft_engine_keeps_its_raft_log_on_the_kv_backend() {
        let dir = tempfile::tempdir().unwrap();
        // What a data directory written before the setting existed holds.
        let old = "cluster_id = 1\nstore_id = 2\nengine = \"fjall\"\n";
        std::fs::write(dir.path().join(IDENTITY_FILE), old).unwrap();

        let err = claim(dir.path(), 2, EngineKind::Fjall, RaftEngineKind::Log).unwrap_err();
        assert!(matches!(err, Error::DataDir { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("raft/"), "{message}");
        assert!(message.contains("raft_engine = \"kv\""), "{message}");
        claim(dir.path(), 2, EngineKind::Fjall, RaftEngineKind::Kv).unwrap();
        // The identity is only read, never rewritten.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap(),
            old
        );
    }

    #[test]
    fn a_corrupt_identity_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), "store_id = \"x\"").unwrap();
        let err = claim(dir.path(), 1, EngineKind::Fjall, RaftEngineKind::Log).unwrap_err();
        assert!(matches!(err, Error::DataDir { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap(),
            "store_id = \"x\""
        );
    }
}
