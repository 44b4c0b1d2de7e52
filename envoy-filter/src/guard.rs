//! The crate's one panic guard, and what each kind of hook does after a panic.
//!
//! A panic must never unwind into Envoy (Rust aborts the process at an `extern "C"`
//! boundary). Every exported hook runs its logic through [`catch`] (or [`or`]), which logs
//! `mosn: panic in <hook>: <message>` to Envoy's log and hands back control. What happens
//! next depends on the kind of hook, and always fails closed:
//!
//! | hook | after a panic | later hooks of the same stream |
//! |---|---|---|
//! | `program_init`, `http_filter_config_new`, `cluster_config_new`, `cluster_new`, `cluster_lb_new` | NULL: Envoy refuses the module / config | — |
//! | `http_filter_new` | NULL; Envoy still calls the stream's hooks with a NULL filter, and the request-headers hook answers 500 (`mosn_filter_missing`) | |
//! | request headers, body, trailers, `scheduled` | the stream is **poisoned**; a 500 local reply (`mosn_panic`) unless a local reply already answers the request; the hook stops iteration | request hooks stop without calling the core and without a second reply; `scheduled` does nothing |
//! | `local_reply` | poisoned; Envoy's reply goes out unchanged | as below |
//! | response headers | poisoned; the response passes **unchanged** (the core's status mapping and send-filter changes are dropped), see below | response hooks pass everything through |
//! | `cluster_lb_choose_host` | no host (Envoy answers 503 `no_healthy_upstream`); the stream being served is poisoned | |
//! | `cluster_init` | `pre_init_complete` is still called, so Envoy does not wait forever; the cluster has no hosts (503) | |
//! | `stream_complete`, `destroy`, other cleanup | logged; the stream is still unregistered and freed | |
//!
//! Poisoned means: the stream's [`crate::registry::StreamCell`] is flagged and no hook
//! touches its core [`mosn_extension::Stream`] again (its state may be half-updated); it is
//! only dropped at the end.
//!
//! Why the response passes unchanged instead of being replaced by a 500: when the response
//! hook runs, the core has already judged the request (filters, route, host) and the
//! upstream answered it; the core's response work is cosmetic (MOSN's 502/504 instead of
//! Envoy's 503, send-filter headers). A local reply from an encoder hook is a path of
//! Envoy's this adapter never exercised on 1.40, and Envoy's own SDK resets the stream
//! there, which gives the client nothing. The upstream answer, plus the log line, is the
//! most useful outcome that lets nothing past the core's request-side verdict.
//!
//! The per-stream policy (poison, 500 once) lives with the stream in
//! [`crate::http_logic`] and [`crate::lb`], where it is unit-tested against the fake host;
//! `http.rs` / `cluster.rs` wrap each hook once more in [`or`] so that even a panic in a fail
//! path never reaches Envoy.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A hook's logic panicked (the message is already logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panicked;

/// Runs `f`; a panic is logged as `mosn: panic in <hook>: <message>` and returned as
/// [`Panicked`].
///
/// `AssertUnwindSafe`: after a panic the caller either drops the state `f` touched, or
/// poisons it so that nothing reads it again (see the module table).
pub fn catch<R>(hook: &'static str, f: impl FnOnce() -> R) -> Result<R, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        crate::log_error(&format!("mosn: panic in {hook}: {}", message(&*payload)));
        Panicked
    })
}

/// [`catch`] with a fallback value: for hooks whose whole policy is "answer this instead".
pub fn or<R>(hook: &'static str, fallback: impl FnOnce() -> R, f: impl FnOnce() -> R) -> R {
    catch(hook, f).unwrap_or_else(|Panicked| fallback())
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::logs;

    #[test]
    fn a_panic_becomes_the_fallback_and_is_logged() {
        let r = or("t", || 7, || -> i32 { panic!("boom") });
        assert_eq!(r, 7);
        assert!(logs().iter().any(|l| l == "mosn: panic in t: boom"), "{:?}", logs());
        assert_eq!(or("t", || 7, || 1), 1);
        let r: Result<(), _> = catch("fmt", || panic!("x = {}", 3));
        assert_eq!(r, Err(Panicked));
        assert!(logs().iter().any(|l| l == "mosn: panic in fmt: x = 3"));
    }
}
