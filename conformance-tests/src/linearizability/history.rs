//! [`History`]: the operations clients invoked and what came back, recorded by a
//! [`Recorder`] shared between concurrent clients.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// A key of the key-value model.
pub type Key = Vec<u8>;
/// A value of the key-value model.
pub type Value = Vec<u8>;

/// What a client asked for on one key. `V` is the value type (bytes by default; the
/// checker interns values to small integers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput<V = Value> {
    /// Reads the key.
    Get,
    /// Sets the key to a value.
    Put(V),
    /// Removes the key.
    Delete,
    /// Compare-and-swap: if the current value equals `expected` (`None`: the key is
    /// absent), sets it to `new` (`None`: deletes it). Returns whether it did and the value
    /// found.
    Cas {
        /// The value the key must hold (`None`: absent).
        expected: Option<V>,
        /// The value to store (`None`: delete).
        new: Option<V>,
    },
}

impl<V> KvInput<V> {
    /// Whether the operation can change the key.
    #[must_use]
    pub fn is_write(&self) -> bool {
        !matches!(self, KvInput::Get)
    }
}

/// What came back from a completed operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput<V = Value> {
    /// A get's result (`None`: absent).
    Get(Option<V>),
    /// A put completed.
    Put,
    /// A delete completed.
    Delete,
    /// A compare-and-swap's result.
    Cas {
        /// Whether the swap happened.
        succeeded: bool,
        /// The value found (`None`: absent).
        previous: Option<V>,
    },
}

/// How an operation ended, as far as its client knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect, with this result.
    Ok(KvOutput),
    /// It definitely did not take effect (refused before it could be applied, or
    /// superseded). The checker ignores it.
    Failed,
    /// The client does not know (timed out, connection lost, store stopped): it may take
    /// effect at any time after its invocation, or never.
    Unknown,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it; a client issues one operation at a time.
    pub client: u64,
    /// The key it touched.
    pub key: Key,
    /// What was asked.
    pub input: KvInput,
    /// How it ended.
    pub outcome: Outcome,
    /// Logical time of the invocation (before the request left the client).
    pub invoked_at: u64,
    /// Logical time of the return (after the answer arrived); `None` when the outcome is
    /// [`Outcome::Unknown`]. Invariant: `invoked_at < returned_at`.
    pub returned_at: Option<u64>,
}

impl Operation {
    /// Whether `self` returned before `other` was invoked (real-time order). Operations
    /// that overlap, or whose first never returned, are concurrent.
    #[must_use]
    pub fn precedes(&self, other: &Operation) -> bool {
        self.returned_at.is_some_and(|r| r < other.invoked_at)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
            None => "absent".to_owned(),
        };
        write!(f, "client {} ", self.client)?;
        match &self.input {
            KvInput::Get => write!(f, "get()")?,
            KvInput::Put(v) => write!(f, "put({})", show(&Some(v.clone())))?,
            KvInput::Delete => write!(f, "delete()")?,
            KvInput::Cas { expected, new } => {
                write!(f, "cas({} -> {})", show(expected), show(new))?;
            }
        }
        match &self.outcome {
            Outcome::Ok(KvOutput::Get(v)) => write!(f, " = {}", show(v))?,
            Outcome::Ok(KvOutput::Cas {
                succeeded,
                previous,
            }) => write!(f, " = ({succeeded}, {})", show(previous))?,
            Outcome::Ok(_) => write!(f, " = ok")?,
            Outcome::Failed => write!(f, " = failed")?,
            Outcome::Unknown => write!(f, " = unknown")?,
        }
        match self.returned_at {
            Some(r) => write!(f, " [{}, {r}]", self.invoked_at),
            None => write!(f, " [{}, ∞)", self.invoked_at),
        }
    }
}

/// A complete record of what clients did, in invocation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// A history of `ops` (any order).
    ///
    /// # Panics
    /// If an operation returned before it was invoked, or is [`Outcome::Unknown`] with a
    /// return time (both are bugs of the code that built it).
    #[must_use]
    pub fn new(mut ops: Vec<Operation>) -> Self {
        for op in &ops {
            assert!(
                op.returned_at.is_none_or(|r| r > op.invoked_at),
                "an operation returns after its invocation: {op}"
            );
            assert!(
                (op.outcome == Outcome::Unknown) == op.returned_at.is_none(),
                "exactly the operations of unknown outcome have no return time: {op}"
            );
        }
        ops.sort_by_key(|op| op.invoked_at);
        Self { ops }
    }

    /// Every operation, in invocation order.
    #[must_use]
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// The operations of each key, in invocation order.
    #[must_use]
    pub fn by_key(&self) -> BTreeMap<&[u8], Vec<&Operation>> {
        let mut keys: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
        for op in &self.ops {
            keys.entry(&op.key).or_default().push(op);
        }
        keys
    }

    /// How many operations ended each way: (ok, failed, unknown).
    #[must_use]
    pub fn outcome_counts(&self) -> (usize, usize, usize) {
        self.ops
            .iter()
            .fold((0, 0, 0), |(ok, failed, unknown), op| match op.outcome {
                Outcome::Ok(_) => (ok + 1, failed, unknown),
                Outcome::Failed => (ok, failed + 1, unknown),
                Outcome::Unknown => (ok, failed, unknown + 1),
            })
    }
}

/// Records operations from concurrent clients with one logical clock, so that an
/// operation that returned before another was invoked has a smaller return time than the
/// other's invocation time. Cloning yields another handle on the same record.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderState>>,
}

#[derive(Debug, Default)]
struct RecorderState {
    /// The next logical time; times are unique.
    clock: u64,
    ops: Vec<Operation>,
}

/// An operation invoked and not yet completed; dropping it leaves the outcome
/// [`Outcome::Unknown`] (a client that gave up or was cancelled).
#[derive(Debug)]
#[must_use = "complete the operation with its outcome"]
pub struct PendingOp {
    recorder: Recorder,
    index: usize,
}

impl Recorder {
    /// A recorder with no operations.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the invocation of `input` on `key` by `client`; call it right before the
    /// request leaves the client.
    pub fn invoke(&self, client: u64, key: &[u8], input: KvInput) -> PendingOp {
        let mut state = self.inner.lock();
        state.clock += 1;
        let invoked_at = state.clock;
        state.ops.push(Operation {
            client,
            key: key.to_vec(),
            input,
            outcome: Outcome::Unknown,
            invoked_at,
            returned_at: None,
        });
        PendingOp {
            recorder: self.clone(),
            index: state.ops.len() - 1,
        }
    }

    /// The history so far; operations still in flight count as [`Outcome::Unknown`].
    #[must_use]
    pub fn history(&self) -> History {
        History::new(self.inner.lock().ops.clone())
    }
}

impl PendingOp {
    /// Records how the operation ended; call it right after the answer arrived.
    /// [`Outcome::Unknown`] leaves it open-ended (no return time).
    pub fn complete(self, outcome: Outcome) {
        if outcome == Outcome::Unknown {
            return;
        }
        let mut state = self.recorder.inner.lock();
        state.clock += 1;
        let returned_at = state.clock;
        let op = &mut state.ops[self.index];
        op.outcome = outcome;
        op.returned_at = Some(returned_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_orders_by_real_time_and_leaves_abandoned_ops_unknown() {
        let recorder = Recorder::new();
        let a = recorder.invoke(1, b"k", KvInput::Put(b"1".to_vec()));
        let b = recorder.invoke(2, b"k", KvInput::Get);
        a.complete(Outcome::Ok(KvOutput::Put));
        drop(b);
        let c = recorder.invoke(1, b"k", KvInput::Get);
        c.complete(Outcome::Ok(KvOutput::Get(Some(b"1".to_vec()))));
        let history = recorder.history();
        let ops = history.ops();
        assert_eq!(ops.len(), 3);
        assert!(ops[0].precedes(&ops[2]));
        assert!(!ops[0].precedes(&ops[1]) && !ops[1].precedes(&ops[2]));
        assert_eq!(ops[1].outcome, Outcome::Unknown);
        assert_eq!(history.outcome_counts(), (2, 0, 1));
    }
}
