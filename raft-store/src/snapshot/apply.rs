//! Applying a staged snapshot to the kv engine, and clearing ranges, in bounded batches.
//!
//! Neither is atomic: a region is applied under `PeerState::Applying`, which nothing
//! reads, and redone from the start (clearing first) after a crash or a failure.

use std::io::Read;

use engines::{Direction, Engine, WriteBatch, WriteOptions};

use super::chunk::{RecordOrder, StreamDecoder, StreamSummary};
use super::{SnapKey, SnapKind, SnapManager, SnapshotError};
use crate::error::{Error, Result};
use crate::keys::{SnapRange, region_snapshot_ranges};
use crate::pb::raft_serverpb::SnapshotMeta;

/// Bytes read from a staged file at a time.
const READ_BYTES: usize = 64 << 10;

/// Deletes every key of `ranges`, in unsynced batches of about `batch_bytes` of keys.
/// Returns how many keys it deleted.
///
/// # Errors
/// An engine failure (some batches may be written).
pub fn clear_ranges<E: Engine>(
    engine: &E,
    ranges: &[SnapRange],
    batch_bytes: usize,
) -> Result<u64> {
    let mut deleted = 0u64;
    let mut wb = engine.write_batch();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for range in ranges {
        let mut from = range.start.clone();
        loop {
            keys.clear();
            let mut bytes = 0usize;
            engine.scan(
                range.cf,
                from.as_slice()..range.end.as_slice(),
                Direction::Forward,
                |k, _| {
                    keys.push(k.to_vec());
                    bytes += k.len();
                    bytes < batch_bytes
                },
            )?;
            let Some(last) = keys.last() else { break };
            // The next scan starts just after the last key deleted.
            from.clone_from(last);
            from.push(0);
            wb.clear();
            for k in &keys {
                wb.delete(range.cf, k)?;
            }
            engine.write(&wb, WriteOptions::unsynced())?;
            deleted += keys.len() as u64;
        }
    }
    Ok(deleted)
}

/// Clears the region `meta` describes and writes the snapshot's staged data into it, in
/// unsynced batches of about `batch_bytes`, verifying the stream as it goes. Returns the
/// last batch, not yet written, so the caller can add the region's new state to it and
/// write it synced; and the stream's totals.
///
/// # Errors
/// [`SnapshotError::Missing`] when the staged data is gone, any stream error when it is
/// corrupt (the region is then partly written: the caller must clear it), or an engine
/// failure.
pub fn apply_staged<E: Engine>(
    engine: &E,
    mgr: &SnapManager,
    meta: &SnapshotMeta,
    batch_bytes: usize,
) -> Result<(E::WriteBatch, StreamSummary)> {
    let key = SnapKey::of(meta);
    let staged = mgr
        .acquire(SnapKind::Received, key)
        .ok_or(SnapshotError::Missing(key))?;
    let mut file = staged.open()?;
    let region = meta.region.clone().unwrap_or_default();
    let ranges = region_snapshot_ranges(&region);
    clear_ranges(engine, &ranges, batch_bytes)?;
    let mut decoder = StreamDecoder::new(meta);
    let mut order = RecordOrder::new(ranges);
    let mut wb = engine.write_batch();
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SnapshotError::from(e).into()),
        };
        decoder.push(&buf[..n], &mut |r| {
            order.check(&r)?;
            wb.put(r.cf, r.key, r.value)?;
            if wb.size_bytes() >= batch_bytes {
                engine.write(&wb, WriteOptions::unsynced())?;
                wb.clear();
            }
            Ok::<(), Error>(())
        })?;
    }
    let summary = decoder.finish()?;
    summary.check_against(meta)?;
    Ok((wb, summary))
}
