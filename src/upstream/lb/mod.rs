//! Load balancers: one small trait, one file per MOSN `lb_type`.
//!
//! A balancer only orders the hosts; the cluster says which are acceptable (healthy, not
//! yet tried by this request). Adding one: a file here implementing [`LoadBalancer`], a
//! variant of [`LbType`], and its line in [`build`] and [`state_words`].

mod random;
mod round_robin;

pub use random::Random;
pub use round_robin::RoundRobin;

use super::state::{Layout, StateBlock};
use crate::config::LbType;
use std::sync::Arc;

/// Picks among `n` hosts (indexes `0..n`) the first one `accept` takes, in the balancer's
/// order; `None` if it takes none. Called on every worker at once: `&self`, atomics only.
pub trait LoadBalancer: Send + Sync + std::fmt::Debug {
    fn select(&self, n: usize, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize>;
}

/// State words the balancer of `lb_type` needs in the config's [`StateBlock`].
pub(crate) fn state_words(lb_type: LbType) -> usize {
    match lb_type {
        LbType::RoundRobin => RoundRobin::WORDS,
        LbType::Random => 0,
    }
}

/// Builds the balancer of `lb_type`, taking its state words from `layout`.
pub(crate) fn build(lb_type: LbType, state: &Arc<StateBlock>, layout: &mut Layout) -> Box<dyn LoadBalancer> {
    match lb_type {
        LbType::RoundRobin => Box::new(RoundRobin::new(state.clone(), layout.take(RoundRobin::WORDS))),
        LbType::Random => Box::new(Random),
    }
}

/// The hosts a request has already tried: a bitmask for the first 128 host indexes
/// (no allocation), a list beyond that.
#[derive(Debug, Default, Clone)]
pub struct TriedHosts {
    bits: u128,
    more: Vec<usize>,
}

impl TriedHosts {
    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.bits |= 1 << i;
        } else if !self.more.contains(&i) {
            self.more.push(i);
        }
    }
    pub fn contains(&self, i: usize) -> bool {
        if i < 128 {
            self.bits & (1 << i) != 0
        } else {
            self.more.contains(&i)
        }
    }
    pub fn is_empty(&self) -> bool {
        self.bits == 0 && self.more.is_empty()
    }
    pub fn clear(&mut self) {
        self.bits = 0;
        self.more.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster's rule (untried healthy first, else any healthy) over a balancer.
    fn first_usable(lb: &dyn LoadBalancer, n: usize, healthy: impl Fn(usize) -> bool, tried: &TriedHosts) -> Option<usize> {
        lb.select(n, &mut |i| healthy(i) && !tried.contains(i)).or_else(|| lb.select(n, &mut |i| healthy(i)))
    }

    #[test]
    fn never_returns_a_tried_host_while_another_healthy_one_exists() {
        let state = Arc::new(StateBlock::new(1));
        let rr = RoundRobin::new(state, 0);
        // Exhaustive over small clusters: every health pattern, tried set and start.
        for n in 1..=6usize {
            for health in 0..(1u32 << n) {
                for tried_bits in 0..(1u32 << n) {
                    let mut tried = TriedHosts::default();
                    (0..n).filter(|i| tried_bits & (1 << i) != 0).for_each(|i| tried.insert(i));
                    for lb in [&rr as &dyn LoadBalancer, &Random] {
                        let got = first_usable(lb, n, |i| health & (1 << i) != 0, &tried);
                        let untried_healthy = (0..n).any(|i| health & (1 << i) != 0 && !tried.contains(i));
                        match got {
                            None => assert_eq!(health, 0),
                            Some(i) => {
                                assert!(health & (1 << i) != 0, "picked an unhealthy host");
                                if untried_healthy {
                                    assert!(!tried.contains(i), "picked a tried host while another was available");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tried_hosts_beyond_the_bitmask() {
        let mut t = TriedHosts::default();
        t.insert(3);
        t.insert(200);
        assert!(t.contains(3) && t.contains(200) && !t.contains(4) && !t.contains(201));
    }
}
