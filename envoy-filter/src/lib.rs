//! `mosn-envoy`: the Envoy 1.40 dynamic-module adapter of mosn-extension.
//!
//! One `libmosn_envoy.so` provides three Envoy extensions that share one MOSN config:
//!
//! - the HTTP filter (`envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`,
//!   `http.rs`): runs the MOSN stream filters and router of a listener per request, then hands
//!   the route's retry policy / timeouts to Envoy as its `x-envoy-*` request headers and the
//!   chosen cluster to the route's cluster specifier;
//! - the cluster specifier (`envoy.router.cluster_specifier_plugin.dynamic_modules`,
//!   `cluster_specifier.rs`, logic in [`specifier`]): the Envoy route's cluster is the one the
//!   filter chose, handed over during the filter's `clear_route_cluster_cache` call;
//! - the cluster (`envoy.clusters.dynamic_modules`, `lb_policy: CLUSTER_PROVIDED`, `cluster.rs`):
//!   one Envoy cluster per MOSN cluster, whose hosts are the MOSN hosts and whose load
//!   balancer asks the core's stream (found through filter state `mosn.stream_id`) for the
//!   host, so MOSN's LB and "never the same host twice on retry" apply.
//!
//! Envoy keeps connections, pools, retries and timeouts; the core keeps every MOSN
//! decision. This crate maps one onto the other and has no routing or LB logic of its own.
//!
//! Layout: one file per extension point, with the logic apart from the `extern "C"` hooks:
//!
//! - [`host`]: every Envoy call the adapter makes, as traits (`HttpHost`, `Scheduler`,
//!   `ConfigHost`, `ClusterHost`, `LbHost`); `envoy_host.rs` implements them over `abi.rs`;
//! - [`http_logic`] (HTTP filter) and [`lb`] (cluster and LB): the logic, written against
//!   the traits; `http.rs` and `cluster.rs` are the thin exported hooks;
//! - [`mirror`]: request copies, sent from the main thread as the filter config's HTTP
//!   callouts, each to the host the core chose;
//! - [`guard`]: the one panic guard and the fail-closed policy per kind of hook;
//! - [`registry`], [`engines`], [`policy`], [`specifier`]: per-worker streams, shared
//!   engines, pure translations, the cluster handoff.
//!
//! The FFI modules (`abi`, `envoy_host`, `http`, `cluster`, `cluster_specifier`) are left out of `cargo test`
//! builds (the test binary has no Envoy to link against); everything else is unit-tested
//! against the recording fakes of `testing.rs`.

pub mod endpoint;
pub mod engines;
pub mod guard;
pub mod host;
pub mod http_logic;
pub mod lb;
pub mod mirror;
pub mod pin;
pub mod policy;
pub mod registry;
pub mod specifier;
pub mod upstream;

#[cfg(not(test))]
mod abi;
#[cfg(not(test))]
mod cluster;
#[cfg(not(test))]
mod cluster_specifier;
#[cfg(not(test))]
mod envoy_host;
#[cfg(not(test))]
mod http;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

// === impl program init ===

#[cfg(not(test))]
mod init {
    use crate::abi;
    use std::ffi::c_char;
    use std::sync::Arc;

    /// Logs an error line through Envoy.
    pub(crate) fn log_error(line: &str) {
        abi::log(abi::log_level::ERROR, line);
    }

    /// Envoy loads the module (main thread, once per `dlopen`): installs the log sink and
    /// returns the ABI version this module was written against. NULL refuses the module.
    #[no_mangle]
    pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
        crate::guard::or("program_init", std::ptr::null, || {
            // Core log lines ("mosn: ...") go to Envoy's `dynamic_modules` logger. The log
            // callback is safe from any thread, so timer-thread lines need no queue.
            mosn_extension::logging::set_sink(Arc::new(|level, line: &str| abi::log(level, line)));
            let lowest = (abi::log_level::TRACE..abi::log_level::ERROR).find(|l| abi::log_enabled(*l)).unwrap_or(abi::log_level::ERROR);
            mosn_extension::logging::set_level(lowest);
            abi::ABI_VERSION.as_ptr().cast()
        })
    }
}

#[cfg(not(test))]
pub(crate) use init::log_error;

/// Unit tests run without Envoy: error lines go to stderr and to the thread's capture.
#[cfg(test)]
pub(crate) fn log_error(line: &str) {
    eprintln!("{line}");
    testing::record_log(line);
}
