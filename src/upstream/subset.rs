//! Subset load balancing (MOSN's `lb_subset_config`): hosts grouped by their
//! `mosn.lb` metadata, a request's criteria naming its group.
//!
//! MOSN's rules, kept here:
//! - one subset per selector (a sorted key set) and per value combination the hosts
//!   actually carry, built once per config;
//! - a request's criteria (sorted by key) must equal a whole selector's keys and values:
//!   `{a}` finds nothing when only `[a, b]` is declared;
//! - no criteria means every host, and the fallback never applies;
//! - a missing subset, or one whose balancer finds no usable host, falls back by
//!   `fall_back_policy`: none (502), any host, or the `default_subset` hosts.
//!
//! Lookup is one hash of the criteria: no host is scanned on the request path.

use super::host::Host;
use super::lb::{self, LoadBalancer, Member, Pick};
use super::state::{Layout, StateBlock};
use crate::config::{FallbackPolicy, LbConfig, SubsetConfig};
use crate::headers::SharedStr;
use std::collections::HashMap;
use std::sync::Arc;

/// Subset criteria: metadata pairs sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Criteria(Arc<[(SharedStr, SharedStr)]>);

/// Some hosts of a cluster and the balancer over them.
#[derive(Debug)]
pub struct HostSet {
    /// Member i of the balancer is host `hosts[i]` of the cluster.
    pub hosts: Box<[u32]>,
    pub lb: Box<dyn LoadBalancer>,
}

/// A cluster's subsets.
#[derive(Debug)]
pub struct Subsets {
    pub fallback: FallbackPolicy,
    sets: HashMap<Criteria, HostSet>,
    default: Option<HostSet>,
}

/// Where a request's hosts come from.
#[derive(Debug, Clone, Copy)]
pub enum Chosen<'a> {
    /// The whole cluster (no criteria, or no subsets).
    All,
    /// The subset the criteria name.
    Subset(&'a HostSet),
    /// The criteria name no subset with hosts: the fallback's host set (`All` for ANY_ENDPOINT).
    Fallback(Option<&'a HostSet>),
}

// === impl Criteria ===

impl Criteria {
    /// From pairs sorted by key (config parsing sorts them); the last of a repeated key wins.
    pub fn new(pairs: &[(String, String)]) -> Criteria {
        Criteria::from_pairs(pairs.iter().map(|(k, v)| (SharedStr::from(k.as_str()), SharedStr::from(v.as_str()))))
    }

    /// From pairs in any order; a later pair replaces an earlier one with the same key.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (SharedStr, SharedStr)>) -> Criteria {
        let mut v: Vec<(SharedStr, SharedStr)> = Vec::new();
        for (k, val) in pairs {
            match v.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = val,
                None => v.push((k, val)),
            }
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Criteria(v.into())
    }

    /// No criteria: every host. A shared one, since `Criteria::default()` takes a reference
    /// count (two atomic operations a request on the path without subsets).
    pub fn none() -> &'static Criteria {
        static NONE: std::sync::OnceLock<Criteria> = std::sync::OnceLock::new();
        NONE.get_or_init(Criteria::default)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn pairs(&self) -> &[(SharedStr, SharedStr)] {
        &self.0
    }

    /// These criteria with `over`'s pairs added; `over` wins a conflict (MOSN: the
    /// metadata filters set wins over the route's `metadata_match`).
    pub fn merged(&self, over: &[(SharedStr, SharedStr)]) -> Criteria {
        if over.is_empty() {
            return self.clone();
        }
        Criteria::from_pairs(self.0.iter().cloned().chain(over.iter().cloned()))
    }
}

// === impl Subsets ===

impl Subsets {
    /// Builds every subset the hosts carry, with a balancer each.
    pub(crate) fn new(
        cfg: &SubsetConfig,
        lb_cfg: &LbConfig,
        hosts: &[Host],
        members: &[Member],
        state: &Arc<StateBlock>,
        layout: &mut Layout,
    ) -> Subsets {
        // Every value combination some host carries, per selector, with its hosts, in config
        // order (state words are laid out as built, so the order must be fixed).
        let mut order: Vec<Criteria> = Vec::new();
        let mut groups: HashMap<Criteria, Vec<u32>> = HashMap::new();
        for keys in &cfg.selectors {
            for (i, h) in hosts.iter().enumerate() {
                let values: Option<Vec<(SharedStr, SharedStr)>> =
                    keys.iter().map(|k| h.metadata_value(k).map(|v| (SharedStr::from(k.as_str()), SharedStr::from(v)))).collect();
                let Some(c) = values.map(Criteria::from_pairs) else { continue };
                let ids = groups.entry(c).or_insert_with_key(|c| {
                    order.push(c.clone());
                    Vec::new()
                });
                // Two selectors with the same keys name one subset: a host joins it once.
                if ids.last() != Some(&(i as u32)) {
                    ids.push(i as u32);
                }
            }
        }
        let mut sets = HashMap::with_capacity(order.len());
        for c in order {
            let ids = groups.remove(&c).unwrap_or_default();
            let set = host_set(ids, lb_cfg, members, state, layout);
            sets.insert(c, set);
        }
        let default = (cfg.fall_back_policy == FallbackPolicy::DefaultSubset).then(|| {
            let ids = hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| cfg.default_subset.iter().all(|(k, v)| h.metadata_value(k) == Some(v.as_str())))
                .map(|(i, _)| i as u32)
                .collect();
            host_set(ids, lb_cfg, members, state, layout)
        });
        Subsets { fallback: cfg.fall_back_policy, sets, default }
    }

    /// Number of subsets built (MOSN's `lb_subsets_created`).
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The subset named by `criteria`, if the hosts carry it.
    pub fn get(&self, criteria: &Criteria) -> Option<&HostSet> {
        self.sets.get(criteria)
    }

    /// Where a request whose subset has no usable host goes.
    pub fn fallback(&self) -> Chosen<'_> {
        match self.fallback {
            FallbackPolicy::NoFallback => Chosen::Fallback(None),
            FallbackPolicy::AnyEndpoint => Chosen::All,
            FallbackPolicy::DefaultSubset => Chosen::Fallback(self.default.as_ref()),
        }
    }
}

/// A host set over cluster hosts `ids`.
pub(crate) fn host_set(ids: Vec<u32>, lb_cfg: &LbConfig, members: &[Member], state: &Arc<StateBlock>, layout: &mut Layout) -> HostSet {
    let own: Vec<Member> = ids.iter().map(|&i| members[i as usize].clone()).collect();
    HostSet { lb: lb::build(lb_cfg, &own, state, layout), hosts: ids.into() }
}

impl HostSet {
    /// The cluster host index the balancer picks, offering cluster host indexes to `accept`.
    pub fn select(&self, pick: &Pick, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        let hosts = &self.hosts;
        self.lb.select(pick, &mut |m| accept(hosts[m] as usize)).map(|m| hosts[m] as usize)
    }
}
