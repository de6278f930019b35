//! [`StaticResolver`]: a [`StoreResolver`] over a configured map.

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::{StoreId, StoreResolver};

/// A [`StoreResolver`] backed by a map set from configuration (and tests).
#[derive(Debug, Default)]
pub struct StaticResolver {
    addrs: RwLock<HashMap<StoreId, String>>,
}

impl StaticResolver {
    /// A resolver that knows `addrs`.
    #[must_use]
    pub fn new(addrs: impl IntoIterator<Item = (StoreId, String)>) -> Self {
        Self {
            addrs: RwLock::new(addrs.into_iter().collect()),
        }
    }

    /// Sets (or replaces) the address of `store`.
    pub fn insert(&self, store: StoreId, addr: impl Into<String>) {
        self.addrs.write().insert(store, addr.into());
    }

    /// Forgets the address of `store`.
    pub fn remove(&self, store: StoreId) {
        self.addrs.write().remove(&store);
    }
}

impl StoreResolver for StaticResolver {
    fn resolve(&self, store: StoreId) -> Option<String> {
        self.addrs.read().get(&store).cloned()
    }
}
