//! MOSN's JSON configuration: `servers[].listeners[]`, `servers[].routers[]` and
//! `cluster_manager.clusters[]`, with MOSN's own field names.
//!
//! Parsing yields plain, validated data ([`MosnConfig`]); building the runtime objects
//! (filter chains, routers, clusters) is [`crate::Engine`]'s job. Every error names the
//! JSON path of the offending field. Fields we do not use are accepted and reported
//! once per load (MOSN configs carry many: `admin`, `pprof`, `metrics`, log paths...).

mod reader;

pub use reader::parse_go_duration;
use reader::{index, join, objects, Obj};

use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

// === Errors and diagnostics ===

/// One problem in a config, located by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path, e.g. `cluster_manager.clusters[1].hosts[0].address`.
    pub path: String,
    /// What is wrong with the value, for a person.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All errors of one config, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Errors and the paths of unused fields, collected while reading.
#[derive(Default)]
pub(crate) struct Diagnostics {
    pub errors: Vec<ConfigError>,
    pub unused: Vec<String>,
}

impl Diagnostics {
    pub fn error(&mut self, path: String, message: String) {
        self.errors.push(ConfigError { path, message });
    }
    pub fn unused(&mut self, path: String) {
        self.unused.push(path);
    }
}

// === Plain config data ===

/// A parsed, validated MOSN config.
#[derive(Debug, Clone)]
pub struct MosnConfig {
    pub listeners: Vec<ListenerConfig>,
    pub routers: Vec<RouterConfig>,
    pub clusters: Vec<ClusterConfig>,
    /// JSON paths of the fields this library does not use.
    pub unused_fields: Vec<String>,
}

/// `servers[].listeners[]`.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// JSON path of this listener, e.g. `servers[0].listeners[0]`.
    pub path: String,
    pub name: String,
    pub address: SocketAddr,
    pub stream_filters: Vec<StreamFilterConfig>,
    /// The `router_config_name` of the listener's `proxy` network filter.
    pub router_config_name: Option<String>,
    /// JSON path of that `router_config_name` field.
    pub router_config_path: String,
}

/// `stream_filters[]`: a filter type with its config.
#[derive(Debug, Clone)]
pub struct StreamFilterConfig {
    pub path: String,
    pub filter: FilterConfig,
}

/// The filter types this library implements.
#[derive(Debug, Clone)]
pub enum FilterConfig {
    Metadata(MetadataConfig),
    Fault(FaultConfig),
}

/// Names of the stream filter types, for error messages.
pub const FILTER_TYPES: &[&str] = &["metadata", "fault"];

/// The `metadata` filter: drivers that compute `x-mosn-on-envoy-<key>` headers.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    pub disable: bool,
    pub case_sensitive: bool,
    pub metadataers: Vec<MetadataerConfig>,
}

/// `metadataers[]`: one driver (`meta_data_key`) and its config.
#[derive(Debug, Clone)]
pub struct MetadataerConfig {
    pub meta_data_key: String,
    pub driver: DriverConfig,
}

/// Driver configs by `meta_data_key`.
#[derive(Debug, Clone)]
pub enum DriverConfig {
    /// `UNIT`: integer uid → site `s1`/`s2`/`s3`.
    Unit { unit_key: String },
}

/// Names of the metadata drivers, for error messages.
pub const DRIVER_TYPES: &[&str] = &["UNIT"];

/// The `fault` filter (MOSN's `StreamFaultInject`).
#[derive(Debug, Clone)]
pub struct FaultConfig {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
    pub upstream_cluster: Option<String>,
    pub headers: Vec<HeaderMatcherConfig>,
}

#[derive(Debug, Clone)]
pub struct FaultDelay {
    pub fixed_delay: Duration,
    pub percentage: u32,
}

#[derive(Debug, Clone)]
pub struct FaultAbort {
    pub status: u16,
    pub percentage: u32,
}

/// `{name, value, regex}`: header equals `value`, or matches it as an unanchored regex.
#[derive(Debug, Clone)]
pub struct HeaderMatcherConfig {
    pub name: String,
    pub value: String,
    pub regex: bool,
}

/// `servers[].routers[]`.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub path: String,
    pub router_config_name: String,
    pub virtual_hosts: Vec<VirtualHostConfig>,
}

#[derive(Debug, Clone)]
pub struct VirtualHostConfig {
    pub name: String,
    pub domains: Vec<String>,
    pub routers: Vec<RouteConfig>,
}

/// `routers[] {match, route | direct_response}`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path: String,
    pub matcher: RouteMatchConfig,
    pub action: RouteActionConfig,
}

#[derive(Debug, Clone, Default)]
pub struct RouteMatchConfig {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub regex: Option<String>,
    pub headers: Vec<HeaderMatcherConfig>,
}

#[derive(Debug, Clone)]
pub enum RouteActionConfig {
    Forward(ForwardConfig),
    DirectResponse { status: u16, body: String },
}

/// `route {cluster_name | weighted_clusters, timeout, retry_policy}`.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// `(cluster, weight)`; one entry with weight 1 for `cluster_name`.
    pub clusters: Vec<(String, u32)>,
    /// True when written as `weighted_clusters` (for error paths).
    pub weighted: bool,
    pub timeout: Option<Duration>,
    pub retry_policy: Option<RetryPolicyConfig>,
}

/// MOSN's `retry_policy`. `retry_on` is MOSN's boolean: false retries connect failures only.
#[derive(Debug, Clone)]
pub struct RetryPolicyConfig {
    pub retry_on: bool,
    pub num_retries: u32,
    pub retry_timeout: Option<Duration>,
    pub status_codes: Vec<u16>,
}

/// `cluster_manager.clusters[]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub lb_type: LbType,
    pub connect_timeout: Option<Duration>,
    pub hosts: Vec<HostConfig>,
}

/// MOSN's `lb_type` values implemented so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbType {
    RoundRobin,
    Random,
}

/// `hosts[] {address, hostname, weight, metadata}`.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub address: SocketAddr,
    pub hostname: Option<String>,
    pub weight: u32,
    /// `metadata.filter_metadata["mosn.lb"]`, sorted by key.
    pub metadata: Vec<(String, String)>,
}

// === Parsing ===

impl MosnConfig {
    /// Parses and validates MOSN JSON text.
    pub fn from_json(text: &str) -> Result<MosnConfig, ConfigErrors> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()),
            }])
        })?;
        let mut d = Diagnostics::default();
        let cfg = parse_root(&value, &mut d);
        validate_references(&cfg, &mut d);
        if d.errors.is_empty() {
            Ok(MosnConfig { unused_fields: d.unused, ..cfg })
        } else {
            Err(ConfigErrors(d.errors))
        }
    }

    /// Reads and parses a config file; an unreadable file is an error with an empty path.
    pub fn from_file(path: &std::path::Path) -> Result<MosnConfig, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError { path: String::new(), message: format!("cannot read {}: {e}", path.display()) }])
        })?;
        Self::from_json(&text)
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

fn parse_root(v: &Value, d: &mut Diagnostics) -> MosnConfig {
    let mut cfg = MosnConfig { listeners: vec![], routers: vec![], clusters: vec![], unused_fields: vec![] };
    let Some(mut root) = Obj::open(v, String::new(), d) else { return cfg };
    let servers = root.array("servers", d);
    for mut server in objects(servers, "servers", d) {
        server.ignore(&[
            "default_log_path",
            "default_log_level",
            "mosn_server_name",
            "global_log_roller",
            "graceful_timeout",
            "processor",
            "use_netpoll_mode",
        ]);
        let base = server.path().to_string();
        let routers = server.array("routers", d);
        for r in objects(routers, &join(&base, "routers"), d) {
            if let Some(rc) = parse_router(r, d) {
                cfg.routers.push(rc);
            }
        }
        let listeners = server.array("listeners", d);
        for l in objects(listeners, &join(&base, "listeners"), d) {
            if let Some(lc) = parse_listener(l, d) {
                cfg.listeners.push(lc);
            }
        }
        server.finish(d);
    }
    if let Some(mut cm) = root.object("cluster_manager", d) {
        let clusters = cm.array("clusters", d);
        for c in objects(clusters, "cluster_manager.clusters", d) {
            if let Some(cc) = parse_cluster(c, d) {
                cfg.clusters.push(cc);
            }
        }
        cm.finish(d);
    }
    root.finish(d);
    cfg
}

fn parse_listener(mut l: Obj<'_>, d: &mut Diagnostics) -> Option<ListenerConfig> {
    l.ignore(&[
        "bind_port",
        "log_path",
        "log_level",
        "type",
        "access_logs",
        "listener_filters",
        "inspector",
        "use_original_dst",
        "connection_idle_timeout",
    ]);
    let name = l.required_string("name", d).map(str::to_string);
    let address = l.required_string("address", d).and_then(|a| parse_address(a, &l.field_path("address"), d));
    let mut router_config_name = None;
    let mut router_config_path = String::new();
    let chains = l.array("filter_chains", d);
    for mut chain in objects(chains, &l.field_path("filter_chains"), d) {
        chain.ignore(&["match", "tls_context", "tls_context_set"]);
        let filters = chain.array("filters", d);
        for mut f in objects(filters, &chain.field_path("filters"), d) {
            match f.string("type", d) {
                Some("proxy") => {
                    if let Some(mut pc) = f.object("config", d) {
                        pc.ignore(&["downstream_protocol", "upstream_protocol", "name", "extend_config", "router_handler_name"]);
                        router_config_path = pc.field_path("router_config_name");
                        router_config_name = pc.string("router_config_name", d).map(str::to_string);
                        pc.finish(d);
                    }
                }
                Some(_) => {
                    // Other network filters (tcp_proxy, connection_manager...) belong to the host.
                    f.ignore(&["config"]);
                }
                None => {}
            }
            f.finish(d);
        }
        chain.finish(d);
    }
    let filters = l.array("stream_filters", d);
    let stream_filters =
        objects(filters, &l.field_path("stream_filters"), d).into_iter().filter_map(|f| parse_stream_filter(f, d)).collect();
    let path = l.path().to_string();
    l.finish(d);
    Some(ListenerConfig { path, name: name?, address: address?, stream_filters, router_config_name, router_config_path })
}

fn parse_address(a: &str, path: &str, d: &mut Diagnostics) -> Option<SocketAddr> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        if sa.port() == 0 {
            d.error(path.to_string(), format!("\"{a}\" has port 0"));
            return None;
        }
        return Some(sa);
    }
    let msg = if a.parse::<std::net::IpAddr>().is_ok() {
        format!("\"{a}\" has no port")
    } else if a.rsplit_once(':').is_some_and(|(h, p)| p.parse::<u16>().is_ok() && h.parse::<std::net::IpAddr>().is_err()) {
        format!("\"{a}\" is not an IP address (host names are not resolved yet; write ip:port)")
    } else {
        format!("\"{a}\" is not an ip:port address")
    };
    d.error(path.to_string(), msg);
    None
}

fn parse_stream_filter(mut f: Obj<'_>, d: &mut Diagnostics) -> Option<StreamFilterConfig> {
    let path = f.path().to_string();
    let ty = f.required_string("type", d)?;
    let type_path = f.field_path("type");
    let filter = match ty {
        "metadata" => {
            let c = f.object("config", d);
            c.and_then(|c| parse_metadata(c, d)).map(FilterConfig::Metadata)
        }
        "fault" => {
            let c = f.object("config", d);
            c.and_then(|c| parse_fault(c, d)).map(FilterConfig::Fault)
        }
        other => {
            f.ignore(&["config"]);
            d.error(type_path, unknown("filter", other, FILTER_TYPES));
            None
        }
    };
    f.ignore(&["go_plugin_config"]);
    f.finish(d);
    Some(StreamFilterConfig { path, filter: filter? })
}

/// `unknown filter "metadat" (did you mean "metadata"?; known: ...)`.
fn unknown(what: &str, got: &str, known: &[&str]) -> String {
    let close = known.iter().find(|k| edit_distance(&k.to_ascii_lowercase(), &got.to_ascii_lowercase()) <= 2);
    match close {
        Some(k) => format!("unknown {what} \"{got}\" (did you mean \"{k}\"?)"),
        None => format!("unknown {what} \"{got}\" (known: {})", known.join(", ")),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_metadata(mut c: Obj<'_>, d: &mut Diagnostics) -> Option<MetadataConfig> {
    let disable = c.boolean("disable", d).unwrap_or(false);
    let case_sensitive = c.boolean("case_sensitive", d).unwrap_or(false);
    let errors_before = d.errors.len();
    let mut metadataers = Vec::new();
    let arr = c.array("metadataers", d);
    let mut seen = HashSet::new();
    for mut m in objects(arr, &c.field_path("metadataers"), d) {
        let key_path = m.field_path("meta_data_key");
        let Some(key) = m.required_string("meta_data_key", d) else {
            m.ignore(&["config"]);
            m.finish(d);
            continue;
        };
        if !seen.insert(key.to_string()) {
            d.error(key_path.clone(), format!("driver \"{key}\" is listed twice"));
        }
        let driver = match key {
            "UNIT" => {
                let unit_key = match m.object("config", d) {
                    Some(mut uc) => {
                        let k = uc.string("unit_key", d).unwrap_or("");
                        let k = if k.is_empty() { "userid" } else { k };
                        if !valid_header_name(k) {
                            d.error(uc.field_path("unit_key"), format!("\"{k}\" is not a valid header name"));
                        }
                        uc.finish(d);
                        k.to_ascii_lowercase()
                    }
                    None => "userid".to_string(),
                };
                Some(DriverConfig::Unit { unit_key })
            }
            other => {
                m.ignore(&["config"]);
                d.error(key_path, unknown("metadata driver", other, DRIVER_TYPES));
                None
            }
        };
        m.finish(d);
        if let Some(driver) = driver {
            metadataers.push(MetadataerConfig { meta_data_key: key.to_string(), driver });
        }
    }
    c.finish(d);
    (d.errors.len() == errors_before).then_some(MetadataConfig { disable, case_sensitive, metadataers })
}

fn valid_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_fault(mut c: Obj<'_>, d: &mut Diagnostics) -> Option<FaultConfig> {
    let errors_before = d.errors.len();
    let delay = c.object("delay", d).and_then(|mut o| {
        let fixed_delay = if o.has("fixed_delay") {
            o.duration("fixed_delay", d)
        } else {
            d.error(o.field_path("fixed_delay"), "is required".into());
            None
        };
        let percentage = o.uint("percentage", 0, 100, d).unwrap_or(100) as u32;
        o.finish(d);
        Some(FaultDelay { fixed_delay: fixed_delay?, percentage })
    });
    let abort = c.object("abort", d).and_then(|mut o| {
        let status = if o.has("status") {
            o.uint("status", 200, 599, d)
        } else {
            d.error(o.field_path("status"), "is required".into());
            None
        };
        let percentage = o.uint("percentage", 0, 100, d).unwrap_or(100) as u32;
        o.finish(d);
        Some(FaultAbort { status: status? as u16, percentage })
    });
    if delay.is_none() && abort.is_none() && d.errors.len() == errors_before {
        d.error(c.path().to_string(), "needs \"delay\" or \"abort\"".into());
    }
    let upstream_cluster = c.string("upstream_cluster", d).filter(|s| !s.is_empty()).map(str::to_string);
    let arr = c.array("headers", d);
    let headers = parse_header_matchers(arr, &c.field_path("headers"), d);
    c.finish(d);
    (d.errors.len() == errors_before).then_some(FaultConfig { delay, abort, upstream_cluster, headers })
}

fn parse_header_matchers(arr: Option<&Vec<Value>>, base: &str, d: &mut Diagnostics) -> Vec<HeaderMatcherConfig> {
    let mut out = Vec::new();
    for mut h in objects(arr, base, d) {
        let name = h.required_string("name", d);
        let value = h.string("value", d).unwrap_or("");
        let regex = h.boolean("regex", d).unwrap_or(false);
        if regex {
            if let Err(e) = regex::Regex::new(value) {
                d.error(h.field_path("value"), format!("invalid regex: {e}"));
            }
        }
        h.finish(d);
        if let Some(name) = name {
            out.push(HeaderMatcherConfig { name: name.to_ascii_lowercase(), value: value.to_string(), regex });
        }
    }
    out
}

fn parse_router(mut r: Obj<'_>, d: &mut Diagnostics) -> Option<RouterConfig> {
    let path = r.path().to_string();
    let name = r.required_string("router_config_name", d).map(str::to_string);
    if r.has("router_configs") {
        d.error(r.field_path("router_configs"), "loading routes from a directory is not supported; inline them as virtual_hosts".into());
        r.get("router_configs");
    }
    r.ignore(&["request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"]);
    let mut virtual_hosts = Vec::new();
    let arr = r.array("virtual_hosts", d);
    for mut vh in objects(arr, &r.field_path("virtual_hosts"), d) {
        let vname = vh.string("name", d).unwrap_or("").to_string();
        let mut domains = Vec::new();
        if let Some(ds) = vh.array("domains", d) {
            for (i, dv) in ds.iter().enumerate() {
                match dv.as_str() {
                    Some(s) if !s.is_empty() => domains.push(s.to_ascii_lowercase()),
                    _ => d.error(index(&vh.field_path("domains"), i), "expected a non-empty string".into()),
                }
            }
        }
        if domains.is_empty() {
            domains.push("*".to_string());
        }
        vh.ignore(&[
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "per_filter_config",
        ]);
        let routes_arr = vh.array("routers", d);
        let routers = objects(routes_arr, &vh.field_path("routers"), d).into_iter().filter_map(|rt| parse_route(rt, d)).collect();
        vh.finish(d);
        virtual_hosts.push(VirtualHostConfig { name: vname, domains, routers });
    }
    r.finish(d);
    Some(RouterConfig { path, router_config_name: name?, virtual_hosts })
}

fn parse_route(mut rt: Obj<'_>, d: &mut Diagnostics) -> Option<RouteConfig> {
    let path = rt.path().to_string();
    let errors_before = d.errors.len();
    let mut matcher = RouteMatchConfig::default();
    match rt.object("match", d) {
        Some(mut m) => {
            matcher.prefix = m.string("prefix", d).map(str::to_string);
            matcher.path = m.string("path", d).map(str::to_string);
            matcher.regex = m.string("regex", d).map(str::to_string);
            if let Some(re) = &matcher.regex {
                if let Err(e) = regex::Regex::new(re) {
                    d.error(m.field_path("regex"), format!("invalid regex: {e}"));
                }
            }
            for unsupported in ["variables", "dsl_expressions"] {
                if m.has(unsupported) {
                    d.error(m.field_path(unsupported), "is not supported yet".into());
                }
            }
            m.ignore(&["variables", "dsl_expressions"]);
            let arr = m.array("headers", d);
            matcher.headers = parse_header_matchers(arr, &m.field_path("headers"), d);
            m.finish(d);
        }
        None => {
            if !rt.has("match") {
                d.error(rt.field_path("match"), "is required".into());
            }
        }
    }
    let action = if rt.has("direct_response") {
        rt.object("direct_response", d).and_then(|mut dr| {
            let status = if dr.has("status") {
                dr.uint("status", 100, 599, d)
            } else {
                d.error(dr.field_path("status"), "is required".into());
                None
            };
            let body = dr.string("body", d).unwrap_or("").to_string();
            dr.finish(d);
            Some(RouteActionConfig::DirectResponse { status: status? as u16, body })
        })
    } else if rt.has("route") {
        rt.object("route", d).and_then(|o| parse_forward(o, d)).map(RouteActionConfig::Forward)
    } else if rt.has("redirect") {
        rt.get("redirect");
        d.error(rt.field_path("redirect"), "is not supported yet".into());
        None
    } else {
        d.error(path.clone(), "needs \"route\" or \"direct_response\"".into());
        None
    };
    rt.ignore(&[
        "per_filter_config",
        "metadata",
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ]);
    rt.finish(d);
    if d.errors.len() != errors_before {
        return None;
    }
    Some(RouteConfig { path, matcher, action: action? })
}

fn parse_forward(mut o: Obj<'_>, d: &mut Diagnostics) -> Option<ForwardConfig> {
    let errors_before = d.errors.len();
    let mut clusters = Vec::new();
    if let Some(name) = o.string("cluster_name", d).filter(|s| !s.is_empty()) {
        clusters.push((name.to_string(), 1));
    }
    let wc = o.array("weighted_clusters", d);
    let wc_path = o.field_path("weighted_clusters");
    for mut w in objects(wc, &wc_path, d) {
        if let Some(mut c) = w.object("cluster", d) {
            let name = c.required_string("name", d);
            let weight = c.uint("weight", 0, u32::MAX as u64, d).unwrap_or(1) as u32;
            if c.has("metadata_match") {
                c.get("metadata_match");
                d.error(c.field_path("metadata_match"), "is not supported yet (subset load balancing)".into());
            }
            c.finish(d);
            if let Some(name) = name {
                clusters.push((name.to_string(), weight));
            }
        }
        w.finish(d);
    }
    if o.has("cluster_name") && o.has("weighted_clusters") {
        d.error(o.path().to_string(), "set either cluster_name or weighted_clusters, not both".into());
    } else if clusters.is_empty() && d.errors.len() == errors_before {
        d.error(o.field_path("cluster_name"), "is required (or weighted_clusters)".into());
    } else if !clusters.is_empty() && clusters.iter().all(|(_, w)| *w == 0) {
        d.error(wc_path, "all weights are 0".into());
    }
    if o.has("metadata_match") {
        o.get("metadata_match");
        d.error(o.field_path("metadata_match"), "is not supported yet (subset load balancing)".into());
    }
    let timeout = o.duration("timeout", d);
    let retry_policy = o.object("retry_policy", d).map(|mut rp| {
        let retry_on = rp.boolean("retry_on", d).unwrap_or(false);
        let num_retries = rp.uint("num_retries", 0, 10, d).unwrap_or(3) as u32;
        let retry_timeout = rp.duration("retry_timeout", d);
        let mut status_codes = Vec::new();
        if let Some(arr) = rp.array("status_codes", d) {
            for (i, v) in arr.iter().enumerate() {
                match v.as_u64() {
                    Some(n) if (100..=599).contains(&n) => status_codes.push(n as u16),
                    _ => d.error(index(&rp.field_path("status_codes"), i), format!("{v} is not an HTTP status (100..=599)")),
                }
            }
        }
        rp.finish(d);
        RetryPolicyConfig { retry_on, num_retries, retry_timeout, status_codes }
    });
    o.ignore(&[
        "cluster_header",
        "cluster_variable",
        "hash_policy",
        "prefix_rewrite",
        "regex_rewrite",
        "host_rewrite",
        "auto_host_rewrite",
        "auto_host_rewrite_header",
        "request_mirror_policies",
        "metadata",
    ]);
    let weighted = o.has("weighted_clusters");
    o.finish(d);
    (d.errors.len() == errors_before).then_some(ForwardConfig { clusters, weighted, timeout, retry_policy })
}

fn parse_cluster(mut c: Obj<'_>, d: &mut Diagnostics) -> Option<ClusterConfig> {
    let errors_before = d.errors.len();
    let name = c.required_string("name", d);
    if let Some(t) = c.string("type", d) {
        if !["SIMPLE", "STATIC", "DYNAMIC", "EDS", ""].contains(&t) {
            d.error(c.field_path("type"), format!("cluster type \"{t}\" is not supported yet (SIMPLE, STATIC, DYNAMIC, EDS are)"));
        }
    }
    let lb_type = match c.string("lb_type", d).unwrap_or("LB_ROUNDROBIN") {
        "LB_ROUNDROBIN" | "" => LbType::RoundRobin,
        "LB_RANDOM" => LbType::Random,
        other => {
            let known = [
                "LB_ROUNDROBIN",
                "LB_RANDOM",
                "LB_WEIGHTED_ROUNDROBIN",
                "LB_LEAST_REQUEST",
                "LB_LEAST_CONNECTION",
                "LB_MAGLEV",
                "LB_REQUEST_ROUNDROBIN",
                "LB_PEAK_EWMA",
                "LB_ORIGINAL_DST",
            ];
            let msg = if known.contains(&other) {
                format!("lb_type \"{other}\" is not supported yet (LB_ROUNDROBIN, LB_RANDOM are)")
            } else {
                unknown("lb_type", other, &known)
            };
            d.error(c.field_path("lb_type"), msg);
            LbType::RoundRobin
        }
    };
    let connect_timeout = c.duration("connect_timeout", d);
    let mut hosts = Vec::new();
    let arr = c.array("hosts", d);
    let mut seen = HashSet::new();
    for mut h in objects(arr, &c.field_path("hosts"), d) {
        let apath = h.field_path("address");
        let address = h.required_string("address", d).and_then(|a| parse_address(a, &apath, d));
        if let Some(a) = address {
            if !seen.insert(a) {
                d.error(apath.clone(), format!("\"{a}\" is listed twice in this cluster"));
            }
        }
        let hostname = h.string("hostname", d).map(str::to_string);
        // MOSN clamps weights into 1..=128; we refuse values outside instead of changing them.
        let weight = h.uint("weight", 1, 128, d).unwrap_or(1) as u32;
        let mut metadata = Vec::new();
        if let Some(mut md) = h.object("metadata", d) {
            if let Some(mut fm) = md.object("filter_metadata", d) {
                metadata = fm.string_map("mosn.lb", d);
                metadata.sort();
                fm.finish(d);
            }
            md.finish(d);
        }
        h.finish(d);
        if let Some(address) = address {
            hosts.push(HostConfig { address, hostname, weight, metadata });
        }
    }
    if !c.has("hosts") {
        d.error(c.field_path("hosts"), "is required (a cluster needs at least one host)".into());
    } else if hosts.is_empty() && d.errors.len() == errors_before {
        d.error(c.field_path("hosts"), "is empty (a cluster needs at least one host)".into());
    }
    c.ignore(&[
        "max_request_per_conn",
        "conn_buffer_limit_bytes",
        "idle_timeout",
        "keepalive",
        "circuit_breakers",
        "health_check",
        "lb_subset_config",
        "lbconfig",
        "slow_start",
        "spec",
        "tls_context",
        "cluster_type",
        "dns_refresh_rate",
        "respect_dns_ttl",
        "original_dst_lb_config",
    ]);
    c.finish(d);
    if d.errors.len() != errors_before {
        return None;
    }
    Some(ClusterConfig { name: name?.to_string(), lb_type, connect_timeout, hosts })
}

/// Cross-references: unique names, routes naming existing clusters, listeners naming
/// existing routers.
fn validate_references(cfg: &MosnConfig, d: &mut Diagnostics) {
    let mut names = HashSet::new();
    for (i, c) in cfg.clusters.iter().enumerate() {
        if !names.insert(c.name.as_str()) {
            d.error(format!("cluster_manager.clusters[{i}].name"), format!("cluster \"{}\" is defined twice", c.name));
        }
    }
    let mut rnames = HashSet::new();
    for r in &cfg.routers {
        if !rnames.insert(r.router_config_name.as_str()) {
            d.error(format!("{}.router_config_name", r.path), format!("router \"{}\" is defined twice", r.router_config_name));
        }
        for vh in &r.virtual_hosts {
            for rt in &vh.routers {
                if let RouteActionConfig::Forward(f) = &rt.action {
                    for (ci, (name, _)) in f.clusters.iter().enumerate() {
                        if cfg.cluster(name).is_none() {
                            let field = if !f.weighted {
                                format!("{}.route.cluster_name", rt.path)
                            } else {
                                format!("{}.route.weighted_clusters[{ci}].cluster.name", rt.path)
                            };
                            d.error(field, format!("cluster \"{name}\" does not exist in cluster_manager.clusters"));
                        }
                    }
                }
            }
        }
    }
    let mut lnames = HashSet::new();
    for l in &cfg.listeners {
        if !lnames.insert(l.name.as_str()) {
            d.error(format!("{}.name", l.path), format!("listener \"{}\" is defined twice", l.name));
        }
        if let Some(rn) = &l.router_config_name {
            if !cfg.routers.iter().any(|r| &r.router_config_name == rn) {
                d.error(l.router_config_path.clone(), format!("router \"{rn}\" does not exist in servers[].routers"));
            }
        }
        for sf in &l.stream_filters {
            if let FilterConfig::Fault(f) = &sf.filter {
                if let Some(c) = &f.upstream_cluster {
                    if cfg.cluster(c).is_none() {
                        d.error(
                            format!("{}.config.upstream_cluster", sf.path),
                            format!("cluster \"{c}\" does not exist in cluster_manager.clusters"),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
