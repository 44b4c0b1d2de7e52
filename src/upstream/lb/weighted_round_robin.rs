//! `LB_WEIGHTED_ROUNDROBIN`: MOSN orders hosts by an earliest-deadline-first schedule
//! over their weights (each host's next turn 1/weight after its last), plain round robin
//! when all weights are equal.

use super::round_robin::WeightLine;
use super::{scan_from, LoadBalancer, Member, Pick};
use crate::upstream::state::{Layout, StateBlock};
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Longest schedule built at config load (4 bytes an entry: 16 MiB at most).
const MAX_SCHEDULE: u64 = 1 << 22;

/// One cycle of the schedule is computed when the config loads: weights divided by their
/// gcd, each member's k-th turn due at (k − ½)/weight of the cycle, turns taken in order of
/// due time (ties: lower index first): an EDF scheduler's sequence, as smooth as nginx's
/// weighted round robin though not always turn for turn the same. Each cycle gives each
/// member exactly its (reduced) weight, spread out: a member never gets more than
/// ⌈w_max/w_min⌉ + 1 turns in a row. Building costs O(total · log n) once.
///
/// A pick is `schedule[cursor % len]` with the cursor one word of the config's state block,
/// so every worker (thread or nginx process) walks one schedule: O(1), no lock. MOSN's EDF
/// keeps its heap per process behind a mutex.
///
/// When a cycle would be longer than 4,194,304 turns (the sum of the reduced weights; with
/// MOSN's weights of at most 128 that needs more than 32,768 hosts) the schedule is not
/// built: picks fall back to [`WeightLine`], LB_ROUNDROBIN's weighted order (still exact
/// per cycle and interleaved, O(log n), but not the EDF sequence).
#[derive(Debug)]
pub struct WeightedRoundRobin {
    state: Arc<StateBlock>,
    cursor: usize,
    n: usize,
    order: Order,
}

#[derive(Debug)]
enum Order {
    /// Equal weights: the cursor walks the members in order.
    Rotation,
    /// One cycle of the EDF schedule (member indexes).
    Schedule(Box<[u32]>),
    /// A cycle too long to precompute.
    Line(WeightLine),
}

// === impl WeightedRoundRobin ===

impl WeightedRoundRobin {
    pub fn new(members: &[Member], state: &Arc<StateBlock>, layout: &mut Layout) -> WeightedRoundRobin {
        WeightedRoundRobin { state: state.clone(), cursor: layout.take(1), n: members.len(), order: Order::new(members) }
    }
}

impl LoadBalancer for WeightedRoundRobin {
    fn select(&self, _pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        let c = self.state.word(self.cursor).fetch_add(1, Ordering::Relaxed);
        let start = match &self.order {
            Order::Rotation => (c % self.n as u64) as usize,
            Order::Schedule(s) => s[(c % s.len() as u64) as usize] as usize,
            Order::Line(line) => line.member_at(c),
        };
        scan_from(start, self.n, accept)
    }
}

// === impl Order ===

impl Order {
    fn new(members: &[Member]) -> Order {
        let weights: Vec<u64> = members.iter().map(|m| u64::from(m.weight.max(1))).collect();
        let Some(&first) = weights.first() else { return Order::Rotation };
        if weights.iter().all(|&w| w == first) {
            return Order::Rotation;
        }
        let g = weights.iter().fold(0, |g, &w| gcd(g, w));
        let reduced: Vec<u64> = weights.iter().map(|&w| w / g).collect();
        let total: u64 = reduced.iter().sum();
        match WeightLine::new(members) {
            Some(line) if total > MAX_SCHEDULE => Order::Line(line),
            _ => Order::Schedule(schedule(&reduced, total)),
        }
    }
}

/// One cycle of the EDF schedule over (reduced) `weights`, `total` their sum.
fn schedule(weights: &[u64], total: u64) -> Box<[u32]> {
    let mut heap: BinaryHeap<Reverse<Turn>> = weights.iter().enumerate().map(|(i, &w)| Reverse(Turn { k: 1, w, member: i })).collect();
    let mut out = Vec::with_capacity(total as usize);
    while let Some(Reverse(t)) = heap.pop() {
        out.push(t.member as u32);
        if t.k < t.w {
            heap.push(Reverse(Turn { k: t.k + 1, ..t }));
        }
    }
    out.into_boxed_slice()
}

/// A member's k-th turn of the cycle, due at (k − ½)/w.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    k: u64,
    w: u64,
    member: usize,
}

impl Ord for Turn {
    fn cmp(&self, other: &Turn) -> CmpOrdering {
        // (2k_a − 1)/(2w_a) vs (2k_b − 1)/(2w_b), exactly: k ≤ w ≤ 2^22, products < 2^46.
        let a = (2 * self.k - 1) * other.w;
        let b = (2 * other.k - 1) * self.w;
        a.cmp(&b).then(self.member.cmp(&other.member))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Turn) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
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

    fn sequence(weights: &[u32], picks: usize) -> Vec<usize> {
        let (m, state, mut layout) = members(weights);
        let wrr = WeightedRoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        (0..picks).map(|_| wrr.select(&Pick::default(), &mut |_| true).unwrap()).collect()
    }

    fn longest_run(seq: &[usize]) -> usize {
        seq.chunk_by(|a, b| a == b).map(<[usize]>::len).max().unwrap_or(0)
    }

    const WEIGHT_SETS: [&[u32]; 6] = [&[1, 2, 3], &[5, 1, 1], &[128, 1, 7, 64], &[3, 3, 6], &[2, 4], &[100, 1, 1, 50, 9]];

    #[test]
    fn each_cycle_gives_each_member_exactly_its_reduced_weight() {
        for weights in WEIGHT_SETS {
            let g = weights.iter().fold(0, |g, &w| gcd(g, u64::from(w)));
            let cycle: u64 = weights.iter().map(|&w| u64::from(w) / g).sum();
            let seq = sequence(weights, (cycle * 5) as usize);
            for chunk in seq.chunks(cycle as usize) {
                let mut got = vec![0u64; weights.len()];
                chunk.iter().for_each(|&i| got[i] += 1);
                let want: Vec<u64> = weights.iter().map(|&w| u64::from(w) / g).collect();
                assert_eq!(got, want, "weights {weights:?}");
            }
        }
    }

    #[test]
    fn turns_are_spread_no_member_runs_longer_than_the_weight_ratio_plus_one() {
        // The bound: ⌈w_max / w_min⌉ + 1 turns in a row, across cycle boundaries too.
        for weights in WEIGHT_SETS {
            let (max, min) = (*weights.iter().max().unwrap(), *weights.iter().min().unwrap());
            let bound = max.div_ceil(min) as usize + 1;
            let seq = sequence(weights, 2000);
            assert!(longest_run(&seq) <= bound, "weights {weights:?}: run {} > {bound}", longest_run(&seq));
        }
        // {5, 1, 1}: the light members' turns fall mid-cycle (nginx: a a b a c a a).
        assert_eq!(sequence(&[5, 1, 1], 7), [0, 0, 0, 1, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        assert_eq!(sequence(&[4, 4, 4], 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn a_cycle_too_long_to_precompute_falls_back_to_the_weight_line() {
        // 33,000 hosts of weight 128 and one of 127: a cycle of 4,223,871 turns.
        let mut weights = vec![128u32; 33_000];
        weights.push(127);
        let (m, state, mut layout) = members(&weights);
        let wrr = WeightedRoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        assert!(matches!(wrr.order, Order::Line(_)));
        assert!(wrr.select(&Pick::default(), &mut |_| true).is_some());
    }

    #[test]
    fn unaccepted_members_are_skipped() {
        let (m, state, mut layout) = members(&[3, 1, 2]);
        let wrr = WeightedRoundRobin::new(&m, &state, &mut layout);
        state.allocate_for(&layout);
        for _ in 0..12 {
            assert_ne!(wrr.select(&Pick::default(), &mut |i| i != 0), Some(0));
        }
    }
}
