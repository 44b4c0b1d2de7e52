//! Load balancers: one small trait, one file per MOSN `lb_type`.
//!
//! A balancer is built once per host set (a cluster, or one of its subsets) over that
//! set's [`Member`]s and only orders them; the caller says which are acceptable (healthy,
//! not yet tried by this request, under their connection limit). Adding one: a file here
//! implementing [`LoadBalancer`], a variant of [`LbType`], and its line in [`build`].

mod least_connection;
mod least_request;
mod maglev;
mod peak_ewma;

pub(crate) use peak_ewma::{now_ns, DECAY_NS};
mod random;
mod request_round_robin;
mod round_robin;
mod weighted_round_robin;

pub use least_connection::LeastConnection;
pub use least_request::LeastRequest;
pub use maglev::Maglev;
pub use peak_ewma::PeakEwma;
pub use random::Random;
pub use request_round_robin::RequestRoundRobin;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use super::host::HostState;
use super::state::{Layout, StateBlock};
use crate::config::{LbConfig, LbType};
use std::sync::Arc;

/// A host as a balancer sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// MOSN's host weight, 1..=128.
    pub weight: u32,
    /// A stable hash of the host's address (consistent hashing places hosts by it).
    pub key: u64,
    /// The host's live counters (active requests, latency).
    pub state: HostState,
}

/// What a balancer may use from the request being balanced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pick {
    /// The route's `hash_policy` value for this request (consistent hashing).
    pub hash: Option<u64>,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// Picks one of the members it was built over (indexes `0..n`): offers members to
/// `accept` in the balancer's order for this request and returns the first one taken,
/// `None` if it takes none. Called on every worker at once: `&self`, atomics only.
///
/// Contract, checked for every balancer by the tests in this module: it returns only a
/// member `accept` took; it returns `None` only after offering every member at least once
/// (so a healthy member is always found); it offers a member at most a bounded number of
/// times; and a pick costs O(1) or O(log n) when the first members offered are taken.
pub trait LoadBalancer: Send + Sync + std::fmt::Debug {
    fn select(&self, pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize>;
}

/// Builds the balancer of `cfg.lb_type` over `members`, taking any state words it
/// needs from `layout`.
pub(crate) fn build(cfg: &LbConfig, members: &[Member], state: &Arc<StateBlock>, layout: &mut Layout) -> Box<dyn LoadBalancer> {
    match cfg.lb_type {
        LbType::RoundRobin => Box::new(RoundRobin::new(members, state, layout)),
        LbType::Random => Box::new(Random::new(members)),
        LbType::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(members, state, layout)),
        LbType::RequestRoundRobin => Box::new(RequestRoundRobin::new(members)),
        LbType::LeastRequest => Box::new(LeastRequest::new(cfg, members)),
        LbType::LeastConnection => Box::new(LeastConnection::new(cfg, members)),
        LbType::PeakEwma => Box::new(PeakEwma::new(cfg, members)),
        LbType::Maglev => Box::new(Maglev::new(members)),
    }
}

/// For `benches/balancers.rs` only, not an API: the balancer of `lb_type` (other settings
/// default) over hosts of `weights` with fresh state, and a pick with `hash` as the
/// request's hash value, every host accepted, as the first attempt. Every host has
/// reported a latency (1 ms plus 1 µs per index), as in steady state.
#[doc(hidden)]
pub fn bench_balancer(lb_type: LbType, weights: &[u32]) -> impl Fn(u64) -> Option<usize> {
    let state = Arc::new(StateBlock::unallocated());
    let mut layout = Layout::default();
    let members: Vec<Member> = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Member {
            weight,
            key: super::hash::bytes(format!("10.0.{}.{}:80", i / 256, i % 256).as_bytes()),
            state: HostState::new(&state, layout.take(super::host::HOST_WORDS)),
        })
        .collect();
    let lb = build(&LbConfig { lb_type, ..LbConfig::default() }, &members, &state, &mut layout);
    state.allocate_for(&layout);
    for (i, m) in members.iter().enumerate() {
        m.state.record_latency(1_000_000 + 1_000 * i as u64, peak_ewma::now_ns(), peak_ewma::DECAY_NS);
    }
    move |hash| lb.select(&Pick { hash: Some(hash), attempt: 1 }, &mut |_| true)
}

/// Offers every member from `start` on, in order, wrapping around: the fallback every
/// balancer uses when its own choice was not accepted.
pub(crate) fn scan_from(start: usize, n: usize, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
    // Wrapped by a compare, not a division per member (`start` is below `n` but for callers
    // that pass any number).
    let mut i = if start < n { start } else { start % n.max(1) };
    for _ in 0..n {
        if accept(i) {
            return Some(i);
        }
        i += 1;
        if i == n {
            i = 0;
        }
    }
    None
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

    use crate::upstream::host::HOST_WORDS;

    /// The cluster's rule (untried healthy first, else any healthy) over a balancer.
    fn first_usable(lb: &dyn LoadBalancer, healthy: impl Fn(usize) -> bool, tried: &TriedHosts) -> Option<usize> {
        let pick = Pick { hash: Some(fastrand::u64(..)), attempt: 1 };
        lb.select(&pick, &mut |i| healthy(i) && !tried.contains(i)).or_else(|| lb.select(&pick, &mut |i| healthy(i)))
    }

    /// Members with the given weights over a fresh state block, and the block.
    pub(crate) fn members(weights: &[u32]) -> (Vec<Member>, Arc<StateBlock>, Layout) {
        let state = Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let members = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Member {
                weight,
                key: crate::upstream::hash::bytes(format!("10.0.0.{i}:80").as_bytes()),
                state: HostState::new(&state, layout.take(HOST_WORDS)),
            })
            .collect();
        (members, state, layout)
    }

    /// Every balancer over `members`, sharing `state`.
    pub(crate) fn all_balancers(members: &[Member], state: &Arc<StateBlock>, layout: &mut Layout) -> Vec<(LbType, Box<dyn LoadBalancer>)> {
        LbType::ALL.iter().map(|&lb_type| (lb_type, build(&LbConfig { lb_type, ..LbConfig::default() }, members, state, layout))).collect()
    }

    #[test]
    fn never_returns_a_tried_host_while_another_healthy_one_exists() {
        // Exhaustive over small clusters: every health pattern and tried set, every balancer,
        // equal and unequal weights.
        for n in 1..=6usize {
            for weights in [vec![1; n], (1..=n as u32).collect::<Vec<_>>()] {
                let (m, state, mut layout) = members(&weights);
                let lbs = all_balancers(&m, &state, &mut layout);
                state.allocate_for(&layout);
                for health in 0..(1u32 << n) {
                    for tried_bits in 0..(1u32 << n) {
                        let mut tried = TriedHosts::default();
                        (0..n).filter(|i| tried_bits & (1 << i) != 0).for_each(|i| tried.insert(i));
                        for (_, lb) in &lbs {
                            let got = first_usable(lb.as_ref(), |i| health & (1 << i) != 0, &tried);
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
    }

    #[test]
    fn tried_hosts_beyond_the_bitmask() {
        let mut t = TriedHosts::default();
        t.insert(3);
        t.insert(200);
        assert!(t.contains(3) && t.contains(200) && !t.contains(4) && !t.contains(201));
    }
}
