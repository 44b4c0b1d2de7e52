//! The cluster specifier's exported hooks (`envoy.router.cluster_specifier_plugin.dynamic_modules`
//! in the route's `inline_cluster_specifier_plugin`): the route names the cluster the HTTP
//! filter decided, handed over by [`crate::specifier`].
//!
//! Threads: config hooks on the main thread; `select` on the request's worker, when the HCM
//! resolves the route and again inside the filter's `clear_route_cluster_cache` call.

// The exported hooks take Envoy's raw pointers by the ABI's contract (Envoy is their only
// caller); they are `extern "C"` entry points, not Rust API, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::abi::{self, EnvoyBuffer, ModuleBuffer};
use crate::guard;
use std::ffi::c_void;

/// The specifier has no settings: every config is this one object.
static CONFIG: u8 = 0;

/// Accepts an empty config (or `{}`): the specifier has no settings, and anything else
/// would be a setting silently ignored. NULL rejects the config.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_new(
    _config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard::or("cluster_specifier_config_new", std::ptr::null, || {
        // SAFETY: Envoy's buffer is valid for this call.
        let bytes = unsafe { config.as_slice() };
        match crate::specifier::check_config(bytes) {
            Ok(()) => std::ptr::addr_of!(CONFIG).cast(),
            Err(e) => {
                crate::log_error(&format!("mosn: config error: cluster specifier: {e}"));
                std::ptr::null()
            }
        }
    })
}

/// Nothing to free (the config is a static).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_specifier_config_destroy(_config: *const c_void) {}

/// Names the cluster: the HTTP filter's while it hands one over, else
/// [`crate::specifier::NO_DECISION`]. A panic keeps Envoy's previous choice (false).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_cluster_specifier_select(_config: *const c_void, ctx: *mut c_void) -> bool {
    guard::or(
        "cluster_specifier_select",
        || false,
        || {
            crate::specifier::select(|name| {
                // SAFETY: `ctx` is Envoy's selection context for the duration of this hook;
                // Envoy copies the name.
                unsafe { abi::envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(ctx, ModuleBuffer::new(name)) }
            });
            true
        },
    )
}
