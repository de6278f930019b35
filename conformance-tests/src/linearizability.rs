//! A linearizability checker for key-value histories, and the checks that go with it.
//!
//! Clients record every operation through a [`Recorder`] (invocation before the request
//! leaves, return after the answer arrives, or no return when the outcome is unknown);
//! the resulting [`History`] is then checked:
//!
//! - [`check`]: the history is linearizable with respect to a key-value store with get,
//!   put, delete and compare-and-swap ([`KvModel`]), by a Wing–Gong–Lowe search with
//!   memoization ([`wgl`]), one key at a time. An operation that never returned may take
//!   effect at any time after its invocation, or never. The search is bounded by a
//!   [`Budget`]; when it runs out the verdict is [`Verdict::Undecided`], which callers must
//!   treat as a failure ([`Report::assert_linearizable`] does).
//! - [`check_no_lost_writes`]: the final value of each key is explained by a write that no
//!   acknowledged write followed.
//! - [`check_appends`]: each client's appends appear in the final value exactly once and in
//!   order.
//!
//! ```
//! use conformance_tests::linearizability::{Budget, KvInput, KvOutput, Outcome, Recorder, check};
//!
//! let recorder = Recorder::new();
//! let put = recorder.invoke(1, b"k", KvInput::Put(b"v".to_vec()));
//! let get = recorder.invoke(2, b"k", KvInput::Get); // concurrent with the put
//! put.complete(Outcome::Ok(KvOutput::Put));
//! get.complete(Outcome::Ok(KvOutput::Get(None))); // may see the value before the put
//! check(&recorder.history(), Budget::default()).assert_linearizable();
//! ```

mod appends;
mod check;
mod history;
mod lost_writes;
mod model;
pub mod wgl;

#[cfg(test)]
mod tests;

pub use appends::{AppendViolation, append_token, check_appends, parse_tokens};
pub use check::{Report, Undecided, Verdict, Violation, check};
pub use history::{
    History, Key, KvInput, KvOutput, Operation, Outcome, PendingOp, Recorder, Value,
};
pub use lost_writes::{LostWrite, check_no_lost_writes};
pub use model::{KvModel, Model};
pub use wgl::Budget;
