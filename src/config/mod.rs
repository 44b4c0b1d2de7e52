//! MOSN's JSON configuration: `servers[].listeners[]`, `servers[].routers[]` and
//! `cluster_manager.clusters[]`, with MOSN's own field names.
//!
//! Parsing yields plain data ([`MosnConfig`]); building the runtime objects (filters,
//! routers, clusters) is [`crate::Engine`]'s job, and the filters read their own `config`
//! (see [`crate::filter::registry`]). Every error names the JSON path of the offending
//! field, and every field is judged by the table in [`fields`]: implemented, refused as
//! "not supported yet", or noted as changing nothing here. Nothing is silently ignored.

pub mod admin;
pub mod fields;
pub mod metrics;
pub mod reader;

mod cluster;
mod listener;
mod router;
pub mod tls;

pub use reader::{parse_go_duration, Diagnostics, Obj};

pub(crate) use router::parse_header_matchers;

use fields::object;

use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

// === Errors ===

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

impl ConfigErrors {
    /// One error without a path (unreadable file, invalid JSON).
    pub fn single(message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError { path: String::new(), message }])
    }
}

// === Plain config data ===

/// A parsed MOSN config (structure only: filter configs are read by the filters).
#[derive(Debug, Clone, Default)]
pub struct MosnConfig {
    pub listeners: Vec<ListenerConfig>,
    pub routers: Vec<RouterConfig>,
    pub clusters: Vec<ClusterConfig>,
    /// `metrics` (sinks and stats_matcher).
    pub metrics: metrics::MetricsConfig,
    /// `admin.address`: where MOSN's admin API is served.
    pub admin: Option<SocketAddr>,
    /// `servers[].default_log_level` as the library's level (0 trace … 4 error).
    pub log_level: Option<u32>,
    /// The JSON as read (the admin API's config_dump).
    pub raw: Value,
}

/// `servers[].listeners[]`.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// JSON path of this listener, e.g. `servers[0].listeners[0]`.
    pub path: String,
    /// `name`; MOSN names a listener without one by its address.
    pub name: String,
    pub address: SocketAddr,
    pub stream_filters: Vec<RawFilterConfig>,
    /// The `router_config_name` of the listener's `proxy` network filter.
    pub router_config_name: Option<String>,
    /// JSON path of that `router_config_name` field.
    pub router_config_path: String,
    /// `log_path`: this listener's access log (absolute; `stdout` is `/dev/stdout`).
    pub log_path: Option<String>,
    /// The filter chain's `tls_context` with TLS on: the host terminates TLS.
    pub tls: Option<tls::TlsConfig>,
    /// The proxy's `downstream_protocol`.
    pub protocol: DownstreamProtocol,
}

/// What a listener speaks to clients (`downstream_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamProtocol {
    /// `Http1`.
    Http1,
    /// `Http2`: HTTP/2 only (over TLS negotiated by ALPN, else with prior knowledge).
    Http2,
    /// `Auto`: HTTP/1.1 or HTTP/2 (by ALPN over TLS, else by the connection preface).
    Auto,
}

/// `stream_filters[]`: a filter type and its `config`, read by that filter's parser.
#[derive(Debug, Clone)]
pub struct RawFilterConfig {
    /// JSON path of the entry, e.g. `servers[0].listeners[0].stream_filters[1]`.
    pub path: String,
    /// `type`.
    pub type_name: String,
    /// `config` (absent or null: `None`).
    pub config: Option<Value>,
}

/// `servers[].routers[]`.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub path: String,
    pub router_config_name: String,
    pub virtual_hosts: Vec<VirtualHostConfig>,
    /// Router-level header edits (applied last).
    pub headers: HeaderEditsConfig,
}

/// `virtual_hosts[]`.
#[derive(Debug, Clone)]
pub struct VirtualHostConfig {
    pub path: String,
    pub name: String,
    /// Lower-cased.
    pub domains: Vec<String>,
    pub routers: Vec<RouteConfig>,
    /// Virtual-host-level header edits (after the route's).
    pub headers: HeaderEditsConfig,
}

/// `request_headers_to_add/_remove`, `response_headers_to_add/_remove` of a route, a
/// virtual host or a router.
#[derive(Debug, Clone, Default)]
pub struct HeaderEditsConfig {
    pub request_add: Vec<HeaderAddConfig>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderAddConfig>,
    pub response_remove: Vec<String>,
}

impl HeaderEditsConfig {
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty() && self.request_remove.is_empty() && self.response_add.is_empty() && self.response_remove.is_empty()
    }
}

/// `{"header": {"key", "value"}, "append"}`; `append` defaults to true (MOSN).
#[derive(Debug, Clone)]
pub struct HeaderAddConfig {
    /// Lower-cased.
    pub key: String,
    /// Literal, or `%variable%`.
    pub value: String,
    pub append: bool,
}

/// `routers[] {match, route | direct_response}`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub path: String,
    pub matcher: RouteMatchConfig,
    pub action: RouteActionConfig,
    /// `per_filter_config`: a filter type's config for this route (replaces the listener's).
    pub per_filter_config: Vec<(String, Value, String)>,
    /// `request_mirror_policies {cluster, percent}` (used by the `mirror` filter, as in MOSN).
    pub mirror: Option<MirrorPolicyConfig>,
}

/// A route's `request_mirror_policies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPolicyConfig {
    pub cluster: String,
    /// The JSON path of `cluster` (for errors).
    pub cluster_path: String,
    /// 0..=100: the share of requests copied.
    pub percent: u32,
}

/// A route's path test: the one of `prefix` / `path` / `regex` it has, or none (a
/// header-only route, MOSN's "rpc" rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PathMatchConfig {
    #[default]
    Any,
    Prefix(String),
    Path(String),
    /// The pattern and the JSON path of the `regex` field.
    Regex(String, String),
}

/// `match {prefix | path | regex | variables, headers}`.
#[derive(Debug, Clone, Default)]
pub struct RouteMatchConfig {
    pub path: PathMatchConfig,
    pub headers: Vec<HeaderMatcherConfig>,
    pub variables: Vec<VariableMatcherConfig>,
}

/// `variables[] {name, value, regex, model}` (MOSN's variable route rule).
#[derive(Debug, Clone)]
pub struct VariableMatcherConfig {
    /// JSON path of this item.
    pub path: String,
    pub name: String,
    pub value: Option<String>,
    pub regex: Option<String>,
    /// `"or"`: a true result so far ends the match; `"and"` (default): ANDed with the next.
    pub or: bool,
}

/// `{name, value, regex}`: header equals `value`, or matches it as an unanchored regex.
#[derive(Debug, Clone)]
pub struct HeaderMatcherConfig {
    /// JSON path of this matcher (errors name `<path>.value`).
    pub path: String,
    pub name: String,
    pub value: String,
    pub regex: bool,
}

#[derive(Debug, Clone)]
pub enum RouteActionConfig {
    Forward(Box<ForwardConfig>),
    DirectResponse { status: u16, body: String },
    Redirect(RedirectConfig),
}

/// `redirect {response_code, path_redirect, host_redirect, scheme_redirect}`.
#[derive(Debug, Clone)]
pub struct RedirectConfig {
    /// 301 (default), 302, 303, 307 or 308.
    pub response_code: u16,
    pub path: Option<String>,
    pub host: Option<String>,
    /// Lower-cased.
    pub scheme: Option<String>,
}

/// `route {cluster_name | weighted_clusters, timeout, retry_policy}`.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// One entry with weight 1 for `cluster_name`; empty when the cluster comes from
    /// `cluster_header`.
    pub clusters: Vec<WeightedClusterConfig>,
    /// `metadata_match.filter_metadata["mosn.lb"]`, sorted by key: subset criteria.
    pub metadata_match: Vec<(String, String)>,
    /// `hash_policy[0]`.
    pub hash_policy: Option<HashPolicyConfig>,
    /// `cluster_header`: the request header naming the cluster (lower-cased).
    pub cluster_header: Option<String>,
    pub timeout: Option<Duration>,
    pub retry_policy: Option<RetryPolicyConfig>,
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite {pattern {regex}, substitution}` and the JSON path of the regex.
    pub regex_rewrite: Option<(String, String, String)>,
    pub host_rewrite: Option<String>,
    /// `auto_host_rewrite_header` (lower-cased).
    pub host_rewrite_header: Option<String>,
    pub headers: HeaderEditsConfig,
}

/// MOSN's `retry_policy`. `retry_on` is MOSN's boolean: false retries connect failures only.
#[derive(Debug, Clone)]
pub struct RetryPolicyConfig {
    pub retry_on: bool,
    pub num_retries: u32,
    pub retry_timeout: Option<Duration>,
    pub status_codes: Vec<u16>,
}

/// A cluster a route forwards to, with its share.
#[derive(Debug, Clone)]
pub struct WeightedClusterConfig {
    pub name: String,
    pub weight: u32,
    /// The JSON path of the name (for errors).
    pub name_path: String,
    /// The weighted cluster's own `metadata_match` (wins over the route's when not empty).
    pub metadata_match: Vec<(String, String)>,
}

/// What a route's consistent hash is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashPolicyConfig {
    /// `{"header": {"key"}}` (lower-cased).
    Header(String),
    /// `{"cookie": {"name"}}`.
    Cookie(String),
    /// `{"source_ip": {}}`.
    SourceIp,
}

/// `cluster_manager.clusters[]`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub path: String,
    pub name: String,
    /// `lb_type` and `lbconfig`.
    pub lb: LbConfig,
    /// MOSN's default is 10 s ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Upstream connections idle this long are closed by the host.
    pub idle_timeout: Option<Duration>,
    pub hosts: Vec<HostConfig>,
    /// `lb_subset_config`, when it has selectors.
    pub subset: Option<SubsetConfig>,
    /// `circuit_breakers[0]`.
    pub limits: CircuitBreakers,
    /// `health_check` with a `service_name`.
    pub health_check: Option<HealthCheckConfig>,
    /// `type: STRICT_DNS`: how host names are resolved.
    pub dns: Option<DnsConfig>,
    /// `tls_context` with TLS on: the host speaks TLS to the hosts.
    pub tls: Option<tls::TlsConfig>,
}

/// A STRICT_DNS cluster's resolution settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsConfig {
    /// `dns_refresh_rate` (MOSN's default 5 s).
    pub refresh: Duration,
    /// `dns_lookup_family`.
    pub family: DnsFamily,
}

/// Which addresses of a name are used (`dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// `V4_ONLY` (MOSN's default).
    V4Only,
    /// `V6_ONLY`.
    V6Only,
    /// `AUTO` / `ALL`: both.
    All,
}

/// A cluster's balancer settings (`lb_type`, `lbconfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbConfig {
    pub lb_type: LbType,
    /// `lbconfig.choice_count` (default 2): hosts compared per pick by the least-request
    /// balancers.
    pub choice_count: u32,
    /// `lbconfig.active_request_bias` (default 1.0): how strongly active requests count
    /// against a host.
    pub active_request_bias: f64,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig { lb_type: LbType::RoundRobin, choice_count: 2, active_request_bias: 1.0 }
    }
}

/// `lb_subset_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubsetConfig {
    pub fall_back_policy: FallbackPolicy,
    /// `default_subset`, sorted by key.
    pub default_subset: Vec<(String, String)>,
    /// `subset_selectors`, each sorted.
    pub selectors: Vec<Vec<String>>,
}

/// `lb_subset_config.fall_back_policy`: where a request goes when its subset has no host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// 0: no host (502).
    NoFallback,
    /// 1: any host of the cluster.
    AnyEndpoint,
    /// 2: the hosts matching `default_subset`.
    DefaultSubset,
}

/// `circuit_breakers[0]`; 0 is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Connections per host (each HTTP/1 attempt holds one).
    pub max_connections: u64,
    /// Requests in flight to the cluster.
    pub max_requests: u64,
    /// Retries in flight to the cluster.
    pub max_retries: u64,
}

/// `health_check` (active checks, run when `service_name` is set).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub service_name: String,
    pub protocol: HealthCheckProtocol,
    pub timeout: Duration,
    pub interval: Duration,
    pub interval_jitter: Duration,
    /// The first check runs this long after the config is loaded.
    pub initial_delay: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// What a health check sends.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheckProtocol {
    /// A TCP connect: up if it connects within the timeout.
    Tcp,
    /// An HTTP/1.1 request (`check_config.http_check_config`).
    Http(HttpCheck),
}

/// `check_config.http_check_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub path: String,
    pub method: String,
    /// `domain`: the Host header (default: the host's address).
    pub domain: Option<String>,
    /// `port`: checks this port instead of the host's.
    pub port: Option<u16>,
    /// `codes[{start, end}]`, inclusive; default 200 only.
    pub codes: Vec<(u16, u16)>,
    /// `timeout`: the check's own deadline when shorter than `health_check.timeout`.
    pub timeout: Option<Duration>,
}

impl HttpCheck {
    /// MOSN's defaults: `GET /`, 200 only.
    pub fn default_for_mosn() -> HttpCheck {
        HttpCheck { path: "/".into(), method: "GET".into(), domain: None, port: None, codes: vec![(200, 200)], timeout: None }
    }
}

/// MOSN's default cluster `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// MOSN's `lb_type` values implemented (all but `LB_ORIGINAL_DST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbType {
    RoundRobin,
    Random,
    WeightedRoundRobin,
    LeastRequest,
    LeastConnection,
    Maglev,
    RequestRoundRobin,
    PeakEwma,
}

impl LbType {
    pub const ALL: [LbType; 8] = [
        LbType::RoundRobin,
        LbType::Random,
        LbType::WeightedRoundRobin,
        LbType::LeastRequest,
        LbType::LeastConnection,
        LbType::Maglev,
        LbType::RequestRoundRobin,
        LbType::PeakEwma,
    ];

    /// True for the balancers that pick by the request's hash (`hash_policy`).
    pub fn hashes(self) -> bool {
        matches!(self, LbType::Maglev)
    }

    /// MOSN's name.
    pub fn name(self) -> &'static str {
        match self {
            LbType::RoundRobin => "LB_ROUNDROBIN",
            LbType::Random => "LB_RANDOM",
            LbType::WeightedRoundRobin => "LB_WEIGHTED_ROUNDROBIN",
            LbType::LeastRequest => "LB_LEAST_REQUEST",
            LbType::LeastConnection => "LB_LEAST_CONNECTION",
            LbType::Maglev => "LB_MAGLEV",
            LbType::RequestRoundRobin => "LB_REQUEST_ROUNDROBIN",
            LbType::PeakEwma => "LB_PEAK_EWMA",
        }
    }
}

/// `hosts[] {address, hostname, weight, metadata}`.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The address; for a STRICT_DNS host name, `0.0.0.0:port` (the name is in `dns_name`).
    pub address: SocketAddr,
    /// STRICT_DNS: the name resolved for this entry.
    pub dns_name: Option<String>,
    pub hostname: Option<String>,
    pub weight: u32,
    /// `metadata.filter_metadata["mosn.lb"]`, sorted by key.
    pub metadata: Vec<(String, String)>,
}

// === Parsing ===

impl MosnConfig {
    /// Parses MOSN JSON text into `d` (errors and notes); the data is meaningful only when
    /// `d` has no errors.
    pub fn parse(text: &str, d: &mut Diagnostics) -> MosnConfig {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                d.error("", format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()));
                return MosnConfig::default();
            }
        };
        let mut cfg = parse_root(&value, d);
        validate_references(&cfg, d);
        cfg.raw = value;
        cfg
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// Reads a config file; an unreadable file is one error with an empty path.
pub fn read_file(path: &std::path::Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| ConfigErrors::single(format!("cannot read {}: {e}", path.display())))
}

fn parse_root(v: &Value, d: &mut Diagnostics) -> MosnConfig {
    let mut cfg = MosnConfig::default();
    let Some(mut root) = Obj::open(v, String::new(), object::ROOT, d) else { return cfg };
    let servers = root.objects("servers", object::SERVER, d);
    if servers.len() != 1 {
        d.error("servers", format!("has {} servers; MOSN runs exactly one", servers.len()));
    }
    for mut server in servers {
        let level_path = server.field_path("default_log_level");
        if let Some(l) = server.string("default_log_level", d).filter(|l| !l.is_empty()) {
            // MOSN's levels; FATAL logs as ERROR here.
            cfg.log_level = match l.to_ascii_uppercase().as_str() {
                "TRACE" => Some(0),
                "DEBUG" => Some(1),
                "INFO" => Some(2),
                "WARN" | "WARNING" => Some(3),
                "ERROR" | "FATAL" => Some(4),
                _ => {
                    d.error(level_path, format!("\"{l}\" is not a log level (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)"));
                    None
                }
            };
        }
        for r in server.objects("routers", object::ROUTER, d) {
            if let Some(rc) = router::parse(r, d) {
                cfg.routers.push(rc);
            }
        }
        for l in server.objects("listeners", object::LISTENER, d) {
            if let Some(lc) = listener::parse(l, d) {
                cfg.listeners.push(lc);
            }
        }
        server.finish(d);
    }
    if let Some(mut cm) = root.object("cluster_manager", object::CLUSTER_MANAGER, d) {
        listener::tls_off(&mut cm, "tls_context", d);
        for c in cm.objects("clusters", object::CLUSTER, d) {
            if let Some(cc) = cluster::parse(c, d) {
                cfg.clusters.push(cc);
            }
        }
        cm.finish(d);
    }
    if let Some(a) = root.object("admin", object::ADMIN, d) {
        cfg.admin = admin::parse(a, d);
    }
    if let Some(m) = root.object("metrics", object::METRICS, d) {
        cfg.metrics = metrics::parse(m, d);
    }
    root.finish(d);
    cfg
}

/// An `ip:port` address (host names are not resolved).
fn parse_address(a: &str, path: &str, d: &mut Diagnostics) -> Option<SocketAddr> {
    if let Ok(sa) = a.parse::<SocketAddr>() {
        if sa.port() == 0 {
            d.error(path, format!("\"{a}\" has port 0"));
            return None;
        }
        return Some(sa);
    }
    let msg = if a.parse::<std::net::IpAddr>().is_ok() {
        format!("\"{a}\" has no port")
    } else if a.rsplit_once(':').is_some_and(|(h, p)| p.parse::<u16>().is_ok() && h.parse::<std::net::IpAddr>().is_err()) {
        format!("\"{a}\" is not an IP address (host names are resolved only in STRICT_DNS clusters)")
    } else {
        format!("\"{a}\" is not an ip:port address")
    };
    d.error(path, msg);
    None
}

/// Cross-references: unique names, routes naming existing clusters, listeners naming
/// existing routers.
fn validate_references(cfg: &MosnConfig, d: &mut Diagnostics) {
    let mut names = HashSet::new();
    for c in &cfg.clusters {
        if !names.insert(c.name.as_str()) {
            d.error(format!("{}.name", c.path), format!("cluster \"{}\" is defined twice", c.name));
        }
    }
    let mut rnames = HashSet::new();
    for r in &cfg.routers {
        if !rnames.insert(r.router_config_name.as_str()) {
            d.error(format!("{}.router_config_name", r.path), format!("router \"{}\" is defined twice", r.router_config_name));
        }
        for rt in r.virtual_hosts.iter().flat_map(|vh| &vh.routers) {
            if let Some(m) = &rt.mirror {
                if cfg.cluster(&m.cluster).is_none() {
                    d.error(m.cluster_path.clone(), format!("cluster \"{}\" does not exist in cluster_manager.clusters", m.cluster));
                }
            }
            if let RouteActionConfig::Forward(f) = &rt.action {
                for w in &f.clusters {
                    match cfg.cluster(&w.name) {
                        None => d.error(w.name_path.clone(), format!("cluster \"{}\" does not exist in cluster_manager.clusters", w.name)),
                        // Criteria for a cluster without subsets would change nothing.
                        Some(c) if c.subset.is_none() && !(f.metadata_match.is_empty() && w.metadata_match.is_empty()) => d.error(
                            w.name_path.clone(),
                            format!(
                                "cluster \"{}\" has no lb_subset_config.subset_selectors, so metadata_match would change nothing",
                                w.name
                            ),
                        ),
                        Some(_) => {}
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
    }
}
