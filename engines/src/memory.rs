//! The in-memory backend: one ordered map per column family.
//!
//! Always built. Meant for tests and deterministic simulation: it keeps track of which
//! writes are durable, so [`MemoryEngine::simulate_crash`] can drop everything not synced,
//! and [`MemoryEngine::fail_next_sync`] injects a failed fsync. [`MemoryDisk`] stands in
//! for a file system: engines opened at the same path share their data.

mod disk;
mod engine;
mod snapshot;
mod write_batch;

pub use disk::MemoryDisk;
pub use engine::MemoryEngine;
pub use snapshot::MemorySnapshot;
pub use write_batch::MemoryWriteBatch;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::column_families::ColumnFamilies;
use crate::{Direction, KeyRange, Result, key_range};

/// The map of one column family.
type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Point read over a set of maps; shared by the engine and its snapshots.
fn get_in<R>(
    cfs: &ColumnFamilies,
    maps: &[Arc<Map>],
    cf: &str,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    let cf = cfs.index(cf)?;
    key_range::check_key(key)?;
    Ok(maps[cf].get(key).map(|value| f(value)))
}

/// Range scan over one map; shared by the engine and its snapshots.
fn scan_in<F>(map: &Map, range: KeyRange<'_>, direction: Direction, mut f: F)
where
    F: FnMut(&[u8], &[u8]) -> bool,
{
    let Some(range) = key_range::normalize(range) else {
        return;
    };
    let entries = map.range::<[u8], _>(range);
    match direction {
        Direction::Forward => {
            for (key, value) in entries {
                if !f(key, value) {
                    break;
                }
            }
        }
        Direction::Reverse => {
            for (key, value) in entries.rev() {
                if !f(key, value) {
                    break;
                }
            }
        }
    }
}
