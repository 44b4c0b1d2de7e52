//! MOSN's metrics: counters with MOSN's names, counted in the core in the shared state block
//! (so every Envoy worker and every nginx worker process adds to the same words), exported in
//! Prometheus text format where `metrics.sinks[{type: prometheus}]` asks for it.
//!
//! - `downstream`, label `listener`: `request_total`, `request_active`, `request_failed` (the
//!   answer was a 5xx), `request_<code>_total` for MOSN's codes, `request_other_code`;
//! - `upstream`, label `cluster` (and `host`): `request_total`, `request_active`,
//!   `request_retry`, `request_retry_overflow`, `request_pending_overflow`,
//!   `response_failed`, `lb_subsets_fallback` (cluster), host ejections.

pub mod prometheus;

use crate::config::fields::object;
use crate::config::reader::{Diagnostics, Obj};
use crate::upstream::state::Words;
use std::sync::atomic::Ordering;

/// `metrics` as far as this library exports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The `prometheus` sink, if any.
    pub prometheus: Option<PrometheusSink>,
    /// `stats_matcher.reject_all`: export nothing.
    pub reject_all: bool,
    /// `stats_matcher.exclusion_labels`: series with one of these labels are left out.
    pub exclusion_labels: Vec<String>,
    /// `stats_matcher.exclusion_keys`: metrics with one of these keys are left out.
    pub exclusion_keys: Vec<String>,
}

/// `sinks[{type: prometheus, config: {port, endpoint}}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSink {
    pub port: u16,
    /// Default `/metrics`, as in MOSN.
    pub endpoint: String,
}

/// Reads the root's `metrics` object.
pub fn parse(mut m: Obj<'_>, d: &mut Diagnostics) -> MetricsConfig {
    let mut cfg = MetricsConfig::default();
    for (i, mut sink) in m.objects("sinks", object::METRICS_SINK, d).into_iter().enumerate() {
        let ty_path = sink.field_path("type");
        match sink.required_string("type", d) {
            Some("prometheus") => {
                let c_path = sink.field_path("config");
                let config = sink.raw("config").and_then(|v| Obj::open(v, c_path.clone(), object::PROMETHEUS_SINK, d));
                let Some(mut c) = config else {
                    d.error(c_path, "the prometheus sink needs its config {port}");
                    continue;
                };
                let port_path = c.field_path("port");
                let port = c.uint("port", 1, 65535, d);
                let endpoint = c.string("endpoint", d).filter(|e| !e.is_empty()).unwrap_or("/metrics").to_string();
                if !endpoint.starts_with('/') {
                    d.error(c.field_path("endpoint"), format!("\"{endpoint}\" is not a path (starts with /)"));
                }
                c.finish(d);
                if port.is_none() {
                    d.error(port_path, "the prometheus sink needs a port");
                }
                if cfg.prometheus.is_some() {
                    d.error(format!("metrics.sinks[{i}]"), "a second prometheus sink (one is served)");
                }
                cfg.prometheus = port.map(|p| PrometheusSink { port: p as u16, endpoint });
            }
            Some(other) => {
                sink.raw("config");
                d.error(ty_path, format!("sink \"{other}\" is not supported yet (prometheus is)"));
            }
            None => {
                sink.raw("config");
            }
        }
        sink.finish(d);
    }
    if let Some(mut sm) = m.object("stats_matcher", object::STATS_MATCHER, d) {
        cfg.reject_all = sm.boolean("reject_all", d).unwrap_or(false);
        cfg.exclusion_labels = strings(&mut sm, "exclusion_labels", d);
        cfg.exclusion_keys = strings(&mut sm, "exclusion_keys", d);
        sm.finish(d);
    }
    m.finish(d);
    cfg
}

fn strings(o: &mut Obj<'_>, key: &'static str, d: &mut Diagnostics) -> Vec<String> {
    let path = o.field_path(key);
    let Some(a) = o.array(key, d) else { return Vec::new() };
    a.iter()
        .enumerate()
        .filter_map(|(i, v)| match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                d.error(format!("{path}[{i}]"), format!("expected a string, found {v}"));
                None
            }
        })
        .collect()
}

// === Downstream counters ===

/// The status codes MOSN counts one by one (`request_<code>_total`); others are
/// `request_other_code`.
pub const CODES: [u16; 20] = [200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 429, 499, 500, 502, 503, 504];

const TOTAL: usize = 0;
const ACTIVE: usize = 1;
const FAILED: usize = 2;
const OTHER_CODE: usize = 3;
const FIRST_CODE: usize = 4;
/// State words a listener's counters take.
pub const LISTENER_WORDS: usize = FIRST_CODE + CODES.len();

/// One listener's downstream counters (words of the shared state block).
#[derive(Debug, Clone)]
pub struct ListenerCounters(Words);

/// A snapshot of [`ListenerCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    pub request_total: u64,
    pub request_active: u64,
    pub request_failed: u64,
    pub other_code: u64,
    /// `(code, count)` for each of [`CODES`].
    pub codes: Vec<(u16, u64)>,
}

impl ListenerCounters {
    pub fn new(words: Words) -> ListenerCounters {
        ListenerCounters(words)
    }

    /// A stream started.
    #[inline]
    pub(crate) fn start(&self) {
        self.0.word(TOTAL).fetch_add(1, Ordering::Relaxed);
        self.0.word(ACTIVE).fetch_add(1, Ordering::Relaxed);
    }

    /// A stream ended.
    #[inline]
    pub(crate) fn end(&self) {
        self.0.word(ACTIVE).fetch_sub(1, Ordering::Relaxed);
    }

    /// The status the client got.
    pub(crate) fn answered(&self, status: u16) {
        let w = CODES.iter().position(|c| *c == status).map_or(OTHER_CODE, |i| FIRST_CODE + i);
        self.0.word(w).fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.0.word(FAILED).fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> ListenerStats {
        let w = |i: usize| self.0.word(i).load(Ordering::Relaxed);
        ListenerStats {
            request_total: w(TOTAL),
            request_active: w(ACTIVE),
            request_failed: w(FAILED),
            other_code: w(OTHER_CODE),
            codes: CODES.iter().enumerate().map(|(i, c)| (*c, w(FIRST_CODE + i))).collect(),
        }
    }
}
