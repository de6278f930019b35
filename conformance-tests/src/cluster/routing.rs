//! What the harness's two clients — the live [`Client`](super::Client) and the
//! simulation's `SimClient` — share: the region cache that routes a key to a region and a
//! store, the exactly-once session that numbers writes, the request an operation sends,
//! and what its answer means. The clients differ only in how they wait (async runtime or
//! virtual-time events).

use std::collections::BTreeMap;

use raft_store::RegionStatus;
use raft_store::pb::errorpb;
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse, Request, RequestHeader};
use rand::Rng;
use rand::seq::IndexedRandom;

use super::requests;
use crate::linearizability::{KvInput, KvOutput};

/// What to do after an error answer.
#[derive(Debug)]
pub(crate) enum Retry {
    /// Not the leader; the hint names the leader's store if known.
    NotLeader(Option<u64>),
    /// Routing is stale; these regions (maybe none) are newer.
    Reroute(Vec<Region>),
    /// Not applied; try again after a pause.
    Backoff,
    /// May have been applied (the error does not say it was not).
    Ambiguous,
    /// Not applied, and retrying cannot help.
    Fatal,
}

/// A client's picture of the cluster: the newest version it has seen of each region, and
/// the store it believes leads each.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    regions: BTreeMap<u64, Region>,
    leaders: BTreeMap<u64, u64>,
}

impl Routes {
    /// Regions known.
    pub(crate) fn len(&self) -> usize {
        self.regions.len()
    }

    /// The newest version known of the region holding `key`.
    pub(crate) fn region_for(&self, key: &[u8]) -> Option<&Region> {
        newest_region_for(&self.regions, key)
    }

    /// Keeps `region` if it is newer than the version known.
    pub(crate) fn learn(&mut self, region: Region) {
        learn_region(&mut self.regions, region);
    }

    /// Learns what store `store` reports of its regions (and which it leads).
    pub(crate) fn learn_statuses(&mut self, store: u64, statuses: Vec<RegionStatus>) {
        for status in statuses {
            if status.is_leader {
                self.leaders.insert(status.region.id, store);
            }
            self.learn(status.region);
        }
    }

    /// Believes `store` leads region `region_id`.
    pub(crate) fn set_leader(&mut self, region_id: u64, store: u64) {
        self.leaders.insert(region_id, store);
    }

    /// Forgets who leads region `region_id`.
    pub(crate) fn forget_leader(&mut self, region_id: u64) {
        self.leaders.remove(&region_id);
    }

    /// The region holding `key` and the store to ask: its believed leader if that is a
    /// member and `usable`, otherwise a random usable member. `None` when the key's region
    /// is unknown or no member is usable.
    pub(crate) fn target(
        &self,
        key: &[u8],
        usable: impl Fn(u64) -> bool,
        rng: &mut impl Rng,
    ) -> Option<(Region, u64)> {
        let region = self.region_for(key)?;
        let is_member = |s: u64| region.peers.iter().any(|p| p.store_id == s);
        let store = match self.leaders.get(&region.id) {
            Some(&leader) if is_member(leader) && usable(leader) => leader,
            _ => {
                let candidates: Vec<u64> = region
                    .peers
                    .iter()
                    .map(|p| p.store_id)
                    .filter(|&s| usable(s))
                    .collect();
                *candidates.choose(rng)?
            }
        };
        Some((region.clone(), store))
    }
}

/// An exactly-once session: its id and the sequence number of its next write.
#[derive(Debug)]
pub(crate) struct Session {
    id: u64,
    next: u64,
}

impl Session {
    /// Session `id` (unique among the clients of a cluster), before its first write.
    pub(crate) fn new(id: u64) -> Self {
        Self { id, next: 1 }
    }

    /// The sequence number of an operation doing `input`: the next one for a write, 0
    /// (outside any session) for a read.
    pub(crate) fn sequence_for(&mut self, input: &KvInput) -> u64 {
        if !input.is_write() {
            return 0;
        }
        self.next += 1;
        self.next - 1
    }

    /// The sequence number the next write will get (unique per write of the session).
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next
    }

    /// The command that runs `input` on `key` in `region`, as write `sequence` of this
    /// session (0: a read, outside the session). One write is in flight at a time, so
    /// nothing older is awaited.
    pub(crate) fn command(
        &self,
        region: &Region,
        key: &[u8],
        input: &KvInput,
        sequence: u64,
        timestamp_ms: u64,
    ) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RequestHeader {
                region_id: region.id,
                region_epoch: region.region_epoch,
                client_id: if sequence > 0 { self.id } else { 0 },
                sequence,
                first_awaited_sequence: sequence,
                timestamp_ms,
                ..Default::default()
            }),
            requests: vec![request_for(key, input)],
            admin_request: None,
        }
    }
}

/// The newest version known in `regions` of the region holding `key`.
fn newest_region_for<'a>(regions: &'a BTreeMap<u64, Region>, key: &[u8]) -> Option<&'a Region> {
    regions
        .values()
        .filter(|r| raft_store::region_check::key_in_region(key, r))
        .max_by_key(|r| epoch(r))
}

/// Keeps `region` in `regions` if it is newer than the version known.
pub(crate) fn learn_region(regions: &mut BTreeMap<u64, Region>, region: Region) {
    match regions.get(&region.id) {
        Some(known) if epoch(known) >= epoch(&region) => {}
        _ => {
            regions.insert(region.id, region);
        }
    }
}

/// A region's epoch as an ordered pair; both parts only grow.
pub(crate) fn epoch(region: &Region) -> (u64, u64) {
    region
        .region_epoch
        .map_or((0, 0), |e| (e.version, e.conf_ver))
}

/// The request that runs `input` on `key`.
fn request_for(key: &[u8], input: &KvInput) -> Request {
    match input {
        KvInput::Get => requests::get(key),
        KvInput::Put(value) => requests::put(key, value),
        KvInput::Delete => requests::delete(key),
        KvInput::Cas { expected, new } => requests::cas(key, expected.as_deref(), new.as_deref()),
    }
}

/// The output of a successful answer to `input`, or what to do about an error.
pub(crate) fn classify(resp: &RaftCmdResponse, input: &KvInput) -> Result<KvOutput, Retry> {
    if let Some(e) = resp.header.as_ref().and_then(|h| h.error.as_ref()) {
        return Err(classify_error(e));
    }
    Ok(match input {
        KvInput::Get => {
            let get = resp
                .responses
                .first()
                .and_then(|r| r.get.as_ref())
                .ok_or(Retry::Ambiguous)?;
            KvOutput::Get(get.found.then(|| get.value.to_vec()))
        }
        KvInput::Put(_) => KvOutput::Put,
        KvInput::Delete => KvOutput::Delete,
        KvInput::Cas { .. } => {
            let cas = resp
                .responses
                .first()
                .and_then(|r| r.cas.as_ref())
                .ok_or(Retry::Ambiguous)?;
            KvOutput::Cas {
                succeeded: cas.succeeded,
                previous: cas.previous_found.then(|| cas.previous_value.to_vec()),
            }
        }
    })
}

/// What an error answer means for the operation.
fn classify_error(e: &errorpb::Error) -> Retry {
    if let Some(not_leader) = &e.not_leader {
        Retry::NotLeader(not_leader.leader.map(|p| p.store_id))
    } else if let Some(epoch) = &e.epoch_not_match {
        Retry::Reroute(epoch.current_regions.clone())
    } else if e.key_not_in_region.is_some() || e.store_not_match.is_some() {
        Retry::Reroute(Vec::new())
    } else if e.stale_command.is_some() || e.server_is_busy.is_some() {
        Retry::Backoff
    } else if e.raft_entry_too_large.is_some() {
        Retry::Fatal
    } else {
        // RegionNotFound may come from a peer destroyed with the command pending (its
        // entry may still commit elsewhere); anything unclassified is treated the same.
        Retry::Ambiguous
    }
}
