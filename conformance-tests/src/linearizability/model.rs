//! [`Model`]: the sequential specification a history is checked against, and
//! [`KvModel`], one key of a key-value store with get, put, delete and compare-and-swap.

use std::hash::Hash;
use std::marker::PhantomData;

use super::history::{KvInput, KvOutput};

/// A sequential object: a state and a step function.
///
/// # Correctness
/// `step` must be a pure function of its arguments: the search calls it many times on the
/// same state and caches states by hash.
pub trait Model {
    /// The object's state; small and cheap to clone (the search stores many).
    type State: Clone + Eq + Hash;
    /// An operation's input.
    type Input;
    /// An operation's output.
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. With `Some(output)`, returns the next state if the
    /// object can return `output` from `state`, else `None`. With `None` (the output is
    /// unknown), returns the next state of the operation taking effect.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One key of a key-value store over values of type `V`; the state is the key's value
/// (`None`: absent).
#[derive(Debug)]
pub struct KvModel<V>(PhantomData<fn() -> V>);

impl<V> Default for KvModel<V> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<V: Clone + Eq> KvModel<V> {
    /// What `input` returns and leaves behind when applied to `state`.
    fn apply(state: &Option<V>, input: &KvInput<V>) -> (KvOutput<V>, Option<V>) {
        match input {
            KvInput::Get => (KvOutput::Get(state.clone()), state.clone()),
            KvInput::Put(v) => (KvOutput::Put, Some(v.clone())),
            KvInput::Delete => (KvOutput::Delete, None),
            KvInput::Cas { expected, new } => {
                let succeeded = state == expected;
                let next = if succeeded {
                    new.clone()
                } else {
                    state.clone()
                };
                (
                    KvOutput::Cas {
                        succeeded,
                        previous: state.clone(),
                    },
                    next,
                )
            }
        }
    }
}

impl<V: Clone + Eq + Hash> Model for KvModel<V> {
    type State = Option<V>;
    type Input = KvInput<V>;
    type Output = KvOutput<V>;

    fn init(&self) -> Option<V> {
        None
    }

    fn step(
        &self,
        state: &Option<V>,
        input: &KvInput<V>,
        output: Option<&KvOutput<V>>,
    ) -> Option<Option<V>> {
        let (actual, next) = Self::apply(state, input);
        match output {
            Some(output) if *output != actual => None,
            _ => Some(next),
        }
    }
}
