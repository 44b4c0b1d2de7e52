//! The cluster extension's exported hooks (`envoy.clusters.dynamic_modules`,
//! `lb_policy: CLUSTER_PROVIDED`): pointer checks, the panic guard, one call into
//! [`crate::lb`] with the real hosts.
//!
//! Threads: config, cluster and host hooks run on the main thread; `on_cluster_lb_new` runs
//! once on main and once per worker, and each LB object is then used by its own thread only.
//! The static host table is written once on main (`on_cluster_init`) and read by the workers;
//! STRICT_DNS hosts are added and removed on main (`on_cluster_scheduled`), and the workers
//! find them by address in their own view of the cluster.

// The exported hooks take Envoy's raw pointers by the ABI's contract (Envoy is their only
// caller); they are `extern "C"` entry points, not Rust API, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::abi::{EnvoyBuffer, EventCb};
use crate::envoy_host::{EnvoyCluster, EnvoyLb};
use crate::guard;
use crate::lb::{ClusterConfig, ClusterShared, Lb};
use std::ffi::c_void;
use std::sync::Arc;

/// `on_cluster_new`'s result.
struct ClusterModule {
    shared: Arc<ClusterShared>,
}

/// `on_cluster_lb_new`'s result (one per thread): the LB logic and Envoy's LB pointer,
/// which `choose_host` does not pass again.
struct LbModule {
    lb: Lb,
    lb_envoy: *mut c_void,
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
    guard::or("cluster_config_new", std::ptr::null, || {
        // SAFETY: Envoy's buffers are valid for this call; the name is copied right away.
        let (name, bytes) = unsafe { (String::from_utf8_lossy(name.as_slice()).into_owned(), config.as_slice()) };
        ClusterConfig::load(&name, bytes).map_or(std::ptr::null(), |c| Box::into_raw(Box::new(c)).cast_const().cast())
    })
}

/// Frees the cluster config.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_config_destroy(config: *const c_void) {
    // SAFETY: `config` came from `cluster_config_new`; Envoy destroys it once.
    guard::or("cluster_config_destroy", || (), || unsafe { free::<ClusterConfig>(config) })
}

/// A cluster from the config.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_new(config: *const c_void, _cluster_envoy: *mut c_void) -> *const c_void {
    guard::or("cluster_new", std::ptr::null, || {
        // SAFETY: `config` is our live `ClusterConfig`.
        let Some(cfg) = (unsafe { as_ref::<ClusterConfig>(config) }) else { return std::ptr::null() };
        Box::into_raw(Box::new(ClusterModule { shared: cfg.new_cluster() })).cast_const().cast()
    })
}

/// Adds the MOSN hosts, then ends warming (always, see [`ClusterShared::init`]).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_init(cluster_envoy: *mut c_void, cluster_module: *const c_void) {
    // SAFETY: Envoy passes this cluster's pointer for the duration of its init hook.
    let mut host = unsafe { EnvoyCluster::new(cluster_envoy) };
    // SAFETY: `cluster_module` is our live `ClusterModule` (or NULL).
    let m = unsafe { as_ref::<ClusterModule>(cluster_module) };
    guard::or(
        "cluster_init",
        || (),
        || match m {
            Some(m) => m.shared.init(&mut host),
            // Still end warming: a cluster stuck in pre-init keeps Envoy's init waiting.
            None => crate::host::ClusterHost::pre_init_complete(&mut host),
        },
    )
}

/// Stops feeding host changes to this cluster (deletes its scheduler), then frees it. The
/// per-thread LBs may still hold the shared state until Envoy destroys them.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_destroy(cluster_module: *const c_void) {
    // SAFETY: `cluster_module` is our live `ClusterModule` (or NULL) until freed just below.
    if let Some(m) = unsafe { as_ref::<ClusterModule>(cluster_module) } {
        guard::or("cluster_destroy", || (), || m.shared.destroy());
    }
    // SAFETY: `cluster_module` came from `cluster_new`; Envoy destroys it once.
    guard::or("cluster_destroy", || (), || unsafe { free::<ClusterModule>(cluster_module) })
}

/// Main thread, after a commit of the cluster's scheduler: the queued host changes (health,
/// STRICT_DNS addresses) go to Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_scheduled(cluster_envoy: *mut c_void, cluster_module: *const c_void, event_id: u64) {
    // SAFETY: Envoy passes this cluster's pointer for the duration of the hook, on main.
    let mut host = unsafe { EnvoyCluster::new(cluster_envoy) };
    // SAFETY: `cluster_module` is our live `ClusterModule` (or NULL).
    let Some(m) = (unsafe { as_ref::<ClusterModule>(cluster_module) }) else { return };
    guard::or("cluster_scheduled", || (), || m.shared.scheduled(&mut host, event_id))
}

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
    guard::or(
        "cluster_shutdown",
        || (),
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
    _headers: *const crate::abi::EnvoyHttpHeader,
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
    guard::or("cluster_lb_new", std::ptr::null, || {
        // SAFETY: `cluster_module` is our live `ClusterModule`.
        let Some(m) = (unsafe { as_ref::<ClusterModule>(cluster_module) }) else { return std::ptr::null() };
        Box::into_raw(Box::new(LbModule { lb: Lb::new(m.shared.clone()), lb_envoy })).cast_const().cast()
    })
}

/// Frees a load balancer.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_destroy(lb_module: *const c_void) {
    // SAFETY: `lb_module` came from `cluster_lb_new`; Envoy destroys it once.
    guard::or("cluster_lb_destroy", || (), || unsafe { free::<LbModule>(lb_module) })
}

/// Picks the host for one attempt (synchronously; NULL = no host).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_choose_host(
    lb_module: *const c_void,
    ctx: *mut c_void,
    host_out: *mut *mut c_void,
    async_out: *mut *mut c_void,
) {
    // SAFETY: `lb_module` is our live `LbModule`, used on its own thread.
    let m = guard::or("cluster_lb_choose_host", || None, || unsafe { as_ref::<LbModule>(lb_module) });
    // SAFETY: our LB's pointer on its thread; `ctx` is NULL or the live context of this call;
    // the host object lives only inside this hook.
    let envoy = m.map(|m| unsafe { EnvoyLb::new(m.lb_envoy, ctx) });
    let host = match (m, &envoy) {
        (Some(m), Some(envoy)) => guard::or("cluster_lb_choose_host", || None, || m.lb.choose_host(envoy)),
        _ => None,
    };
    // A selection already completed (with no host, see `end_without_host`) must be answered
    // asynchronously, or Envoy would get a completion it does not wait for.
    let ended = envoy.as_ref().is_some_and(EnvoyLb::ended);
    let host = if ended { std::ptr::null_mut() } else { host.map_or(std::ptr::null_mut(), |h| h.0 as *mut c_void) };
    let handle = if ended { async_token() } else { std::ptr::null_mut() };
    // SAFETY: Envoy passes writable out-pointers (NULL-checked anyway).
    unsafe {
        if !host_out.is_null() {
            *host_out = host;
        }
        if !async_out.is_null() {
            *async_out = handle;
        }
    }
}

/// The async handle of a selection completed inside `choose_host`: a token, not memory, so
/// Envoy's cancel (1.40 calls it even after the completion ran) frees nothing.
fn async_token() -> *mut c_void {
    static TOKEN: u8 = 0;
    std::ptr::addr_of!(TOKEN).cast_mut().cast()
}

/// Nothing to cancel: the only asynchronous selection (an overflow's "no host") was
/// completed inside `choose_host`; Envoy drops the posted completion of a request that is
/// gone, and the handle is a token.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_cancel_host_selection(_lb_module: *const c_void, _async_handle: *mut c_void) {}

/// Nothing to rebuild: the LB keeps no per-worker host table (static hosts are found by
/// handle, STRICT_DNS hosts by address in the worker's current view).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_lb_on_host_membership_update(
    _lb_envoy: *mut c_void,
    _lb_module: *const c_void,
    _added: usize,
    _removed: usize,
) {
}
