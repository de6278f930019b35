//! Applying membership changes to a configuration: single-step changes and joint
//! consensus (Raft thesis §4.3). A leaf module over `tracker`: it never touches the core.

mod changer;
mod restore;

pub use changer::Changer;
pub use restore::restore;
