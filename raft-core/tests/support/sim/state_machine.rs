//! The simulated application's durable state machine.

use bytes::Bytes;

use super::BOOT_INDEX;

/// One applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmEntry {
    /// The entry's term.
    pub term: u64,
    /// The entry's type.
    pub entry_type: i32,
    /// The entry's payload.
    pub data: Bytes,
}

/// A node's durable state machine: every entry it applied, in index order.
///
/// Invariant: `applied == 0` (a node that never had state) with no entries, or
/// `applied == BOOT_INDEX + entries.len()`; `entries[k]` is the entry at `BOOT_INDEX + 1 + k`.
#[derive(Debug, Clone, Default)]
pub struct StateMachine {
    pub applied: u64,
    pub entries: Vec<SmEntry>,
}

impl StateMachine {
    pub fn bootstrapped() -> Self {
        Self {
            applied: BOOT_INDEX,
            entries: Vec::new(),
        }
    }

    /// The index of the last applied entry.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn contains_value(&self, value: &[u8]) -> bool {
        self.entries.iter().rev().any(|e| e.data == value)
    }

    /// The state machine as snapshot data.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(16 + self.entries.len() * 24);
        out.extend_from_slice(&self.applied.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.term.to_le_bytes());
            out.extend_from_slice(&e.entry_type.to_le_bytes());
            out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.data);
        }
        out.into()
    }

    pub fn decode(data: &Bytes) -> Result<Self, String> {
        fn take<const N: usize>(data: &Bytes, at: &mut usize) -> Result<[u8; N], String> {
            let bytes = data
                .get(*at..*at + N)
                .ok_or_else(|| format!("snapshot data truncated at byte {at}"))?;
            *at += N;
            Ok(bytes.try_into().expect("slice has length N"))
        }
        let mut at = 0;
        let applied = u64::from_le_bytes(take::<8>(data, &mut at)?);
        let mut entries = Vec::new();
        while at < data.len() {
            let term = u64::from_le_bytes(take::<8>(data, &mut at)?);
            let entry_type = i32::from_le_bytes(take::<4>(data, &mut at)?);
            let len = u32::from_le_bytes(take::<4>(data, &mut at)?) as usize;
            let payload = data
                .get(at..at + len)
                .ok_or_else(|| "snapshot data truncated in a payload".to_owned())?;
            at += len;
            entries.push(SmEntry {
                term,
                entry_type,
                data: data.slice_ref(payload),
            });
        }
        if applied != BOOT_INDEX + entries.len() as u64 {
            return Err(format!(
                "snapshot data claims applied {applied} but holds {} entries",
                entries.len()
            ));
        }
        Ok(Self { applied, entries })
    }
}
