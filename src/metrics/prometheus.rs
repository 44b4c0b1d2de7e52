//! The Prometheus text exposition (format 0.0.4) of MOSN's metrics: one `# TYPE` line per
//! metric, then its series, `mosn_<type>_<key>{labels} value`.

use super::MetricsConfig;
use crate::engine::Engine;
use std::fmt::Write;

/// One metric with its series: (labels, value).
struct Family {
    name: String,
    kind: &'static str,
    series: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// The text for every listener and cluster of `engine`, filtered by `stats_matcher`.
pub fn render(engine: &Engine) -> String {
    let cfg = &engine.config.metrics;
    let mut families: Vec<Family> = Vec::new();
    let mut add = |ty: &str, key: String, kind: &'static str, labels: Vec<(&'static str, String)>, v: u64| {
        let name = format!("mosn_{ty}_{key}");
        match families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.series.push((labels, v)),
            None => families.push(Family { name, kind, series: vec![(labels, v)] }),
        }
    };
    for l in &engine.listeners {
        let s = l.counters.stats();
        let label = || vec![("listener", l.name.clone())];
        add("downstream", "request_total".into(), "counter", label(), s.request_total);
        add("downstream", "request_active".into(), "gauge", label(), s.request_active);
        add("downstream", "request_failed".into(), "counter", label(), s.request_failed);
        for (code, n) in &s.codes {
            add("downstream", format!("request_{code}_total"), "counter", label(), *n);
        }
        add("downstream", "request_other_code".into(), "counter", label(), s.other_code);
    }
    for c in &engine.clusters {
        let s = c.stats();
        let label = || vec![("cluster", c.name.to_string())];
        add("upstream", "request_total".into(), "counter", label(), s.rq_total);
        add("upstream", "request_active".into(), "gauge", label(), s.rq_active);
        add("upstream", "request_retry".into(), "counter", label(), s.retry_total);
        add("upstream", "request_retry_overflow".into(), "counter", label(), s.retry_overflow);
        add("upstream", "request_pending_overflow".into(), "counter", label(), s.rq_overflow);
        add("upstream", "lb_subsets_fallback".into(), "counter", label(), s.subsets_fallback);
        let failed: u64 = c.hosts.iter().map(|h| h.state.failures() + h.state.error_responses()).sum();
        add("upstream", "response_failed".into(), "counter", label(), failed);
        for h in &c.hosts {
            // A STRICT_DNS slot is the address it resolved to now; an empty one is no host.
            let address = match (&h.dns, h.current()) {
                (None, _) => h.address_text.to_string(),
                (Some(_), Some((_, now))) => now.to_string(),
                (Some(_), None) => continue,
            };
            let labels = || vec![("cluster", c.name.to_string()), ("host", address.clone())];
            add("upstream", "request_total".into(), "counter", labels(), h.state.requests());
            add("upstream", "request_active".into(), "gauge", labels(), h.state.active());
            add("upstream", "response_failed".into(), "counter", labels(), h.state.failures() + h.state.error_responses());
            add("upstream", "host_ejections".into(), "counter", labels(), h.state.ejections());
            add("upstream", "host_health_changes".into(), "counter", labels(), h.state.health_changes());
        }
    }
    write(cfg, &families)
}

fn write(cfg: &MetricsConfig, families: &[Family]) -> String {
    let mut out = String::new();
    if cfg.reject_all {
        return out;
    }
    for f in families {
        let key = f.name.splitn(3, '_').nth(2).unwrap_or("");
        if cfg.exclusion_keys.iter().any(|k| k == key) {
            continue;
        }
        let series: Vec<_> =
            f.series.iter().filter(|(labels, _)| !labels.iter().any(|(l, _)| cfg.exclusion_labels.iter().any(|x| x == l))).collect();
        if series.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, v) in series {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = writeln!(out, "{}{{{}}} {v}", f.name, labels.join(","));
        }
    }
    out
}

/// A label value as the text format wants it (`\`, `"` and newlines escaped).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(name: &str, series: Vec<(Vec<(&'static str, String)>, u64)>) -> Family {
        Family { name: name.into(), kind: "counter", series }
    }

    #[test]
    fn stats_matcher_drops_keys_and_labelled_series() {
        let fams = vec![
            fam(
                "mosn_upstream_request_total",
                vec![(vec![("cluster", "a".into())], 3), (vec![("cluster", "a".into()), ("host", "h".into())], 3)],
            ),
            fam("mosn_downstream_request_time", vec![(vec![("listener", "l\"x".into())], 1)]),
        ];
        let all = write(&MetricsConfig::default(), &fams);
        assert_eq!(
            all,
            "# TYPE mosn_upstream_request_total counter\nmosn_upstream_request_total{cluster=\"a\"} 3\n\
             mosn_upstream_request_total{cluster=\"a\",host=\"h\"} 3\n# TYPE mosn_downstream_request_time counter\n\
             mosn_downstream_request_time{listener=\"l\\\"x\"} 1\n"
        );
        let cfg =
            MetricsConfig { exclusion_labels: vec!["host".into()], exclusion_keys: vec!["request_time".into()], ..Default::default() };
        assert_eq!(write(&cfg, &fams), "# TYPE mosn_upstream_request_total counter\nmosn_upstream_request_total{cluster=\"a\"} 3\n");
        assert_eq!(write(&MetricsConfig { reject_all: true, ..Default::default() }, &fams), "");
    }
}
