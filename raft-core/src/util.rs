//! Small helpers shared by the log and the message paths.

use prost::Message as _;

use crate::eraftpb::Entry;

/// The size in bytes an entry takes on the wire, used for every byte limit in the core.
#[must_use]
pub fn entry_size(entry: &Entry) -> u64 {
    entry.encoded_len() as u64
}

/// The payload bytes an entry adds to the uncommitted-log budget.
#[must_use]
pub fn payload_size(entry: &Entry) -> u64 {
    entry.data.len() as u64
}

/// An upper bound of [`entry_size`] that encodes nothing: one-byte tags, every varint at
/// its longest (10 bytes), plus the payloads.
#[must_use]
pub fn entry_size_bound(entry: &Entry) -> u64 {
    // Five one-byte tags; entry_type, term and index as varints; two length prefixes.
    const FIXED_MAX: u64 = 5 + 3 * 10 + 2 * 10;
    FIXED_MAX + entry.data.len() as u64 + entry.context.len() as u64
}

/// Truncates `entries` so their total size stays within `max_size`, always keeping at
/// least the first entry so progress is possible with oversized entries.
pub fn limit_size(entries: &mut Vec<Entry>, max_size: Option<u64>) {
    let Some(max_size) = max_size else { return };
    if entries.len() <= 1 {
        return;
    }
    // Common case first: when even the upper bounds fit, nothing is cut and no entry
    // needs encoding.
    let bound = entries
        .iter()
        .fold(0u64, |sum, e| sum.saturating_add(entry_size_bound(e)));
    if bound <= max_size {
        return;
    }
    let mut size = 0u64;
    let keep = entries
        .iter()
        .take_while(|e| {
            size = size.saturating_add(entry_size(e));
            size <= max_size
        })
        .count()
        .max(1);
    entries.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: vec![7u8; bytes].into(),
            ..Default::default()
        }
    }

    #[test]
    fn entry_size_bound_is_an_upper_bound() {
        let widest = Entry {
            entry_type: -1,
            term: u64::MAX,
            index: u64::MAX,
            data: vec![1u8; 300].into(),
            context: vec![2u8; 200].into(),
        };
        for e in [Entry::default(), entry(1, 0), entry(7, 256), widest] {
            assert!(entry_size_bound(&e) >= entry_size(&e), "{e:?}");
        }
    }

    #[test]
    fn limit_size_keeps_at_least_one_entry() {
        let mut es = vec![entry(1, 100), entry(2, 100)];
        limit_size(&mut es, Some(0));
        assert_eq!(es.len(), 1);
    }

    #[test]
    fn limit_size_cuts_at_the_byte_limit() {
        let mut es: Vec<_> = (1..=10).map(|i| entry(i, 100)).collect();
        let one = entry_size(&es[0]);
        limit_size(&mut es, Some(one * 3 + one / 2));
        assert_eq!(es.len(), 3);
        let mut all: Vec<_> = (1..=10).map(|i| entry(i, 100)).collect();
        limit_size(&mut all, None);
        assert_eq!(all.len(), 10);
    }
}
