//! The in-process `channel` transport with seeded, deterministic fault injection.
//!
//! A [`ChannelNetwork`] is the hub shared by every store of a test process; it hands out a
//! [`ChannelTransport`] per store. The fault decisions live in the clock-free [`FaultPlan`]
//! and the per-link ordering in the clock-free [`LinkQueue`], so a single-threaded
//! simulator with virtual time can reuse both; tokio timers and tasks are a thin layer on top.

mod channel_network;
mod channel_transport;
mod fault_plan;
mod link;
mod link_queue;

pub use channel_network::ChannelNetwork;
pub use channel_transport::ChannelTransport;
pub use fault_plan::{BatchFate, FaultPlan, FilterId, FrameFilter};
pub use link_queue::LinkQueue;
