//! The cluster extension: one Envoy cluster per MOSN cluster, hosts and LB from the core.
//!
//! Threads: config, cluster and host hooks run on the main thread; `on_cluster_lb_new` runs
//! once on main and once per worker, and each LB object is then used by its own thread only.
//! The host table is written once on main (`on_cluster_init`) and read by the workers.
//!
//! Host selection: the request's core stream is found through filter state `mosn.stream_id`
//! (set by the HTTP filter on the same worker) and chooses the host, so the core's LB and
//! its "never the same host twice" retry rule apply. Without a stream (health checks, a
//! NULL context, a stream routed elsewhere) the core cluster picks a host on its own.

// The exported hooks take Envoy's raw pointers by the ABI's contract (Envoy is their only
// caller); they are `extern "C"` entry points, not Rust API, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::abi::{self, EnvoyBuffer, EventCb, ModuleBuffer};
use crate::policy;
use crate::registry::{self, StreamState};
use crate::{guard, log_error};
use mosn_extension::upstream::{Cluster, TriedHosts};
use mosn_extension::{Engine, UpstreamOutcome};
use std::ffi::c_void;
use std::sync::{Arc, OnceLock};

/// `on_cluster_config_new`'s result: the MOSN cluster an Envoy cluster stands for.
pub struct ClusterConfig {
    engine: Arc<Engine>,
    cluster: Arc<Cluster>,
}

/// State shared by a cluster and its per-thread LBs.
struct Shared {
    /// Keeps the engine (and the streams' view of this cluster) alive.
    _engine: Arc<Engine>,
    cluster: Arc<Cluster>,
    /// Envoy host pointers; index i is core host index i. Set once in `on_cluster_init`.
    hosts: OnceLock<Vec<usize>>,
}

/// `on_cluster_new`'s result.
struct ClusterModule {
    shared: Arc<Shared>,
}

/// `on_cluster_lb_new`'s result (one per thread).
struct LbModule {
    shared: Arc<Shared>,
    lb_envoy: *mut c_void,
}

// === impl LbModule ===

impl LbModule {
    /// The Envoy host pointer of core host `index`, or NULL.
    fn host(&self, index: usize) -> *mut c_void {
        self.shared.hosts.get().and_then(|h| h.get(index)).map_or(std::ptr::null_mut(), |p| *p as *mut c_void)
    }

    /// The position of `host` among Envoy's healthy hosts (priority 0), if it is healthy.
    fn healthy_index(&self, host: *mut c_void) -> Option<usize> {
        // SAFETY: our own LB pointer, used on the thread Envoy created it for.
        let n = unsafe { abi::envoy_dynamic_module_callback_cluster_lb_get_healthy_host_count(self.lb_envoy, 0) };
        // SAFETY: as above; indexes are below the count Envoy just gave.
        (0..n).find(|&i| unsafe { abi::envoy_dynamic_module_callback_cluster_lb_get_healthy_host(self.lb_envoy, 0, i) } == host)
    }

    /// True if Envoy's retry host predicates reject `host` for this attempt.
    fn envoy_rejects(&self, ctx: *mut c_void, host: *mut c_void) -> bool {
        match self.healthy_index(host) {
            // SAFETY: `ctx` is the live LB context of this `choose_host` call, `lb_envoy` ours.
            Some(i) => unsafe {
                abi::envoy_dynamic_module_callback_cluster_lb_context_should_select_another_host(self.lb_envoy, ctx, 0, i)
            },
            None => false,
        }
    }

    /// The core stream of this request, from filter state `mosn.stream_id`.
    fn stream_of(&self, ctx: *mut c_void) -> Option<registry::SharedState> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `ctx` is non-NULL and live for this `choose_host` call; `out` is writable.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_cluster_lb_context_get_filter_state_bytes(
                ctx,
                ModuleBuffer::from(policy::STREAM_ID_KEY),
                &mut out,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: Envoy's buffer is valid during this call; parsed right away.
        let id: u64 = std::str::from_utf8(unsafe { out.as_slice() }).ok()?.parse().ok()?;
        registry::get(id)
    }

    /// Chooses through the request's stream; `None` when the stream can not decide for this
    /// cluster (then the caller falls back to the cluster's own choice).
    fn choose_for_stream(&self, ctx: *mut c_void, st: &mut StreamState) -> Option<*mut c_void> {
        let stream = st.stream.as_mut()?;
        if !stream.cluster().is_some_and(|c| Arc::ptr_eq(c, &self.shared.cluster)) {
            return None;
        }
        // Asked again within one stream: the previous attempt failed in a way Envoy did not
        // show the filter (it retried a connect failure / reset itself).
        let retry = st.chosen;
        if retry && !st.outcome_reported && stream.upstream_host().is_some() {
            stream.upstream_result(UpstreamOutcome::ConnectFailure);
        }
        st.chosen = true;
        st.outcome_reported = false;
        let n = self.shared.cluster.hosts.len().max(1);
        let mut seen = TriedHosts::default();
        let mut picked = std::ptr::null_mut();
        for _ in 0..n {
            let Ok(chosen) = stream.choose_host() else {
                tracing::debug!(cluster = %self.shared.cluster.name, "stream has no healthy host");
                return Some(std::ptr::null_mut());
            };
            let index = chosen.index;
            tracing::debug!(cluster = %chosen.cluster.name, attempt = chosen.attempt, host = %chosen.host.address_text, "host chosen by the stream");
            if seen.contains(index) {
                break; // the core has no other host left
            }
            seen.insert(index);
            picked = self.host(index);
            if !(retry && !ctx.is_null() && self.envoy_rejects(ctx, picked)) {
                break;
            }
        }
        Some(picked)
    }

    fn choose(&self, ctx: *mut c_void) -> *mut c_void {
        if !ctx.is_null() {
            if let Some(state) = self.stream_of(ctx) {
                match state.try_borrow_mut() {
                    Ok(mut st) => {
                        if let Some(host) = self.choose_for_stream(ctx, &mut st) {
                            return host;
                        }
                    }
                    Err(_) => tracing::debug!("stream state busy in choose_host; using the cluster's own choice"),
                }
            }
        }
        let index = self.shared.cluster.choose(&TriedHosts::default());
        tracing::debug!(cluster = %self.shared.cluster.name, ?index, "host chosen without a stream");
        index.map_or(std::ptr::null_mut(), |i| self.host(i))
    }
}

/// # Safety
/// `ptr` must be NULL or a pointer this module returned from the matching `*_new` hook that
/// Envoy has not destroyed yet.
unsafe fn as_ref<'a, T>(ptr: *const c_void) -> Option<&'a T> {
    // SAFETY: by the function contract.
    unsafe { ptr.cast::<T>().as_ref() }
}

/// # Safety
/// As [`as_ref`], and Envoy destroys the object exactly once.
unsafe fn free<T>(ptr: *const c_void) {
    if !ptr.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` of a `T` and is freed once.
        drop(unsafe { Box::from_raw(ptr.cast::<T>().cast_mut()) });
    }
}

// === Exported hooks: config and cluster (main thread) ===

/// Builds the cluster config from `{"config_path": ..., "cluster": ...}` (the cluster name
/// defaults to the `cluster_name` of the Envoy config). NULL rejects it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_config_new(
    _config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard("cluster_config_new", std::ptr::null, log_error, || {
        // SAFETY: Envoy's buffers are valid for this call; copied right away.
        let (name, bytes) = unsafe { (String::from_utf8_lossy(name.as_slice()).into_owned(), config.as_slice()) };
        let Some((cfg, engine)) = crate::engines::load(bytes, "cluster", &format!("cluster {name}")) else {
            return std::ptr::null();
        };
        let want = cfg.name.unwrap_or(name);
        let Some(cluster) = engine.cluster(&want).cloned() else {
            log_error(&format!("mosn: config error: cluster \"{want}\" is not in {}", cfg.config_path.display()));
            return std::ptr::null();
        };
        Box::into_raw(Box::new(ClusterConfig { engine, cluster })).cast_const().cast()
    })
}

/// Frees the cluster config.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_config_destroy(config: *const c_void) {
    // SAFETY: `config` came from `cluster_config_new`; Envoy destroys it once.
    guard("cluster_config_destroy", || (), log_error, || unsafe { free::<ClusterConfig>(config) })
}

/// A cluster from the config.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_new(config: *const c_void, _cluster_envoy: *mut c_void) -> *const c_void {
    guard("cluster_new", std::ptr::null, log_error, || {
        // SAFETY: `config` is our live `ClusterConfig`.
        let Some(cfg) = (unsafe { as_ref::<ClusterConfig>(config) }) else { return std::ptr::null() };
        let shared = Arc::new(Shared { _engine: cfg.engine.clone(), cluster: cfg.cluster.clone(), hosts: OnceLock::new() });
        Box::into_raw(Box::new(ClusterModule { shared })).cast_const().cast()
    })
}

/// Adds the MOSN hosts (core order, so Envoy host i = core host i), then ends warming.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_init(cluster_envoy: *mut c_void, cluster_module: *const c_void) {
    guard(
        "cluster_init",
        || (),
        log_error,
        || {
            // SAFETY: `cluster_module` is our live `ClusterModule`.
            if let Some(m) = unsafe { as_ref::<ClusterModule>(cluster_module) } {
                add_hosts(cluster_envoy, &m.shared);
            }
            // Always: a cluster that never completes pre-init keeps Envoy's init waiting.
            // SAFETY: our cluster's Envoy pointer, on the main thread, in its init hook.
            unsafe { abi::envoy_dynamic_module_callback_cluster_pre_init_complete(cluster_envoy) };
        },
    )
}

fn add_hosts(cluster_envoy: *mut c_void, shared: &Shared) {
    let c = &shared.cluster;
    let n = c.hosts.len();
    if n == 0 {
        return;
    }
    let addresses: Vec<ModuleBuffer> = c.hosts.iter().map(|h| ModuleBuffer::from(&*h.address_text)).collect();
    let weights: Vec<u32> = c.hosts.iter().map(|h| policy::envoy_weight(h.weight)).collect();
    let no_locality = vec![ModuleBuffer::null(); n];
    let mut triples: Vec<ModuleBuffer> = Vec::new();
    let mut per_host = 0;
    match policy::host_metadata(c) {
        Some(md) => {
            per_host = md.first().map_or(0, |m| m.len());
            for host in &md {
                for (k, v) in host.iter() {
                    triples.extend([
                        ModuleBuffer::from(policy::HOST_METADATA_FILTER),
                        ModuleBuffer::from(k.as_str()),
                        ModuleBuffer::from(v.as_str()),
                    ]);
                }
            }
        }
        None => tracing::info!(cluster = %c.name, "hosts have different numbers of metadata entries; not passed to Envoy"),
    }
    let mut out = vec![std::ptr::null_mut::<c_void>(); n];
    // SAFETY: main thread, inside this cluster's init hook; every array has `n` entries (the
    // triples array `n * per_host`), all buffers outlive the call and Envoy copies them;
    // `out` has room for `n` host pointers.
    let ok = unsafe {
        abi::envoy_dynamic_module_callback_cluster_add_hosts(
            cluster_envoy,
            0,
            addresses.as_ptr(),
            weights.as_ptr(),
            no_locality.as_ptr(),
            no_locality.as_ptr(),
            no_locality.as_ptr(),
            if per_host == 0 { std::ptr::null() } else { triples.as_ptr() },
            per_host,
            n,
            out.as_mut_ptr(),
        )
    };
    if !ok {
        log_error(&format!("mosn: cluster {}: Envoy refused its hosts (see the upstream log line above)", c.name));
        return;
    }
    let _ = shared.hosts.set(out.into_iter().map(|p| p as usize).collect());
}

/// Frees the cluster.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_destroy(cluster_module: *const c_void) {
    // SAFETY: `cluster_module` came from `cluster_new`; Envoy destroys it once.
    guard("cluster_destroy", || (), log_error, || unsafe { free::<ClusterModule>(cluster_module) })
}

/// Unused (no scheduled cluster events).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_scheduled(_cluster_envoy: *mut c_void, _cluster_module: *const c_void, _event_id: u64) {}

/// Unused.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_server_initialized(_cluster_envoy: *mut c_void, _cluster_module: *const c_void) {}

/// Unused.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_drain_started(_cluster_envoy: *mut c_void, _cluster_module: *const c_void) {}

/// Nothing to wind down: completes at once.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_shutdown(
    _cluster_envoy: *mut c_void,
    _cluster_module: *const c_void,
    done: EventCb,
    done_ctx: *mut c_void,
) {
    guard(
        "cluster_shutdown",
        || (),
        log_error,
        || {
            if let Some(done) = done {
                // SAFETY: Envoy's completion callback with its own context, called once as required.
                unsafe { done(done_ctx) };
            }
        },
    )
}

/// Unused (no cluster HTTP callouts).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_http_callout_done(
    _cluster_envoy: *mut c_void,
    _cluster_module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const abi::EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

/// Unused (no worker events).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_worker_event(
    _cluster_envoy: *mut c_void,
    _cluster_module: *const c_void,
    _event_id: u64,
) {
}

// === Exported hooks: load balancer (one per thread) ===

/// A load balancer for one thread.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_new(cluster_module: *const c_void, lb_envoy: *mut c_void) -> *const c_void {
    guard("cluster_lb_new", std::ptr::null, log_error, || {
        // SAFETY: `cluster_module` is our live `ClusterModule`.
        let Some(m) = (unsafe { as_ref::<ClusterModule>(cluster_module) }) else { return std::ptr::null() };
        Box::into_raw(Box::new(LbModule { shared: m.shared.clone(), lb_envoy })).cast_const().cast()
    })
}

/// Frees a load balancer.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_destroy(lb_module: *const c_void) {
    // SAFETY: `lb_module` came from `cluster_lb_new`; Envoy destroys it once.
    guard("cluster_lb_destroy", || (), log_error, || unsafe { free::<LbModule>(lb_module) })
}

/// Picks the host for one attempt (synchronously; NULL = no host).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_choose_host(
    lb_module: *const c_void,
    ctx: *mut c_void,
    host_out: *mut *mut c_void,
    async_out: *mut *mut c_void,
) {
    // SAFETY: Envoy passes writable out-pointers (NULL-checked anyway).
    let write = |host: *mut c_void| unsafe {
        if !host_out.is_null() {
            *host_out = host;
        }
        if !async_out.is_null() {
            *async_out = std::ptr::null_mut();
        }
    };
    let host = guard("cluster_lb_choose_host", std::ptr::null_mut, log_error, || {
        // SAFETY: `lb_module` is our live `LbModule`, used on its own thread.
        match unsafe { as_ref::<LbModule>(lb_module) } {
            Some(lb) => lb.choose(ctx),
            None => std::ptr::null_mut(),
        }
    });
    write(host);
}

/// Never called: host selection is always synchronous.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_cancel_host_selection(_lb_module: *const c_void, _async_handle: *mut c_void) {}

/// Hosts are static: nothing to rebuild.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_on_host_membership_update(
    _lb_envoy: *mut c_void,
    _lb_module: *const c_void,
    _added: usize,
    _removed: usize,
) {
}
