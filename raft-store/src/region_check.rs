//! Checks of a request against a region: epoch and key range.

use raft_core::eraftpb::ConfChangeType;

use crate::error::{Error, Result};
use crate::pb::metapb::Region;
use crate::pb::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest};

/// Which parts of the epoch a command depends on.
fn epoch_dependencies(req: &RaftCmdRequest) -> (bool, bool) {
    match req.admin_request.as_ref().map(|a| a.cmd_type()) {
        // (conf_ver, version)
        Some(AdminCmdType::ChangePeer | AdminCmdType::ChangePeerV2) => (true, false),
        Some(AdminCmdType::Split | AdminCmdType::BatchSplit) => (true, true),
        Some(AdminCmdType::TransferLeader) => (true, true),
        Some(AdminCmdType::CompactLog | AdminCmdType::InvalidAdmin) => (false, false),
        None => (false, true),
    }
}

/// Fails with `EpochNotMatch` when the request's epoch differs from the region's in a
/// part the command depends on (conf changes on `conf_ver`, data on `version`).
///
/// # Errors
/// [`Error::EpochNotMatch`] carrying the current region.
pub fn check_epoch(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    let (check_conf_ver, check_version) = epoch_dependencies(req);
    if !check_conf_ver && !check_version {
        return Ok(());
    }
    let current = region.region_epoch.unwrap_or_default();
    let Some(epoch) = req.header.as_ref().and_then(|h| h.region_epoch) else {
        return Err(Error::EpochNotMatch {
            message: "request carries no region epoch".into(),
            current_regions: vec![region.clone()],
        });
    };
    if (check_conf_ver && epoch.conf_ver != current.conf_ver)
        || (check_version && epoch.version != current.version)
    {
        return Err(Error::EpochNotMatch {
            message: format!(
                "request epoch {epoch:?}, region {} epoch {current:?}",
                region.id
            ),
            current_regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// Fails unless every peer a conf change adds fits the region: a store holds at most one
/// peer of a region (its peers are kept by region id), and a peer id names one store. An
/// addition on a store that has another peer of the region (even one this change removes:
/// in a joint configuration both would be members) is refused; so is an id already used
/// on another store. Promoting a learner (same id, same store) is allowed.
///
/// # Errors
/// [`Error::Other`] naming the conflicting peers.
pub fn check_conf_change(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    let Some(admin) = req.admin_request.as_ref() else {
        return Ok(());
    };
    let changes = admin
        .change_peer
        .iter()
        .chain(admin.change_peer_v2.iter().flat_map(|v| &v.changes));
    for change in changes {
        let adds = matches!(
            ConfChangeType::try_from(change.change_type),
            Ok(ConfChangeType::AddNode | ConfChangeType::AddLearnerNode)
        );
        let Some(new) = change.peer.filter(|_| adds) else {
            continue;
        };
        if let Some(old) = region
            .peers
            .iter()
            .find(|p| (p.store_id == new.store_id) != (p.id == new.id))
        {
            return Err(Error::Other(format!(
                "region {}: cannot add peer {} on store {}: peer {} on store {} is a member",
                region.id, new.id, new.store_id, old.id, old.store_id
            )));
        }
    }
    Ok(())
}

/// Whether `key` is inside `[start_key, end_key)` (an empty end key is unbounded).
#[must_use]
pub fn key_in_region(key: &[u8], region: &Region) -> bool {
    key >= &region.start_key[..] && (region.end_key.is_empty() || key < &region.end_key[..])
}

/// Fails with `KeyNotInRegion` unless `key` is in the region.
///
/// # Errors
/// [`Error::KeyNotInRegion`].
pub fn check_key_in_region(key: &[u8], region: &Region) -> Result<()> {
    if key_in_region(key, region) {
        return Ok(());
    }
    Err(Error::KeyNotInRegion {
        key: key.to_vec(),
        region_id: region.id,
        start_key: region.start_key.to_vec(),
        end_key: region.end_key.to_vec(),
    })
}

/// Checks every key and range a command touches.
///
/// # Errors
/// [`Error::KeyNotInRegion`] for the first key outside the region.
pub fn check_keys(req: &RaftCmdRequest, region: &Region) -> Result<()> {
    // A request missing its body checks as the empty key, which the region may or may
    // not hold; applying it later fails cleanly either way.
    let empty: &[u8] = &[];
    for r in &req.requests {
        match r.cmd_type() {
            CmdType::Get => check_key_in_region(r.get.as_ref().map_or(empty, |g| &g.key), region)?,
            CmdType::Put => check_key_in_region(r.put.as_ref().map_or(empty, |p| &p.key), region)?,
            CmdType::Delete => {
                check_key_in_region(r.delete.as_ref().map_or(empty, |d| &d.key), region)?;
            }
            CmdType::DeleteRange => {
                let (start, end) = r
                    .delete_range
                    .as_ref()
                    .map_or((empty, empty), |d| (&d.start_key[..], &d.end_key[..]));
                check_range_in_region(start, end, region)?;
            }
            CmdType::Scan => {
                let (start, end) = r
                    .scan
                    .as_ref()
                    .map_or((empty, empty), |s| (&s.start_key[..], &s.end_key[..]));
                check_range_in_region(start, end, region)?;
            }
            CmdType::CompareAndSwap => {
                check_key_in_region(r.cas.as_ref().map_or(empty, |c| &c.key), region)?;
            }
            CmdType::Snap | CmdType::Invalid => {}
        }
    }
    Ok(())
}

/// Fails when a key a command reads or writes is longer than
/// [`MAX_USER_KEY_BYTES`](crate::keys::MAX_USER_KEY_BYTES) (range bounds may be longer):
/// the engines refuse such keys, which must not reach them from apply.
///
/// # Errors
/// [`Error::Other`] naming the size.
pub fn check_key_sizes(req: &RaftCmdRequest) -> Result<()> {
    let max = crate::keys::MAX_USER_KEY_BYTES;
    for r in &req.requests {
        let key = match r.cmd_type() {
            CmdType::Get => r.get.as_ref().map(|g| &g.key),
            CmdType::Put => r.put.as_ref().map(|p| &p.key),
            CmdType::Delete => r.delete.as_ref().map(|d| &d.key),
            CmdType::CompareAndSwap => r.cas.as_ref().map(|c| &c.key),
            CmdType::DeleteRange | CmdType::Scan | CmdType::Snap | CmdType::Invalid => None,
        };
        if let Some(key) = key.filter(|k| k.len() > max) {
            return Err(Error::Other(format!(
                "bad request: a key of {} bytes is longer than the {max}-byte limit",
                key.len()
            )));
        }
    }
    Ok(())
}

fn check_range_in_region(start: &[u8], end: &[u8], region: &Region) -> Result<()> {
    check_key_in_region(start, region)?;
    let end_ok = if region.end_key.is_empty() {
        true
    } else {
        !end.is_empty() && end <= &region.end_key[..]
    };
    if !end_ok {
        return Err(Error::KeyNotInRegion {
            key: end.to_vec(),
            region_id: region.id,
            start_key: region.start_key.to_vec(),
            end_key: region.end_key.to_vec(),
        });
    }
    Ok(())
}

/// Whether every request of the command only reads.
#[must_use]
pub fn is_read_only(req: &RaftCmdRequest) -> bool {
    req.admin_request.is_none()
        && !req.requests.is_empty()
        && req
            .requests
            .iter()
            .all(|r| matches!(r.cmd_type(), CmdType::Get | CmdType::Scan | CmdType::Snap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::metapb::RegionEpoch;
    use crate::pb::raft_cmdpb::{PutRequest, Request, RequestHeader};

    fn region() -> Region {
        Region {
            id: 1,
            start_key: b"b".to_vec().into(),
            end_key: b"m".to_vec().into(),
            region_epoch: Some(RegionEpoch {
                conf_ver: 2,
                version: 3,
            }),
            ..Default::default()
        }
    }

    fn put(key: &[u8], epoch: RegionEpoch) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RequestHeader {
                region_id: 1,
                region_epoch: Some(epoch),
                ..Default::default()
            }),
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    key: key.to_vec().into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            admin_request: None,
        }
    }

    #[test]
    fn data_commands_check_version_only() {
        let r = region();
        assert!(
            check_epoch(
                &put(
                    b"c",
                    RegionEpoch {
                        conf_ver: 9,
                        version: 3
                    }
                ),
                &r
            )
            .is_ok()
        );
        let err = check_epoch(
            &put(
                b"c",
                RegionEpoch {
                    conf_ver: 2,
                    version: 2,
                },
            ),
            &r,
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::EpochNotMatch { ref current_regions, .. } if current_regions[0].id == 1)
        );
    }

    #[test]
    fn keys_outside_the_range_are_rejected() {
        let r = region();
        assert!(check_keys(&put(b"b", RegionEpoch::default()), &r).is_ok());
        assert!(matches!(
            check_keys(&put(b"m", RegionEpoch::default()), &r),
            Err(Error::KeyNotInRegion { .. })
        ));
        assert!(matches!(
            check_keys(&put(b"a", RegionEpoch::default()), &r),
            Err(Error::KeyNotInRegion { .. })
        ));
        let unbounded = Region {
            end_key: Default::default(),
            ..region()
        };
        assert!(check_keys(&put(b"zzzz", RegionEpoch::default()), &unbounded).is_ok());
    }
}
