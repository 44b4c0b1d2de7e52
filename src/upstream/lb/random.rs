//! `LB_RANDOM`: a random host; the next acceptable one after it if it is not acceptable.

use super::LoadBalancer;

/// Stateless: each worker draws from its own thread-local generator.
#[derive(Debug, Default)]
pub struct Random;

impl LoadBalancer for Random {
    fn select(&self, n: usize, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        let start = fastrand::usize(0..n);
        (0..n).map(|k| (start + k) % n).find(|&i| accept(i))
    }
}
