//! `LB_PEAK_EWMA`: MOSN scores hosts by their latency's peak EWMA times their requests in
//! flight, over the success rate, and takes the best of `choice_count` random ones.

use super::least_request::{Candidate, Choices, WeightDraw};
use super::{LoadBalancer, Member, Pick};
use crate::config::LbConfig;
use crate::upstream::host::HostState;
use std::sync::OnceLock;
use std::time::Instant;

/// How fast a host's latency EWMA forgets (its time constant): 10 s, in nanoseconds.
pub(crate) const DECAY_NS: f64 = 10e9;

/// Draws `choice_count` members at random (2 by default; by weight when weights differ)
/// and offers them lowest score first, ties in the order drawn, then every member from a
/// random one on (as [`LeastRequest`](super::LeastRequest)): score = latency × (active +
/// 1)^bias, latency the member's peak EWMA ([`HostState::latency_ewma_ns`], decay
/// [`DECAY_NS`]) in ns, `bias` the config's `active_request_bias`. O(choice_count) per pick.
///
/// A member with no latency report yet is scored at the mean latency of the measured
/// candidates drawn with it (MOSN: the cluster's mean latency), so it gets tried when it has
/// fewer requests in flight, without all traffic rushing to it before its first response;
/// if no candidate is measured, requests in flight alone decide.
///
/// Differences from MOSN: no success-rate divisor (the host's state keeps no success rate);
/// unequal weights weigh the draw (MOSN runs its EDF schedule over weight / score).
#[derive(Debug)]
pub struct PeakEwma {
    choices: Choices,
    members: Box<[HostState]>,
    bias: f64,
}

// === impl PeakEwma ===

impl PeakEwma {
    pub fn new(cfg: &LbConfig, members: &[Member]) -> PeakEwma {
        // Fix the clock's epoch now, at config load: nginx loads in the master, so every
        // worker process inherits the same epoch and latency stamps mean the same in all.
        now_ns();
        PeakEwma {
            choices: Choices::new(cfg, WeightDraw::new(members)),
            members: members.iter().map(|m| m.state.clone()).collect(),
            bias: cfg.active_request_bias,
        }
    }

    /// Scores the drawn members: latency (NaN while unmeasured) first, then the mean
    /// measured latency in place of NaN, times the load.
    fn score(&self, drawn: &mut [Candidate], now: u64) {
        let (mut sum, mut measured) = (0.0, 0u32);
        for c in drawn.iter_mut() {
            c.score = self.members[c.member].latency_ewma_ns(now, DECAY_NS).unwrap_or(f64::NAN);
            if !c.score.is_nan() {
                sum += c.score;
                measured += 1;
            }
        }
        let mean = if measured == 0 { 1.0 } else { sum / f64::from(measured) };
        for c in drawn.iter_mut() {
            let latency = if c.score.is_nan() { mean } else { c.score };
            c.score = latency * load(&self.members[c.member], self.bias);
        }
    }
}

impl LoadBalancer for PeakEwma {
    fn select(&self, _pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        let now = now_ns();
        self.choices.select(self.members.len(), |drawn| self.score(drawn, now), accept)
    }
}

/// (active + 1)^bias, without `powf` for the default bias 1.
fn load(state: &HostState, bias: f64) -> f64 {
    let l = (state.active() + 1) as f64;
    if bias == 1.0 {
        l
    } else {
        l.powf(bias)
    }
}

/// A monotonic clock in nanoseconds since the first call in this process (at least 1, as
/// a latency stamp of 0 means "never reported"): the clock latency reports must use.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::lb::tests::members;

    fn picks_of(lb: &PeakEwma, member: usize, picks: usize) -> usize {
        (0..picks).filter(|_| lb.select(&Pick::default(), &mut |_| true) == Some(member)).count()
    }

    #[test]
    fn a_slow_member_gets_fewer_picks() {
        fastrand::seed(31);
        let (m, state, layout) = members(&[1, 1]);
        state.allocate_for(&layout);
        m[0].state.record_latency(50_000_000, now_ns(), DECAY_NS);
        m[1].state.record_latency(1_000_000, now_ns(), DECAY_NS);
        let lb = PeakEwma::new(&LbConfig::default(), &m);
        let fast = picks_of(&lb, 1, 10_000);
        assert!((fast as f64 / 10_000.0 - 0.75).abs() < 0.02, "{fast}");
    }

    #[test]
    fn load_counts_against_latency() {
        // Member 1 is 2× faster but has 5 requests in flight: 2 ms × 6 > 4 ms × 1.
        fastrand::seed(32);
        let (m, state, layout) = members(&[1, 1]);
        state.allocate_for(&layout);
        m[0].state.record_latency(4_000_000, now_ns(), DECAY_NS);
        m[1].state.record_latency(2_000_000, now_ns(), DECAY_NS);
        (0..5).for_each(|_| m[1].state.attempt_started());
        let lb = PeakEwma::new(&LbConfig::default(), &m);
        assert!(picks_of(&lb, 0, 10_000) > 7_000);
    }

    #[test]
    fn an_unmeasured_member_competes_at_the_measured_candidates_latency() {
        fastrand::seed(33);
        let (m, state, layout) = members(&[1, 1]);
        state.allocate_for(&layout);
        m[0].state.record_latency(1_000_000, now_ns(), DECAY_NS);
        (0..2).for_each(|_| m[1].state.attempt_started());
        let lb = PeakEwma::new(&LbConfig::default(), &m);
        // Unmeasured member 1 has more in flight: it wins only when drawn twice.
        let share = picks_of(&lb, 1, 10_000) as f64 / 10_000.0;
        assert!((share - 0.25).abs() < 0.02, "{share}");
        // Now fewer: it wins whenever drawn.
        (0..5).for_each(|_| m[0].state.attempt_started());
        let share = picks_of(&lb, 1, 10_000) as f64 / 10_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn unmeasured_idle_members_are_drawn_by_weight() {
        fastrand::seed(34);
        let (m, state, layout) = members(&[1, 3]);
        state.allocate_for(&layout);
        let lb = PeakEwma::new(&LbConfig::default(), &m);
        let share = picks_of(&lb, 1, 20_000) as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn the_clock_is_monotonic_and_never_zero() {
        let a = now_ns();
        let b = now_ns();
        assert!(a >= 1 && b >= a);
    }
}
