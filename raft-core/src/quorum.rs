//! Quorum arithmetic for majority and joint configurations. A leaf module: it knows
//! nothing of the Raft core.

mod joint;
mod majority;

pub use joint::JointConfig;
pub use majority::MajorityConfig;

/// The outcome of an election as far as the votes received so far tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// Neither a quorum of yes nor enough no votes yet.
    Pending,
    /// A quorum can no longer be reached.
    Lost,
    /// A quorum voted yes.
    Won,
}

/// Gives the highest log index each voter is known to hold.
pub trait AckedIndexer {
    /// The acknowledged index of `voter`, or `None` when nothing is known.
    fn acked_index(&self, voter: u64) -> Option<u64>;
}

impl<F: Fn(u64) -> Option<u64>> AckedIndexer for F {
    fn acked_index(&self, voter: u64) -> Option<u64> {
        self(voter)
    }
}
