//! The Prometheus text exposition (format 0.0.4) of MOSN's metrics: one `# TYPE` line per
//! metric, then its series, `mosn_<type>_<key>{labels} value`.

use super::MetricsConfig;
use std::fmt::Write;

/// One metric with its series: (labels, value).
pub struct Family {
    name: String,
    kind: &'static str,
    series: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// The metrics of one scrape, gathered in order (`crate::engine::Engine::prometheus_text`).
#[derive(Default)]
pub struct Families(Vec<Family>);

impl Families {
    /// A series of `mosn_<ty>_<key>` (`kind`: counter or gauge).
    pub fn add(&mut self, ty: &str, key: &str, kind: &'static str, labels: Vec<(&'static str, String)>, v: u64) {
        let name = format!("mosn_{ty}_{key}");
        match self.0.iter_mut().find(|f| f.name == name) {
            Some(f) => f.series.push((labels, v)),
            None => self.0.push(Family { name, kind, series: vec![(labels, v)] }),
        }
    }

    /// The text, filtered by `stats_matcher`.
    pub fn render(&self, cfg: &MetricsConfig) -> String {
        write(cfg, &self.0)
    }
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
