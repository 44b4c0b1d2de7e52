//! `LB_ROUNDROBIN`: hosts in turn, one cursor shared by every worker.

use super::LoadBalancer;
use crate::upstream::state::StateBlock;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The cursor lives in the config's state block, so Envoy's threads and nginx's worker
/// processes share one rotation. It starts at the first host (MOSN starts at random) so an
/// operator can predict the order.
#[derive(Debug)]
pub struct RoundRobin {
    state: Arc<StateBlock>,
    cursor: usize,
}

impl RoundRobin {
    /// State words: the cursor.
    pub const WORDS: usize = 1;

    pub fn new(state: Arc<StateBlock>, cursor: usize) -> RoundRobin {
        RoundRobin { state, cursor }
    }
}

impl LoadBalancer for RoundRobin {
    fn select(&self, n: usize, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        let start = (self.state.word(self.cursor).fetch_add(1, Ordering::Relaxed) % n as u64) as usize;
        (0..n).map(|k| (start + k) % n).find(|&i| accept(i))
    }
}
