//! A kv write batch being filled by apply, whose pending writes are visible to reads.
//!
//! Apply stages a whole group of committed entries into one write batch, written with
//! the applied index after the group (atomicity). A command that reads while applying
//! (compare-and-swap) must still see the writes of the entries before it, which are only
//! in the batch: every write goes both to the batch and to this overlay, and a read looks
//! at the overlay before the engine.
//!
//! Invariant: for every key, `get` returns what the engine would hold if the batch were
//! written now. The overlay sees only the writes made through it; a peer's writes go to
//! its own region's keys, which no other peer's apply touches (regions are disjoint), so
//! sharing the underlying batch with other peers' applies is safe.

use std::collections::BTreeMap;

use bytes::Bytes;
use engines::{Engine, WriteBatch};

use crate::error::Result;

/// A write batch with read-your-writes over an engine.
pub(crate) struct ApplyOverlay<'a, E: Engine> {
    engine: E,
    wb: &'a mut E::WriteBatch,
    /// The latest pending state of each written key: `Some` value or `None` (deleted).
    pending: BTreeMap<(&'static str, Vec<u8>), Option<Bytes>>,
    /// Ranges deleted in this batch: keys inside them not in `pending` are absent.
    deleted_ranges: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
}

impl<'a, E: Engine> ApplyOverlay<'a, E> {
    /// An overlay over `engine` that stages writes into `wb`.
    pub(crate) fn new(engine: E, wb: &'a mut E::WriteBatch) -> Self {
        Self {
            engine,
            wb,
            pending: BTreeMap::new(),
            deleted_ranges: Vec::new(),
        }
    }

    /// Stages a write of `value` at `key`.
    pub(crate) fn put(&mut self, cf: &'static str, key: Vec<u8>, value: Bytes) -> Result<()> {
        self.wb.put(cf, &key, &value)?;
        self.pending.insert((cf, key), Some(value));
        Ok(())
    }

    /// Stages a deletion of `key`.
    pub(crate) fn delete(&mut self, cf: &'static str, key: Vec<u8>) -> Result<()> {
        self.wb.delete(cf, &key)?;
        self.pending.insert((cf, key), None);
        Ok(())
    }

    /// Stages a deletion of every key in `[start, end)`.
    pub(crate) fn delete_range(
        &mut self,
        cf: &'static str,
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> Result<()> {
        self.wb.delete_range(cf, start.as_slice()..end.as_slice())?;
        if start >= end {
            return Ok(());
        }
        // Keys written earlier in the batch are deleted too; later writes re-create them.
        let inside: Vec<_> = self
            .pending
            .range((cf, start.clone())..(cf, end.clone()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in inside {
            self.pending.remove(&k);
        }
        self.deleted_ranges.push((cf, start, end));
        Ok(())
    }

    /// The value of `key` with this batch's pending writes applied over the engine.
    pub(crate) fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some(state) = self.pending.get(&(cf, key.to_vec())) {
            return Ok(state.clone());
        }
        let deleted = self
            .deleted_ranges
            .iter()
            .any(|(c, s, e)| *c == cf && s.as_slice() <= key && key < e.as_slice());
        if deleted {
            return Ok(None);
        }
        Ok(self.engine.get(cf, key)?.map(Bytes::from))
    }

    /// The batch itself, for writes apply never reads back (region and apply states);
    /// they bypass the overlay.
    pub(crate) fn write_batch(&mut self) -> &mut E::WriteBatch {
        self.wb
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use engines::{Engine, MemoryEngine, Peekable, WriteBatch, WriteOptions};

    use super::*;

    const CF: &str = "default";

    fn engine_with(pairs: &[(&[u8], &[u8])]) -> MemoryEngine {
        let engine = MemoryEngine::new(&[CF, "meta"]).unwrap();
        let mut wb = engine.write_batch();
        for (k, v) in pairs {
            wb.put(CF, k, v).unwrap();
        }
        engine.write(&wb, WriteOptions::default()).unwrap();
        engine
    }

    fn get(o: &ApplyOverlay<'_, MemoryEngine>, key: &[u8]) -> Option<Vec<u8>> {
        o.get(CF, key).unwrap().map(|b| b.to_vec())
    }

    #[test]
    fn reads_see_pending_puts_and_deletes_before_the_engine() {
        let engine = engine_with(&[(b"a", b"1"), (b"b", b"2")]);
        let mut wb = engine.write_batch();
        let mut o = ApplyOverlay::new(engine.clone(), &mut wb);
        assert_eq!(get(&o, b"a"), Some(b"1".to_vec()));
        o.put(CF, b"a".to_vec(), Bytes::from_static(b"9")).unwrap();
        o.delete(CF, b"b".to_vec()).unwrap();
        o.put(CF, b"c".to_vec(), Bytes::from_static(b"3")).unwrap();
        assert_eq!(get(&o, b"a"), Some(b"9".to_vec()));
        assert_eq!(get(&o, b"b"), None);
        assert_eq!(get(&o, b"c"), Some(b"3".to_vec()));
        // The engine itself is untouched until the batch is written.
        assert_eq!(engine.get(CF, b"a").unwrap(), Some(b"1".to_vec()));
        drop(o);
        engine.write(&wb, WriteOptions::default()).unwrap();
        assert_eq!(engine.get(CF, b"a").unwrap(), Some(b"9".to_vec()));
        assert_eq!(engine.get(CF, b"b").unwrap(), None);
    }

    #[test]
    fn a_delete_range_hides_engine_and_earlier_pending_keys_but_not_later_puts() {
        let engine = engine_with(&[(b"a", b"1"), (b"c", b"3"), (b"e", b"5")]);
        let mut wb = engine.write_batch();
        let mut o = ApplyOverlay::new(engine.clone(), &mut wb);
        o.put(CF, b"b".to_vec(), Bytes::from_static(b"2")).unwrap();
        o.delete_range(CF, b"b".to_vec(), b"e".to_vec()).unwrap();
        assert_eq!(get(&o, b"a"), Some(b"1".to_vec()), "before the range");
        assert_eq!(get(&o, b"b"), None, "pending put inside the range");
        assert_eq!(get(&o, b"c"), None, "engine key inside the range");
        assert_eq!(get(&o, b"e"), Some(b"5".to_vec()), "the end is exclusive");
        o.put(CF, b"c".to_vec(), Bytes::from_static(b"new"))
            .unwrap();
        assert_eq!(
            get(&o, b"c"),
            Some(b"new".to_vec()),
            "a put after the range"
        );
        drop(o);
        // What the overlay showed is what the engine holds once the batch is written.
        engine.write(&wb, WriteOptions::default()).unwrap();
        assert_eq!(engine.get(CF, b"b").unwrap(), None);
        assert_eq!(engine.get(CF, b"c").unwrap(), Some(b"new".to_vec()));
        assert_eq!(engine.get(CF, b"e").unwrap(), Some(b"5".to_vec()));
    }

    #[test]
    fn column_families_are_kept_apart_and_empty_ranges_delete_nothing() {
        let engine = engine_with(&[(b"k", b"data")]);
        let mut wb = engine.write_batch();
        let mut o = ApplyOverlay::new(engine.clone(), &mut wb);
        o.put("meta", b"k".to_vec(), Bytes::from_static(b"meta"))
            .unwrap();
        o.delete_range("meta", b"a".to_vec(), b"z".to_vec())
            .unwrap();
        o.delete_range(CF, b"z".to_vec(), b"a".to_vec()).unwrap();
        assert_eq!(get(&o, b"k"), Some(b"data".to_vec()));
        assert_eq!(o.get("meta", b"k").unwrap(), None);
    }
}
