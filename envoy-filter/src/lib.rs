//! `mosn-envoy`: the Envoy 1.40 dynamic-module adapter of mosn-extension.
//!
//! One `libmosn_envoy.so` provides two Envoy extensions that share one MOSN config:
//!
//! - the HTTP filter (`envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`,
//!   [`http`]): runs the MOSN stream filters and router of a listener per request, then hands
//!   the chosen cluster to Envoy as request header `x-mosn-cluster` (the Envoy route uses
//!   `cluster_header: x-mosn-cluster`) and the route's retry policy / timeouts as Envoy's
//!   `x-envoy-*` request headers;
//! - the cluster (`envoy.clusters.dynamic_modules`, `lb_policy: CLUSTER_PROVIDED`, [`cluster`]):
//!   one Envoy cluster per MOSN cluster, whose hosts are the MOSN hosts and whose load
//!   balancer asks the core's stream (found through filter state `mosn.stream_id`) for the
//!   host, so MOSN's LB and "never the same host twice on retry" apply.
//!
//! Envoy keeps connections, pools, retries and timeouts; the core keeps every MOSN
//! decision. This crate maps one onto the other and has no routing or LB logic of its own.
//!
//! Every exported hook runs inside [`guard`] (`catch_unwind`): a panic never unwinds into
//! Envoy; the request path fails closed (local reply 500), config hooks reject the config.
//!
//! The FFI modules are left out of `cargo test` builds (the test binary has no Envoy to link
//! against); the pure parts ([`policy`], [`engines`], [`registry`]) are unit-tested.

pub mod engines;
pub mod policy;
pub mod registry;

#[cfg(not(test))]
mod abi;
#[cfg(not(test))]
pub mod cluster;
#[cfg(not(test))]
pub mod http;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `fail` after reporting it through `report`.
pub(crate) fn guard<R>(hook: &'static str, fail: impl FnOnce() -> R, report: impl Fn(&str), f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into());
            report(&format!("mosn: panic in {hook}: {msg}"));
            fail()
        }
    }
}

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
    /// returns the ABI version this module was written against.
    #[no_mangle]
    pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
        crate::guard("program_init", std::ptr::null, log_error, || {
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

/// Unit tests run without Envoy: error lines go to stderr.
#[cfg(test)]
pub(crate) fn log_error(line: &str) {
    eprintln!("{line}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn guard_turns_a_panic_into_the_fail_value() {
        let seen = std::cell::RefCell::new(String::new());
        let r = super::guard("t", || 7, |m| *seen.borrow_mut() = m.to_string(), || -> i32 { panic!("boom") });
        assert_eq!(r, 7);
        assert_eq!(&*seen.borrow(), "mosn: panic in t: boom");
        assert_eq!(super::guard("t", || 7, |_| {}, || 1), 1);
    }
}
