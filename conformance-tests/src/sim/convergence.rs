//! The end state of a healed cluster: every region's members caught up with its leader,
//! and its replicas holding identical data.

use std::collections::BTreeMap;

use engines::Iterable;
use raft_store::keys::{self, CF_DEFAULT};
use raft_store::pb::metapb::Region;

use super::node::Node;
use crate::cluster::routing::{epoch, learn_region};

/// The (engine key, value) pairs of a range.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The newest version of every region some running store has an initialized peer of.
pub(crate) fn newest_regions(nodes: &BTreeMap<u64, Node>) -> BTreeMap<u64, Region> {
    let mut newest: BTreeMap<u64, Region> = BTreeMap::new();
    for store in nodes.values().filter_map(Node::store) {
        for status in store.region_statuses() {
            if !status.region.peers.is_empty() {
                learn_region(&mut newest, status.region);
            }
        }
    }
    newest
}

/// `Ok` when the cluster is quiet and caught up: no work queued anywhere, and for every
/// region a leader whose commit index every member (all running) has applied, each at
/// the newest epoch. Otherwise what is still missing.
pub(crate) fn caught_up(nodes: &BTreeMap<u64, Node>) -> Result<(), String> {
    for (id, node) in nodes {
        if node.store().is_none() {
            return Err(format!("store {id} is down"));
        }
        if node.has_region_task() || !node.mailbox.is_empty() {
            return Err(format!("store {id} has work queued"));
        }
    }
    for (region_id, region) in newest_regions(nodes) {
        let members: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
        let statuses: Vec<_> = members
            .iter()
            .map(|m| {
                nodes[m]
                    .store()
                    .and_then(|s| {
                        s.region_statuses()
                            .into_iter()
                            .find(|st| st.region.id == region_id)
                    })
                    .ok_or_else(|| format!("region {region_id} has no peer on store {m} yet"))
            })
            .collect::<Result<_, _>>()?;
        let leader = statuses
            .iter()
            .find(|s| s.is_leader)
            .ok_or_else(|| format!("region {region_id} has no leader"))?;
        for (m, s) in members.iter().zip(&statuses) {
            if s.applied_index != leader.commit_index || epoch(&s.region) != epoch(&region) {
                return Err(format!(
                    "region {region_id} on store {m}: applied {} of {}, epoch {:?} of {:?}",
                    s.applied_index,
                    leader.commit_index,
                    epoch(&s.region),
                    epoch(&region)
                ));
            }
        }
    }
    Ok(())
}

/// Checks that every member of every region holds the same data in the region's range.
pub(crate) fn replicas_agree(nodes: &BTreeMap<u64, Node>) -> Result<(), String> {
    for (region_id, region) in newest_regions(nodes) {
        let lo = keys::data_key(&region.start_key);
        let hi = keys::data_end_key(&region.end_key);
        let mut first: Option<(u64, Pairs)> = None;
        for peer in &region.peers {
            let mut data = Vec::new();
            nodes[&peer.store_id]
                .kv()
                .scan(
                    CF_DEFAULT,
                    lo.as_slice()..hi.as_slice(),
                    engines::Direction::Forward,
                    |k, v| {
                        data.push((k.to_vec(), v.to_vec()));
                        true
                    },
                )
                .map_err(|e| format!("scanning store {}: {e}", peer.store_id))?;
            match &first {
                None => first = Some((peer.store_id, data)),
                Some((other, expected)) if *expected != data => {
                    return Err(format!(
                        "replicas of region {region_id} diverge: store {other} holds {} \
                         pairs {:?}, store {} holds {} pairs {:?}",
                        expected.len(),
                        show(expected),
                        peer.store_id,
                        data.len(),
                        show(&data)
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn show(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}
