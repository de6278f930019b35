//! [`check`]: is a key-value history linearizable? One Wing–Gong–Lowe search per key.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::history::{History, Key, KvInput, KvOutput, Operation, Outcome, Value};
use super::model::KvModel;
use super::wgl::{Budget, Entry, Meter, SearchResult, search};

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// A key's history is not.
    NotLinearizable(Box<Violation>),
    /// The budget ran out before a key was decided. **Treat as a failure**: an undecided
    /// check proves nothing.
    Undecided(Undecided),
}

/// A key whose history has no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Key,
    /// The key's operations the search considered, in invocation order.
    pub ops: Vec<Operation>,
    /// The longest sequence of them the search could linearize.
    pub longest_linearization: Vec<Operation>,
    /// An operation that could not be placed after that sequence before it returned.
    pub stuck: Option<Operation>,
}

/// A key the search could not decide within the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecided {
    /// The key.
    pub key: Key,
    /// Its operations the search considered.
    pub ops: usize,
}

/// What [`check`] did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The answer.
    pub verdict: Verdict,
    /// Keys checked.
    pub keys: usize,
    /// Operations in the history.
    pub operations: usize,
    /// Operations the searches considered (after dropping the ones without effect).
    pub searched: usize,
    /// Search steps taken.
    pub steps: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl Report {
    /// Whether the history is linearizable.
    #[must_use]
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }

    /// Panics unless the history is linearizable. An undecided check panics too, loudly:
    /// it is a failure, not a pass.
    ///
    /// # Panics
    /// On a violation or an undecided check, with the details.
    pub fn assert_linearizable(&self) {
        match &self.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(v) => panic!("history is NOT linearizable: {v}"),
            Verdict::Undecided(u) => panic!(
                "linearizability check UNDECIDED (this is a failure, not a pass): the budget \
                 ran out after {} steps in {:?} on key {:?} with {} operations; shorten the \
                 workload or raise the budget",
                self.steps,
                self.elapsed,
                String::from_utf8_lossy(&u.key),
                u.ops
            ),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 40;
        writeln!(
            f,
            "key {:?}: no linearization of its {} operations",
            String::from_utf8_lossy(&self.key),
            self.ops.len()
        )?;
        let skipped = self.longest_linearization.len().saturating_sub(SHOWN);
        writeln!(
            f,
            "longest linearizable sequence ({} operations, last {}):",
            self.longest_linearization.len(),
            self.longest_linearization.len() - skipped
        )?;
        for op in &self.longest_linearization[skipped..] {
            writeln!(f, "  {op}")?;
        }
        if let Some(stuck) = &self.stuck {
            writeln!(f, "then could not place before it returned: {stuck}")?;
            writeln!(f, "operations overlapping it:")?;
            for op in self
                .ops
                .iter()
                .filter(|op| !op.precedes(stuck) && !stuck.precedes(op))
                .take(SHOWN)
            {
                writeln!(f, "  {op}")?;
            }
        }
        Ok(())
    }
}

/// Checks that `history` is linearizable with respect to a key-value store with get, put,
/// delete and compare-and-swap, within `budget`.
///
/// Keys are checked one at a time (linearizability is compositional). Operations that
/// [`Failed`](Outcome::Failed) are ignored; operations of [`Unknown`](Outcome::Unknown)
/// outcome may take effect at any time after their invocation, or never. Before the
/// search, operations that cannot matter are dropped: reads of unknown outcome, and (on
/// keys without compare-and-swap) writes of unknown outcome whose value no read returned.
#[must_use]
pub fn check(history: &History, budget: Budget) -> Report {
    let started = Instant::now();
    let mut meter = Meter::new(budget);
    let by_key = history.by_key();
    let mut report = Report {
        verdict: Verdict::Linearizable,
        keys: by_key.len(),
        operations: history.ops().len(),
        searched: 0,
        steps: 0,
        elapsed: Duration::ZERO,
    };
    for (key, ops) in by_key {
        let ops = relevant(&ops);
        report.searched += ops.len();
        let entries = intern(&ops);
        match search(&KvModel::default(), &entries, &mut meter) {
            SearchResult::Linearizable => continue,
            SearchResult::Violation { longest, stuck } => {
                report.verdict = Verdict::NotLinearizable(Box::new(Violation {
                    key: key.to_vec(),
                    longest_linearization: longest.iter().map(|&i| ops[i].clone()).collect(),
                    stuck: stuck.map(|i| ops[i].clone()),
                    ops: ops.into_iter().cloned().collect(),
                }));
            }
            SearchResult::Undecided => {
                report.verdict = Verdict::Undecided(Undecided {
                    key: key.to_vec(),
                    ops: ops.len(),
                });
            }
        }
        break;
    }
    report.steps = meter.steps();
    report.elapsed = started.elapsed();
    report
}

/// The value an operation of unknown outcome would leave, if it writes one.
fn written(input: &KvInput) -> Option<Option<&Value>> {
    match input {
        KvInput::Get | KvInput::Cas { .. } => None,
        KvInput::Put(v) => Some(Some(v)),
        KvInput::Delete => Some(None),
    }
}

/// The operations of one key that can affect the search (see [`check`]).
fn relevant<'a>(ops: &[&'a Operation]) -> Vec<&'a Operation> {
    let has_cas = ops.iter().any(|op| matches!(op.input, KvInput::Cas { .. }));
    let observed: Vec<Option<&Value>> = ops
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Ok(KvOutput::Get(v)) => Some(v.as_ref()),
            _ => None,
        })
        .collect();
    ops.iter()
        .copied()
        .filter(|op| match op.outcome {
            Outcome::Ok(_) => true,
            Outcome::Failed => false,
            Outcome::Unknown if !op.input.is_write() => false,
            // A write nobody saw can always be placed last (where it changes nothing).
            Outcome::Unknown => has_cas || written(&op.input).is_none_or(|w| observed.contains(&w)),
        })
        .collect()
}

/// The operations as search entries, values interned to small integers.
fn intern<'a>(ops: &[&'a Operation]) -> Vec<Entry<KvInput<u32>, KvOutput<u32>>> {
    let mut ids: HashMap<&'a [u8], u32> = HashMap::new();
    let mut id = |v: Option<&'a Value>| -> Option<u32> {
        v.map(|v| {
            let next = u32::try_from(ids.len()).expect("fewer than 2^32 distinct values");
            *ids.entry(v.as_slice()).or_insert(next)
        })
    };
    let mut entries = Vec::with_capacity(ops.len());
    for op in ops {
        let input = match &op.input {
            KvInput::Get => KvInput::Get,
            KvInput::Put(v) => KvInput::Put(id(Some(v)).expect("a put has a value")),
            KvInput::Delete => KvInput::Delete,
            KvInput::Cas { expected, new } => KvInput::Cas {
                expected: id(expected.as_ref()),
                new: id(new.as_ref()),
            },
        };
        let output = match &op.outcome {
            Outcome::Ok(KvOutput::Get(v)) => Some(KvOutput::Get(id(v.as_ref()))),
            Outcome::Ok(KvOutput::Put) => Some(KvOutput::Put),
            Outcome::Ok(KvOutput::Delete) => Some(KvOutput::Delete),
            Outcome::Ok(KvOutput::Cas {
                succeeded,
                previous,
            }) => Some(KvOutput::Cas {
                succeeded: *succeeded,
                previous: id(previous.as_ref()),
            }),
            Outcome::Failed | Outcome::Unknown => None,
        };
        entries.push(Entry {
            input,
            output,
            invoked_at: op.invoked_at,
            returned_at: op.returned_at,
        });
    }
    entries
}
