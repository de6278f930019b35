//! [`Network`]: the fate of each message between stores — lost, delivered once or twice,
//! after a seeded delay (so messages overtake each other: reordering).

use raft_store::pb::raft_serverpb::RaftMessage;
use rand::Rng;
use rand::rngs::StdRng;

use super::config::{Micros, SimConfig};
use crate::cluster::Filters;

/// The simulated network between stores. Partitions are the harness's message
/// [`filter`](crate::cluster::filter)s; loss, duplication and delay are drawn here.
pub(crate) struct Network {
    /// The partitions in force.
    pub(crate) filters: Filters,
    /// Probability of losing a message.
    pub(crate) loss: f64,
    /// Probability of delivering a message twice.
    pub(crate) duplicate: f64,
    delay_us: (Micros, Micros),
}

impl Network {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        Self {
            filters: Filters::new(),
            loss: cfg.loss,
            duplicate: cfg.duplicate,
            delay_us: cfg.delay_us,
        }
    }

    /// One message's travel time.
    pub(crate) fn delay(&self, rng: &mut StdRng) -> Micros {
        rng.random_range(self.delay_us.0..self.delay_us.1.max(self.delay_us.0 + 1))
    }

    /// Whether a message off the store network (a client's request or reply) is lost.
    pub(crate) fn loses(&self, rng: &mut StdRng) -> bool {
        self.loss > 0.0 && rng.random_bool(self.loss)
    }

    /// The delays after which copies of `msg` from `from` arrive at `to`: none when it is
    /// lost (partitioned or dropped), two when duplicated.
    pub(crate) fn fate(
        &self,
        rng: &mut StdRng,
        from: u64,
        to: u64,
        msg: &RaftMessage,
    ) -> Vec<Micros> {
        if self.filters.drops(from, to, msg) || self.loses(rng) {
            return Vec::new();
        }
        let mut delays = vec![self.delay(rng)];
        if self.duplicate > 0.0 && rng.random_bool(self.duplicate) {
            delays.push(self.delay(rng));
        }
        delays
    }
}
