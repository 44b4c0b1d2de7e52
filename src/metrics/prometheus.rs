//! The Prometheus text exposition (format 0.0.4) of MOSN's metrics: one `# TYPE` line per
//! metric, then its series, `mosn_<type>_<key>{labels} value`.

use super::MetricsConfig;
use std::fmt::Write;

/// One metric with its series: (labels, value).
pub struct Family {
    name: String,
    kind: &'static str,
    series: Vec<(Vec<(&'static str, String)>, Sample)>,
}

/// A series' value.
pub enum Sample {
    /// A counter or a gauge.
    Int(u64),
    /// A histogram: each bucket's upper bound (seconds) with the count at or below it
    /// (cumulative), the sum of the observations (seconds), and their count (`+Inf`).
    Histogram { buckets: Vec<(f64, u64)>, sum: f64, count: u64 },
}

/// The metrics of one scrape, gathered in order (`crate::engine::Engine::prometheus_text`).
#[derive(Default)]
pub struct Families(Vec<Family>);

impl Families {
    /// A series of `mosn_<ty>_<key>` (`kind`: counter or gauge).
    pub fn add(&mut self, ty: &str, key: &str, kind: &'static str, labels: Vec<(&'static str, String)>, v: u64) {
        self.push(ty, key, kind, labels, Sample::Int(v));
    }

    /// A histogram series of `mosn_<ty>_<key>`.
    pub fn add_histogram(&mut self, ty: &str, key: &str, labels: Vec<(&'static str, String)>, h: Sample) {
        self.push(ty, key, "histogram", labels, h);
    }

    fn push(&mut self, ty: &str, key: &str, kind: &'static str, labels: Vec<(&'static str, String)>, v: Sample) {
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
            let labels = labels.join(",");
            match v {
                Sample::Int(v) => {
                    let _ = writeln!(out, "{}{{{labels}}} {v}", f.name);
                }
                Sample::Histogram { buckets, sum, count } => {
                    let sep = if labels.is_empty() { "" } else { "," };
                    for (le, n) in buckets {
                        let _ = writeln!(out, "{}_bucket{{{labels}{sep}le=\"{le}\"}} {n}", f.name);
                    }
                    let _ = writeln!(out, "{}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}", f.name);
                    let _ = writeln!(out, "{}_sum{{{labels}}} {sum}", f.name);
                    let _ = writeln!(out, "{}_count{{{labels}}} {count}", f.name);
                }
            }
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
        Family { name: name.into(), kind: "counter", series: series.into_iter().map(|(l, v)| (l, Sample::Int(v))).collect() }
    }

    #[test]
    fn a_histogram_is_cumulative_buckets_sum_and_count() {
        let h = Sample::Histogram { buckets: vec![(0.001, 1), (0.01, 3)], sum: 0.0125, count: 4 };
        let fams = vec![Family {
            name: "mosn_downstream_request_time".into(),
            kind: "histogram",
            series: vec![(vec![("listener", "l".into())], h)],
        }];
        assert_eq!(
            write(&MetricsConfig::default(), &fams),
            "# TYPE mosn_downstream_request_time histogram\n\
             mosn_downstream_request_time_bucket{listener=\"l\",le=\"0.001\"} 1\n\
             mosn_downstream_request_time_bucket{listener=\"l\",le=\"0.01\"} 3\n\
             mosn_downstream_request_time_bucket{listener=\"l\",le=\"+Inf\"} 4\n\
             mosn_downstream_request_time_sum{listener=\"l\"} 0.0125\n\
             mosn_downstream_request_time_count{listener=\"l\"} 4\n"
        );
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
