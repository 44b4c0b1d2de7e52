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
//! answers 503. When the core has no host, Envoy answers 503 too (`no_healthy_upstream`,
//! which the core's response mapping turns into MOSN's 502); when the core refuses one
//! because a circuit breaker is full (MOSN's overflow), the selection ends with details
//! `mosn_upstream_overflow` instead, so the access log names it, and the status stays 503.
//!
//! Health: the core's active health checks (library threads, started once per engine from
//! a cluster's init on the main thread, never in `envoy --mode validate`) decide which
//! hosts the core picks. Their results also reach Envoy's view of the hosts (admin
//! `/clusters`, stats) through [`HealthFeed`]: the checker thread queues each change and
//! commits the cluster's scheduler, and `on_cluster_scheduled` (main thread) calls
//! `cluster_update_host_health`. Envoy's view is for operators only: the host choice never
//! depends on it (a host Envoy lists as unhealthy is still returned when the core picks it).

use crate::guard;
use crate::host::{ClusterHost, HostHandle, HostSpec, LbHost, Scheduler};
use crate::policy;
use crate::registry::{self, SharedState, StreamState};
use mosn_extension::upstream::health_check::HealthWatch;
use mosn_extension::upstream::host::health;
use mosn_extension::upstream::{Cluster, TriedHosts};
use mosn_extension::{Engine, NoHost, UpstreamOutcome};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// `on_cluster_config_new`'s result: the MOSN cluster an Envoy cluster stands for.
pub struct ClusterConfig {
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
}

/// State shared by a cluster and its per-thread LBs (`on_cluster_new`'s result).
pub struct ClusterShared {
    /// Keeps the engine (and the streams' view of this cluster) alive; runs the health checks.
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
    /// Envoy host handles; index i is core host index i. Set once in [`ClusterShared::init`]
    /// on the main thread, read by the workers.
    hosts: OnceLock<Vec<HostHandle>>,
    /// The active checks' health changes on their way to Envoy.
    health: Arc<HealthFeed>,
}

/// The scheduler event that carries health changes.
pub const HEALTH_EVENT: u64 = 1;

/// Health changes of the core's active checks on their way to Envoy's view of the hosts.
///
/// The checker thread [`push`](HealthFeed::push)es `(host index, healthy)` and commits the
/// cluster's scheduler; Envoy then calls `on_cluster_scheduled` on the main thread, which
/// [`drain`](HealthFeed::drain)s the queue. One lock orders it all: a commit happens under
/// it, and [`close`](HealthFeed::close) (cluster destroy) deletes the scheduler under it, so
/// no commit reaches a deleted scheduler and nothing pushed after the close is applied.
/// The engine's watcher holds the feed only weakly (see [`ClusterShared::health_watch`]).
#[derive(Default)]
pub struct HealthFeed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    scheduler: Option<Arc<dyn Scheduler>>,
    pending: Vec<(usize, bool)>,
    /// An event is committed and not drained yet: later changes ride on it.
    committed: bool,
    closed: bool,
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
        Arc::new(ClusterShared { engine, cluster, hosts: OnceLock::new(), health: Arc::default() })
    }

    /// `on_cluster_init`: adds the MOSN hosts (core order, so Envoy host i = core host i),
    /// connects the active health checks to Envoy's view of them, then ends warming, also
    /// after a panic or a refusal (a cluster that never completes pre-init keeps Envoy's
    /// init waiting forever; without hosts it answers 503).
    pub fn init(&self, host: &mut dyn ClusterHost) {
        let _ = guard::catch("cluster_init", || self.add_hosts(host));
        let _ = guard::catch("cluster_init", || self.start_health(host));
        host.pre_init_complete();
    }

    /// Starts the engine's active health checks (idempotent: once per engine) and feeds
    /// this cluster's results to Envoy.
    ///
    /// Main thread, from `on_cluster_init`. Not in `envoy --mode validate`: measured on
    /// 1.40, validate mode runs `on_cluster_init` too (and `add_hosts`), so the hook alone
    /// does not tell; Envoy's `is_validation_mode` does. A validate run must not start
    /// threads that probe the backends.
    fn start_health(&self, host: &mut dyn ClusterHost) {
        let c = &self.cluster;
        if c.health_check.is_none() {
            return;
        }
        if host.is_validation_mode() {
            tracing::debug!(cluster = %c.name, "validation mode: no active health checks");
            return;
        }
        if self.hosts.get().is_some() {
            match host.scheduler_new() {
                Some(s) => {
                    self.health.open(s);
                    self.engine.watch_health(self.health_watch());
                    // Changes made before the watch was registered (another cluster's init
                    // may have started the checks already).
                    self.health.sync(c);
                }
                None => crate::log_error(&format!(
                    "mosn: cluster {}: Envoy gave no scheduler; active health results will not show in Envoy",
                    c.name
                )),
            }
        }
        if !self.engine.start_health_checks() {
            crate::log_error(&format!("mosn: cluster {}: active health checks could not start", c.name));
        }
    }

    /// The engine's watcher for this cluster: queues each change of one of its hosts and
    /// commits the scheduler. It holds the feed and the cluster weakly and compares the
    /// cluster by address only, so it never keeps a destroyed cluster alive or touches it;
    /// after [`ClusterShared::destroy`] it does nothing. Runs on the checker thread; a panic
    /// stays there (logged).
    pub fn health_watch(&self) -> HealthWatch {
        let feed = Arc::downgrade(&self.health);
        let cluster = Arc::downgrade(&self.cluster);
        Arc::new(move |c: &Cluster, index: usize, healthy: bool| {
            if !std::ptr::eq(c, cluster.as_ptr()) {
                return;
            }
            guard::or(
                "health_watch",
                || (),
                || {
                    if let Some(feed) = feed.upgrade() {
                        feed.push(index, healthy);
                    }
                },
            )
        })
    }

    /// `on_cluster_scheduled` (main thread): tells Envoy the queued health changes.
    pub fn scheduled(&self, host: &mut dyn ClusterHost, event_id: u64) {
        if event_id != HEALTH_EVENT {
            return;
        }
        for (index, healthy) in self.health.drain() {
            let Some(h) = self.handle(index) else { continue };
            let ok = host.update_host_health(h, healthy);
            let address = self.cluster.hosts.get(index).map_or("?", |h| &*h.address_text);
            tracing::info!(cluster = %self.cluster.name, host = address, healthy, ok, "active health check result passed to Envoy");
        }
    }

    /// `on_cluster_destroy` (main thread): later health changes are dropped and the
    /// scheduler is deleted. The engine (and its checks) may outlive this cluster.
    pub fn destroy(&self) {
        self.health.close();
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

// === impl HealthFeed ===

impl HealthFeed {
    /// A poisoned lock only means a panic elsewhere while holding it; the state is plain data.
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Main thread, at init: the scheduler changes are committed to.
    fn open(&self, scheduler: Arc<dyn Scheduler>) {
        let mut st = self.lock();
        if !st.closed {
            st.scheduler = Some(scheduler);
        }
    }

    /// Any thread: queues one change and makes sure an event is on its way.
    pub fn push(&self, index: usize, healthy: bool) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.pending.push((index, healthy));
        st.commit();
    }

    /// Queues every host the checks have taken out so far (under the lock, so a change the
    /// checker makes meanwhile is queued after this one).
    fn sync(&self, cluster: &Cluster) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let down = cluster.hosts.iter().enumerate().filter(|(_, h)| h.state.flags() & health::FAILED_ACTIVE_HC != 0);
        st.pending.extend(down.map(|(i, _)| (i, false)));
        if !st.pending.is_empty() {
            st.commit();
        }
    }

    /// Main thread, in the scheduled hook: the queued changes, in order.
    pub fn drain(&self) -> Vec<(usize, bool)> {
        let mut st = self.lock();
        st.committed = false;
        std::mem::take(&mut st.pending)
    }

    /// Main thread, at destroy: nothing is queued or committed after this.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.pending.clear();
        if let Some(s) = st.scheduler.take() {
            s.delete();
        }
    }
}

impl FeedState {
    fn commit(&mut self) {
        if self.committed {
            return;
        }
        if let Some(s) = &self.scheduler {
            s.commit(HEALTH_EVENT);
            self.committed = true;
        }
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
            let chosen = match stream.choose_host() {
                Ok(c) => c,
                Err(why) => {
                    tracing::debug!(cluster = %self.shared.cluster.name, ?why, "the stream gets no host");
                    // No attempt is in flight: Envoy's reply reports none.
                    st.outcome_reported = true;
                    if why == NoHost::Overflow {
                        host.end_without_host(policy::OVERFLOW_DETAILS);
                    }
                    return None;
                }
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
