//! [`Backoff`]: exponential reconnect delays with jitter.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter: the *n*-th delay after a reset is drawn uniformly from
/// `[base / 2, base]` where `base = min(initial * 2^n, max)`. Jitter keeps many stores from
/// reconnecting to a restarted peer in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Base of the next delay; `initial <= base <= max`.
    base: Duration,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max` (raised to `initial` if lower).
    #[must_use]
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            base: initial,
        }
    }

    /// The next delay, drawn with `rng`; doubles the base for the following one.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.max);
        base.mul_f64(rng.random_range(0.5..=1.0))
    }

    /// Starts over from the initial delay, after a successful connection.
    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max_then_resets() {
        let ms = Duration::from_millis;
        let mut rng = StdRng::seed_from_u64(1);
        let mut backoff = Backoff::new(ms(100), ms(1000));
        for base in [100, 200, 400, 800, 1000, 1000] {
            let delay = backoff.next_delay(&mut rng);
            assert!(
                delay >= ms(base) / 2 && delay <= ms(base),
                "{delay:?} for base {base} ms"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= ms(100));
    }
}
