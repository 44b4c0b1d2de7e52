//! `LB_LEAST_REQUEST`: MOSN draws `choice_count` random hosts and takes the one with the
//! fewest requests in flight (power of two choices by default), weighing hosts by weight.

use super::{scan_from, LoadBalancer, Member, Pick};
use crate::config::LbConfig;
use crate::upstream::host::HostState;

/// Most members compared per pick: a larger `choice_count` counts as this many (the
/// candidates live in a fixed array, so a pick never allocates).
pub(super) const MAX_CHOICES: usize = 32;

/// Draws `choice_count` members at random (with replacement, as MOSN and Envoy do; by
/// weight when weights differ) and offers them lowest score first, ties in the order drawn:
/// score = active^bias / weight, `active` the member's requests in flight on every worker,
/// `bias` the config's `active_request_bias` (0 ignores load: a weighted random pick). If
/// none of them is accepted, every member from a random one on. O(choice_count) per pick.
///
/// With equal weights this is MOSN's algorithm: the candidate with the fewest requests in
/// flight. With unequal weights MOSN runs an EDF schedule over weight / (active + 1)^bias
/// (a host's load re-read when it is rescheduled) behind a mutex. Here drawing by weight
/// and comparing load per unit of weight gives each member its weight's share both when
/// nothing is in flight and under load (the tests check both). Drawing uniformly instead
/// would cap a member's share at the chance it is drawn at all (about 2/n with two
/// choices), whatever its weight; the `+ 1` of MOSN's formula would give heavy members
/// more than their share at low load.
#[derive(Debug)]
pub struct LeastRequest {
    choices: Choices,
    /// Per member: live state and weight.
    members: Box<[(HostState, f64)]>,
    bias: f64,
}

/// A member drawn for a pick.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// Lower is better.
    pub(super) score: f64,
    /// Position in the draw (breaks ties).
    order: usize,
    pub(super) member: usize,
}

/// How a pick draws its candidates: how many, and by weight or uniformly.
#[derive(Debug)]
pub(super) struct Choices {
    count: usize,
    by_weight: Option<WeightDraw>,
}

/// Draws a member with probability weight / total in O(1) (Vose's alias method): cell `i`
/// of `n` is drawn uniformly, then kept with probability `keep / 2^32`, else its alias.
#[derive(Debug)]
pub(super) struct WeightDraw {
    cells: Box<[(u64, u32)]>,
}

// === impl LeastRequest ===

impl LeastRequest {
    pub fn new(cfg: &LbConfig, members: &[Member]) -> LeastRequest {
        LeastRequest {
            choices: Choices::new(cfg, WeightDraw::new(members)),
            members: members.iter().map(|m| (m.state.clone(), f64::from(m.weight.max(1)))).collect(),
            bias: cfg.active_request_bias,
        }
    }

    fn score(&self, i: usize) -> f64 {
        let (state, weight) = &self.members[i];
        let active = state.active() as f64;
        if self.bias == 1.0 {
            active / weight
        } else if self.bias == 0.0 {
            0.0
        } else {
            active.powf(self.bias) / weight
        }
    }
}

impl LoadBalancer for LeastRequest {
    fn select(&self, _pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        self.choices.select(self.members.len(), |drawn| drawn.iter_mut().for_each(|c| c.score = self.score(c.member)), accept)
    }
}

// === impl Choices ===

impl Choices {
    /// `choice_count`, 0 meaning MOSN's default 2, at most [`MAX_CHOICES`]; drawn by
    /// `by_weight` if given, else uniformly.
    pub(super) fn new(cfg: &LbConfig, by_weight: Option<WeightDraw>) -> Choices {
        let c = if cfg.choice_count == 0 { 2 } else { cfg.choice_count as usize };
        Choices { count: c.min(MAX_CHOICES), by_weight }
    }

    /// Draws members of `0..n`, has `score` set each one's score, and offers them lowest
    /// score first (ties in the order drawn), then every member from a random one on.
    pub(super) fn select(&self, n: usize, score: impl FnOnce(&mut [Candidate]), accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let mut drawn = [Candidate { score: 0.0, order: 0, member: 0 }; MAX_CHOICES];
        let drawn = &mut drawn[..self.count];
        for (order, c) in drawn.iter_mut().enumerate() {
            let member = match &self.by_weight {
                Some(w) => w.draw(),
                None => fastrand::usize(..n),
            };
            *c = Candidate { score: 0.0, order, member };
        }
        score(drawn);
        drawn.sort_unstable_by(|a, b| a.score.total_cmp(&b.score).then(a.order.cmp(&b.order)));
        drawn.iter().map(|c| c.member).find(|&i| accept(i)).or_else(|| scan_from(fastrand::usize(..n), n, accept))
    }
}

// === impl WeightDraw ===

impl WeightDraw {
    /// `None` when all weights are equal (a uniform draw is exact then).
    pub(super) fn new(members: &[Member]) -> Option<WeightDraw> {
        let first = members.first()?.weight.max(1);
        if members.iter().all(|m| m.weight.max(1) == first) {
            return None;
        }
        let n = members.len() as u128;
        let total: u128 = members.iter().map(|m| u128::from(m.weight.max(1))).sum();
        // Each cell holds `total` units: its own member's share (`n × weight` units) topped
        // up from a member with more than a cell's worth.
        let mut units: Vec<u128> = members.iter().map(|m| u128::from(m.weight.max(1)) * n).collect();
        let mut cells: Vec<(u64, u32)> = (0..members.len()).map(|i| (1 << 32, i as u32)).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..members.len()).partition(|&i| units[i] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            cells[s] = (((units[s] << 32) / total) as u64, l as u32);
            units[l] -= total - units[s];
            if units[l] < total {
                large.pop();
                small.push(l);
            }
        }
        Some(WeightDraw { cells: cells.into_boxed_slice() })
    }

    pub(super) fn draw(&self) -> usize {
        let i = fastrand::usize(..self.cells.len());
        let (keep, alias) = self.cells[i];
        if u64::from(fastrand::u32(..)) < keep {
            i
        } else {
            alias as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    fn balancer(weights: &[u32], active: &[u64]) -> (LeastRequest, Vec<Member>) {
        let (m, state, layout) = members(weights);
        state.allocate_for(&layout);
        for (member, &a) in m.iter().zip(active) {
            (0..a).for_each(|_| member.state.attempt_started());
        }
        (LeastRequest::new(&LbConfig::default(), &m), m)
    }

    fn counts(lb: &LeastRequest, picks: usize) -> Vec<usize> {
        let mut got = vec![0; lb.members.len()];
        for _ in 0..picks {
            got[lb.select(&Pick::default(), &mut |_| true).unwrap()] += 1;
        }
        got
    }

    #[test]
    fn the_least_loaded_member_gets_the_most_picks() {
        fastrand::seed(11);
        let (lb, _m) = balancer(&[1, 1, 1, 1], &[5, 0, 3, 8]);
        let got = counts(&lb, 10_000);
        // Two choices: member 1 wins whenever it is drawn (7/16), member 3 only against itself (1/16).
        assert!(got[1] > got[2] && got[2] > got[0] && got[0] > got[3], "{got:?}");
        assert!((got[1] as f64 / 10_000.0 - 7.0 / 16.0).abs() < 0.02, "{got:?}");
    }

    #[test]
    fn equal_load_spreads_uniformly_within_five_percent() {
        fastrand::seed(12);
        let (lb, _m) = balancer(&[3, 3, 3, 3, 3], &[2, 2, 2, 2, 2]);
        let got = counts(&lb, 50_000);
        for c in &got {
            assert!((*c as f64 / 10_000.0 - 1.0).abs() < 0.05, "{got:?}");
        }
    }

    #[test]
    fn with_nothing_in_flight_picks_follow_the_weights_within_one_point() {
        fastrand::seed(16);
        let weights = [1, 2, 5];
        let (lb, _m) = balancer(&weights, &[0, 0, 0]);
        let got = counts(&lb, 100_000);
        for (c, w) in got.iter().zip(weights) {
            assert!((*c as f64 / 100_000.0 - f64::from(w) / 8.0).abs() < 0.01, "{got:?}");
        }
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        fastrand::seed(17);
        let weights = [7, 1, 128, 3, 3, 50];
        let (m, state, layout) = members(&weights);
        state.allocate_for(&layout);
        let draw = WeightDraw::new(&m).unwrap();
        let mut got = [0usize; 6];
        (0..192_000).for_each(|_| got[draw.draw()] += 1);
        for (c, w) in got.iter().zip(weights) {
            assert!((*c as f64 / 192_000.0 - f64::from(w) / 192.0).abs() < 0.005, "{got:?}");
        }
    }

    #[test]
    fn under_load_picks_follow_the_weights_within_three_points() {
        // A closed loop: 60 requests in flight, a random one ends after each pick. Picks
        // even out (active + 1) / weight, so a host's share tends to its weight's share.
        fastrand::seed(13);
        let weights = [1, 2, 5];
        let (lb, m) = balancer(&weights, &[0, 0, 0]);
        let mut in_flight = Vec::new();
        let mut got = [0usize; 3];
        let picks = 100_000;
        for _ in 0..picks {
            let i = lb.select(&Pick::default(), &mut |_| true).unwrap();
            got[i] += 1;
            m[i].state.attempt_started();
            in_flight.push(i);
            if in_flight.len() > 60 {
                let done = in_flight.swap_remove(fastrand::usize(..in_flight.len()));
                m[done].state.attempt_ended();
            }
        }
        for (c, w) in got.iter().zip(weights) {
            let (share, want) = (*c as f64 / picks as f64, f64::from(w) / 8.0);
            assert!((share - want).abs() < 0.03, "{got:?}");
        }
    }

    #[test]
    fn candidates_are_offered_best_first_then_every_member() {
        fastrand::seed(14);
        let (lb, _m) = balancer(&[1, 1, 1], &[0, 4, 9]);
        for _ in 0..200 {
            let mut offered = Vec::new();
            let got = lb.select(&Pick::default(), &mut |i| {
                offered.push(i);
                false
            });
            assert_eq!(got, None);
            let candidates = &offered[..2];
            assert!(candidates[0] <= candidates[1], "lowest active first: {offered:?}");
            let mut rest = offered[2..].to_vec();
            rest.sort_unstable();
            assert_eq!(rest, [0, 1, 2]);
        }
    }

    #[test]
    fn a_bias_of_zero_ignores_load() {
        fastrand::seed(15);
        let (m, state, layout) = members(&[1, 1]);
        state.allocate_for(&layout);
        (0..50).for_each(|_| m[0].state.attempt_started());
        let lb = LeastRequest::new(&LbConfig { active_request_bias: 0.0, ..LbConfig::default() }, &m);
        let first = counts(&lb, 20_000)[0] as f64 / 20_000.0;
        assert!((first - 0.5).abs() < 0.02, "{first}");
    }
}
