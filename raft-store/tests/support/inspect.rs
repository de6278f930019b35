//! Reading a store's engines directly, as a check after the fact.
#![allow(dead_code, clippy::unwrap_used)]

use engines::{Direction, Engine};
use prost::Message as _;
use raft_store::keys::{self, CF_DEFAULT, CF_META};
use raft_store::pb::raft_serverpb::RegionLocalState;

/// Every data key-value pair of a kv engine, in key order.
pub fn data<E: Engine>(kv: &E) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    kv.scan(
        CF_DEFAULT,
        keys::DATA_MIN_KEY..keys::DATA_MAX_KEY,
        Direction::Forward,
        |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        },
    )
    .unwrap();
    out
}

/// The persisted state of region `region_id`, if any.
pub fn region_state<E: Engine>(kv: &E, region_id: u64) -> Option<RegionLocalState> {
    kv.get(CF_META, &keys::region_state_key(region_id))
        .unwrap()
        .map(|v| RegionLocalState::decode(&v[..]).unwrap())
}
