//! `LB_ROUNDROBIN`: hosts in turn, one cursor shared by every worker, each host as often
//! as its weight.

use super::{scan_from, LoadBalancer, Member, Pick};
use crate::upstream::state::{Layout, StateBlock};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The cursor lives in the config's state block, so Envoy's threads and nginx's worker
/// processes share one rotation. It starts at the first host (MOSN starts at random) so an
/// operator can predict the order.
///
/// With equal weights the cursor walks the hosts in order. With unequal weights (MOSN's
/// round robin ignores them; see the README's differences) every cycle of `total weight`
/// picks gives each host exactly its weight: pick `c` takes position `c × stride mod total`
/// on the line where each host owns a run as long as its weight, the stride being coprime
/// to the total and near total/φ so consecutive picks land far apart on that line
/// (interleaved, not a run of one host), found by binary search: O(log n).
#[derive(Debug)]
pub struct RoundRobin {
    state: Arc<StateBlock>,
    cursor: usize,
    n: usize,
    weighted: Option<WeightLine>,
}

/// Hosts laid end to end by weight.
#[derive(Debug)]
pub(crate) struct WeightLine {
    /// `ends[i]`: where member i's run ends (prefix sums of the weights).
    ends: Vec<u64>,
    total: u64,
    stride: u64,
}

// === impl RoundRobin ===

impl RoundRobin {
    pub fn new(members: &[Member], state: &Arc<StateBlock>, layout: &mut Layout) -> RoundRobin {
        RoundRobin { state: state.clone(), cursor: layout.take(1), n: members.len(), weighted: WeightLine::new(members) }
    }
}

impl LoadBalancer for RoundRobin {
    fn select(&self, _pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let c = self.state.word(self.cursor).fetch_add(1, Ordering::Relaxed);
        let start = match &self.weighted {
            None => (c % self.n as u64) as usize,
            Some(line) => line.member_at(c),
        };
        scan_from(start, self.n, accept)
    }
}

// === impl WeightLine ===

impl WeightLine {
    /// `None` when all weights are equal (plain rotation is exact then).
    pub(crate) fn new(members: &[Member]) -> Option<WeightLine> {
        let first = members.first()?.weight;
        if members.iter().all(|m| m.weight == first) {
            return None;
        }
        let mut total = 0u64;
        let ends = members
            .iter()
            .map(|m| {
                total += u64::from(m.weight.max(1));
                total
            })
            .collect();
        Some(WeightLine { ends, total, stride: stride(total) })
    }

    /// The member owning the `c`-th pick's position.
    pub(crate) fn member_at(&self, c: u64) -> usize {
        let pos = ((c % self.total) as u128 * self.stride as u128 % self.total as u128) as u64;
        self.ends.partition_point(|&end| end <= pos)
    }
}

/// A step coprime to `total`, near total/φ (golden-ratio spacing).
fn stride(total: u64) -> u64 {
    if total <= 2 {
        return 1;
    }
    let mut s = ((total as f64) / 1.618_033_988_75).round().max(1.0) as u64;
    while gcd(s, total) != 1 {
        s += 1;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    fn counts(weights: &[u32], picks: u64) -> Vec<u64> {
        let (m, state, mut layout) = members(weights);
        let rr = RoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        let mut got = vec![0u64; weights.len()];
        for _ in 0..picks {
            got[rr.select(&Pick::default(), &mut |_| true).unwrap()] += 1;
        }
        got
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        let (m, state, mut layout) = members(&[1, 1, 1]);
        let rr = RoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        let order: Vec<usize> = (0..6).map(|_| rr.select(&Pick::default(), &mut |_| true).unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn each_cycle_gives_each_host_exactly_its_weight() {
        for weights in [vec![1, 2, 3], vec![5, 1], vec![128, 1, 7, 64], vec![3, 3, 6]] {
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let got = counts(&weights, total * 10);
            let want: Vec<u64> = weights.iter().map(|&w| u64::from(w) * 10).collect();
            assert_eq!(got, want, "weights {weights:?}");
        }
    }

    #[test]
    fn weighted_picks_are_interleaved() {
        // 3:1 should never give the heavy host more than a few picks in a row.
        let (m, state, mut layout) = members(&[3, 1]);
        let rr = RoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        let seq: Vec<usize> = (0..40).map(|_| rr.select(&Pick::default(), &mut |_| true).unwrap()).collect();
        let longest = seq.chunk_by(|a, b| a == b).map(<[usize]>::len).max().unwrap();
        assert!(longest <= 3, "{seq:?}");
    }

    #[test]
    fn unhealthy_hosts_are_skipped() {
        let (m, state, mut layout) = members(&[1, 1, 1]);
        let rr = RoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        for _ in 0..9 {
            assert_ne!(rr.select(&Pick::default(), &mut |i| i != 1), Some(1));
        }
    }
}
