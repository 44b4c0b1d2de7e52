//! A MOSN cluster: its hosts, balancers, subsets, circuit breakers and counters.

use super::dns;
use super::host::{Host, HOST_WORDS};
use super::in_flight::InFlight;
use super::lb::{Member, Pick, TriedHosts};
use super::state::{Layout, StateBlock};
use super::subset::{self, Criteria, HostSet, Subsets};
use crate::config::{CircuitBreakers, ClusterConfig, DnsConfig, HealthCheckConfig, LbType};
use crate::headers::SharedStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

// The cluster's words, in order.
// In flight is a total less its ended word (one atomic operation at each end; see
// `word::try_start`).
/// Requests started, then ended (unused when the cluster counts them in rows: `requests`).
const RQ_TOTAL: usize = 0;
const _RQ_ENDED: usize = 1; // RQ_TOTAL + 1: `InFlight::Shared`
const RETRY_TOTAL: usize = 2;
const _RETRY_ENDED: usize = 3; // RETRY_TOTAL + 1: `retries`
const RQ_OVERFLOW: usize = 4;
const RETRY_OVERFLOW: usize = 5;
const CX_OVERFLOW: usize = 6;
const NO_HEALTHY: usize = 7;
const SUBSET_FALLBACK: usize = 8;
const WINDOW_START_MS: usize = 9;
const CLUSTER_WORDS: usize = 10;

/// A MOSN cluster, shared by every worker (its mutable state is atomics in the config's
/// [`StateBlock`]).
#[derive(Debug)]
pub struct Cluster {
    pub name: SharedStr,
    pub lb_type: LbType,
    pub connect_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub hosts: Vec<Host>,
    /// `circuit_breakers[0]` (0 is unlimited).
    pub limits: CircuitBreakers,
    /// Active health checking, when `health_check.service_name` is set.
    pub health_check: Option<HealthCheckConfig>,
    /// STRICT_DNS: resolution settings, and each name's host slots (ranges of `hosts`).
    pub dns: Option<DnsConfig>,
    pub dns_names: Vec<std::ops::Range<usize>>,
    /// `tls_context` with TLS on: the host speaks TLS to these hosts.
    pub tls: Option<crate::config::tls::TlsConfig>,
    all: HostSet,
    subsets: Option<Subsets>,
    state: Arc<StateBlock>,
    slot: usize,
    /// Requests in flight: the shared words `RQ_TOTAL`/`RQ_ENDED` under a `max_requests`,
    /// else counters in rows.
    requests: InFlight,
    /// Every state word this cluster took (its own, its hosts', its balancers'), in order.
    words: std::ops::Range<usize>,
}

/// Why [`Cluster::choose`] found no host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoHostReason {
    /// No healthy host (or none in the subset and no fallback): MOSN's 502.
    NoHealthy,
    /// Every healthy host is at `max_connections`: MOSN's overflow, 503.
    Overflow,
}

// === impl Cluster ===

impl Cluster {
    pub(crate) fn new(cfg: &ClusterConfig, state: &Arc<StateBlock>, layout: &mut Layout) -> Cluster {
        let slot = layout.take(CLUSTER_WORDS);
        let requests = match cfg.limits.max_requests {
            0 => InFlight::take(layout, false),
            _ => InFlight::Shared { started: slot + RQ_TOTAL },
        };
        // A host's attempts are only counted (in rows) unless a limit or the balancer reads them.
        let reads_load = matches!(cfg.lb.lb_type, LbType::LeastRequest | LbType::LeastConnection | LbType::PeakEwma);
        let only_counted = cfg.limits.max_connections == 0 && !reads_load;
        // A STRICT_DNS name is SLOTS_PER_NAME hosts, resolved now (off any request path).
        let mut hosts: Vec<Host> = Vec::with_capacity(cfg.hosts.len());
        let mut dns_names = Vec::new();
        for h in &cfg.hosts {
            let n = if h.dns_name.is_some() { dns::SLOTS_PER_NAME } else { 1 };
            let first = hosts.len();
            hosts.extend((0..n).map(|_| {
                let slot = layout.take(HOST_WORDS);
                Host::new(h, state, slot, only_counted.then(|| InFlight::take(layout, false)))
            }));
            if h.dns_name.is_some() {
                dns_names.push(first..hosts.len());
            }
        }
        if let Some(d) = &cfg.dns {
            for r in &dns_names {
                let slots: Vec<&dns::DnsSlot> = hosts[r.clone()].iter().filter_map(|h| h.dns.as_ref()).collect();
                dns::refresh(&slots, d);
            }
        }
        // Consistent hashing places a slot by its name and number, so a re-resolution that
        // keeps an address in its slot keeps its keys.
        let members: Vec<Member> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let key = if h.dns.is_some() { format!("{}#{i}", h.address_text) } else { h.address_text.to_string() };
                Member { weight: h.weight, key: super::hash::bytes(key.as_bytes()), state: h.state.clone() }
            })
            .collect();
        let all = subset::host_set((0..hosts.len() as u32).collect(), &cfg.lb, &members, state, layout);
        let subsets = cfg.subset.as_ref().map(|s| Subsets::new(s, &cfg.lb, &hosts, &members, state, layout));
        let words = slot..layout.next;
        Cluster {
            name: cfg.name.as_str().into(),
            lb_type: cfg.lb.lb_type,
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            hosts,
            limits: cfg.limits,
            health_check: cfg.health_check.clone(),
            dns: cfg.dns,
            dns_names,
            tls: cfg.tls.clone(),
            all,
            subsets,
            state: state.clone(),
            slot,
            requests,
            words,
        }
    }

    /// A cluster without hosts (it never picks one): a host's stand-in where it needs a
    /// cluster object that is no MOSN cluster (Envoy's cluster for the clusters a reload
    /// adds, whose hosts come from those clusters).
    pub fn without_hosts(name: &str) -> Cluster {
        let cfg = ClusterConfig {
            path: String::new(),
            name: name.to_string(),
            lb: crate::config::LbConfig::default(),
            connect_timeout: crate::config::DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: None,
            hosts: Vec::new(),
            subset: None,
            limits: CircuitBreakers::default(),
            health_check: None,
            dns: None,
            tls: None,
        };
        let state = Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let c = Cluster::new(&cfg, &state, &mut layout);
        state.allocate_for(&layout);
        c
    }

    /// Takes over the state of `old`, the cluster of the same name in the config this one
    /// replaces (a reload), before any stream runs on this one.
    ///
    /// `same_config`: the cluster's JSON is unchanged, so its words are laid out alike and
    /// all are copied: health, ejections, counters, the balancers' positions. Otherwise each
    /// host whose address is unchanged keeps its words, and the cluster its counters. In
    /// both cases the in-flight gauges start at 0: the requests they count still run on the
    /// old config and end there.
    pub(crate) fn inherit(&self, old: &Cluster, same_config: bool) {
        let copy = |from: &StateBlock, to: &StateBlock, src: usize, dst: usize, n: usize| {
            for i in 0..n {
                to.word(dst + i).store(from.word(src + i).load(Ordering::Relaxed), Ordering::Relaxed);
            }
        };
        if same_config && self.words.len() == old.words.len() && self.hosts.len() == old.hosts.len() {
            copy(&old.state, &self.state, old.words.start, self.words.start, self.words.len());
            for (h, o) in self.hosts.iter().zip(&old.hosts) {
                h.state.inherit_attempts(&o.state);
            }
        } else {
            copy(&old.state, &self.state, old.slot, self.slot, CLUSTER_WORDS);
            for h in self.hosts.iter().filter(|h| h.dns.is_none()) {
                if let Some(o) = old.hosts.iter().find(|o| o.dns.is_none() && o.address_text == h.address_text) {
                    h.state.inherit(&o.state);
                }
            }
        }
        self.requests.inherit(&self.state, old.requests, &old.state);
        self.retries().inherit(&self.state, old.retries(), &old.state);
    }

    fn word(&self, w: usize) -> &AtomicU64 {
        self.state.word(self.slot + w)
    }

    /// Resolves this STRICT_DNS cluster's names again; `(host index, new address)` for each
    /// slot that changed.
    pub fn refresh_dns(&self) -> Vec<(usize, Option<std::net::SocketAddr>)> {
        let Some(d) = &self.dns else { return Vec::new() };
        let mut out = Vec::new();
        for r in &self.dns_names {
            let slots: Vec<&dns::DnsSlot> = self.hosts[r.clone()].iter().filter_map(|h| h.dns.as_ref()).collect();
            for i in dns::refresh(&slots, d) {
                let index = r.start + i;
                // A new address starts healthy: the old one's health is not its own.
                self.hosts[index].state.reset_health();
                out.push((index, self.hosts[index].current().map(|(a, _)| a)));
            }
        }
        out
    }

    /// When the current passive-health window began (ms since the epoch; 0: none yet).
    pub(crate) fn window_start_ms(&self) -> &AtomicU64 {
        self.word(WINDOW_START_MS)
    }

    /// True when the cluster groups its hosts into subsets (`lb_subset_config`).
    pub fn has_subsets(&self) -> bool {
        self.subsets.is_some()
    }

    /// The subsets built (MOSN's `lb_subsets_created`).
    pub fn subsets_created(&self) -> usize {
        self.subsets.as_ref().map_or(0, Subsets::len)
    }

    /// Picks a host for one attempt and counts the attempt on it (release it with
    /// [`super::HostState::attempt_ended`]): in the subset `criteria` name (or its fallback),
    /// a healthy host under its connection limit, not in `tried` if one exists, else a tried
    /// one (a retry on a one-host cluster).
    pub fn choose(&self, criteria: &Criteria, pick: &Pick, tried: &TriedHosts) -> Result<usize, NoHostReason> {
        let set = match (&self.subsets, criteria.is_empty()) {
            (Some(subsets), false) => match subsets.get(criteria) {
                Some(set) => match self.choose_in(set, pick, tried) {
                    Ok(i) => return Ok(i),
                    // A full subset is an overflow (503), not a reason to leave it.
                    Err(NoHostReason::Overflow) => {
                        self.word(CX_OVERFLOW).fetch_add(1, Ordering::Relaxed);
                        return Err(NoHostReason::Overflow);
                    }
                    Err(NoHostReason::NoHealthy) => {
                        self.word(SUBSET_FALLBACK).fetch_add(1, Ordering::Relaxed);
                        subsets.fallback()
                    }
                },
                None => {
                    self.word(SUBSET_FALLBACK).fetch_add(1, Ordering::Relaxed);
                    subsets.fallback()
                }
            },
            _ => subset::Chosen::All,
        };
        let result = match set {
            subset::Chosen::All => self.choose_in(&self.all, pick, tried),
            subset::Chosen::Subset(s) | subset::Chosen::Fallback(Some(s)) => self.choose_in(s, pick, tried),
            subset::Chosen::Fallback(None) => Err(NoHostReason::NoHealthy),
        };
        match result {
            Err(NoHostReason::NoHealthy) => self.word(NO_HEALTHY).fetch_add(1, Ordering::Relaxed),
            Err(NoHostReason::Overflow) => self.word(CX_OVERFLOW).fetch_add(1, Ordering::Relaxed),
            Ok(_) => 0,
        };
        result
    }

    /// A host for a request the core does not see (no stream): any usable host, by the
    /// cluster's balancer.
    pub fn choose_any(&self) -> Option<usize> {
        let i = self.choose(Criteria::none(), &Pick { hash: None, attempt: 1 }, &TriedHosts::default()).ok()?;
        // The core does not see that attempt end: do not count it.
        self.hosts[i].state.attempt_ended();
        Some(i)
    }

    fn choose_in(&self, set: &HostSet, pick: &Pick, tried: &TriedHosts) -> Result<usize, NoHostReason> {
        let max_cx = self.limits.max_connections;
        let mut full = false;
        // Taking a host counts the attempt on it, atomically with the connection limit.
        let mut usable = |i: usize| {
            let host = &self.hosts[i];
            let h = &host.state;
            if !h.is_healthy() && !super::outlier::recover_if_due(h, super::outlier::now_ms()) {
                return false;
            }
            if host.dns.as_ref().is_some_and(|d| d.get().is_none()) {
                return false; // a STRICT_DNS slot without an address
            }
            if !h.try_start_attempt(max_cx) {
                full = true;
                return false;
            }
            true
        };
        if let Some(i) = set.select(pick, &mut |i| !tried.contains(i) && usable(i)) {
            return Ok(i);
        }
        if !tried.is_empty() {
            if let Some(i) = set.select(pick, &mut |i| usable(i)) {
                return Ok(i);
            }
        }
        Err(if full { NoHostReason::Overflow } else { NoHostReason::NoHealthy })
    }

    /// A request's first attempt may start unless `max_requests` are in flight; counts it.
    pub(crate) fn start_request(&self) -> bool {
        self.admit(self.requests, RQ_OVERFLOW, self.limits.max_requests)
    }

    /// A retry may start unless `max_retries` are in flight; counts it.
    pub(crate) fn start_retry(&self) -> bool {
        self.admit(self.retries(), RETRY_OVERFLOW, self.limits.max_retries)
    }

    /// Retries in flight: always shared words (retries are off the common path).
    fn retries(&self) -> InFlight {
        InFlight::Shared { started: self.slot + RETRY_TOTAL }
    }

    fn admit(&self, in_flight: InFlight, overflow: usize, max: u64) -> bool {
        let ok = in_flight.try_start(&self.state, max);
        if !ok {
            self.word(overflow).fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Ends a request admitted by [`Cluster::start_request`] (exactly once).
    pub(crate) fn end_request(&self) {
        self.requests.end(&self.state);
    }

    /// Ends a retry admitted by [`Cluster::start_retry`] (exactly once).
    pub(crate) fn end_retry(&self) {
        self.retries().end(&self.state);
    }

    /// The cluster's counters, summed over every worker.
    pub fn stats(&self) -> ClusterStats {
        let w = |i| self.word(i).load(Ordering::Relaxed);
        ClusterStats {
            rq_active: self.requests.active(&self.state),
            rq_total: self.requests.started(&self.state),
            retry_active: self.retries().active(&self.state),
            retry_total: self.retries().started(&self.state),
            rq_overflow: w(RQ_OVERFLOW),
            retry_overflow: w(RETRY_OVERFLOW),
            cx_overflow: w(CX_OVERFLOW),
            no_healthy: w(NO_HEALTHY),
            subsets_fallback: w(SUBSET_FALLBACK),
            subsets_created: self.subsets_created() as u64,
        }
    }
}

/// A cluster's counters (MOSN's names in the comments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Requests in flight (`upstream_request_active`).
    pub rq_active: u64,
    /// Requests started (`upstream_request_total`).
    pub rq_total: u64,
    /// Retries in flight.
    pub retry_active: u64,
    /// Retries started (`upstream_request_retry`).
    pub retry_total: u64,
    /// Requests refused by `max_requests` (`upstream_request_pending_overflow`).
    pub rq_overflow: u64,
    /// Retries refused by `max_retries` (`upstream_request_retry_overflow`).
    pub retry_overflow: u64,
    /// Host choices refused because every host was at `max_connections`.
    pub cx_overflow: u64,
    /// Host choices that found no healthy host.
    pub no_healthy: u64,
    /// Requests whose subset had no usable host (`lb_subsets_fallback`).
    pub subsets_fallback: u64,
    /// Subsets built (`lb_subsets_created`).
    pub subsets_created: u64,
}
