//! [`check_no_lost_writes`]: every acknowledged write is reflected in the final state.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{History, Key, KvInput, KvOutput, Operation, Outcome, Value};

/// A key whose final value contradicts an acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostWrite {
    /// The key.
    pub key: Key,
    /// Its value at the end (`None`: absent).
    pub final_value: Option<Value>,
    /// An acknowledged write that should have overwritten whatever produced the final
    /// value (`None` when no operation wrote the final value at all).
    pub lost: Option<Box<Operation>>,
}

impl fmt::Display for LostWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.final_value.as_ref().map_or_else(
            || "absent".to_owned(),
            |v| format!("{:?}", String::from_utf8_lossy(v)),
        );
        write!(
            f,
            "key {:?} ends {value}, ",
            String::from_utf8_lossy(&self.key)
        )?;
        match &self.lost {
            Some(op) => write!(
                f,
                "but every write of that value returned before this acknowledged write: {op}"
            ),
            None => write!(f, "a value no operation wrote"),
        }
    }
}

/// What `op` may have left in its key if it took effect: `Some(value)` for a write.
fn result_of(op: &Operation) -> Option<Option<&Value>> {
    match (&op.input, &op.outcome) {
        (_, Outcome::Failed) | (KvInput::Get, _) => None,
        (
            KvInput::Cas { .. },
            Outcome::Ok(KvOutput::Cas {
                succeeded: false, ..
            }),
        ) => None,
        (KvInput::Put(v), _) => Some(Some(v)),
        (KvInput::Delete, _) => Some(None),
        (KvInput::Cas { new, .. }, _) => Some(new.as_ref()),
    }
}

/// Checks, for every key in `final_values` (its value read after the workload, `None`:
/// absent), that some write which may have taken effect produced that value (absent also
/// counts as the initial state) and that at least one such write did not return before an
/// acknowledged write of the key was invoked (the later write would have replaced it).
///
/// This is implied by linearizability when the final reads are part of the history; it is
/// checked on its own because it is cheap, cannot run out of budget, and names the lost
/// write.
///
/// # Errors
/// The first key whose final value contradicts the history.
pub fn check_no_lost_writes(
    history: &History,
    final_values: &BTreeMap<Key, Option<Value>>,
) -> Result<(), LostWrite> {
    let by_key = history.by_key();
    for (key, final_value) in final_values {
        let ops = by_key.get(key.as_slice()).map_or(&[][..], Vec::as_slice);
        let acknowledged: Vec<&Operation> = ops
            .iter()
            .copied()
            .filter(|op| matches!(op.outcome, Outcome::Ok(_)) && result_of(op).is_some())
            .collect();
        let producers: Vec<&Operation> = ops
            .iter()
            .copied()
            .filter(|op| result_of(op) == Some(final_value.as_ref()))
            .collect();
        let lost = |key: &Key, lost: Option<&Operation>| LostWrite {
            key: key.clone(),
            final_value: final_value.clone(),
            lost: lost.cloned().map(Box::new),
        };
        if final_value.is_none() && producers.is_empty() {
            // Only the initial state can explain an absent key: nothing acknowledged may
            // have been written.
            if let Some(op) = acknowledged.first() {
                return Err(lost(key, Some(op)));
            }
            continue;
        }
        if producers.is_empty() {
            return Err(lost(key, None));
        }
        let overwritten_by = |producer: &Operation| {
            acknowledged
                .iter()
                .copied()
                .find(|later| producer.precedes(later))
        };
        if let Some(op) = producers
            .iter()
            .map(|p| overwritten_by(p))
            .collect::<Option<Vec<_>>>()
            .and_then(|all| all.first().copied())
        {
            return Err(lost(key, Some(op)));
        }
    }
    Ok(())
}
