//! The cluster extension's logic: one Envoy cluster per MOSN cluster, its hosts, and the
//! host choice of its per-worker load balancers.
//!
//! `cluster.rs` turns each Envoy hook into one call here (with the real hosts); the tests
//! call the same functions with the fakes of `testing.rs`.
//!
//! Host choice: for a request the core can not retry, to a cluster of static hosts, the HTTP
//! filter chose the host already (`http_logic.rs`, `hand_over`): the LB returns that choice,
//! left on the worker thread for it (`pin.rs`), or, when the router may not be the next
//! filter, the choice is Envoy's override host, which Envoy's cluster manager takes
//! without asking the LB. Otherwise the request's core stream is found through filter
//! state `mosn.stream_id` (set by the HTTP filter on the same worker) and chooses the
//! host, so the core's LB and its "never a tried host while another is healthy" rule
//! apply; on a retry Envoy's retry host predicates are asked too. Without a stream (health checks, a NULL context, a stream
//! the core routed to another cluster) the core cluster picks a host on its own. A stream
//! that can not decide (poisoned, its state busy, its core stream gone) gets no host: Envoy
//! answers 503. When the core has no host, Envoy answers 503 too (`no_healthy_upstream`,
//! which the core's response mapping turns into MOSN's 502); when the core refuses one
//! because a circuit breaker is full (MOSN's overflow), the selection ends with details
//! `mosn_upstream_overflow` instead, so the access log names it, and the status stays 503.
//!
//! Request copies (`mirror.rs`): an HTTP callout of the HTTP filter's config carries the host
//! the core chose for it in `:mosn-mirror-host`; without a stream, the LB returns exactly the
//! Envoy host at that address (or none).
//!
//! Hosts: a static host is added once at init and kept; the LB returns its handle. A
//! STRICT_DNS host slot is in Envoy only while it has an address: added at init if it
//! resolved, then added / removed as the core's refresh changes it (below); the LB finds
//! the core's choice by address in the worker's view of the cluster, and a slot the worker
//! does not have (yet) is treated like a host Envoy's retry predicate rejects: the core
//! chooses again.
//!
//! Host changes: the core's active health checks (library threads, started once per engine
//! from a cluster's init on the main thread, never in `envoy --mode validate`) decide which
//! hosts the core picks; its STRICT_DNS refresh (a library thread, started the same way)
//! changes slot addresses. Both reach Envoy's view of the hosts (admin `/clusters`, stats)
//! through [`HostFeed`]: the library thread queues each change and commits the cluster's
//! scheduler, and `on_cluster_scheduled` (main thread) calls `cluster_update_host_health`,
//! `cluster_add_hosts` and `cluster_remove_hosts`. Envoy's health view is for operators
//! only: the host choice never depends on it (a host Envoy lists as unhealthy is still
//! returned when the core picks it).

use crate::engines::ConfigSlot;
use crate::guard;
use crate::host::{ClusterHost, HostHandle, HostSpec, LbHost, Scheduler};
use crate::policy;
use crate::registry::{self, SharedState, StreamState};
use mosn_extension::hostgen::envoy::{ADDED_CLUSTERS, ADDED_CLUSTERS_KEY};
use mosn_extension::upstream::dns::AddressWatch;
use mosn_extension::upstream::health_check::HealthWatch;
use mosn_extension::upstream::host::health;
use mosn_extension::upstream::{Cluster, TriedHosts};
use mosn_extension::{Engine, NoHost, UpstreamOutcome};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// `on_cluster_config_new`'s result: the MOSN cluster an Envoy cluster stands for.
pub struct ClusterConfig {
    slot: Arc<ConfigSlot>,
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
    /// The Envoy cluster for the MOSN clusters a reload adds (`"cluster": "*"`).
    added: bool,
}

/// State shared by a cluster and its per-thread LBs (`on_cluster_new`'s result).
pub struct ClusterShared {
    /// Keeps the engine (and the streams' view of this cluster) alive; runs the health
    /// checks and the STRICT_DNS refresh.
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
    /// Envoy host handles of the static hosts; index i is core host i (`None` for a
    /// STRICT_DNS slot, which the LB finds by address). Set once in [`ClusterShared::init`]
    /// on the main thread, read by the workers. These hosts are never removed.
    hosts: OnceLock<Vec<Option<HostHandle>>>,
    /// Main thread only (init and the scheduled hook; a lock only because the workers share
    /// this struct): the Envoy host of each STRICT_DNS slot that is in Envoy now, by core
    /// host index. Only handles of hosts still in the cluster are kept: a handle is dropped
    /// here when it is removed from Envoy.
    dns_hosts: Mutex<Vec<Option<DnsHost>>>,
    /// Health and address changes on their way to Envoy.
    feed: Arc<HostFeed>,
    /// The config's slot (reloads); `None` in tests that build a cluster from an engine.
    slot: Option<Arc<ConfigSlot>>,
    /// This is Envoy's cluster for the MOSN clusters a reload adds.
    added: bool,
    /// Told of each reload while this cluster lives (the slot holds it weakly).
    reload_hook: OnceLock<Arc<crate::engines::ReloadHook>>,
    /// Main thread only: hosts in Envoy because of a reload (address → handle), and the
    /// static hosts of the first config a reload removed (by core host index).
    reloaded: Mutex<Reloaded>,
    /// The feed got a scheduler (tried once, by the first of health / DNS that needs it).
    feed_open: OnceLock<bool>,
}

/// A STRICT_DNS slot's host in Envoy.
#[derive(Debug, Clone, Copy)]
struct DnsHost {
    address: SocketAddr,
    /// `None`: Envoy added no host of its own for this address (it had one already).
    handle: Option<HostHandle>,
}

/// A host a config gives an Envoy cluster: address, Envoy weight, `mosn.lb` metadata.
type WantedHost = (String, u32, Vec<(String, String)>);

/// Hosts a reload added to or removed from this Envoy cluster.
#[derive(Default)]
struct Reloaded {
    added: std::collections::HashMap<String, HostHandle>,
    removed: std::collections::HashSet<usize>,
}

/// How long a host a reload removed stays in Envoy: requests that started on the old config
/// may still be choosing it.
const REMOVE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The scheduler event that carries host changes.
pub const HOST_EVENT: u64 = 1;

/// One change of a core host on its way to Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostChange {
    /// An active health check result: `(host index, healthy)`.
    Health(usize, bool),
    /// A STRICT_DNS slot's new address (or none): `(host index, address)`.
    Address(usize, Option<SocketAddr>),
    /// A reload swapped the config: add the hosts it has that Envoy has not.
    Reload,
    /// Some time after a reload: remove the hosts the config no longer has.
    Sweep,
}

/// Host changes (the core's active health checks, its STRICT_DNS refresh) on their way to
/// Envoy's view of the hosts.
///
/// The library thread [`push`](HostFeed::push)es each change and commits the cluster's
/// scheduler; Envoy then calls `on_cluster_scheduled` on the main thread, which
/// [`drain`](HostFeed::drain)s the queue. One lock orders it all: a commit happens under
/// it, and [`close`](HostFeed::close) (cluster destroy) deletes the scheduler under it, so
/// no commit reaches a deleted scheduler and nothing pushed after the close is applied.
/// The engine's watchers hold the feed only weakly (see [`ClusterShared::health_watch`]).
#[derive(Default)]
pub struct HostFeed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    scheduler: Option<Arc<dyn Scheduler>>,
    pending: Vec<HostChange>,
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
        let (cfg, slot) = crate::engines::load(bytes, "cluster", &format!("cluster {name}"))?;
        let engine = slot.engine();
        let want = cfg.name.unwrap_or_else(|| name.to_string());
        if want == ADDED_CLUSTERS_KEY {
            let cluster = Arc::new(Cluster::without_hosts(ADDED_CLUSTERS));
            return Some(ClusterConfig { slot, engine, cluster, added: true });
        }
        let Some(cluster) = engine.cluster(&want).cloned() else {
            crate::log_error(&format!("mosn: config error: cluster \"{want}\" is not in {}", cfg.source));
            return None;
        };
        Some(ClusterConfig { slot, engine, cluster, added: false })
    }

    /// `on_cluster_new`.
    pub fn new_cluster(&self) -> Arc<ClusterShared> {
        ClusterShared::with_slot(self.engine.clone(), self.cluster.clone(), Some(self.slot.clone()), self.added)
    }
}

// === impl ClusterShared ===

impl ClusterShared {
    /// A cluster of `engine` that follows no reloads (tests).
    pub fn new(engine: Arc<Engine>, cluster: Arc<Cluster>) -> Arc<ClusterShared> {
        ClusterShared::with_slot(engine, cluster, None, false)
    }

    /// A cluster of `engine` whose config is `slot` (reloads); `added`: Envoy's cluster for
    /// the MOSN clusters a reload adds.
    fn with_slot(engine: Arc<Engine>, cluster: Arc<Cluster>, slot: Option<Arc<ConfigSlot>>, added: bool) -> Arc<ClusterShared> {
        let dns_hosts = Mutex::new(vec![None; cluster.hosts.len()]);
        Arc::new(ClusterShared {
            engine,
            cluster,
            hosts: OnceLock::new(),
            dns_hosts,
            feed: Arc::default(),
            feed_open: OnceLock::new(),
            slot,
            added,
            reload_hook: OnceLock::new(),
            reloaded: Mutex::default(),
        })
    }

    /// `on_cluster_init`: adds the MOSN hosts that have an address (static hosts, resolved
    /// STRICT_DNS slots), connects the active health checks and the STRICT_DNS refresh to
    /// Envoy's view of them, then ends warming, also after a panic or a refusal (a cluster
    /// that never completes pre-init keeps Envoy's init waiting forever; without hosts it
    /// answers 503).
    pub fn init(&self, host: &mut dyn ClusterHost) {
        let _ = guard::catch("cluster_init", || self.add_hosts(host));
        let _ = guard::catch("cluster_init", || self.start_health(host));
        let _ = guard::catch("cluster_init", || self.start_dns(host));
        let _ = guard::catch("cluster_init", || self.follow_reloads(host));
        host.pre_init_complete();
    }

    /// Registers this Envoy cluster with its config's slot, so a reload knows Envoy has it
    /// and tells it (through the feed) to add and remove hosts. Not in validation mode.
    fn follow_reloads(&self, host: &mut dyn ClusterHost) {
        let Some(slot) = &self.slot else { return };
        if host.is_validation_mode() || self.hosts.get().is_none() || !self.open_feed(host) {
            return;
        }
        let feed = Arc::downgrade(&self.feed);
        let hook: Arc<crate::engines::ReloadHook> = Arc::new(move || {
            if let Some(feed) = feed.upgrade() {
                feed.push(HostChange::Reload);
            }
        });
        let name = if self.added { ADDED_CLUSTERS } else { &*self.cluster.name };
        slot.add_cluster(name, &hook);
        let _ = self.reload_hook.set(hook);
    }

    /// The static hosts (address, weight, metadata) the current config gives this Envoy
    /// cluster: its MOSN cluster's, or for [`ADDED_CLUSTERS`] those of every MOSN cluster a
    /// reload added.
    fn wanted_hosts(&self) -> Vec<WantedHost> {
        let Some(slot) = &self.slot else { return Vec::new() };
        // The current config's hosts and those of a reload about to swap in.
        let cur = slot.current();
        let staged = slot.staged();
        let mut clusters: Vec<&Arc<Cluster>> = Vec::new();
        for engine in std::iter::once(&cur.engine).chain(staged.as_ref()) {
            if self.added {
                // A reload's new clusters are the ones no Envoy cluster of their own serves.
                let current = Arc::ptr_eq(engine, &cur.engine);
                let is_added =
                    |name: &str| if current { cur.added.as_ref().is_some_and(|a| a.contains(name)) } else { !slot.has_envoy_cluster(name) };
                clusters.extend(engine.clusters.iter().filter(|c| is_added(&c.name)));
            } else {
                clusters.extend(engine.cluster(&self.cluster.name));
            }
        }
        let mut out = Vec::new();
        for c in clusters {
            let metadata = policy::host_metadata(c);
            // Static hosts, and the addresses STRICT_DNS slots resolve to now.
            for (i, h) in c.hosts.iter().enumerate() {
                let Some((_, address)) = h.current() else { continue };
                let m = metadata.as_ref().map_or(&[][..], |m| m[i]);
                let m = m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                out.push((address.to_string(), policy::envoy_weight(h.weight), m));
            }
        }
        out
    }

    fn reloaded_lock(&self) -> MutexGuard<'_, Reloaded> {
        self.reloaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Main thread, after a reload: adds the hosts the new config has and Envoy has not, and
    /// sweeps the ones it dropped [`REMOVE_AFTER`] later.
    fn apply_reload(&self, host: &mut dyn ClusterHost) {
        let wanted = self.wanted_hosts();
        let dns = self.dns_lock().clone();
        let mut r = self.reloaded_lock();
        let present = |r: &Reloaded, address: &str| {
            r.added.contains_key(address)
                || self
                    .cluster
                    .hosts
                    .iter()
                    .enumerate()
                    .any(|(i, h)| h.dns.is_none() && &*h.address_text == address && !r.removed.contains(&i))
                || dns.iter().flatten().any(|d| d.handle.is_some() && d.address.to_string() == address)
        };
        let mut seen = std::collections::HashSet::new();
        let new: Vec<_> = wanted.iter().filter(|(a, _, _)| !present(&r, a) && seen.insert(a.clone())).collect();
        if !new.is_empty() {
            let specs: Vec<HostSpec<'_>> = new.iter().map(|(a, w, m)| HostSpec { address: a, weight: *w, metadata: m }).collect();
            match host.add_hosts(&specs, policy::HOST_METADATA_FILTER) {
                Some(handles) => {
                    for ((a, _, _), h) in new.iter().zip(handles) {
                        if let Some(h) = h {
                            r.added.insert(a.clone(), h);
                        }
                    }
                    tracing::info!(cluster = %self.cluster.name, added = new.len(), "reload: hosts added to Envoy");
                }
                None => crate::log_error(&format!("mosn: cluster {}: Envoy refused the hosts a reload added", self.cluster.name)),
            }
        }
        drop(r);
        if let Some(slot) = &self.slot {
            slot.ack();
        }
        let feed = Arc::downgrade(&self.feed);
        let _ = std::thread::Builder::new().name("mosn-sweep".into()).spawn(move || {
            std::thread::sleep(REMOVE_AFTER);
            if let Some(feed) = feed.upgrade() {
                feed.push(HostChange::Sweep);
            }
        });
    }

    /// Main thread: removes from Envoy the hosts the current config no longer has.
    fn sweep(&self, host: &mut dyn ClusterHost) {
        let wanted: std::collections::HashSet<String> = self.wanted_hosts().into_iter().map(|(a, _, _)| a).collect();
        let mut r = self.reloaded_lock();
        let mut gone: Vec<HostHandle> = Vec::new();
        r.added.retain(|a, h| {
            let keep = wanted.contains(a);
            if !keep {
                gone.push(*h);
            }
            keep
        });
        for (i, h) in self.cluster.hosts.iter().enumerate() {
            if h.dns.is_none() && !wanted.contains(&*h.address_text) && !r.removed.contains(&i) {
                if let Some(handle) = self.handle(i) {
                    gone.push(handle);
                    r.removed.insert(i);
                }
            }
        }
        // STRICT_DNS hosts of the first config (its refresh stopped with it).
        let mut dns = self.dns_lock();
        for slot in dns.iter_mut() {
            if let Some(d) = slot.filter(|d| !wanted.contains(&d.address.to_string())) {
                gone.extend(d.handle);
                *slot = None;
            }
        }
        drop(dns);
        if !gone.is_empty() {
            let n = host.remove_hosts(&gone);
            tracing::info!(cluster = %self.cluster.name, removed = n, "reload: hosts removed from Envoy");
        }
    }

    /// Gives the feed the cluster's scheduler, once; false if Envoy gave none (logged).
    fn open_feed(&self, host: &mut dyn ClusterHost) -> bool {
        *self.feed_open.get_or_init(|| match host.scheduler_new() {
            Some(s) => {
                self.feed.open(s);
                true
            }
            None => {
                crate::log_error(&format!(
                    "mosn: cluster {}: Envoy gave no scheduler; active health results and STRICT_DNS address changes will not reach Envoy",
                    self.cluster.name
                ));
                false
            }
        })
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
        if self.hosts.get().is_some() && self.open_feed(host) {
            self.engine.watch_health(self.health_watch());
            // Changes made before the watch was registered (another cluster's init may have
            // started the checks already).
            self.feed.queue_with(|| {
                let down = c.hosts.iter().enumerate().filter(|(_, h)| h.state.flags() & health::FAILED_ACTIVE_HC != 0);
                down.map(|(i, _)| HostChange::Health(i, false)).collect()
            });
        }
        if !self.engine.start_health_checks() {
            crate::log_error(&format!("mosn: cluster {}: active health checks could not start", c.name));
        }
    }

    /// Starts the engine's STRICT_DNS refresh (idempotent: once per engine) and feeds this
    /// cluster's address changes to Envoy. Main thread, from `on_cluster_init`; not in
    /// `envoy --mode validate` (as [`ClusterShared::start_health`]: a validate run must not
    /// start threads; the addresses resolved at load are added all the same).
    fn start_dns(&self, host: &mut dyn ClusterHost) {
        let c = &self.cluster;
        if c.dns.is_none() {
            return;
        }
        if host.is_validation_mode() {
            tracing::debug!(cluster = %c.name, "validation mode: no STRICT_DNS refresh");
            return;
        }
        if self.hosts.get().is_some() && self.open_feed(host) {
            self.engine.watch_addresses(self.address_watch());
            // Changes made between `add_hosts` and the watch (another cluster's init may
            // have started the refresh already). Read under the feed's lock: a change the
            // refresh makes meanwhile is queued after these.
            self.feed.queue_with(|| {
                let known = self.dns_lock();
                let slots = c.hosts.iter().enumerate().filter(|(_, h)| h.dns.is_some());
                slots
                    .filter_map(|(i, h)| {
                        let now = h.current().map(|(a, _)| a);
                        (now != known[i].map(|d| d.address)).then_some(HostChange::Address(i, now))
                    })
                    .collect()
            });
        }
        if !self.engine.start_dns_refresh() {
            crate::log_error(&format!("mosn: cluster {}: the STRICT_DNS refresh could not start", c.name));
        }
    }

    /// The engine's health watcher for this cluster: queues each change of one of its
    /// hosts and commits the scheduler. It holds the feed and the cluster weakly and
    /// compares the cluster by address only, so it never keeps a destroyed cluster alive or
    /// touches it; after [`ClusterShared::destroy`] it does nothing. Runs on the checker
    /// thread; a panic stays there (logged).
    pub fn health_watch(&self) -> HealthWatch {
        let feed = Arc::downgrade(&self.feed);
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
                        feed.push(HostChange::Health(index, healthy));
                    }
                },
            )
        })
    }

    /// The engine's address watcher for this cluster, as [`ClusterShared::health_watch`]
    /// (weak, this cluster only, a no-op after destroy). Runs on the refresh thread.
    pub fn address_watch(&self) -> AddressWatch {
        let feed = Arc::downgrade(&self.feed);
        let cluster = Arc::downgrade(&self.cluster);
        Arc::new(move |c: &Cluster, index: usize, address: Option<SocketAddr>| {
            if !std::ptr::eq(c, cluster.as_ptr()) {
                return;
            }
            guard::or(
                "address_watch",
                || (),
                || {
                    if let Some(feed) = feed.upgrade() {
                        feed.push(HostChange::Address(index, address));
                    }
                },
            )
        })
    }

    /// `on_cluster_scheduled` (main thread): tells Envoy the queued host changes, in order.
    pub fn scheduled(&self, host: &mut dyn ClusterHost, event_id: u64) {
        if event_id != HOST_EVENT {
            return;
        }
        for change in self.feed.drain() {
            // One change failing does not drop the others.
            let _ = guard::catch("cluster_scheduled", || match change {
                HostChange::Health(index, healthy) => self.apply_health(host, index, healthy),
                HostChange::Address(index, address) => self.apply_address(host, index, address),
                HostChange::Reload => self.apply_reload(host),
                HostChange::Sweep => self.sweep(host),
            });
        }
    }

    /// `on_cluster_destroy` (main thread): later host changes are dropped and the scheduler
    /// is deleted. The engine (and its checks and refresh) may outlive this cluster.
    pub fn destroy(&self) {
        self.feed.close();
    }

    /// A poisoned lock only means a panic elsewhere while holding it; the table is plain data.
    fn dns_lock(&self) -> MutexGuard<'_, Vec<Option<DnsHost>>> {
        self.dns_hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Envoy host of core host `index` now, on the main thread: a static host's handle,
    /// or the handle of the STRICT_DNS slot's current Envoy host. Only hosts still in the
    /// cluster.
    fn main_handle(&self, index: usize) -> Option<HostHandle> {
        match self.cluster.hosts.get(index) {
            Some(h) if h.dns.is_some() => self.dns_lock().get(index).copied().flatten().and_then(|d| d.handle),
            _ => self.handle(index),
        }
    }

    fn apply_health(&self, host: &mut dyn ClusterHost, index: usize, healthy: bool) {
        let Some(h) = self.main_handle(index) else { return };
        let ok = host.update_host_health(h, healthy);
        let address = self.cluster.hosts.get(index).map_or("?", |h| &*h.address_text);
        tracing::info!(cluster = %self.cluster.name, host = address, healthy, ok, "active health check result passed to Envoy");
    }

    /// A STRICT_DNS slot's address changed: its new address is added to Envoy, then its old
    /// host removed.
    ///
    /// Ordering and safety: main thread only (Envoy's rule for host changes), the only
    /// place a host is removed. Each call posts a priority-set update to every worker; a
    /// worker applies it between events, never inside `choose_host`. So a worker that just
    /// found the old host by address (`cluster_lb_find_host_by_address` reads the worker's
    /// own priority set) still holds it alive while it returns it, and Envoy turns the
    /// returned pointer into a host by looking it up in the cluster's host map (1.40,
    /// checked in the binary): a host removed meanwhile is "no host" (503), never a dangling
    /// pointer, and a live host's memory can not have been reused. Adding first makes the
    /// workers learn the new address before they lose the old one, so fewer requests find
    /// neither. The old handle is forgotten as it is removed, so no later call (a health
    /// change, another removal) passes a handle that is no longer in the cluster.
    fn apply_address(&self, host: &mut dyn ClusterHost, index: usize, address: Option<SocketAddr>) {
        let c = &self.cluster;
        if c.hosts.get(index).is_none_or(|h| h.dns.is_none()) || self.hosts.get().is_none() {
            return; // only STRICT_DNS slots move; nothing after a refused init
        }
        let mut dns = self.dns_lock();
        let old = dns[index];
        if old.map(|d| d.address) == address {
            return;
        }
        dns[index] = address.and_then(|a| self.add_slot_host(host, index, a).map(|handle| DnsHost { address: a, handle }));
        let Some(old) = old else { return };
        if let Some(h) = old.handle {
            let removed = host.remove_hosts(&[h]);
            tracing::info!(cluster = %c.name, host = index, address = %old.address, removed, "STRICT_DNS host removed from Envoy");
            // A slot that shares the address and had no host of its own loses it too: it
            // gets one now.
            let orphan = (0..dns.len()).find(|&j| dns[j].is_some_and(|d| d.address == old.address && d.handle.is_none()));
            if let Some(j) = orphan {
                dns[j] = self.add_slot_host(host, j, old.address).map(|handle| DnsHost { address: old.address, handle });
            }
        }
    }

    /// Adds core host `index` (a STRICT_DNS slot) to Envoy at `address`, with the slot's
    /// weight and metadata and, if the core's checks have it out, unhealthy. `None` if
    /// Envoy refused it (logged); `Some(None)` if Envoy had the address already.
    fn add_slot_host(&self, host: &mut dyn ClusterHost, index: usize, address: SocketAddr) -> Option<Option<HostHandle>> {
        let c = &self.cluster;
        let h = &c.hosts[index];
        let text = address.to_string();
        let metadata = policy::host_metadata(c).map_or(&[][..], |m| m[index]);
        let spec = HostSpec { address: &text, weight: policy::envoy_weight(h.weight), metadata };
        let Some(handle) = host.add_hosts(&[spec], policy::HOST_METADATA_FILTER).and_then(|v| v.first().copied()) else {
            crate::log_error(&format!("mosn: cluster {}: Envoy refused STRICT_DNS host {text} ({})", c.name, h.address_text));
            return None;
        };
        tracing::info!(cluster = %c.name, host = index, address = %text, name = %h.address_text, own = handle.is_some(), "STRICT_DNS host added to Envoy");
        if let Some(hd) = handle {
            if h.state.flags() & health::FAILED_ACTIVE_HC != 0 {
                host.update_host_health(hd, false);
            }
        }
        Some(handle)
    }

    fn add_hosts(&self, host: &mut dyn ClusterHost) {
        let c = &self.cluster;
        // The ABI takes the same number of metadata pairs for every host.
        let metadata = policy::host_metadata(c);
        if metadata.is_none() && !c.hosts.is_empty() {
            tracing::info!(cluster = %c.name, "hosts have different numbers of metadata entries; not passed to Envoy");
        }
        // Hosts with an address now: every static host, the STRICT_DNS slots that resolved.
        let present: Vec<(usize, SocketAddr, &str)> =
            c.hosts.iter().enumerate().filter_map(|(i, h)| h.current().map(|(a, text)| (i, a, text))).collect();
        let specs: Vec<HostSpec<'_>> = present
            .iter()
            .map(|&(i, _, text)| HostSpec {
                address: text,
                weight: policy::envoy_weight(c.hosts[i].weight),
                metadata: metadata.as_ref().map_or(&[][..], |m| m[i]),
            })
            .collect();
        let handles = if specs.is_empty() { Some(Vec::new()) } else { host.add_hosts(&specs, policy::HOST_METADATA_FILTER) };
        match handles {
            Some(handles) if handles.len() == specs.len() => {
                let mut table = vec![None; c.hosts.len()];
                let mut dns = self.dns_lock();
                for (&(i, address, _), handle) in present.iter().zip(handles) {
                    if c.hosts[i].dns.is_some() {
                        dns[i] = Some(DnsHost { address, handle });
                    } else {
                        table[i] = handle;
                    }
                }
                let _ = self.hosts.set(table);
            }
            _ => crate::log_error(&format!("mosn: cluster {}: Envoy refused its hosts (see the upstream log line above)", c.name)),
        }
    }

    /// The Envoy handle of static core host `index`.
    fn handle(&self, index: usize) -> Option<HostHandle> {
        self.hosts.get().and_then(|h| h.get(index)).copied().flatten()
    }

    /// Envoy's host for core host `index` of `cluster` on a worker: a static host's handle,
    /// or the host at `address` (a STRICT_DNS slot's address now, or any host of a config a
    /// reload swapped in) in the worker's view.
    fn envoy_host(&self, lb: &dyn LbHost, cluster: &Cluster, index: usize, address: &str) -> Option<HostHandle> {
        if !std::ptr::eq(cluster, &*self.cluster) {
            return lb.find_host_by_address(address);
        }
        match self.cluster.hosts.get(index) {
            Some(h) if h.dns.is_some() && self.hosts.get().is_some() => lb.find_host_by_address(address),
            _ => self.handle(index),
        }
    }

    /// The host of a request copy (see `mirror.rs`): the Envoy host of the core host at
    /// `address` (its handle, or for a STRICT_DNS slot the worker's host at that address),
    /// exactly that one or none: a copy never goes to a host the core did not choose. An
    /// address that is no core host of this cluster now (a slot that moved since) gets none.
    fn mirror_choice(&self, lb: &dyn LbHost, address: &str) -> Option<HostHandle> {
        let c = &self.cluster;
        let Some(index) = c.hosts.iter().position(|h| h.current().is_some_and(|(_, a)| a == address)) else {
            // A host a reload added is in Envoy only because the core has it: exact.
            if self.reloaded_lock().added.contains_key(address) {
                return lb.find_host_by_address(address);
            }
            tracing::debug!(cluster = %c.name, address, "request copy for an address that is no host of this cluster: no host");
            return None;
        };
        let found = self.envoy_host(lb, c, index, address);
        tracing::debug!(cluster = %c.name, address, found = found.is_some(), "host of a request copy");
        found
    }

    /// The cluster's own choice, for requests without a stream. A STRICT_DNS slot the
    /// worker does not have (yet) is passed over, as in [`Lb::choose_for_stream`].
    fn own_choice(&self, lb: &dyn LbHost) -> Option<HostHandle> {
        let c = &self.cluster;
        for _ in 0..c.hosts.len().max(1) {
            let index = c.choose_any();
            tracing::debug!(cluster = %c.name, ?index, "host chosen without a stream");
            let i = index?;
            let h = &c.hosts[i];
            let Some((_, address)) = h.current() else { continue };
            match self.envoy_host(lb, c, i, address) {
                Some(found) => return Some(found),
                None if h.dns.is_some() => {
                    tracing::debug!(cluster = %c.name, address, "STRICT_DNS host not in Envoy (yet); choosing again")
                }
                None => return None,
            }
        }
        None
    }
}

// === impl HostFeed ===

impl HostFeed {
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
    pub fn push(&self, change: HostChange) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.pending.push(change);
        st.commit();
    }

    /// Queues the changes `f` computes under the lock (so a change a library thread makes
    /// meanwhile is queued after these).
    fn queue_with(&self, f: impl FnOnce() -> Vec<HostChange>) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        let changes = f();
        if !changes.is_empty() {
            st.pending.extend(changes);
            st.commit();
        }
    }

    /// Main thread, in the scheduled hook: the queued changes, in order.
    pub fn drain(&self) -> Vec<HostChange> {
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
            s.commit(HOST_EVENT);
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
                if let Some(filter) = serving {
                    filter.cell().poison();
                }
                None
            }
        }
    }

    fn choose(&self, host: &dyn LbHost, serving: &mut Option<SharedState>) -> Option<HostHandle> {
        // A request the HTTP filter chose the host of just now (`pin.rs`): exactly that one,
        // or none, as for Envoy's strict override host.
        if host.has_context() {
            if let Some(Some(h)) = crate::pin::take(|cluster, index| self.pinned(host, cluster, index)) {
                return h;
            }
        }
        let Some(filter) = stream_of(host) else {
            // A request copy names its host (checked only here: a request with a stream never
            // pays for the header lookup, and `requested_host` refuses any with a stream id).
            if let Some(address) = crate::mirror::requested_host(host) {
                return self.shared.mirror_choice(host, address);
            }
            return self.shared.own_choice(host);
        };
        *serving = Some(filter.clone());
        let cell = filter.cell();
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
        // The cluster the core routed this request to: this one, the same MOSN cluster in a
        // config a reload swapped in, or (for the Envoy cluster of added clusters) any the
        // filter sent here. Else (e.g. a mirror) the stream's attempts and tried hosts are not
        // this cluster's business.
        let ours = stream
            .cluster()
            .is_some_and(|c| std::ptr::eq(c, &*self.shared.cluster) || self.shared.added || c.name == self.shared.cluster.name);
        if !ours {
            return self.shared.own_choice(host);
        }
        self.choose_for_stream(host, &mut st)
    }

    /// `Some(Envoy's host)` for a choice pinned for this cluster (this MOSN cluster, or the
    /// same one in a config a reload swapped in), `None` for another cluster's: that one was
    /// not meant for this request, and is dropped (an error: with the router following the
    /// filter, the request that pinned it asks its own cluster's LB first).
    fn pinned(&self, host: &dyn LbHost, cluster: &Cluster, index: usize) -> Option<Option<HostHandle>> {
        if !std::ptr::eq(cluster, &*self.shared.cluster) && cluster.name != self.shared.cluster.name {
            crate::log_error(&format!(
                "mosn: cluster {}'s LB found a host pinned for cluster {} (is a filter between the module and the router? \
                 then drop router_follows from the module's config); dropped",
                self.shared.cluster.name, cluster.name
            ));
            return None;
        }
        let address = cluster.hosts.get(index).and_then(|h| h.current()).map(|(_, a)| a);
        Some(address.and_then(|a| self.shared.envoy_host(host, cluster, index, a)))
    }

    /// The stream's choice for this attempt. A STRICT_DNS host this worker's Envoy does not
    /// have (yet), and on a retry a host Envoy's retry predicate rejects, is replaced by the
    /// core's next choice while the core has untried hosts left. The host returned is always
    /// the core's latest choice (its attempt is the one the core counts), or none.
    fn choose_for_stream(&self, host: &dyn LbHost, st: &mut StreamState) -> Option<HostHandle> {
        let stream = st.stream.as_mut()?;
        // The HTTP filter asked already, and the core had no host (`http_logic.rs`).
        if let Some(why) = st.no_host.take() {
            return self.no_host(host, why);
        }
        // Asked again within one stream: the previous attempt failed in a way Envoy did not
        // show the filter (it retried a connect failure / reset itself).
        let retry = st.chosen;
        if retry && !st.outcome_reported && stream.upstream_host().is_some() && !stream.upstream_result(UpstreamOutcome::ConnectFailure) {
            // The core allows no further attempt (its policy, or max_retries): no host, as
            // nginx stops there too; the core's answer for the failure is 502.
            st.outcome_reported = true;
            tracing::debug!(cluster = %self.shared.cluster.name, "the core allows no retry; no host");
            return None;
        }
        st.chosen = true;
        st.outcome_reported = false;
        let mut seen = TriedHosts::default();
        let mut picked = None;
        let tries = stream.cluster().map_or(1, |c| c.hosts.len().max(1));
        for k in 0..tries {
            // A host refused below is replaced within the same attempt (not a new attempt:
            // the core's counts and retry budget stay right).
            let next = if k == 0 { stream.choose_host() } else { stream.choose_another_host() };
            let chosen = match next {
                Ok(c) => c,
                Err(why) => {
                    // No attempt is in flight: Envoy's reply reports none.
                    st.outcome_reported = true;
                    return self.no_host(host, why);
                }
            };
            let index = chosen.index;
            tracing::debug!(cluster = %chosen.cluster.name, attempt = chosen.attempt, host = %chosen.host.address_text, address = chosen.address, "host chosen by the stream");
            let again = seen.contains(index);
            seen.insert(index);
            picked = self.shared.envoy_host(host, chosen.cluster, index, chosen.address);
            if again {
                break; // the core has no other host left: its choice stands
            }
            match picked {
                Some(h) if retry && envoy_rejects(host, h) => {}
                Some(_) => break,
                // A host of a config a reload swapped in that this worker's Envoy does not
                // have (yet) either.
                None if chosen.host.dns.is_some() || !std::ptr::eq(chosen.cluster, &*self.shared.cluster) => {
                    tracing::debug!(cluster = %chosen.cluster.name, address = chosen.address, "host not in Envoy (yet); choosing again");
                }
                None => break,
            }
        }
        picked
    }

    /// The stream's answer when the core has no host: none, and for an overflow the
    /// selection ends with MOSN's details.
    fn no_host(&self, host: &dyn LbHost, why: NoHost) -> Option<HostHandle> {
        tracing::debug!(cluster = %self.shared.cluster.name, ?why, "the stream gets no host");
        if why == NoHost::Overflow {
            host.end_without_host(policy::OVERFLOW_DETAILS);
        }
        None
    }
}

/// The core stream of this request, from filter state `mosn.stream_id`.
fn stream_of(host: &dyn LbHost) -> Option<SharedState> {
    if !host.has_context() {
        return None;
    }
    let id = mosn_extension::headers::parse_digits(host.filter_state(policy::STREAM_ID_KEY)?)?;
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
