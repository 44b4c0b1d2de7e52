//! Pure translations between the core's vocabulary and Envoy's (no FFI, unit-tested):
//! the adapter's JSON config, Envoy local-reply details → [`UpstreamOutcome`], a route's
//! retry/timeout policy → Envoy's `x-envoy-*` request headers, and host metadata triples.

use mosn_extension::router::RetryPolicy;
use mosn_extension::upstream::Cluster;
use mosn_extension::UpstreamOutcome;
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

/// Metadata namespace `add_hosts` gets for MOSN's `metadata.filter_metadata["mosn.lb"]`.
pub const HOST_METADATA_FILTER: &str = "mosn.lb";

/// Dynamic metadata namespace for access logs (`%DYNAMIC_METADATA(mosn:flags)%`).
pub const METADATA_NAMESPACE: &str = "mosn";

/// Filter state key of the request's unit for access logs (`%FILTER_STATE(mosn.unit:PLAIN)%`;
/// filter state costs Envoy about a third of what dynamic metadata does).
pub const UNIT_KEY: &str = "mosn.unit";

/// Filter state key of the library's live streams when a stream ends (the access log's
/// `live_streams`, `%FILTER_STATE(mosn.live_streams:PLAIN)%`).
pub const LIVE_STREAMS_KEY: &str = "mosn.live_streams";

/// Filter state key the HTTP filter sets and the cluster LB reads.
pub const STREAM_ID_KEY: &str = "mosn.stream_id";

/// `n` in decimal, written into `buf` (no allocation: filter state `mosn.stream_id` is
/// written for every request).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Envoy's response details when the core refuses an upstream host because a circuit
/// breaker is full (MOSN's overflow, 503, flag UO); Envoy's own flag is UH.
pub const OVERFLOW_DETAILS: &str = "mosn_upstream_overflow";

// === AdapterConfig ===

/// Where an Envoy config finds its MOSN config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `config_path`: the file (absolute; relative paths resolve against Envoy's working
    /// dir). Reloaded when it changes.
    Path(PathBuf),
    /// `config`: the MOSN config itself (JSON text), as xDS carries it.
    Inline(String),
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Path(p) => write!(f, "{}", p.display()),
            ConfigSource::Inline(_) => f.write_str("the inline MOSN config"),
        }
    }
}

/// The filter state the HTTP filter writes for access logs (`log_filter_state` in its
/// config; both unless it says otherwise). Each write costs Envoy ~0.9k instructions per
/// request, so a log format that reads neither can skip them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFilterState {
    /// `mosn.unit` ([`UNIT_KEY`]).
    pub unit: bool,
    /// `mosn.live_streams` ([`LIVE_STREAMS_KEY`]).
    pub live_streams: bool,
}

impl LogFilterState {
    /// Both keys (the generated access-log format reads both).
    pub const ALL: LogFilterState = LogFilterState { unit: true, live_streams: true };

    /// `["mosn.unit", ...]`: the keys to write; any other is an error naming it.
    fn parse(v: &serde_json::Value) -> Result<LogFilterState, String> {
        let want = "a list of filter state keys (mosn.unit, mosn.live_streams)";
        let list = v.as_array().ok_or_else(|| format!("adapter config: \"log_filter_state\" must be {want}"))?;
        let mut out = LogFilterState { unit: false, live_streams: false };
        for k in list {
            match k.as_str() {
                Some(UNIT_KEY) => out.unit = true,
                Some(LIVE_STREAMS_KEY) => out.live_streams = true,
                _ => return Err(format!("adapter config: \"log_filter_state\": {k} is not one of {want}")),
            }
        }
        Ok(out)
    }
}

/// What an Envoy `filter_config` / `cluster_config` StringValue carries:
/// `{"config_path": "/abs/mosn.json", "listener": "serverListener"}`,
/// `{"config_path": "...", "cluster": "s1"}`, or the same with `"config": {...}` (the MOSN
/// config inline) instead of `config_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterConfig {
    pub source: ConfigSource,
    /// `listener` (HTTP filter) or `cluster` (cluster extension); `None` if absent.
    pub name: Option<String>,
    /// The HTTP filter's `log_filter_state` (always [`LogFilterState::ALL`] for a cluster).
    pub log: LogFilterState,
    /// The HTTP filter's `router_follows`: the filters after this one up to Envoy's router
    /// never hold a request's headers (none, or the generated chain's compressor), so the
    /// router sees them as soon as this filter lets them go and a host the core chose may
    /// reach the cluster LB through [`crate::pin`]. False when absent (and for a cluster).
    pub router_follows: bool,
}

impl AdapterConfig {
    /// Parses the JSON; `name_key` is `"listener"` or `"cluster"`. Errors are one line each.
    pub fn parse(bytes: &[u8], name_key: &str) -> Result<AdapterConfig, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            format!("adapter config is not JSON ({e}); want {{\"config_path\": \"/abs/mosn.json\", \"{name_key}\": \"...\"}}")
        })?;
        let obj = v.as_object().ok_or_else(|| "adapter config must be a JSON object".to_string())?;
        let source = match (obj.get("config_path"), obj.get("config")) {
            (Some(_), Some(_)) => return Err("adapter config: \"config_path\" and \"config\" are exclusive".into()),
            (Some(serde_json::Value::String(s)), None) if !s.is_empty() => ConfigSource::Path(PathBuf::from(s)),
            (Some(_), None) => return Err("adapter config: \"config_path\" must be a non-empty string".into()),
            (None, Some(c @ serde_json::Value::Object(_))) => ConfigSource::Inline(c.to_string()),
            (None, Some(serde_json::Value::String(s))) => ConfigSource::Inline(s.clone()),
            (None, Some(_)) => return Err("adapter config: \"config\" must be the MOSN config (an object, or its JSON text)".into()),
            (None, None) => return Err("adapter config: \"config_path\" (or an inline \"config\") is missing".into()),
        };
        let name = match obj.get(name_key) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(format!("adapter config: \"{name_key}\" must be a string")),
        };
        let filter = name_key == "listener";
        let log = match obj.get("log_filter_state") {
            Some(v) if filter => LogFilterState::parse(v)?,
            _ => LogFilterState::ALL,
        };
        let router_follows = match obj.get("router_follows") {
            Some(serde_json::Value::Bool(b)) if filter => *b,
            Some(_) if filter => return Err("adapter config: \"router_follows\" must be true or false".into()),
            _ => false,
        };
        const FILTER_ONLY: [&str; 2] = ["log_filter_state", "router_follows"];
        for k in obj.keys() {
            if k != "config_path" && k != "config" && k != name_key && !(filter && FILTER_ONLY.contains(&k.as_str())) {
                let extra = if filter { format!(", {}", FILTER_ONLY.join(", ")) } else { String::new() };
                return Err(format!("adapter config: unknown field \"{k}\" (known: config_path, config, {name_key}{extra})"));
            }
        }
        Ok(AdapterConfig { source, name, log, router_follows })
    }
}

// === Outcomes ===

/// Maps the details of an Envoy local reply to how the upstream attempt ended.
///
/// `None` for replies that say nothing about an attempt (`no_healthy_upstream` and the
/// module's own details, `mosn_*`, e.g. [`OVERFLOW_DETAILS`]: the core already knows it
/// chose no host, or answered itself; route/codec errors).
pub fn outcome_from_details(details: &str) -> Option<UpstreamOutcome> {
    let d = details.to_ascii_lowercase();
    if d.contains("no_healthy_upstream") || d.starts_with("mosn_") {
        return None;
    }
    if d.contains("overflow") {
        return Some(UpstreamOutcome::Overflow);
    }
    // An upstream that closed an established connection is a reset, not a connect failure,
    // although the word contains "connect".
    if d.contains("connection_termination") {
        return Some(UpstreamOutcome::Reset);
    }
    if d.contains("connection_failure") || d.contains("connection_timeout") || d.contains("connect") {
        return Some(UpstreamOutcome::ConnectFailure);
    }
    if d.contains("timeout") {
        return Some(UpstreamOutcome::Timeout);
    }
    if d.contains("upstream_reset") || d.contains("reset") {
        return Some(UpstreamOutcome::Reset);
    }
    None
}

// === Envoy route policy headers ===

/// Retries after the first attempt (MOSN `num_retries`).
pub const MAX_RETRIES: &str = "x-envoy-max-retries";
/// Retry conditions (MOSN `retry_on`).
pub const RETRY_ON: &str = "x-envoy-retry-on";
/// The response headers that ask for a retry (the upstream filter's mark).
pub const RETRIABLE_HEADER_NAMES: &str = "x-envoy-retriable-header-names";
/// Statuses Envoy would retry by itself: never set, always removed (the core decides).
pub const RETRIABLE_STATUS_CODES: &str = "x-envoy-retriable-status-codes";
/// The whole request's timeout (MOSN route `timeout`).
pub const RQ_TIMEOUT: &str = "x-envoy-upstream-rq-timeout-ms";
/// One attempt's timeout (MOSN `retry_timeout`).
pub const PER_TRY_TIMEOUT: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
/// gRPC retry conditions: never set, always removed (the core decides).
pub const RETRY_GRPC_ON: &str = "x-envoy-retry-grpc-on";
/// A second attempt when one times out: never set, always removed (the core decides).
pub const HEDGE_ON_PER_TRY_TIMEOUT: &str = "x-envoy-hedge-on-per-try-timeout";

/// The `x-envoy-*` headers that carry a MOSN route's retry policy and timeouts to Envoy's
/// router, in a fixed order. `None` means "remove the header" so that a client can not set
/// a policy the MOSN route does not have.
///
/// MOSN retries connect failures under any retry policy, and with `retry_on` also resets
/// and per-try timeouts: Envoy's `connect-failure` and `reset` are those rules. Which
/// responses are retried is the core's decision, per attempt: the upstream filter marks
/// them (`retriable-headers`, see `upstream.rs`); Envoy never retries a status on its own.
pub fn route_policy_headers(
    retry: Option<&RetryPolicy>,
    per_try: Option<Duration>,
    timeout: Option<Duration>,
) -> [(&'static str, Option<Cow<'static, str>>); 6] {
    let ms = |d: Duration| Cow::Owned(d.as_millis().to_string());
    // Written per request: the usual values are static text, not a new string each.
    let count = |n: u32| match STATIC_COUNTS.get(n as usize) {
        Some(s) => Cow::Borrowed(*s),
        None => Cow::Owned(n.to_string()),
    };
    let (max_retries, retry_on, header_names) = match retry {
        None => (None, None, None),
        Some(p) if !p.retry_on => (Some(count(p.num_retries)), Some(Cow::Borrowed("connect-failure")), None),
        Some(p) => (
            Some(count(p.num_retries)),
            Some(Cow::Borrowed("connect-failure,reset,retriable-headers")),
            Some(Cow::Borrowed(crate::upstream::RETRY_HEADER)),
        ),
    };
    [
        (MAX_RETRIES, max_retries),
        (RETRY_ON, retry_on),
        (RETRIABLE_HEADER_NAMES, header_names),
        (RETRIABLE_STATUS_CODES, None),
        (RQ_TIMEOUT, timeout.map(ms)),
        (PER_TRY_TIMEOUT, retry.and(per_try).map(ms)),
    ]
}

/// `num_retries` values written without formatting.
const STATIC_COUNTS: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];

// === Host metadata ===

/// Per-host `(key, value)` metadata for `cluster_add_hosts`, in host order, or `None` when
/// the hosts do not all have the same number of entries (the ABI takes a fixed number of
/// triples per host; the core does not need Envoy to know the metadata, so it is skipped).
pub fn host_metadata(cluster: &Cluster) -> Option<Vec<&[(String, String)]>> {
    let per_host = cluster.hosts.first()?.metadata.len();
    if cluster.hosts.iter().any(|h| h.metadata.len() != per_host) {
        return None;
    }
    Some(cluster.hosts.iter().map(|h| h.metadata.as_slice()).collect())
}

/// Envoy accepts host weights 1..=128.
pub fn envoy_weight(w: u32) -> u32 {
    w.clamp(1, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_config_parses_and_rejects() {
        let c = AdapterConfig::parse(br#"{"config_path": "/x/mosn.json", "listener": "serverListener"}"#, "listener").unwrap();
        assert_eq!(c.source, ConfigSource::Path(PathBuf::from("/x/mosn.json")));
        assert_eq!(c.name.as_deref(), Some("serverListener"));
        let c = AdapterConfig::parse(br#"{"config_path": "/x/mosn.json"}"#, "cluster").unwrap();
        assert_eq!(c.name, None);
        assert!(AdapterConfig::parse(b"not json", "cluster").unwrap_err().contains("not JSON"));
        assert!(AdapterConfig::parse(br#"{"cluster": "s1"}"#, "cluster").unwrap_err().contains("config_path"));
        assert!(AdapterConfig::parse(br#"{"config_path": "/a", "clustr": "s1"}"#, "cluster").unwrap_err().contains("clustr"));
        assert!(AdapterConfig::parse(br#"{"config_path": 3}"#, "cluster").is_err());
        // The MOSN config inline (xDS), as an object or as text; never both sources.
        let c = AdapterConfig::parse(br#"{"config": {"servers": []}, "cluster": "s1"}"#, "cluster").unwrap();
        assert_eq!(c.source, ConfigSource::Inline(r#"{"servers":[]}"#.into()));
        let c = AdapterConfig::parse(br#"{"config": "{\"servers\": []}"}"#, "cluster").unwrap();
        assert_eq!(c.source, ConfigSource::Inline(r#"{"servers": []}"#.into()));
        assert!(AdapterConfig::parse(br#"{"config": {}, "config_path": "/a"}"#, "cluster").unwrap_err().contains("exclusive"));
        assert!(AdapterConfig::parse(br#"{"config": 3}"#, "cluster").is_err());
    }

    #[test]
    fn log_filter_state_picks_the_keys_written_for_access_logs() {
        let parse = |j: &str, k| AdapterConfig::parse(j.as_bytes(), k);
        assert_eq!(parse(r#"{"config_path": "/a"}"#, "listener").unwrap().log, LogFilterState::ALL);
        let c = parse(r#"{"config_path": "/a", "log_filter_state": ["mosn.unit"]}"#, "listener").unwrap();
        assert_eq!(c.log, LogFilterState { unit: true, live_streams: false });
        let c = parse(r#"{"config_path": "/a", "log_filter_state": []}"#, "listener").unwrap();
        assert_eq!(c.log, LogFilterState { unit: false, live_streams: false });
        let c = parse(r#"{"config_path": "/a", "log_filter_state": ["mosn.live_streams", "mosn.unit"]}"#, "listener").unwrap();
        assert_eq!(c.log, LogFilterState::ALL);
        let e = parse(r#"{"config_path": "/a", "log_filter_state": ["mosn.stream_id"]}"#, "listener").unwrap_err();
        assert!(e.contains("\"mosn.stream_id\" is not one of"), "{e}");
        assert!(parse(r#"{"config_path": "/a", "log_filter_state": "mosn.unit"}"#, "listener").unwrap_err().contains("must be"));
        // The HTTP filter's only: a cluster config naming it is refused as unknown.
        let e = parse(r#"{"config_path": "/a", "log_filter_state": []}"#, "cluster").unwrap_err();
        assert!(e.contains("unknown field \"log_filter_state\""), "{e}");
    }

    #[test]
    fn router_follows_is_the_filters_own_yes_or_no() {
        let parse = |j: &str, k| AdapterConfig::parse(j.as_bytes(), k);
        assert!(!parse(r#"{"config_path": "/a"}"#, "listener").unwrap().router_follows);
        assert!(parse(r#"{"config_path": "/a", "router_follows": true}"#, "listener").unwrap().router_follows);
        assert!(!parse(r#"{"config_path": "/a", "router_follows": false}"#, "listener").unwrap().router_follows);
        let e = parse(r#"{"config_path": "/a", "router_follows": "yes"}"#, "listener").unwrap_err();
        assert!(e.contains("must be true or false"), "{e}");
        let e = parse(r#"{"config_path": "/a", "router_follows": true}"#, "cluster").unwrap_err();
        assert!(e.contains("unknown field \"router_follows\""), "{e}");
    }

    #[test]
    fn decimal_round_trips_and_parse_refuses_the_rest() {
        let mut buf = [0u8; 20];
        for n in [0, 1, 9, 10, 4_294_967_296, 12_345_678_901_234, u64::MAX] {
            let text = decimal(n, &mut buf).to_string();
            assert_eq!(text, n.to_string());
            assert_eq!(mosn_extension::headers::parse_digits(text.as_bytes()), Some(n));
        }
        for bad in ["", "-1", "+1", "1a", " 1", "18446744073709551616", "99999999999999999999"] {
            assert_eq!(mosn_extension::headers::parse_digits(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn details_map_to_outcomes() {
        use UpstreamOutcome::*;
        let cases = [
            (
                "upstream_reset_before_response_started{remote_connection_failure,delayed_connect_error:_Connection_refused}",
                Some(ConnectFailure),
            ),
            ("upstream_reset_before_response_started{local_connection_failure}", Some(ConnectFailure)),
            ("upstream_reset_before_response_started{connection_timeout}", Some(ConnectFailure)),
            ("upstream_reset_before_response_started{connection_termination}", Some(Reset)),
            ("upstream_response_timeout", Some(Timeout)),
            ("upstream_per_try_timeout", Some(Timeout)),
            ("upstream_reset_before_response_started{overflow}", Some(Overflow)),
            ("upstream_reset_after_response_started{remote_reset}", Some(Reset)),
            ("no_healthy_upstream", None),
            (OVERFLOW_DETAILS, None),
            ("mosn_panic", None),
            ("fault_abort", None),
            ("route_not_found", None),
        ];
        for (d, want) in cases {
            assert_eq!(outcome_from_details(d), want, "{d}");
        }
    }

    fn policy(retry_on: bool, codes: &[u16]) -> RetryPolicy {
        RetryPolicy { retry_on, num_retries: 2, per_try_timeout: None, status_codes: codes.to_vec() }
    }

    #[test]
    fn retry_policy_becomes_envoy_headers() {
        let h = route_policy_headers(None, None, None);
        assert!(h.iter().all(|(_, v)| v.is_none()), "no policy: every header removed");

        let p = policy(true, &[503]);
        let h = route_policy_headers(Some(&p), Some(Duration::from_millis(250)), Some(Duration::from_secs(3)));
        assert_eq!(h[0], (MAX_RETRIES, Some("2".into())));
        assert_eq!(h[1], (RETRY_ON, Some("connect-failure,reset,retriable-headers".into())));
        assert_eq!(h[2], (RETRIABLE_HEADER_NAMES, Some("x-mosn-retry".into())));
        assert_eq!(h[3], (RETRIABLE_STATUS_CODES, None), "statuses are the core's decision");
        assert_eq!(h[4], (RQ_TIMEOUT, Some("3000".into())));
        assert_eq!(h[5], (PER_TRY_TIMEOUT, Some("250".into())));

        let p = policy(false, &[502]);
        let h = route_policy_headers(Some(&p), None, None);
        assert_eq!(h[1].1.as_deref(), Some("connect-failure"));
        assert_eq!((h[2].1.as_ref(), h[5].1.as_ref()), (None, None));
        let p = RetryPolicy { num_retries: 11, ..policy(false, &[]) };
        assert_eq!(route_policy_headers(Some(&p), None, None)[0].1.as_deref(), Some("11"), "past the static counts");
    }

    #[test]
    fn weights_are_clamped() {
        assert_eq!(envoy_weight(0), 1);
        assert_eq!(envoy_weight(5), 5);
        assert_eq!(envoy_weight(1000), 128);
    }
}
