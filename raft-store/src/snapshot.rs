//! Region snapshots: built from the kv engine at the applied index, applied atomically.
//!
//! Crash safety of applying: the kv batch (data, apply state with the truncated index at
//! the snapshot, region state) is written and synced first, then the raft engine batch
//! (old log deleted, raft state moved to the snapshot). A crash between the two leaves a
//! raft state behind the truncated index, which [`PeerStorage::new`] repairs by moving
//! the log's end up to the snapshot. Since the kv batch is atomic, no "applying" state is
//! ever visible.

use bytes::Bytes;
use engines::{Direction, Engine, WriteBatch, WriteOptions};
use prost::Message as _;
use raft_core::eraftpb::{Snapshot, SnapshotMetadata};

use crate::error::{Error, Result};
use crate::keys::{self, CF_DEFAULT, CF_RAFT};
use crate::pb::metapb::Region;
use crate::pb::raft_serverpb::{
    PeerState, RaftApplyState, RaftTruncatedState, SnapshotData, SnapshotKv,
};
use crate::peer_storage::{PeerStorage, conf_state_from_region, write_region_state};

fn checksum(kvs: &[SnapshotKv]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for kv in kvs {
        h.update(kv.cf.as_bytes());
        h.update(&(kv.key.len() as u32).to_le_bytes());
        h.update(&kv.key);
        h.update(&(kv.value.len() as u32).to_le_bytes());
        h.update(&kv.value);
    }
    h.finalize()
}

/// Builds a snapshot of `region` at `(index, term)` from `engine`, which must hold the
/// state applied exactly up to `index`.
///
/// # Errors
/// An engine failure.
pub fn build_snapshot<EK: Engine>(
    engine: &EK,
    region: &Region,
    index: u64,
    term: u64,
) -> Result<Snapshot> {
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut kvs = Vec::new();
    engine.scan(
        CF_DEFAULT,
        start.as_slice()..end.as_slice(),
        Direction::Forward,
        |k, v| {
            kvs.push(SnapshotKv {
                cf: CF_DEFAULT.to_owned(),
                key: Bytes::copy_from_slice(k),
                value: Bytes::copy_from_slice(v),
            });
            true
        },
    )?;
    let data = SnapshotData {
        region: Some(region.clone()),
        checksum: checksum(&kvs),
        kvs,
    };
    Ok(Snapshot {
        data: data.encode_to_vec().into(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(conf_state_from_region(region)),
            index,
            term,
        }),
    })
}

/// Decodes and verifies a snapshot's data.
///
/// # Errors
/// [`Error::Corruption`] when it does not decode or its checksum or keys are wrong.
pub fn decode_snapshot(snapshot: &Snapshot) -> Result<SnapshotData> {
    let data = SnapshotData::decode(snapshot.data.clone())?;
    if checksum(&data.kvs) != data.checksum {
        return Err(Error::Corruption("snapshot checksum mismatch".into()));
    }
    let region = data.region.clone().unwrap_or_default();
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    for kv in &data.kvs {
        if kv.cf != CF_DEFAULT || kv.key[..] < start[..] || kv.key[..] >= end[..] {
            return Err(Error::Corruption(format!(
                "snapshot key {:?} outside its region",
                kv.key
            )));
        }
    }
    Ok(data)
}

impl<ER: Engine, EK: Engine> PeerStorage<ER, EK> {
    /// Applies a snapshot received from the leader: replaces the region's data and state
    /// in the kv engine (synced), and stages the raft state and the deletion of the old
    /// log into `raft_wb`. Returns the snapshot's region.
    ///
    /// # Errors
    /// A corrupt snapshot or an engine failure.
    pub fn apply_snapshot(
        &mut self,
        snapshot: &Snapshot,
        raft_wb: &mut ER::WriteBatch,
    ) -> Result<Region> {
        let data = decode_snapshot(snapshot)?;
        let meta = snapshot.metadata.clone().unwrap_or_default();
        let region = data.region.unwrap_or_default();
        if region.id != self.region().id {
            return Err(Error::Corruption(format!(
                "snapshot of region {} sent to region {}",
                region.id,
                self.region().id
            )));
        }
        let kv = self.kv_engine().clone();
        let mut kv_wb = kv.write_batch();
        let old = self.region().clone();
        for r in [&old, &region] {
            if r.peers.is_empty() {
                // An uninitialized peer owns no range yet.
                continue;
            }
            let start = keys::data_key(&r.start_key);
            let end = keys::data_end_key(&r.end_key);
            kv_wb.delete_range(CF_DEFAULT, start.as_slice()..end.as_slice())?;
        }
        for pair in &data.kvs {
            kv_wb.put(CF_DEFAULT, &pair.key, &pair.value)?;
        }
        let apply_state = RaftApplyState {
            applied_index: meta.index,
            applied_term: meta.term,
            truncated_state: Some(RaftTruncatedState {
                index: meta.index,
                term: meta.term,
            }),
        };
        crate::peer_storage::write_apply_state(&mut kv_wb, region.id, &apply_state)?;
        write_region_state(&mut kv_wb, &region, PeerState::Normal)?;
        kv.write(&kv_wb, WriteOptions::synced())?;
        crate::store_metrics::snapshot_applied(snapshot.data.len());

        let log_start = keys::raft_log_prefix(region.id);
        let log_end = keys::raft_log_key(region.id, meta.index + 1);
        raft_wb.delete_range(CF_RAFT, log_start.as_slice()..log_end.as_slice())?;
        self.set_apply_state(apply_state);
        self.set_snapshot_raft_state(meta.index, meta.term);
        self.set_region(region.clone());
        self.write_raft_state(raft_wb)?;
        Ok(region)
    }
}
