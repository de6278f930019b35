//! Generating a region snapshot: the region's ranges, read from a point-in-time engine
//! snapshot, staged as a checksummed stream.

use std::io::BufWriter;
use std::time::Instant;

use engines::{Direction, Iterable};
use raft_core::eraftpb::SnapshotMetadata;
use tracing::info;

use super::chunk::ChunkWriter;
use super::{SnapKey, SnapKind, SnapManager, SnapshotError};
use crate::error::{Error, Result};
use crate::keys::region_snapshot_ranges;
use crate::pb::metapb::Region;
use crate::pb::raft_serverpb::SnapshotMeta;
use crate::peer_storage::conf_state_from_region;

/// Stages a snapshot of `region` at `(index, term)` read from `view`, which must hold the
/// state applied exactly up to `index` (an engine snapshot taken at that moment), and
/// returns its descriptor. Memory use is one frame and one record, whatever the region's
/// size.
///
/// # Errors
/// An engine failure while reading, or an I/O failure while staging; nothing is staged.
pub fn generate_snapshot<S: Iterable>(
    mgr: &SnapManager,
    view: &S,
    region: &Region,
    index: u64,
    term: u64,
) -> Result<SnapshotMeta> {
    let started = Instant::now();
    let key = SnapKey {
        region_id: region.id,
        term,
        index,
    };
    let chunk_bytes = mgr.chunk_bytes();
    let summary = mgr.stage(SnapKind::Generated, key, |file| {
        let mut writer =
            ChunkWriter::new(BufWriter::new(file), chunk_bytes).map_err(SnapshotError::from)?;
        for range in region_snapshot_ranges(region) {
            let mut failed = None;
            view.scan(
                range.cf,
                range.start.as_slice()..range.end.as_slice(),
                Direction::Forward,
                |k, v| match writer.put(range.cf, k, v) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                },
            )?;
            if let Some(e) = failed {
                return Err(Error::from(e));
            }
        }
        let (_, summary) = writer.finish().map_err(SnapshotError::from)?;
        Ok::<_, Error>(summary)
    })?;
    let meta = SnapshotMeta {
        region_id: region.id,
        region: Some(region.clone()),
        raft_meta: Some(SnapshotMetadata {
            conf_state: Some(conf_state_from_region(region)),
            index,
            term,
        }),
        size_bytes: summary.size_bytes,
        checksum: summary.checksum,
        key_count: summary.key_count,
        frame_count: summary.frame_count,
        chunk_bytes: chunk_bytes as u64,
    };
    let seconds = started.elapsed().as_secs_f64();
    crate::store_metrics::snapshot_generated(summary.size_bytes, summary.key_count, seconds);
    info!(
        region_id = region.id,
        index,
        term,
        size_bytes = summary.size_bytes,
        keys = summary.key_count,
        seconds,
        "snapshot generated"
    );
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use engines::{Engine, MemoryEngine, WriteBatch, WriteOptions};

    use super::*;
    use crate::config::Config;
    use crate::keys::{self, CF_DEFAULT, CF_META};
    use crate::pb::metapb::Peer;
    use crate::snapshot::chunk::StreamDecoder;

    fn put(engine: &MemoryEngine, key: &[u8], value: &[u8]) {
        let mut wb = engine.write_batch();
        wb.put(CF_DEFAULT, &keys::data_key(key), value).unwrap();
        engine.write(&wb, WriteOptions::unsynced()).unwrap();
    }

    #[test]
    fn generation_reads_the_point_in_time_view_and_only_the_region() {
        let engine = MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap();
        for k in [&b"a"[..], b"b", b"c", b"x"] {
            put(&engine, k, b"old");
        }
        let view = engine.snapshot().unwrap();
        // Writes after the view never reach the snapshot.
        put(&engine, b"b", b"new");
        put(&engine, b"bb", b"new");
        let region = Region {
            id: 3,
            start_key: b"b".to_vec().into(),
            end_key: b"x".to_vec().into(),
            peers: vec![Peer {
                id: 1,
                store_id: 1,
                role: 0,
            }],
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            snap_chunk_bytes: 8,
            ..Config::default()
        };
        let mgr = SnapManager::open(dir.path(), &cfg).unwrap();
        let meta = generate_snapshot(&mgr, &view, &region, 42, 7).unwrap();
        assert_eq!(meta.key_count, 2);
        assert!(meta.frame_count > 2, "small frames");
        let key = SnapKey::of(&meta);
        assert_eq!((key.region_id, key.term, key.index), (3, 7, 42));

        let bytes = std::fs::read(mgr.path(SnapKind::Generated, key)).unwrap();
        let mut decoder = StreamDecoder::new(&meta);
        let mut seen = Vec::new();
        decoder
            .push(&bytes, &mut |r| {
                seen.push((r.key.to_vec(), r.value.to_vec()));
                Ok::<(), SnapshotError>(())
            })
            .unwrap();
        decoder.finish().unwrap().check_against(&meta).unwrap();
        assert_eq!(
            seen,
            vec![
                (keys::data_key(b"b"), b"old".to_vec()),
                (keys::data_key(b"c"), b"old".to_vec()),
            ]
        );
    }
}
