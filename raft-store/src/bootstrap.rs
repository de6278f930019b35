//! Initializing a new store and its first region.

use engines::{Engine, WriteBatch, WriteOptions};
use prost::Message as _;

use crate::error::{Error, Result};
use crate::keys::{self, CF_META};
use crate::pb::metapb::Region;
use crate::pb::raft_serverpb::{PeerState, StoreIdent};
use crate::peer_storage::{PeerStorage, get_msg, write_region_state};

/// Records that the kv engine belongs to store `store_id` of cluster `cluster_id`; a
/// store reopening its own data passes, any other identity is refused.
///
/// # Errors
/// [`Error::StoreNotMatch`] when the engine belongs to another store or cluster, or an
/// engine failure.
pub fn bootstrap_store<EK: Engine>(kv: &EK, cluster_id: u64, store_id: u64) -> Result<()> {
    if store_id == 0 {
        return Err(Error::Other("store id 0 is reserved".into()));
    }
    if let Some(ident) = get_msg::<StoreIdent>(kv, CF_META, keys::store_ident_key())? {
        if ident.store_id != store_id || ident.cluster_id != cluster_id {
            return Err(Error::StoreNotMatch {
                request_store_id: store_id,
                actual_store_id: ident.store_id,
            });
        }
        return Ok(());
    }
    let mut wb = kv.write_batch();
    let ident = StoreIdent {
        cluster_id,
        store_id,
    };
    wb.put(CF_META, keys::store_ident_key(), &ident.encode_to_vec())?;
    kv.write(&wb, WriteOptions::synced())?;
    Ok(())
}

/// Writes the first region of a new cluster (every initial store writes the same one),
/// unless the store already holds regions.
///
/// # Errors
/// An engine failure.
pub fn bootstrap_region<ER: Engine, EK: Engine>(
    raft: &ER,
    kv: &EK,
    region: &Region,
) -> Result<bool> {
    let existing = kv.get(CF_META, &keys::region_state_key(region.id))?;
    let (lo, hi) = keys::region_state_range();
    let any = kv.seek(
        CF_META,
        lo.as_slice()..hi.as_slice(),
        engines::Direction::Forward,
    )?;
    if existing.is_some() || any.is_some() {
        return Ok(false);
    }
    let storage = PeerStorage::new(raft.clone(), kv.clone(), region.clone())?;
    let mut raft_wb = raft.write_batch();
    storage.write_raft_state(&mut raft_wb)?;
    raft.write(&raft_wb, WriteOptions::synced())?;
    let mut kv_wb = kv.write_batch();
    storage.write_apply_state(&mut kv_wb)?;
    write_region_state(&mut kv_wb, region, PeerState::Normal)?;
    kv.write(&kv_wb, WriteOptions::synced())?;
    Ok(true)
}
