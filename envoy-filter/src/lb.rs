//! The cluster extension's logic: one Envoy cluster per MOSN cluster, its hosts, and the
//! host choice of its per-worker load balancers.
//!
//! `cluster.rs` turns each Envoy hook into one call here (with the real hosts); the tests
//! call the same functions with the fakes of `testing.rs`.
//!
//! Host choice: the request's core stream is found through filter state `mosn.stream_id`
//! (set by the HTTP filter on the same worker) and chooses the host, so the core's LB and
//! its "never a tried host while another is healthy" rule apply; on a retry Envoy's retry
//! host predicates are asked too. Without a stream (health checks, a NULL context, a stream
//! the core routed to another cluster) the core cluster picks a host on its own. A stream
//! that can not decide (poisoned, its state busy, its core stream gone) gets no host: Envoy
//! answers 503.

use crate::guard;
use crate::host::{ClusterHost, HostHandle, HostSpec, LbHost};
use crate::policy;
use crate::registry::{self, SharedState, StreamState};
use mosn_extension::upstream::{Cluster, TriedHosts};
use mosn_extension::{Engine, UpstreamOutcome};
use std::sync::{Arc, OnceLock};

/// `on_cluster_config_new`'s result: the MOSN cluster an Envoy cluster stands for.
pub struct ClusterConfig {
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
}

/// State shared by a cluster and its per-thread LBs (`on_cluster_new`'s result).
pub struct ClusterShared {
    /// Keeps the engine (and the streams' view of this cluster) alive.
    _engine: Arc<Engine>,
    cluster: Arc<Cluster>,
    /// Envoy host handles; index i is core host index i. Set once in [`ClusterShared::init`]
    /// on the main thread, read by the workers.
    hosts: OnceLock<Vec<HostHandle>>,
}

/// One worker's load balancer (`on_cluster_lb_new`'s result).
pub struct Lb {
    shared: Arc<ClusterShared>,
}

// === impl ClusterConfig ===

impl ClusterConfig {
    /// `{"config_path": ..., "cluster": ...}`; the cluster name defaults to the Envoy
    /// config's `cluster_name`. Errors are logged; `None` rejects the config.
    pub fn load(name: &str, bytes: &[u8]) -> Option<ClusterConfig> {
        let (cfg, engine) = crate::engines::load(bytes, "cluster", &format!("cluster {name}"))?;
        let want = cfg.name.unwrap_or_else(|| name.to_string());
        let Some(cluster) = engine.cluster(&want).cloned() else {
            crate::log_error(&format!("mosn: config error: cluster \"{want}\" is not in {}", cfg.config_path.display()));
            return None;
        };
        Some(ClusterConfig { engine, cluster })
    }

    /// `on_cluster_new`.
    pub fn new_cluster(&self) -> Arc<ClusterShared> {
        ClusterShared::new(self.engine.clone(), self.cluster.clone())
    }
}

// === impl ClusterShared ===

impl ClusterShared {
    pub fn new(engine: Arc<Engine>, cluster: Arc<Cluster>) -> Arc<ClusterShared> {
        Arc::new(ClusterShared { _engine: engine, cluster, hosts: OnceLock::new() })
    }

    /// `on_cluster_init`: adds the MOSN hosts (core order, so Envoy host i = core host i),
    /// then ends warming, also after a panic or a refusal (a cluster that never completes
    /// pre-init keeps Envoy's init waiting forever; without hosts it answers 503).
    pub fn init(&self, host: &mut dyn ClusterHost) {
        let _ = guard::catch("cluster_init", || self.add_hosts(host));
        host.pre_init_complete();
    }

    fn add_hosts(&self, host: &mut dyn ClusterHost) {
        let c = &self.cluster;
        if c.hosts.is_empty() {
            return;
        }
        // The ABI takes the same number of metadata pairs for every host.
        let metadata = policy::host_metadata(c);
        if metadata.is_none() {
            tracing::info!(cluster = %c.name, "hosts have different numbers of metadata entries; not passed to Envoy");
        }
        let specs: Vec<HostSpec<'_>> = c
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| HostSpec {
                address: &h.address_text,
                weight: policy::envoy_weight(h.weight),
                metadata: metadata.as_ref().map_or(&[][..], |m| m[i]),
            })
            .collect();
        match host.add_hosts(&specs, policy::HOST_METADATA_FILTER) {
            Some(handles) if handles.len() == specs.len() => {
                let _ = self.hosts.set(handles);
            }
            _ => crate::log_error(&format!("mosn: cluster {}: Envoy refused its hosts (see the upstream log line above)", c.name)),
        }
    }

    /// The Envoy handle of core host `index`.
    fn handle(&self, index: usize) -> Option<HostHandle> {
        self.hosts.get().and_then(|h| h.get(index)).copied()
    }

    /// The cluster's own choice, for requests without a stream.
    fn own_choice(&self) -> Option<HostHandle> {
        let index = self.cluster.choose_any();
        tracing::debug!(cluster = %self.cluster.name, ?index, "host chosen without a stream");
        index.and_then(|i| self.handle(i))
    }
}

// === impl Lb ===

impl Lb {
    pub fn new(shared: Arc<ClusterShared>) -> Lb {
        Lb { shared }
    }

    /// `on_cluster_lb_choose_host`: the host for one attempt, `None` for "no host". A panic
    /// gives no host and poisons the stream being served (see `guard.rs`).
    pub fn choose_host(&self, host: &dyn LbHost) -> Option<HostHandle> {
        let mut serving: Option<SharedState> = None;
        let slot = &mut serving;
        match guard::catch("cluster_lb_choose_host", move || self.choose(host, slot)) {
            Ok(h) => h,
            Err(guard::Panicked) => {
                if let Some(cell) = serving {
                    cell.poison();
                }
                None
            }
        }
    }

    fn choose(&self, host: &dyn LbHost, serving: &mut Option<SharedState>) -> Option<HostHandle> {
        let Some(cell) = stream_of(host) else { return self.shared.own_choice() };
        *serving = Some(cell.clone());
        if cell.is_poisoned() {
            tracing::debug!("stream poisoned: no host");
            return None;
        }
        let Ok(mut st) = cell.state.try_borrow_mut() else {
            tracing::error!("stream state busy in choose_host; no host");
            return None;
        };
        let Some(stream) = st.stream.as_ref() else {
            tracing::error!("core stream gone in choose_host; no host");
            return None;
        };
        if !stream.cluster().is_some_and(|c| Arc::ptr_eq(c, &self.shared.cluster)) {
            // Not the cluster the core routed this request to (e.g. a mirror): the stream's
            // attempts and tried hosts are not this cluster's business.
            return self.shared.own_choice();
        }
        self.choose_for_stream(host, &mut st)
    }

    /// The stream's choice for this attempt. On a retry, a host Envoy's retry predicate
    /// rejects is replaced by the core's next choice while the core has untried hosts left.
    fn choose_for_stream(&self, host: &dyn LbHost, st: &mut StreamState) -> Option<HostHandle> {
        let stream = st.stream.as_mut()?;
        // Asked again within one stream: the previous attempt failed in a way Envoy did not
        // show the filter (it retried a connect failure / reset itself).
        let retry = st.chosen;
        if retry && !st.outcome_reported && stream.upstream_host().is_some() {
            stream.upstream_result(UpstreamOutcome::ConnectFailure);
        }
        st.chosen = true;
        st.outcome_reported = false;
        let mut seen = TriedHosts::default();
        let mut picked = None;
        for _ in 0..self.shared.cluster.hosts.len().max(1) {
            let Ok(chosen) = stream.choose_host() else {
                tracing::debug!(cluster = %self.shared.cluster.name, "stream has no healthy host");
                return None;
            };
            let index = chosen.index;
            tracing::debug!(cluster = %chosen.cluster.name, attempt = chosen.attempt, host = %chosen.host.address_text, "host chosen by the stream");
            if seen.contains(index) {
                break; // the core has no other host left
            }
            seen.insert(index);
            picked = self.shared.handle(index);
            if !(retry && picked.is_some_and(|h| envoy_rejects(host, h))) {
                break;
            }
        }
        picked
    }
}

/// The core stream of this request, from filter state `mosn.stream_id`.
fn stream_of(host: &dyn LbHost) -> Option<SharedState> {
    if !host.has_context() {
        return None;
    }
    let id: u64 = std::str::from_utf8(host.filter_state(policy::STREAM_ID_KEY)?).ok()?.parse().ok()?;
    registry::get(id)
}

/// True if Envoy's retry host predicates reject `h` (only hosts Envoy counts as healthy can
/// be asked about).
fn envoy_rejects(host: &dyn LbHost, h: HostHandle) -> bool {
    if !host.has_context() {
        return false;
    }
    let n = host.healthy_host_count();
    (0..n).find(|&i| host.healthy_host(i) == Some(h)).is_some_and(|i| host.should_select_another_host(i))
}
