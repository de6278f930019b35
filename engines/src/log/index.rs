//! The in-memory index of the log backend: where on disk each live value lies.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;

use super::format::{Op, Ops};
use crate::key_range::{self, BorrowedRange};
use crate::{Direction, Error, KeyRange, Result};

/// Where a value lies: `len` bytes at `offset` of segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) offset: u64,
    pub(super) segment: u32,
    pub(super) len: u32,
}

/// The keys of one column family and where their values lie.
///
/// A persistent map: a clone shares every node and costs O(1), and a write to a shared map
/// copies only the O(log n) nodes on its path. A scan or snapshot taken while writes go on
/// (the raft worker reading entries while the log GC deletes) so never copies the whole
/// index, which a `BTreeMap` behind an `Arc` would (about 100 ms per million keys).
pub(super) type Map = imbl::OrdMap<Box<[u8]>, Location>;

/// Open segment files by id.
pub(super) type Files = BTreeMap<u32, Arc<File>>;

/// Everything readers need: one map per catalog column family and the files the maps
/// point into.
///
/// Maps and the file table are shared with snapshots and running scans, and copied on
/// write while shared (the maps only along the written path), so a reader sees the state
/// of the moment it took them.
#[derive(Default)]
pub(super) struct Index {
    /// Indexed by catalog id, so column families on disk but not opened are kept too.
    pub(super) maps: Vec<Map>,
    pub(super) files: Arc<Files>,
    /// Live value bytes per segment; a segment with none can be deleted once every older
    /// segment is gone.
    live: HashMap<u32, u64>,
}

impl Index {
    /// Makes room for `count` catalog column families.
    pub(super) fn ensure_cfs(&mut self, count: usize) {
        while self.maps.len() < count {
            self.maps.push(Map::new());
        }
    }

    /// Live value bytes in `segment`.
    pub(super) fn live_bytes(&self, segment: u32) -> u64 {
        self.live.get(&segment).copied().unwrap_or(0)
    }

    /// Live value bytes in every segment.
    pub(super) fn total_live_bytes(&self) -> u64 {
        self.live.values().sum()
    }

    fn add_live(&mut self, location: Location) {
        *self.live.entry(location.segment).or_default() += u64::from(location.len);
    }

    fn remove_live(&mut self, location: Location) {
        if let Some(live) = self.live.get_mut(&location.segment) {
            *live = live.saturating_sub(u64::from(location.len));
        }
    }

    /// Applies the operations of a batch body that lies at `body_offset` of `segment`.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] for a body that does not decode or names a column family
    /// beyond the catalog; operations before the bad one are applied.
    pub(super) fn apply(&mut self, body: &[u8], segment: u32, body_offset: u64) -> Result<()> {
        for op in Ops::new(body) {
            match op? {
                Op::Put {
                    cf,
                    key,
                    value_at,
                    value_len,
                } => {
                    let len = u32::try_from(value_len).map_err(|_| {
                        Error::Corruption(format!("log record: value of {value_len} bytes"))
                    })?;
                    let location = Location {
                        offset: body_offset + value_at as u64,
                        segment,
                        len,
                    };
                    let map = self.map_mut(cf)?;
                    let replaced = match map.get_mut(key) {
                        Some(old) => Some(std::mem::replace(old, location)),
                        None => {
                            map.insert(key.into(), location);
                            None
                        }
                    };
                    if let Some(old) = replaced {
                        self.remove_live(old);
                    }
                    self.add_live(location);
                }
                Op::Delete { cf, key } => {
                    if let Some(old) = self.map_mut(cf)?.remove(key) {
                        self.remove_live(old);
                    }
                }
                Op::DeleteRange { cf, range } => {
                    let map = self.map_mut(cf)?;
                    let keys: Vec<Box<[u8]>> = map
                        .range::<_, [u8]>(range)
                        .map(|(key, _)| key.clone())
                        .collect();
                    let removed: Vec<Location> =
                        keys.iter().filter_map(|key| map.remove(key)).collect();
                    for old in removed {
                        self.remove_live(old);
                    }
                }
            }
        }
        Ok(())
    }

    fn map_mut(&mut self, cf: u32) -> Result<&mut Map> {
        let map = self.maps.get_mut(cf as usize).ok_or_else(|| {
            Error::Corruption(format!(
                "log record: column family {cf} is not in the catalog"
            ))
        })?;
        Ok(map)
    }

    /// Adds a segment file readers can read from.
    pub(super) fn add_file(&mut self, segment: u32, file: Arc<File>) {
        Arc::make_mut(&mut self.files).insert(segment, file);
    }

    /// Forgets a segment file; its values must all be dead.
    pub(super) fn remove_file(&mut self, segment: u32) {
        Arc::make_mut(&mut self.files).remove(&segment);
        self.live.remove(&segment);
    }

    /// Every live key of `segment`, with its catalog column family and location.
    pub(super) fn live_in(&self, segment: u32) -> Vec<(u32, Box<[u8]>, Location)> {
        let mut found = Vec::new();
        for (cf, map) in self.maps.iter().enumerate() {
            for (key, location) in map.iter() {
                if location.segment == segment {
                    found.push((cf as u32, key.clone(), *location));
                }
            }
        }
        found
    }
}

/// Reads the value at `location` into `buf` (replacing its content).
pub(super) fn read_value(files: &Files, location: Location, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    if location.len == 0 {
        return Ok(());
    }
    let file = files.get(&location.segment).ok_or_else(|| {
        Error::Corruption(format!(
            "log index points into segment {} which is not open",
            location.segment
        ))
    })?;
    buf.resize(location.len as usize, 0);
    file.read_exact_at(buf, location.offset)?;
    Ok(())
}

/// Point read shared by the engine and its snapshots.
pub(super) fn get_in<R>(
    map: &Map,
    files: &Files,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    key_range::check_key(key)?;
    let Some(location) = map.get(key) else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    read_value(files, *location, &mut buf)?;
    Ok(Some(f(&buf)))
}

/// Range scan shared by the engine and its snapshots.
pub(super) fn scan_in<F>(
    map: &Map,
    files: &Files,
    range: KeyRange<'_>,
    direction: Direction,
    mut f: F,
) -> Result<()>
where
    F: FnMut(&[u8], &[u8]) -> bool,
{
    let Some(range): Option<BorrowedRange<'_>> = key_range::normalize(range) else {
        return Ok(());
    };
    let mut buf = Vec::new();
    let mut visit = |key: &[u8], location: Location| -> Result<bool> {
        read_value(files, location, &mut buf)?;
        Ok(f(key, &buf))
    };
    let entries = map.range::<_, [u8]>(range);
    match direction {
        Direction::Forward => {
            for (key, location) in entries {
                if !visit(key, *location)? {
                    break;
                }
            }
        }
        Direction::Reverse => {
            for (key, location) in entries.rev() {
                if !visit(key, *location)? {
                    break;
                }
            }
        }
    }
    Ok(())
}
