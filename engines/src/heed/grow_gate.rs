//! The gate that keeps LMDB transactions out while the map is resized.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Bit of [`GrowGate::state`] set while a resize is pending or running; the other bits
/// count the open transactions.
const PENDING: u64 = 1 << 63;

/// Counts the transactions of one environment so the map can be resized while none is
/// open, as LMDB requires of `mdb_env_set_mapsize`.
///
/// Every transaction (read, write, snapshot) is opened after [`enter`](GrowGate::enter)
/// and closed before its guard is dropped. [`grow`](GrowGate::grow) marks a resize
/// pending, so new transactions wait, waits until the open ones are closed, and runs the
/// resize while the count is zero.
///
/// Invariant: while the resize closure runs, the count is zero and `PENDING` is set, so no
/// transaction of this process is open.
#[derive(Debug, Default)]
pub(super) struct GrowGate {
    state: AtomicU64,
    /// Guards the waits below; no data.
    mutex: Mutex<()>,
    /// Signalled when the count drops to zero with a resize pending, and when a resize
    /// ends.
    changed: Condvar,
    /// Held by the one thread resizing at a time.
    grower: Mutex<()>,
}

/// A borrowed pass through the gate: keeps a resize out until dropped.
pub(super) struct GateGuard<'a>(&'a GrowGate);

/// An owned pass through the gate, held by a snapshot for its lifetime.
pub(super) struct OwnedGateGuard(Arc<GrowGate>);

impl GrowGate {
    /// Waits while a resize is pending, then counts one more open transaction.
    pub(super) fn enter(&self) -> GateGuard<'_> {
        self.acquire();
        GateGuard(self)
    }

    /// As [`enter`](GrowGate::enter), for a guard that outlives the borrow.
    pub(super) fn enter_owned(self: &Arc<Self>) -> OwnedGateGuard {
        self.acquire();
        OwnedGateGuard(Arc::clone(self))
    }

    /// Number of open transactions.
    pub(super) fn open_count(&self) -> u64 {
        self.state.load(Ordering::SeqCst) & !PENDING
    }

    fn acquire(&self) {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            if state & PENDING != 0 {
                let mut lock = self.mutex.lock();
                while self.state.load(Ordering::SeqCst) & PENDING != 0 {
                    self.changed.wait(&mut lock);
                }
                state = self.state.load(Ordering::SeqCst);
                continue;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    fn release(&self) {
        let previous = self.state.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(
            previous & !PENDING > 0,
            "gate released more often than entered"
        );
        if previous & PENDING != 0 && previous & !PENDING == 1 {
            let _lock = self.mutex.lock();
            self.changed.notify_all();
        }
    }

    /// Runs `resize` once no transaction is open, keeping new ones out meanwhile. Gives up
    /// with `None` if transactions stay open for `wait`; new transactions are let in again
    /// either way.
    ///
    /// The calling thread must not hold a guard of this gate, or it waits for itself until
    /// `wait` runs out.
    pub(super) fn grow<T>(&self, wait: Duration, resize: impl FnOnce() -> T) -> Option<T> {
        let _grower = self.grower.lock();
        self.state.fetch_or(PENDING, Ordering::SeqCst);
        let deadline = Instant::now() + wait;
        let drained = {
            let mut lock = self.mutex.lock();
            loop {
                if self.open_count() == 0 {
                    break true;
                }
                if self.changed.wait_until(&mut lock, deadline).timed_out() {
                    break self.open_count() == 0;
                }
            }
        };
        let result = drained.then(|| {
            debug_assert_eq!(
                self.open_count(),
                0,
                "a transaction is open during a resize"
            );
            resize()
        });
        self.state.fetch_and(!PENDING, Ordering::SeqCst);
        let _lock = self.mutex.lock();
        self.changed.notify_all();
        result
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Drop for OwnedGateGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_runs_only_without_open_transactions() {
        let gate = Arc::new(GrowGate::default());
        let held = gate.enter_owned();
        assert_eq!(
            gate.grow(Duration::from_millis(1), || ()),
            None,
            "a guard is open"
        );
        let (ran, released) = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| gate.grow(Duration::from_secs(600), || gate.open_count()));
            // Wait until the resize is pending, then release the guard.
            while gate.state.load(Ordering::SeqCst) & PENDING == 0 {
                std::thread::yield_now();
            }
            drop(held);
            (waiter.join().unwrap(), gate.open_count())
        });
        assert_eq!(ran, Some(0), "the resize ran with no transaction open");
        assert_eq!(released, 0);
        let guard = gate.enter();
        assert_eq!(gate.open_count(), 1);
        drop(guard);
        assert_eq!(gate.open_count(), 0);
    }
}
