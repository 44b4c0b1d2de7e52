//! The upstream HTTP filter: every attempt's response goes to the core, which decides
//! whether Envoy retries it.
//!
//! Envoy's router retries on its own; a downstream filter sees only the final response. The
//! same module, configured as an upstream HTTP filter of a cluster
//! (`typed_extension_protocol_options` → `http_filters`), runs once per attempt and sees that
//! attempt's response headers (measured on 1.40: the downstream stream's filter state, and
//! so `mosn.stream_id`, is visible there). The core is told the status and answers whether
//! the route's MOSN retry policy retries it; if so, the filter marks the response with
//! `x-mosn-retry: 1`, and the request's `x-envoy-retry-on: retriable-headers` /
//! `x-envoy-retriable-header-names: x-mosn-retry` make Envoy retry exactly those. A backend
//! cannot set the mark itself: it is removed from every response first.
//!
//! Attempts that end without a response (connect failure, reset, per-try timeout) are
//! retried by Envoy's `connect-failure` / `reset` conditions, which are MOSN's rules for them;
//! the cluster LB tells the core about such an attempt when it is asked for the next host,
//! the downstream filter's local-reply hook about the last one.
//!
//! `hostgen` puts this filter only on clusters a route with `retry_on` can reach: only
//! there is a response ever retried. It costs Envoy about 5k instructions per attempt.

use crate::guard;
use crate::host::{HeaderKind, HttpHost};
use crate::policy;
use crate::registry;
use mosn_extension::UpstreamOutcome;

/// True for the upstream filter's config, `{"upstream": true}` (with or without the
/// `config_path` every module config may carry).
pub fn is_upstream_config(bytes: &[u8]) -> bool {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(bytes) else { return false };
    m.get("upstream") == Some(&serde_json::Value::Bool(true)) && m.keys().all(|k| k == "upstream" || k == "config_path" || k == "config")
}

/// The response header that asks Envoy's router for a retry.
pub const RETRY_HEADER: &str = "x-mosn-retry";

/// The response headers of one attempt: report them, mark the response if the core retries it.
pub fn response_headers(host: &mut dyn HttpHost) {
    // Only the core's verdict may ask for a retry, never the backend.
    if host.header(HeaderKind::Response, RETRY_HEADER).first().is_some() {
        host.remove_header(HeaderKind::Response, RETRY_HEADER);
    }
    let Some(id) = host.filter_state(policy::STREAM_ID_KEY).and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok()) else {
        return;
    };
    let Some(filter) = registry::get(id) else { return };
    let cell = filter.cell();
    if cell.is_poisoned() {
        return;
    }
    let h = &mut *host;
    if guard::catch("http_upstream_filter_response_headers", || report(h, cell)).is_err() {
        // The response goes on unmarked (not retried); later hooks skip the core.
        cell.poison();
    }
}

fn report(host: &mut dyn HttpHost, cell: &registry::StreamCell) {
    let retry = {
        let Ok(mut guard) = cell.state.try_borrow_mut() else {
            tracing::debug!("stream state busy in the upstream filter; attempt not reported");
            return;
        };
        let st = &mut *guard;
        if !st.chosen || st.outcome_reported {
            return;
        }
        let Some(stream) = st.stream.as_mut() else { return };
        if stream.upstream_host().is_none() {
            return;
        }
        let status = host
            .header(HeaderKind::Response, ":status")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(0);
        st.outcome_reported = true;
        stream.upstream_result(UpstreamOutcome::Response(status))
    };
    if retry {
        host.set_header(HeaderKind::Response, RETRY_HEADER, "1");
    }
}
