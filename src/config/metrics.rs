//! MOSN's `metrics` object: the sinks and `stats_matcher` (the counters themselves live in
//! `crate::metrics`).

use super::fields::object;
use super::reader::{Diagnostics, Obj};

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
