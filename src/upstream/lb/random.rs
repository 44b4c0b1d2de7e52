//! `LB_RANDOM`: a random host (by weight when weights differ); the next acceptable one
//! after it if it is not acceptable.

use super::round_robin::WeightLine;
use super::{scan_from, LoadBalancer, Member, Pick};

/// Stateless: each worker draws from its own thread-local generator.
#[derive(Debug)]
pub struct Random {
    n: usize,
    /// With unequal weights a draw lands on the weight line (MOSN draws uniformly; see the
    /// README's differences).
    weighted: Option<WeightLine>,
}

impl Random {
    pub fn new(members: &[Member]) -> Random {
        Random { n: members.len(), weighted: WeightLine::new(members) }
    }
}

impl LoadBalancer for Random {
    fn select(&self, _pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let start = match &self.weighted {
            None => fastrand::usize(0..self.n),
            Some(line) => line.member_at(fastrand::u64(..)),
        };
        scan_from(start, self.n, accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    #[test]
    fn draws_follow_the_weights_within_two_percent() {
        fastrand::seed(7);
        let (m, state, layout) = members(&[1, 3]);
        state.allocate_for(&layout);
        let r = Random::new(&m);
        let n = 100_000;
        let heavy = (0..n).filter(|_| r.select(&Pick::default(), &mut |_| true) == Some(1)).count();
        let share = heavy as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }
}
