//! Point-in-time read views.

use crate::{Iterable, Peekable};

/// A consistent point-in-time read view of every column family of an engine.
///
/// # Correctness
///
/// An implementation must guarantee:
/// - The view contains exactly the writes that returned before
///   [`Engine::snapshot`](crate::Engine::snapshot) returned, across all column families,
///   and never a part of a batch.
/// - Later writes, deletes and range deletes are invisible to it.
/// - It is `Send + Sync + 'static`: it can be moved to and shared by other threads and stays
///   readable after every handle of the engine that made it was dropped (it keeps the
///   backend open until it is dropped itself).
///
/// Snapshots pin old data: keep them short-lived. On the heed backend an open snapshot also
/// delays growth of the LMDB map (see [`HeedEngine`](crate#backends)).
///
/// # Errors
///
/// As for [`Peekable`] and [`Iterable`].
pub trait Snapshot: Peekable + Iterable + Send + Sync + 'static {}
