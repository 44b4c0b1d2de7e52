//! A loaded config: listeners with their filter chains and routers, and the clusters.
//!
//! [`Engine::from_json`] is the one way a config is loaded, by `mosn-ext check` and by
//! every host alike: it parses, builds every runtime object (compiling regexes, reading
//! each filter's config) and reports all errors with their JSON paths. What it accepts is
//! exactly what runs.
//!
//! An [`Engine`] is immutable once built and shared (`Arc`) by every stream started on
//! it; a reload builds a new one while in-flight streams keep theirs.

use crate::config::reader::Diagnostics;
use crate::config::{read_file, ConfigErrors, MosnConfig};
use crate::filter::registry::{self, ParseContext};
use crate::filter::StreamFilter;
use crate::listener::Listener;
use crate::router::Router;
use crate::stream::Stream;
use crate::upstream::dns::{AddressWatch, DnsRefresher};
use crate::upstream::health_check::{HealthChecker, HealthWatch};
use crate::upstream::state::{Layout, WordAllocator};
use crate::upstream::{Cluster, StateBlock};
use crate::wake::WakeFn;
use std::sync::Arc;

/// A validated, built config snapshot.
pub struct Engine {
    pub config: MosnConfig,
    pub listeners: Vec<Arc<Listener>>,
    pub clusters: Vec<Arc<Cluster>>,
    /// The upstream state words (see [`StateBlock`]).
    pub state: Arc<StateBlock>,
    /// Fields that change nothing here, with the reason (`mosn-ext check` prints them).
    pub notes: Vec<(String, &'static str)>,
    /// The active health checks, once started.
    health: std::sync::Mutex<Option<HealthChecker>>,
    /// Told about every health change the active checks make.
    health_watchers: Arc<std::sync::Mutex<Vec<HealthWatch>>>,
    /// STRICT_DNS re-resolution, once started.
    dns: std::sync::Mutex<Option<DnsRefresher>>,
    /// Told about every address change a STRICT_DNS refresh makes.
    address_watchers: Arc<std::sync::Mutex<Vec<AddressWatch>>>,
}

impl Engine {
    /// Parses, validates and builds MOSN JSON text. The notes are logged once here.
    pub fn from_json(text: &str) -> Result<Arc<Engine>, ConfigErrors> {
        let engine = Engine::load(text)?;
        engine.announce();
        Ok(Arc::new(engine))
    }

    /// What taking this config into service does besides serving it: its log level
    /// (`default_log_level`) becomes the library's, and its notes are logged. A reload calls
    /// it only once the new config is swapped in (a refused one changes nothing).
    pub fn announce(&self) {
        if let Some(level) = self.config.log_level {
            crate::logging::set_level(level);
        }
        for (path, why) in &self.notes {
            tracing::info!("config field {path} changes nothing here: {why}");
        }
    }

    /// [`Engine::from_json`] on a file.
    pub fn from_file(path: &std::path::Path) -> Result<Arc<Engine>, ConfigErrors> {
        Engine::from_json(&read_file(path)?)
    }

    /// What `host` ("envoy" or "nginx") can not do of this config, each with its JSON path:
    /// a host refuses such a config at load (`nginx -t`, Envoy's config) rather than ignore
    /// the field. Today: nginx 1.22 drops request trailers, so the UNIT driver's `trailers`
    /// would never see one there; and its TLS limits (see `hostgen::nginx::tls_limits`).
    pub fn check_host(&self, host: &str) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if host == "nginx" {
            for f in self.config.listeners.iter().flat_map(|l| &l.stream_filters) {
                let drivers = f.config.as_ref().and_then(|c| c.get("metadataers")).and_then(|m| m.as_array());
                for (i, m) in drivers.into_iter().flatten().enumerate() {
                    if m.pointer("/config/trailers") == Some(&serde_json::Value::Bool(true)) {
                        errors.push(crate::config::ConfigError {
                            path: format!("{}.config.metadataers[{i}].config.trailers", f.path),
                            message: "nginx 1.22 drops request trailers: no filter can read them there (Envoy can)".into(),
                        });
                    }
                }
            }
            errors.extend(crate::hostgen::nginx::tls_limits(&self.config));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// MOSN's metrics of this config (every worker's counters), as Prometheus text.
    pub fn prometheus_text(&self) -> String {
        let mut f = crate::metrics::prometheus::Families::default();
        for l in &self.listeners {
            let s = l.counters.stats();
            let label = || vec![("listener", l.name.clone())];
            f.add("downstream", "request_total", "counter", label(), s.request_total);
            f.add("downstream", "request_active", "gauge", label(), s.request_active);
            f.add("downstream", "request_failed", "counter", label(), s.request_failed);
            for (code, n) in &s.codes {
                f.add("downstream", &format!("request_{code}_total"), "counter", label(), *n);
            }
            f.add("downstream", "request_other_code", "counter", label(), s.other_code);
            f.add_histogram("downstream", "request_time", label(), l.counters.request_time());
        }
        for c in &self.clusters {
            let s = c.stats();
            let label = || vec![("cluster", c.name.to_string())];
            f.add("upstream", "request_total", "counter", label(), s.rq_total);
            f.add("upstream", "request_active", "gauge", label(), s.rq_active);
            f.add("upstream", "request_retry", "counter", label(), s.retry_total);
            f.add("upstream", "request_retry_overflow", "counter", label(), s.retry_overflow);
            f.add("upstream", "request_pending_overflow", "counter", label(), s.rq_overflow);
            f.add("upstream", "lb_subsets_fallback", "counter", label(), s.subsets_fallback);
            let sum = |f: fn(&crate::upstream::HostState) -> u64| c.hosts.iter().map(|h| f(&h.state)).sum::<u64>();
            f.add("upstream", "response_success", "counter", label(), sum(crate::upstream::HostState::response_success));
            f.add("upstream", "response_failed", "counter", label(), sum(crate::upstream::HostState::response_failed));
            f.add("upstream", "request_timeout", "counter", label(), sum(crate::upstream::HostState::timeouts));
            f.add("upstream", "connection_con_fail", "counter", label(), sum(crate::upstream::HostState::connect_failures));
            for h in &c.hosts {
                // A STRICT_DNS slot is the address it resolved to now; an empty one is no host.
                let Some((_, address)) = h.current() else { continue };
                let labels = || vec![("cluster", c.name.to_string()), ("host", address.to_string())];
                f.add("upstream", "request_total", "counter", labels(), h.state.requests());
                f.add("upstream", "request_active", "gauge", labels(), h.state.active());
                f.add("upstream", "response_success", "counter", labels(), h.state.response_success());
                f.add("upstream", "response_failed", "counter", labels(), h.state.response_failed());
                f.add("upstream", "request_timeout", "counter", labels(), h.state.timeouts());
                f.add("upstream", "connection_con_fail", "counter", labels(), h.state.connect_failures());
                f.add("upstream", "host_ejections", "counter", labels(), h.state.ejections());
                f.add("upstream", "host_health_changes", "counter", labels(), h.state.health_changes());
            }
        }
        f.render(&self.config.metrics)
    }

    /// Parses and builds without logging (tests, `mosn-ext check`).
    pub fn load(text: &str) -> Result<Engine, ConfigErrors> {
        let mut d = Diagnostics::default();
        let config = MosnConfig::parse(text, &mut d);
        // The filters read their own configs: report their errors too, even when the rest of
        // the config has some, so one run names every bad field.
        // Objects take their state words while they are built; the block is sized after.
        let state = Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let filters: Vec<Vec<Arc<dyn StreamFilter>>> = {
            let words = WordAllocator { state: &state, layout: std::cell::RefCell::new(&mut layout) };
            let cx = ParseContext { config: &config, words: Some(&words) };
            config.listeners.iter().map(|l| l.stream_filters.iter().filter_map(|f| registry::build(f, &cx, &mut d)).collect()).collect()
        };
        if !d.errors.is_empty() {
            return Err(ConfigErrors(d.errors));
        }
        let engine = Engine::build(config, filters, state, layout, &mut d);
        match engine {
            Some(e) if d.errors.is_empty() => Ok(Engine { notes: d.notes, ..e }),
            _ => Err(ConfigErrors(d.errors)),
        }
    }

    /// Builds the runtime objects from a parsed config and its listeners' filters; errors
    /// go to `d`.
    fn build(
        config: MosnConfig,
        filters: Vec<Vec<Arc<dyn StreamFilter>>>,
        state: Arc<StateBlock>,
        mut layout: Layout,
        d: &mut Diagnostics,
    ) -> Option<Engine> {
        // Streams time themselves: the clock is picked (and measured) now, not on a request.
        crate::metrics::clock::init();
        let clusters: Vec<Arc<Cluster>> = config.clusters.iter().map(|c| Arc::new(Cluster::new(c, &state, &mut layout))).collect();
        let routers: Vec<Arc<Router>> = config.routers.iter().filter_map(|r| Router::new(r, &config, &clusters, d).map(Arc::new)).collect();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for (l, filters) in config.listeners.iter().zip(filters) {
            let outlier = filters.iter().find_map(|f| f.outlier().cloned());
            let router = l.router_config_name.as_ref().and_then(|n| routers.iter().find(|r| &r.name == n).cloned());
            // A route's replacement of a listener filter may need the body where the
            // listener's own does not (routing happens after the host buffers).
            let per_route: Vec<&Arc<dyn StreamFilter>> =
                router.iter().flat_map(|r| r.per_route_filters()).filter(|f| filters.iter().any(|l| l.name() == f.name())).collect();
            // Every filter that may run on this listener: its own and the routes' replacements.
            let all = || filters.iter().chain(per_route.iter().copied());
            let body_filters = all().filter(|f| f.may_need_body()).cloned().collect();
            let may_wait = all().any(|f| f.may_wait());
            // The default hash key is the client's address (MOSN's `source_ip`).
            let reads_client_address = all().any(|f| f.reads_client_address()) || clusters.iter().any(|c| c.lb_type.hashes());
            // A route can turn off only what runs once it is known: AfterRoute and send filters.
            for f in router.iter().flat_map(|r| r.per_route_filters()) {
                let Some(path) = f.disabled_at() else { continue };
                let own = filters.iter().filter(|l| l.name() == f.name());
                if own.clone().any(|l| l.receive_phase() == Some(crate::filter::ReceivePhase::BeforeRoute) && !l.sends()) {
                    d.error(
                        path.to_string(),
                        format!("filter \"{}\" runs before routing on listener \"{}\": a route can not turn it off", f.name(), l.name),
                    );
                }
            }
            let words = WordAllocator { state: &state, layout: std::cell::RefCell::new(&mut layout) };
            let counters = crate::metrics::ListenerCounters::new(words.take_rows(crate::metrics::LISTENER_WORDS));
            listeners.push(Arc::new(Listener {
                name: l.name.clone(),
                address: l.address,
                address_text: l.address.to_string(),
                request_names: crate::listener::request_names(&filters),
                sends: filters.iter().any(|f| f.sends()),
                after_route: crate::listener::runs_after_route(&filters),
                reads_client_address,
                filters,
                body_filters,
                router,
                may_wait,
                outlier,
                counters,
            }));
        }
        // Every word is taken (clusters, hosts, listeners): the block gets its size.
        state.allocate_for(&layout);
        Some(Engine {
            config,
            listeners,
            clusters,
            state,
            notes: Vec::new(),
            health: Default::default(),
            health_watchers: Default::default(),
            dns: Default::default(),
            address_watchers: Default::default(),
        })
    }

    /// The index of a listener by name; `None` or empty picks the first listener.
    pub fn listener_index(&self, name: Option<&str>) -> Option<usize> {
        self.listener_by_name(name.unwrap_or("").as_bytes())
    }

    /// [`Engine::listener_index`] for a name as bytes (the C ABI's: no UTF-8 check per
    /// stream; bytes that are not UTF-8 name no listener). Empty: the first listener.
    pub fn listener_by_name(&self, name: &[u8]) -> Option<usize> {
        if name.is_empty() {
            return (!self.listeners.is_empty()).then_some(0);
        }
        self.listeners.iter().position(|l| l.name.as_bytes() == name)
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.iter().find(|c| &*c.name == name)
    }

    /// Starts a stream on a listener (see [`Engine::listener_index`]); `None` if out of range.
    /// Inlined so the stream is built where the caller keeps it (no copy out of the option).
    #[inline]
    pub fn new_stream(&self, listener: usize, wake: Option<WakeFn>) -> Option<Stream> {
        let l = self.listeners.get(listener)?;
        Some(Stream::new(l.clone(), wake))
    }

    /// Starts the active health checks of every cluster with a `health_check` (a thread per
    /// config, stopped when the engine is dropped). Idempotent; true if checks run. Call it
    /// in one process only when the state is shared (nginx: one worker).
    pub fn start_health_checks(&self) -> bool {
        let Ok(mut running) = self.health.lock() else { return false };
        if running.is_none() {
            let watchers = self.health_watchers.clone();
            let watch: HealthWatch = Arc::new(move |c: &Cluster, i: usize, healthy: bool| {
                if let Ok(ws) = watchers.lock() {
                    ws.iter().for_each(|w| w(c, i, healthy));
                }
            });
            *running = HealthChecker::start(&self.clusters, Some(watch));
        }
        running.is_some()
    }

    /// Starts resolving the STRICT_DNS clusters' names again every `dns_refresh_rate` (a
    /// thread, stopped when the engine is dropped). Idempotent; true if there is such a
    /// cluster. Each process resolves for itself (nginx: call it in every worker).
    pub fn start_dns_refresh(&self) -> bool {
        let Ok(mut running) = self.dns.lock() else { return false };
        if running.is_none() {
            let watchers = self.address_watchers.clone();
            let watch: AddressWatch = Arc::new(move |c: &Cluster, i: usize, a: Option<std::net::SocketAddr>| {
                if let Ok(ws) = watchers.lock() {
                    ws.iter().for_each(|w| w(c, i, a));
                }
            });
            *running = DnsRefresher::start(&self.clusters, watch);
        }
        running.is_some()
    }

    /// Adds a function told about every address change a STRICT_DNS refresh makes (from its
    /// thread): `(cluster, host index, new address or none)`.
    pub fn watch_addresses(&self, w: AddressWatch) {
        if let Ok(mut ws) = self.address_watchers.lock() {
            ws.push(w);
        }
    }

    /// Adds a function told about every health change the active checks make (from their
    /// thread): `(cluster, host index, healthy)`.
    pub fn watch_health(&self, w: HealthWatch) {
        if let Ok(mut ws) = self.health_watchers.lock() {
            ws.push(w);
        }
    }

    /// Takes over the live state of `old`, the config this one replaces (a reload), before
    /// any stream runs on this one: each cluster of the same name keeps its hosts' health,
    /// ejections and counters (all its words, balancer positions too, when its JSON is
    /// unchanged; else each host whose address is unchanged), each listener of the same
    /// name its counters. Gauges of requests in flight start at 0 here: those requests end
    /// on `old`. Filters' own words (flow control) start afresh.
    pub fn inherit_state(&self, old: &Engine) {
        fn raw(e: &Engine, i: usize) -> Option<&serde_json::Value> {
            e.config.raw.pointer(&format!("/cluster_manager/clusters/{i}"))
        }
        for (i, c) in self.clusters.iter().enumerate() {
            let Some(j) = old.clusters.iter().position(|o| o.name == c.name) else { continue };
            let same = raw(self, i).is_some_and(|a| raw(old, j) == Some(a));
            c.inherit(&old.clusters[j], same);
        }
        for l in &self.listeners {
            if let Some(o) = old.listeners.iter().find(|o| o.name == l.name) {
                l.counters.inherit(&o.counters);
            }
        }
    }

    /// Stops the active health checks and the STRICT_DNS refresh (a reload replaced this
    /// config; the new one runs its own). Streams still running on it are unaffected.
    pub fn stop_background(&self) {
        if let Ok(mut h) = self.health.lock() {
            h.take();
        }
        if let Ok(mut d) = self.dns.lock() {
            d.take();
        }
    }

    /// Mutable access to a listener before the engine is shared (tests).
    #[doc(hidden)]
    pub fn listener_mut(&mut self, index: usize) -> Option<&mut Listener> {
        self.listeners.get_mut(index).and_then(Arc::get_mut)
    }
}
