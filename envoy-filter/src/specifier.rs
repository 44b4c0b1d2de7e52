//! How the HTTP filter's cluster reaches Envoy's router: the route's cluster specifier
//! (`envoy.router.cluster_specifier_plugin.dynamic_modules`, hooks in
//! `cluster_specifier.rs`) names it.
//!
//! The HCM resolves the route before the filter chain runs; the specifier is called then and
//! names [`NO_DECISION`], a cluster that does not exist. When the core has decided, the filter
//! calls `clear_route_cluster_cache`: Envoy asks the cached route's specifier again, from
//! inside that call, on the same worker thread, and the specifier names the cluster the
//! filter left in [`Handoff`] for the length of the call. No header carries it and the route
//! is not matched a second time (a `cluster_header` route did both: about 4.7k instructions
//! per request more, docs/benchmarks.md).
//!
//! Fail closed: a request that reaches the router without the filter's decision (no filter,
//! or a filter placed after the router) goes to [`NO_DECISION`], which Envoy answers with
//! 503; a route that is not this specifier (a hand-written `cluster_header` route) never asks
//! for the handoff, and the filter answers 500 (see [`Handoff::route`]).

use std::cell::Cell;

/// The cluster a route names before the filter decided: no Envoy cluster has this name, so
/// such a request gets Envoy's "cluster not found" 503.
pub const NO_DECISION: &str = "mosn_no_decision";

/// The cluster name lent to the specifier during one `clear_route_cluster_cache` call, and
/// whether the specifier took it.
struct Slot {
    name: Cell<Option<(*const u8, usize)>>,
    taken: Cell<bool>,
}

thread_local! {
    static SLOT: Slot = const { Slot { name: Cell::new(None), taken: Cell::new(false) } };
}

/// The filter's side: lends a cluster name to the specifier for one call.
pub struct Handoff;

impl Handoff {
    /// Runs `refresh` (which makes Envoy call the route's specifier on this thread) with
    /// `cluster` lent to the specifier; true if the specifier took it, i.e. the route is
    /// this module's specifier and now names `cluster`.
    pub fn route(cluster: &str, refresh: impl FnOnce()) -> bool {
        SLOT.with(|s| {
            s.name.set(Some((cluster.as_ptr(), cluster.len())));
            s.taken.set(false);
            // Cleared also if `refresh` unwinds: a later specifier call must never read a
            // name whose bytes are gone.
            let _clear = Clear(s);
            refresh();
            s.taken.get()
        })
    }
}

struct Clear<'a>(&'a Slot);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.name.set(None);
    }
}

/// The specifier's side: the cluster to name now. While a [`Handoff::route`] on this thread
/// runs, its cluster (given to `f` as borrowed bytes: valid for the call only); else
/// [`NO_DECISION`].
pub fn select<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    SLOT.with(|s| match s.name.get() {
        Some((ptr, len)) => {
            s.taken.set(true);
            // SAFETY: `ptr`/`len` are a `&str` that `Handoff::route` borrows for the whole
            // time the name is set, on this thread; `Clear` unsets it before that borrow ends.
            f(unsafe { std::slice::from_raw_parts(ptr, len) })
        }
        None => f(NO_DECISION.as_bytes()),
    })
}

/// The specifier's config: empty or `{}` (it has no settings; anything else is refused
/// rather than ignored).
pub fn check_config(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "config is not UTF-8".to_string())?.trim();
    if text.is_empty() {
        return Ok(());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) if m.is_empty() => Ok(()),
        Ok(serde_json::Value::Object(m)) => {
            let keys: Vec<&String> = m.keys().collect();
            Err(format!("{keys:?}: not supported (the specifier has no settings; expected {{}})"))
        }
        _ => Err(format!("expected {{}} or nothing, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> String {
        select(|n| String::from_utf8(n.to_vec()).unwrap())
    }

    #[test]
    fn the_route_names_no_cluster_before_the_filter_decided() {
        assert_eq!(named(), NO_DECISION);
    }

    #[test]
    fn a_refresh_names_the_filters_cluster_and_says_it_was_taken() {
        let mut seen = String::new();
        assert!(Handoff::route("s2", || seen = named()));
        assert_eq!(seen, "s2");
        // Only for the length of the call.
        assert_eq!(named(), NO_DECISION);
    }

    #[test]
    fn a_route_that_never_asks_is_reported() {
        assert!(!Handoff::route("s2", || {}));
    }

    #[test]
    fn a_panicking_refresh_leaves_no_name_behind() {
        let r = std::panic::catch_unwind(|| Handoff::route("s2", || panic!("boom")));
        assert!(r.is_err());
        assert_eq!(named(), NO_DECISION);
    }

    #[test]
    fn the_config_has_no_settings() {
        assert!(check_config(b"").is_ok());
        assert!(check_config(b" {} ").is_ok());
        let e = check_config(br#"{"cluster": "s1"}"#).unwrap_err();
        assert!(e.contains("cluster") && e.contains("not supported"), "{e}");
        assert!(check_config(b"s1").is_err());
    }

    #[test]
    fn other_threads_never_see_the_name() {
        Handoff::route("s2", || {
            let other = std::thread::spawn(named).join().unwrap();
            assert_eq!(other, NO_DECISION);
        });
    }
}
