//! The [`StoreResolver`] trait.

use crate::StoreId;

/// Maps a store id to the network address of its transport endpoint.
///
/// # Correctness
///
/// Transports call `resolve` on every (re)connect, so an address change takes effect at the
/// next reconnect. It must not block: answer from memory.
pub trait StoreResolver: Send + Sync + 'static {
    /// The address (`host:port`) of `store`, or `None` if unknown.
    fn resolve(&self, store: StoreId) -> Option<String>;
}
