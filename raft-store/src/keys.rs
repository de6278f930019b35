//! Every key the store writes, in one place.
//!
//! Two engines are involved (they may be one instance; column families keep the two
//! sets apart):
//!
//! | engine | CF | key | value |
//! |---|---|---|---|
//! | kv | `default` | `z` + user key | user value |
//! | kv | `meta` | `0x01 0x01` | `StoreIdent` |
//! | kv | `meta` | `0x01 0x04` | next local id (u64 BE) |
//! | kv | `meta` | `0x01 0x02` region_id(u64 BE) `0x03` | `RaftApplyState` |
//! | kv | `meta` | `0x01 0x03` region_id(u64 BE) `0x01` | `RegionLocalState` |
//! | kv | `meta` | `0x01 0x02` region_id(u64 BE) `0x04` | `SessionClock` (exactly-once) |
//! | kv | `meta` | `0x01 0x02` region_id(u64 BE) `0x04` client_id(u64 BE) | `ClientSession` (exactly-once) |
//! | raft | `raft` | `0x01 0x02` region_id(u64 BE) `0x01` index(u64 BE) | `eraftpb::Entry` |
//! | raft | `raft` | `0x01 0x02` region_id(u64 BE) `0x02` | `RaftLocalState` |
//!
//! Why the `z` prefix on data keys: every user key, the empty key included, maps to a
//! non-empty engine key (LMDB rejects empty keys), and the end of the key space is the
//! finite key `{` (`z` + 1), so an unbounded region end needs no special case in ranges.
//! Integers are big-endian so byte order is numeric order: a region's log entries are
//! contiguous and sorted by index.

/// The column family of user data in the kv engine.
pub const CF_DEFAULT: &str = "default";
/// The column family of the store's and regions' metadata in the kv engine.
pub const CF_META: &str = "meta";
/// The column family of raft logs and raft states in the raft engine.
pub const CF_RAFT: &str = "raft";

/// The prefix of every local (non-data) key.
pub const LOCAL_PREFIX: u8 = 0x01;
const STORE_IDENT_KEY: &[u8] = &[LOCAL_PREFIX, 0x01];
const ID_ALLOC_KEY: &[u8] = &[LOCAL_PREFIX, 0x04];
const REGION_RAFT_PREFIX: u8 = 0x02;
const REGION_META_PREFIX: u8 = 0x03;

const RAFT_LOG_SUFFIX: u8 = 0x01;
const RAFT_STATE_SUFFIX: u8 = 0x02;
const APPLY_STATE_SUFFIX: u8 = 0x03;
const CLIENT_SESSION_SUFFIX: u8 = 0x04;
const REGION_STATE_SUFFIX: u8 = 0x01;

/// The prefix of data keys.
pub const DATA_PREFIX: u8 = b'z';
/// The longest user key: its data key (one prefix byte longer) must fit the engines'
/// [`MAX_KEY_BYTES`](engines::MAX_KEY_BYTES).
pub const MAX_USER_KEY_BYTES: usize = engines::MAX_KEY_BYTES - 1;
/// The smallest data key (the start of the data key space).
pub const DATA_MIN_KEY: &[u8] = &[DATA_PREFIX];
/// One past the largest data key (the end of the data key space).
pub const DATA_MAX_KEY: &[u8] = &[DATA_PREFIX + 1];

/// The key of the store's identity.
#[must_use]
pub fn store_ident_key() -> &'static [u8] {
    STORE_IDENT_KEY
}

/// The key of the store-local id allocator.
#[must_use]
pub fn id_alloc_key() -> &'static [u8] {
    ID_ALLOC_KEY
}

/// The engine key of a user key.
#[must_use]
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The engine key that ends a region whose end key is `key` (empty: unbounded).
#[must_use]
pub fn data_end_key(key: &[u8]) -> Vec<u8> {
    if key.is_empty() {
        DATA_MAX_KEY.to_vec()
    } else {
        data_key(key)
    }
}

/// The user key of an engine data key, or `None` if it is not a data key.
#[must_use]
pub fn origin_key(key: &[u8]) -> Option<&[u8]> {
    key.strip_prefix(&[DATA_PREFIX])
}

fn region_key(prefix: u8, region_id: u64, suffix: u8, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(11 + extra);
    k.push(LOCAL_PREFIX);
    k.push(prefix);
    k.extend_from_slice(&region_id.to_be_bytes());
    k.push(suffix);
    k
}

/// One column-family range of a region's state-machine data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapRange {
    /// The column family (of the kv engine).
    pub cf: &'static str,
    /// The first engine key of the range.
    pub start: Vec<u8>,
    /// One past the last engine key of the range.
    pub end: Vec<u8>,
}

impl SnapRange {
    /// Whether `key` of `cf` lies in this range.
    #[must_use]
    pub fn contains(&self, cf: &str, key: &[u8]) -> bool {
        self.cf == cf && self.start.as_slice() <= key && key < self.end.as_slice()
    }
}

/// Every (column family, key range) holding the state-machine data of `region`, in the
/// order a snapshot carries them. This one list defines what a snapshot contains, what
/// applying one clears first, and what destroying a peer deletes: a new kind of
/// per-region data is replicated by snapshots by adding its range here.
///
/// The ranges never include the region's apply state or region state (they describe the
/// data, and are written with it).
#[must_use]
pub fn region_snapshot_ranges(region: &crate::pb::metapb::Region) -> Vec<SnapRange> {
    let (session_start, session_end) = client_session_range(region.id);
    vec![
        SnapRange {
            cf: CF_DEFAULT,
            start: data_key(&region.start_key),
            end: data_end_key(&region.end_key),
        },
        // Exactly-once sessions are replicated state: a replica that catches up by
        // snapshot and then leads must still recognise retries.
        SnapRange {
            cf: CF_META,
            start: session_start,
            end: session_end,
        },
    ]
}

/// The key of a raft log entry.
#[must_use]
pub fn raft_log_key(region_id: u64, index: u64) -> Vec<u8> {
    let mut k = region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX, 8);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The first key of a region's raft log (entries sort after it).
#[must_use]
pub fn raft_log_prefix(region_id: u64) -> Vec<u8> {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX, 0)
}

/// The log index in a raft log key of `region_id`, or `None` for any other key.
#[must_use]
pub fn raft_log_index(key: &[u8], region_id: u64) -> Option<u64> {
    let rest = key.strip_prefix(raft_log_prefix(region_id).as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The key of a region's `RaftLocalState`.
#[must_use]
pub fn raft_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX, 0)
}

/// The key of a region's `RaftApplyState`.
#[must_use]
pub fn apply_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX, 0)
}

/// The key of a client's exactly-once session in a region.
#[must_use]
pub fn client_session_key(region_id: u64, client_id: u64) -> Vec<u8> {
    let mut k = region_key(REGION_RAFT_PREFIX, region_id, CLIENT_SESSION_SUFFIX, 8);
    k.extend_from_slice(&client_id.to_be_bytes());
    k
}

/// The key of a region's session clock; it sorts before every session key of the region.
#[must_use]
pub fn client_session_clock_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_RAFT_PREFIX, region_id, CLIENT_SESSION_SUFFIX, 0)
}

/// The `[start, end)` range (kv engine, `CF_META`) of a region's exactly-once state: its
/// session clock and every client session. Part of the region's replicated state: a
/// snapshot carries it and a destroyed peer deletes it.
#[must_use]
pub fn client_session_range(region_id: u64) -> (Vec<u8>, Vec<u8>) {
    (
        client_session_clock_key(region_id),
        region_key(REGION_RAFT_PREFIX, region_id, CLIENT_SESSION_SUFFIX + 1, 0),
    )
}

/// The key of a region's `RegionLocalState`.
#[must_use]
pub fn region_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX, 0)
}

/// The range of every region state key, for scanning all regions at startup.
#[must_use]
pub fn region_state_range() -> (Vec<u8>, Vec<u8>) {
    (
        vec![LOCAL_PREFIX, REGION_META_PREFIX],
        vec![LOCAL_PREFIX, REGION_META_PREFIX + 1],
    )
}

/// The region id in a region state key, or `None` for any other key.
#[must_use]
pub fn region_state_region_id(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(&[LOCAL_PREFIX, REGION_META_PREFIX])?;
    let (id, suffix) = rest.split_at_checked(8)?;
    if suffix != [REGION_STATE_SUFFIX] {
        return None;
    }
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_log_keys_sort_by_index_and_round_trip() {
        let keys: Vec<_> = [0u64, 1, 255, 256, u64::MAX]
            .iter()
            .map(|&i| raft_log_key(7, i))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(raft_log_index(&raft_log_key(7, 300), 7), Some(300));
        assert_eq!(raft_log_index(&raft_log_key(7, 300), 8), None);
        assert_eq!(raft_log_index(&raft_state_key(7), 7), None);
        // Another region's log never interleaves.
        assert!(raft_log_key(7, u64::MAX) < raft_log_key(8, 0));
    }

    #[test]
    fn data_keys_stay_inside_the_data_space() {
        assert_eq!(data_key(b""), DATA_MIN_KEY);
        assert!(data_key(&[0xFF; 8]).as_slice() < DATA_MAX_KEY);
        assert_eq!(data_end_key(b""), DATA_MAX_KEY);
        assert_eq!(origin_key(&data_key(b"abc")), Some(&b"abc"[..]));
        assert_eq!(origin_key(b"xabc"), None);
    }

    #[test]
    fn region_state_keys_are_found_by_range() {
        let (lo, hi) = region_state_range();
        for id in [0, 1, u64::MAX] {
            let k = region_state_key(id);
            assert!(lo <= k && k < hi);
            assert_eq!(region_state_region_id(&k), Some(id));
        }
        assert_eq!(region_state_region_id(&apply_state_key(1)), None);
    }

    #[test]
    fn a_regions_session_keys_are_inside_its_session_range_only() {
        let (lo, hi) = client_session_range(7);
        for client in [0, 1, u64::MAX] {
            let k = client_session_key(7, client);
            assert!(lo <= k && k < hi);
            assert!(!(client_session_range(8).0 <= k && k < client_session_range(8).1));
        }
        assert!(lo <= client_session_clock_key(7) && client_session_clock_key(7) < hi);
        // Neither the apply state nor the region state falls inside it.
        for k in [apply_state_key(7), region_state_key(7)] {
            assert!(!(lo <= k && k < hi));
        }
    }
}
