//! Appends: each client's appends to a key must appear in its final value exactly once
//! (if acknowledged; at most once if of unknown outcome; never if failed) and in the order
//! the client made them.
//!
//! An append is a write whose value ends with the token [`append_token`]`(client, seq)`:
//! a put of the key's whole new value, or a compare-and-swap from the value read to that
//! value plus the token. The final value is the concatenation of the tokens that took
//! effect.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::history::{History, Key, KvInput, KvOutput, Outcome, Value};

/// The token of append `seq` of `client`, in the style of the 6.824 and TinyKV tests.
#[must_use]
pub fn append_token(client: u64, seq: u64) -> String {
    format!("x {client} {seq} y")
}

/// The `(client, seq)` tokens of a value made of [`append_token`]s, in order.
///
/// # Errors
/// The value is not a sequence of tokens.
pub fn parse_tokens(value: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let text = std::str::from_utf8(value).map_err(|e| format!("not UTF-8: {e}"))?;
    let words: Vec<&str> = text.split_whitespace().collect();
    if !words.len().is_multiple_of(4) {
        return Err(format!("{text:?} is not a sequence of append tokens"));
    }
    words
        .chunks(4)
        .map(|w| match (w[0], w[1].parse(), w[2].parse(), w[3]) {
            ("x", Ok(client), Ok(seq), "y") => Ok((client, seq)),
            _ => Err(format!("{:?} is not an append token", w.join(" "))),
        })
        .collect()
}

/// An append key whose final value breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendViolation {
    /// The key.
    pub key: Key,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for AppendViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "appends to {:?}: {}",
            String::from_utf8_lossy(&self.key),
            self.problem
        )
    }
}

/// What is known of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acknowledged,
    Unknown,
    NotApplied,
}

/// Checks the appends of `history` to each key of `final_values` (read after the
/// workload, `None`: absent, i.e. no append took effect): see the module documentation.
///
/// # Errors
/// The first key whose final value breaks a rule.
pub fn check_appends(
    history: &History,
    final_values: &BTreeMap<Key, Option<Value>>,
) -> Result<(), AppendViolation> {
    let by_key = history.by_key();
    for (key, final_value) in final_values {
        let violation = |problem: String| AppendViolation {
            key: key.clone(),
            problem,
        };
        let mut fates: HashMap<(u64, u64), Fate> = HashMap::new();
        for op in by_key.get(key.as_slice()).into_iter().flatten() {
            let value = match &op.input {
                KvInput::Put(v) | KvInput::Cas { new: Some(v), .. } => v,
                _ => continue,
            };
            let tokens = parse_tokens(value).map_err(&violation)?;
            let Some(&token) = tokens.last() else {
                continue;
            };
            if token.0 != op.client {
                return Err(violation(format!(
                    "client {} wrote a value ending with client {}'s token",
                    op.client, token.0
                )));
            }
            let fate = match &op.outcome {
                Outcome::Ok(KvOutput::Cas {
                    succeeded: false, ..
                })
                | Outcome::Failed => Fate::NotApplied,
                Outcome::Ok(_) => Fate::Acknowledged,
                Outcome::Unknown => Fate::Unknown,
            };
            // A token retried after failures keeps its strongest fate.
            let entry = fates.entry(token).or_insert(fate);
            *entry = match (*entry, fate) {
                (Fate::Acknowledged, _) | (_, Fate::Acknowledged) => Fate::Acknowledged,
                (Fate::Unknown, _) | (_, Fate::Unknown) => Fate::Unknown,
                _ => Fate::NotApplied,
            };
        }
        let observed = match final_value {
            Some(v) => parse_tokens(v).map_err(&violation)?,
            None => Vec::new(),
        };
        let mut count: HashMap<(u64, u64), usize> = HashMap::new();
        let mut last_seq: HashMap<u64, u64> = HashMap::new();
        for &(client, seq) in &observed {
            *count.entry((client, seq)).or_default() += 1;
            match fates.get(&(client, seq)) {
                None => {
                    return Err(violation(format!(
                        "client {client}'s append {seq} appears but was never attempted"
                    )));
                }
                Some(Fate::NotApplied) => {
                    return Err(violation(format!(
                        "client {client}'s append {seq} appears but failed"
                    )));
                }
                Some(_) => {}
            }
            if let Some(&prev) = last_seq.get(&client)
                && seq <= prev
            {
                return Err(violation(format!(
                    "client {client}'s append {seq} appears after its append {prev}"
                )));
            }
            last_seq.insert(client, seq);
        }
        let mut tokens: Vec<_> = fates.iter().collect();
        tokens.sort_by_key(|(token, _)| **token);
        for (&(client, seq), &fate) in tokens {
            let n = count.get(&(client, seq)).copied().unwrap_or(0);
            if fate == Fate::Acknowledged && n != 1 {
                return Err(violation(format!(
                    "client {client}'s acknowledged append {seq} appears {n} times"
                )));
            }
        }
    }
    Ok(())
}
