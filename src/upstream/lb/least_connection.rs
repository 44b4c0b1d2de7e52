//! `LB_LEAST_CONNECTION`: MOSN's least-request algorithm over each host's active
//! connections.

use super::least_request::LeastRequest;
use super::{LoadBalancer, Member, Pick};
use crate::config::LbConfig;

/// The core does not see the host's connections, only requests in flight; with HTTP/1 each
/// attempt holds one connection, so active requests are active connections and this is
/// [`LeastRequest`] (same `choice_count`, bias and weights), under MOSN's name. Idle
/// keepalive connections, which MOSN counts, are not counted here.
#[derive(Debug)]
pub struct LeastConnection(LeastRequest);

impl LeastConnection {
    pub fn new(cfg: &LbConfig, members: &[Member]) -> LeastConnection {
        LeastConnection(LeastRequest::new(cfg, members))
    }
}

impl LoadBalancer for LeastConnection {
    fn select(&self, pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        self.0.select(pick, accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    #[test]
    fn prefers_the_member_with_fewer_attempts_in_flight() {
        fastrand::seed(21);
        let (m, state, layout) = members(&[1, 1]);
        state.allocate_for(&layout);
        (0..3).for_each(|_| m[0].state.attempt_started());
        let lb = LeastConnection::new(&LbConfig::default(), &m);
        let second = (0..10_000).filter(|_| lb.select(&Pick::default(), &mut |_| true) == Some(1)).count();
        // Two choices over two members: member 1 wins unless member 0 is drawn twice.
        assert!((second as f64 / 10_000.0 - 0.75).abs() < 0.02, "{second}");
    }
}
