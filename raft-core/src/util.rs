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

/// Truncates `entries` so their total size stays within `max_size`, always keeping at
/// least the first entry so progress is possible with oversized entries.
pub fn limit_size(entries: &mut Vec<Entry>, max_size: Option<u64>) {
    let Some(max_size) = max_size else { return };
    if entries.len() <= 1 {
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
