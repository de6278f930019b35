//! Region and peer ids, unique across the cluster without a central service.

use engines::{Engine, WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::keys::{self, CF_META};

/// Bits of an id that hold the allocating store's id; the rest hold a counter.
pub const STORE_ID_BITS: u32 = 20;

/// Allocates ids as `counter << STORE_ID_BITS | store_id`: two stores never produce the
/// same id, and the counter is persisted (synced) before an id is handed out, so a
/// restarted store never reuses one. Counters start at 1, so allocated ids never collide
/// with the small ids a cluster is bootstrapped with.
#[derive(Debug)]
pub struct IdAllocator {
    store_id: u64,
    next: u64,
}

impl IdAllocator {
    /// Loads the allocator of `store_id` from the kv engine.
    ///
    /// # Errors
    /// A store id that does not fit in [`STORE_ID_BITS`], or an engine failure.
    pub fn load<EK: Engine>(kv: &EK, store_id: u64) -> Result<Self> {
        if store_id == 0 || store_id >= 1 << STORE_ID_BITS {
            return Err(Error::Other(format!(
                "store id {store_id} must be in [1, 2^{STORE_ID_BITS})"
            )));
        }
        let next = match kv.get(CF_META, keys::id_alloc_key())? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| Error::Corruption("id allocator value".into()))?,
            ),
            None => 1,
        };
        Ok(Self { store_id, next })
    }

    /// Hands out a new id, persisting the counter first.
    ///
    /// # Errors
    /// An engine failure (no id is handed out then).
    pub fn alloc<EK: Engine>(&mut self, kv: &EK) -> Result<u64> {
        let counter = self.next;
        if counter >= 1 << (64 - STORE_ID_BITS) {
            return Err(Error::Other("id space exhausted".into()));
        }
        let mut wb = kv.write_batch();
        wb.put(CF_META, keys::id_alloc_key(), &(counter + 1).to_be_bytes())?;
        kv.write(&wb, WriteOptions::synced())?;
        self.next = counter + 1;
        Ok(counter << STORE_ID_BITS | self.store_id)
    }
}

#[cfg(test)]
mod tests {
    use engines::MemoryEngine;

    use super::*;

    #[test]
    fn ids_are_unique_across_stores_and_restarts() {
        let kv1 = MemoryEngine::new(&[CF_META]).unwrap();
        let kv2 = MemoryEngine::new(&[CF_META]).unwrap();
        let mut a = IdAllocator::load(&kv1, 1).unwrap();
        let mut b = IdAllocator::load(&kv2, 2).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            assert!(seen.insert(a.alloc(&kv1).unwrap()));
            assert!(seen.insert(b.alloc(&kv2).unwrap()));
        }
        let mut a2 = IdAllocator::load(&kv1, 1).unwrap();
        assert!(
            seen.insert(a2.alloc(&kv1).unwrap()),
            "a reloaded allocator never repeats"
        );
        assert!(seen.iter().all(|&id| id > 1 << STORE_ID_BITS));
        assert!(IdAllocator::load(&kv1, 1 << STORE_ID_BITS).is_err());
    }
}
