//! Every MOSN config field this library knows, and what it does with it.
//!
//! The reader ([`super::reader::Obj::finish`]) judges each field a config sets by this table:
//! - [`Support::Yes`]: implemented with MOSN's meaning (documented in the README);
//! - [`Support::Refused`]: MOSN has it, this library does not implement it yet: a config
//!   that sets it is refused, naming its JSON path ("not supported yet");
//! - [`Support::Ignored`]: MOSN has it and it changes nothing here (the reason says why);
//!   `mosn-ext check` and the hosts print it as a note.
//!
//! A field that is in no object of this table is not a MOSN field: refused as unknown.
//! The README's configuration reference is generated from this table
//! (`mosn-ext fields --markdown`), and a test keeps the two equal.

/// How this library treats a MOSN field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented with MOSN's meaning.
    Yes,
    /// Not implemented yet: refused. The text says what it is for.
    Refused(&'static str),
    /// Changes nothing here; the text says why.
    Ignored(&'static str),
}

/// One field of one config object.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The object, as a JSON path pattern (see [`object`]).
    pub object: &'static str,
    /// The field's name in that object.
    pub name: &'static str,
    pub support: Support,
    /// What the field means here (for [`Support::Yes`]), one line.
    pub doc: &'static str,
}

/// The config objects, named by their JSON path pattern.
pub mod object {
    pub const ROOT: &str = "";
    pub const SERVER: &str = "servers[]";
    pub const LISTENER: &str = "servers[].listeners[]";
    pub const FILTER_CHAIN: &str = "servers[].listeners[].filter_chains[]";
    pub const NETWORK_FILTER: &str = "servers[].listeners[].filter_chains[].filters[]";
    pub const PROXY: &str = "servers[].listeners[].filter_chains[].filters[].config (proxy)";
    pub const STREAM_FILTER: &str = "servers[].listeners[].stream_filters[]";
    pub const ROUTER: &str = "servers[].routers[]";
    pub const VIRTUAL_HOST: &str = "servers[].routers[].virtual_hosts[]";
    pub const ROUTE: &str = "servers[].routers[].virtual_hosts[].routers[]";
    pub const MATCH: &str = "servers[].routers[].virtual_hosts[].routers[].match";
    pub const MATCH_HEADER: &str = "servers[].routers[].virtual_hosts[].routers[].match.headers[]";
    pub const MATCH_VARIABLE: &str = "servers[].routers[].virtual_hosts[].routers[].match.variables[]";
    pub const ROUTE_ACTION: &str = "servers[].routers[].virtual_hosts[].routers[].route";
    pub const WEIGHTED_CLUSTER: &str = "servers[].routers[].virtual_hosts[].routers[].route.weighted_clusters[].cluster";
    pub const WEIGHTED_CLUSTERS: &str = "servers[].routers[].virtual_hosts[].routers[].route.weighted_clusters[]";
    pub const RETRY_POLICY: &str = "servers[].routers[].virtual_hosts[].routers[].route.retry_policy";
    pub const DIRECT_RESPONSE: &str = "servers[].routers[].virtual_hosts[].routers[].direct_response";
    pub const REDIRECT: &str = "servers[].routers[].virtual_hosts[].routers[].redirect";
    pub const REGEX_REWRITE: &str = "servers[].routers[].virtual_hosts[].routers[].route.regex_rewrite";
    pub const REGEX_REWRITE_PATTERN: &str = "servers[].routers[].virtual_hosts[].routers[].route.regex_rewrite.pattern";
    pub const HEADER_ADD: &str = "*_headers_to_add[]";
    pub const HEADER_VALUE: &str = "*_headers_to_add[].header";
    pub const CLUSTER_MANAGER: &str = "cluster_manager";
    pub const CLUSTER: &str = "cluster_manager.clusters[]";
    pub const HOST: &str = "cluster_manager.clusters[].hosts[]";
    pub const HOST_METADATA: &str = "cluster_manager.clusters[].hosts[].metadata";
    pub const LB_CONFIG: &str = "cluster_manager.clusters[].lbconfig";
    pub const LB_SUBSET: &str = "cluster_manager.clusters[].lb_subset_config";
    pub const CIRCUIT_BREAKER: &str = "cluster_manager.clusters[].circuit_breakers[]";
    pub const HEALTH_CHECK: &str = "cluster_manager.clusters[].health_check";
    pub const HEALTH_CHECK_CONFIG: &str = "cluster_manager.clusters[].health_check.check_config";
    pub const HTTP_CHECK: &str = "cluster_manager.clusters[].health_check.check_config.http_check_config";
    pub const METADATA_MATCH: &str = "*.metadata_match";
    pub const MIRROR_POLICY: &str = "servers[].routers[].virtual_hosts[].routers[].request_mirror_policies";
    pub const MIRROR: &str = "stream_filters[].config (mirror)";
    pub const GZIP: &str = "stream_filters[].config (gzip)";
    pub const HASH_POLICY: &str = "servers[].routers[].virtual_hosts[].routers[].route.hash_policy[]";
    pub const HASH_HEADER: &str = "servers[].routers[].virtual_hosts[].routers[].route.hash_policy[].header";
    pub const HASH_COOKIE: &str = "servers[].routers[].virtual_hosts[].routers[].route.hash_policy[].cookie";
    pub const FAULT: &str = "stream_filters[].config (fault)";
    pub const FAULT_DELAY: &str = "stream_filters[].config (fault).delay";
    pub const FAULT_ABORT: &str = "stream_filters[].config (fault).abort";
    pub const FAULT_HEADER: &str = "stream_filters[].config (fault).headers[]";
    pub const METADATA: &str = "stream_filters[].config (metadata)";
    pub const FLOW_CONTROL: &str = "stream_filters[].config (flowControlFilter)";
    pub const FLOW_CONTROL_ACTION: &str = "stream_filters[].config (flowControlFilter).action";
    pub const FLOW_CONTROL_RULE: &str = "stream_filters[].config (flowControlFilter).rules[]";
    pub const PAYLOAD_LIMIT: &str = "stream_filters[].config (payload_limit)";
    pub const IP_ACCESS: &str = "stream_filters[].config (ip_access)";
    pub const IP_ACCESS_RULE: &str = "stream_filters[].config (ip_access).ips[]";
    pub const FAULT_TOLERANCE: &str = "stream_filters[].config (fault_tolerance)";
    pub const HEADER_TO_METADATA: &str = "stream_filters[].config (header_to_metadata)";
    pub const HEADER_TO_METADATA_RULE: &str = "stream_filters[].config (header_to_metadata).request_rules[]";
    pub const HEADER_TO_METADATA_KV: &str = "stream_filters[].config (header_to_metadata).request_rules[].on_header_*";
    pub const METADATAER: &str = "stream_filters[].config (metadata).metadataers[]";
    pub const UNIT_DRIVER: &str = "stream_filters[].config (metadata).metadataers[].config (UNIT)";
    pub const ZONE_DRIVER: &str = "stream_filters[].config (metadata).metadataers[].config (ZONE)";
    pub const IDC_DRIVER: &str = "stream_filters[].config (metadata).metadataers[].config (IDC)";
    pub const ADMIN: &str = "admin";
    pub const TLS_CONTEXT: &str = "*.tls_context";
    pub const ADMIN_ADDRESS: &str = "admin.address";
    pub const SOCKET_ADDRESS: &str = "admin.address.socket_address";
    pub const METRICS: &str = "metrics";
    pub const METRICS_SINK: &str = "metrics.sinks[]";
    pub const PROMETHEUS_SINK: &str = "metrics.sinks[].config (prometheus)";
    pub const STATS_MATCHER: &str = "metrics.stats_matcher";
    pub const BODY_REWRITE: &str = "stream_filters[].config (body_rewrite)";
    pub const BODY_REWRITE_RULE: &str = "stream_filters[].config (body_rewrite).*_rules[]";
}

use object::*;
use Support::{Ignored, Refused, Yes};

const fn yes(object: &'static str, name: &'static str, doc: &'static str) -> Field {
    Field { object, name, support: Yes, doc }
}
const fn no(object: &'static str, name: &'static str, what: &'static str) -> Field {
    Field { object, name, support: Refused(what), doc: "" }
}
const fn ign(object: &'static str, name: &'static str, why: &'static str) -> Field {
    Field { object, name, support: Ignored(why), doc: "" }
}

// Why a field changes nothing here.
const HOST_LOGS: &str = "the host writes the logs (Envoy's log, nginx's error_log)";
const GO_RUNTIME: &str = "a setting of MOSN's Go runtime; there is none here";
const HOST_IO: &str = "the host does the socket I/O and its own tuning";
const HOST_POOLS: &str = "the host keeps the upstream connection pools";
const HOT_UPGRADE: &str = "MOSN's hot upgrade; the host reloads itself";
const MOSN_UNUSED: &str = "MOSN parses it but does not use it either";
// Header edits, at router, virtual host and route level.
const REQUEST_HEADERS_TO_ADD: &str = "headers added to the request ([{header, append}])";
const REQUEST_HEADERS_TO_REMOVE: &str = "headers removed from the request";
const RESPONSE_HEADERS_TO_ADD: &str = "headers added to the response ([{header, append}])";
const RESPONSE_HEADERS_TO_REMOVE: &str = "headers removed from the response";

/// The table. Order: as the README lists it.
pub static FIELDS: &[Field] = &[
    // --- top level
    yes(ROOT, "servers", "exactly one server (as MOSN requires), with listeners and routers"),
    yes(ROOT, "cluster_manager", "the upstream clusters"),
    yes(ROOT, "admin", "MOSN's admin API, served by the host (see Admin API)"),
    yes(ROOT, "metrics", "MOSN's metrics: a prometheus sink served by the host (see Metrics)"),
    ign(ROOT, "tracing", "tracing is the host's (Envoy tracers, nginx modules)"),
    ign(ROOT, "pprof", GO_RUNTIME),
    ign(ROOT, "plugin", GO_RUNTIME),
    ign(ROOT, "pid", "the host writes its own pid file"),
    ign(ROOT, "uds_dir", HOT_UPGRADE),
    ign(ROOT, "disable_upgrade", HOT_UPGRADE),
    ign(ROOT, "close_graceful", HOT_UPGRADE),
    ign(ROOT, "inherit_old_mosnconfig", HOT_UPGRADE),
    ign(ROOT, "node", "the xDS node identity; xDS is not used"),
    no(ROOT, "dynamic_resources", "xDS discovery"),
    no(ROOT, "static_resources", "xDS bootstrap resources"),
    no(ROOT, "extends", "MOSN extension configs"),
    no(ROOT, "third_part_codec", "third-party protocol codecs"),
    no(ROOT, "wasm_global_plugins", "WASM plugins"),
    no(ROOT, "stream_filters", "MoE's named filter chains; put the filters in servers[].listeners[].stream_filters"),
    // --- servers[]
    yes(SERVER, "listeners", "the listeners"),
    yes(SERVER, "routers", "the route tables listeners refer to"),
    ign(SERVER, "mosn_server_name", "a name for MOSN's logs"),
    ign(SERVER, "default_log_path", HOST_LOGS),
    yes(SERVER, "default_log_level", "the library's log level (TRACE, DEBUG, INFO, WARN, ERROR, FATAL), at every load; the host's own level still filters what it writes"),
    ign(SERVER, "global_log_roller", HOST_LOGS),
    ign(SERVER, "graceful_timeout", "the host drains connections on stop and reload"),
    ign(SERVER, "processor", GO_RUNTIME),
    ign(SERVER, "use_netpoll_mode", HOST_IO),
    // --- listeners[]
    yes(LISTENER, "name", "the listener's name (default: its address, as in MOSN)"),
    yes(LISTENER, "address", "ip:port the host listens on (required)"),
    yes(LISTENER, "bind_port", "must be true (MOSN binds only then); false is refused"),
    yes(LISTENER, "network", "tcp (the default); udp and unix are refused"),
    yes(LISTENER, "filter_chains", "exactly one chain (as MOSN requires) with one \"proxy\" filter"),
    yes(LISTENER, "stream_filters", "MOSN stream filters, run in order"),
    yes(LISTENER, "use_original_dst", "empty; tproxy/redirect are refused"),
    yes(LISTENER, "inspector", "false; true (TLS inspection) is refused"),
    ign(LISTENER, "type", "ingress/egress only labels MOSN's metrics"),
    ign(LISTENER, "access_logs", "the host writes the access log (README: access log)"),
    yes(LISTENER, "log_path", "this listener's access log (one MOSN-style line per request; stdout, stderr or an absolute path)"),
    ign(LISTENER, "log_level", HOST_LOGS),
    ign(LISTENER, "reuseport", HOST_IO),
    ign(LISTENER, "default_read_buffer_size", HOST_IO),
    no(LISTENER, "listener_filters", "listener filters"),
    no(LISTENER, "connection_idle_timeout", "closing idle downstream connections"),
    // --- filter_chains[]
    yes(FILTER_CHAIN, "filters", "the network filters: one \"proxy\""),
    yes(FILTER_CHAIN, "tls_context", "the listener's TLS, terminated by the host (see tls_context below)"),
    yes(FILTER_CHAIN, "tls_context_set", "accepted when empty; several certificates on one listener are refused"),
    ign(FILTER_CHAIN, "match", MOSN_UNUSED),
    // --- filters[]
    yes(NETWORK_FILTER, "type", "\"proxy\" (MOSN's HTTP proxy); other network filters are refused"),
    yes(NETWORK_FILTER, "config", "the proxy's config"),
    no(NETWORK_FILTER, "go_plugin_config", "Go plugin filters"),
    // --- proxy config
    yes(PROXY, "router_config_name", "the route table (servers[].routers[]) of this listener"),
    yes(PROXY, "downstream_protocol", "required: Http1, Http2 (HTTP/2; over TLS by ALPN, else prior knowledge) or Auto (HTTP/1.1 or HTTP/2; nginx: with TLS only)"),
    ign(PROXY, "upstream_protocol", "MOSN uses the route's upstream_protocol, not this one"),
    ign(PROXY, "name", "a label"),
    ign(PROXY, "validate_clusters", MOSN_UNUSED),
    ign(PROXY, "concurrency_num", GO_RUNTIME),
    ign(PROXY, "fallback_for_unknown_protocol", "the host parses HTTP"),
    no(PROXY, "router_handler_name", "custom route handlers"),
    no(PROXY, "extend_config", "protocol extension settings"),
    // --- stream_filters[]
    yes(STREAM_FILTER, "type", "the filter type (see the filters below)"),
    yes(STREAM_FILTER, "config", "the filter's config"),
    no(STREAM_FILTER, "go_plugin_config", "Go plugin filters"),
    // --- routers[]
    yes(ROUTER, "router_config_name", "the name a proxy's router_config_name refers to"),
    yes(ROUTER, "virtual_hosts", "virtual hosts, chosen by Host"),
    no(ROUTER, "router_configs", "route tables loaded from a directory"),
    yes(ROUTER, "request_headers_to_add", REQUEST_HEADERS_TO_ADD),
    yes(ROUTER, "request_headers_to_remove", REQUEST_HEADERS_TO_REMOVE),
    yes(ROUTER, "response_headers_to_add", RESPONSE_HEADERS_TO_ADD),
    yes(ROUTER, "response_headers_to_remove", RESPONSE_HEADERS_TO_REMOVE),
    // --- virtual_hosts[]
    yes(VIRTUAL_HOST, "name", "a label"),
    yes(VIRTUAL_HOST, "domains", "Host values this virtual host serves (at least one; \"*\" is any)"),
    yes(VIRTUAL_HOST, "routers", "the routes, first match wins"),
    ign(VIRTUAL_HOST, "require_tls", MOSN_UNUSED),
    ign(VIRTUAL_HOST, "per_filter_config", "MOSN's filters read only the route's per_filter_config"),
    yes(VIRTUAL_HOST, "request_headers_to_add", REQUEST_HEADERS_TO_ADD),
    yes(VIRTUAL_HOST, "request_headers_to_remove", REQUEST_HEADERS_TO_REMOVE),
    yes(VIRTUAL_HOST, "response_headers_to_add", RESPONSE_HEADERS_TO_ADD),
    yes(VIRTUAL_HOST, "response_headers_to_remove", RESPONSE_HEADERS_TO_REMOVE),
    // --- routers[] (routes)
    yes(ROUTE, "match", "what the request must look like"),
    yes(ROUTE, "route", "forward to a cluster"),
    yes(ROUTE, "direct_response", "answer with a fixed status and body"),
    yes(ROUTE, "redirect", "answer with a redirect"),
    yes(ROUTE, "per_filter_config", "{\"<filter type>\": config} replacing the listener's config of that filter for this route (fault, payload_limit, body_rewrite); {\"disable\": true} turns any filter that runs after routing off for the route"),
    yes(ROUTE, "request_mirror_policies", "{cluster, percent}: copies of requests the listener's mirror filter sends (MOSN: only with that filter)"),
    ign(ROUTE, "metadata", "MOSN's router does not use route metadata either"),
    // --- match
    yes(MATCH, "prefix", "the normalized path starts with it (case-sensitive)"),
    yes(MATCH, "path", "the normalized path equals it (case-insensitive, as in MOSN)"),
    yes(MATCH, "regex", "the normalized path contains a match (unanchored, as in MOSN; write ^...$ for all of it)"),
    yes(MATCH, "headers", "request headers that must match, all of them"),
    yes(MATCH, "variables", "MOSN variable tests, combined left to right by their model"),
    no(MATCH, "dsl_expressions", "DSL matchers"),
    // --- match.headers[]
    yes(MATCH_HEADER, "name", "header name (case-insensitive; \"method\" is the method)"),
    yes(MATCH_HEADER, "value", "the value it must equal"),
    yes(MATCH_HEADER, "regex", "true: value is an unanchored regex"),
    // --- match.variables[]
    yes(MATCH_VARIABLE, "name", "a MOSN variable (x-mosn-host, x-mosn-method, x-mosn-path, Http1_request_header_<name>, ...)"),
    yes(MATCH_VARIABLE, "value", "the value it must equal"),
    yes(MATCH_VARIABLE, "regex", "or a regex it must contain a match of (wins over value, as in MOSN)"),
    yes(MATCH_VARIABLE, "model", "and (default): ANDed with the next item; or: a true result so far matches"),
    // --- route
    yes(ROUTE_ACTION, "cluster_name", "the cluster"),
    yes(ROUTE_ACTION, "weighted_clusters", "clusters picked at random by weight (wins over cluster_name, as in MOSN)"),
    yes(ROUTE_ACTION, "timeout", "the whole request's timeout (Go duration)"),
    yes(ROUTE_ACTION, "retry_policy", "when to retry on another host"),
    yes(ROUTE_ACTION, "upstream_protocol", "Http1 (the default); other protocols are refused"),
    yes(ROUTE_ACTION, "cluster_header", "the request header naming the cluster (MOSN parses it but does not use it; here it works)"),
    no(ROUTE_ACTION, "cluster_variable", "cluster from a variable"),
    yes(ROUTE_ACTION, "metadata_match", "{filter_metadata: {\"mosn.lb\": {k: v}}}: the hosts' subset (lb_subset_config)"),
    yes(ROUTE_ACTION, "hash_policy", "[{header: {key}} | {cookie: {name}} | {source_ip: {}}]: the key LB_MAGLEV hashes (first entry; default: client address)"),
    yes(ROUTE_ACTION, "prefix_rewrite", "replaces the matched prefix (or path) of the path; the old path goes in x-mosn-original-path"),
    yes(ROUTE_ACTION, "regex_rewrite", "{pattern: {regex}, substitution}: replaces every match in the path"),
    yes(ROUTE_ACTION, "host_rewrite", "the Host the upstream gets"),
    yes(ROUTE_ACTION, "auto_host_rewrite_header", "the upstream gets this request header's value as Host"),
    ign(ROUTE_ACTION, "auto_host_rewrite", "MOSN applies it to STRICT_DNS clusters only"),
    yes(ROUTE_ACTION, "request_headers_to_add", REQUEST_HEADERS_TO_ADD),
    yes(ROUTE_ACTION, "request_headers_to_remove", REQUEST_HEADERS_TO_REMOVE),
    yes(ROUTE_ACTION, "response_headers_to_add", RESPONSE_HEADERS_TO_ADD),
    yes(ROUTE_ACTION, "response_headers_to_remove", RESPONSE_HEADERS_TO_REMOVE),
    // --- regex_rewrite
    yes(REGEX_REWRITE, "pattern", "{regex}"),
    yes(REGEX_REWRITE, "substitution", "the replacement ($1 for a group)"),
    yes(REGEX_REWRITE_PATTERN, "regex", "the regex (MOSN ignores one of a single character)"),
    ign(REGEX_REWRITE_PATTERN, "google_re2", "the regex engine is RE2-compatible anyway"),
    // --- weighted_clusters[]
    yes(WEIGHTED_CLUSTERS, "cluster", "{name, weight}"),
    yes(WEIGHTED_CLUSTER, "name", "the cluster"),
    yes(WEIGHTED_CLUSTER, "weight", "its share (weights need not add up to 100; not all 0)"),
    yes(WEIGHTED_CLUSTER, "metadata_match", "the hosts' subset when this cluster is picked (wins over the route's)"),
    // --- metadata_match (route, weighted cluster)
    yes(METADATA_MATCH, "filter_metadata", "{\"mosn.lb\": {k: v}}: string values; the criteria a host's metadata must carry"),
    // --- request_mirror_policies
    yes(MIRROR_POLICY, "cluster", "the cluster that gets the copies"),
    yes(MIRROR_POLICY, "percent", "0..=100: the share of requests copied (0: none)"),
    ign(MIRROR_POLICY, "trace_sampled", "MOSN does not implement it either"),
    // --- hash_policy[]
    yes(HASH_POLICY, "header", "{key}: hash this request header's value"),
    yes(HASH_POLICY, "cookie", "{name}: hash this cookie's value"),
    yes(HASH_POLICY, "source_ip", "{}: hash the client address"),
    yes(HASH_HEADER, "key", "the header name"),
    yes(HASH_COOKIE, "name", "the cookie name"),
    ign(HASH_COOKIE, "path", "MOSN sets no cookie either (only reads it)"),
    ign(HASH_COOKIE, "ttl", "MOSN sets no cookie either (only reads it)"),
    // --- retry_policy
    yes(RETRY_POLICY, "retry_on", "true: retry 5xx (or status_codes), resets and per-try timeouts; false: connect failures only"),
    yes(RETRY_POLICY, "num_retries", "retries after the first attempt, exactly (default 3)"),
    yes(RETRY_POLICY, "retry_timeout", "one attempt's timeout (Go duration)"),
    yes(RETRY_POLICY, "status_codes", "the statuses retried when retry_on (default: every 5xx)"),
    // --- redirect
    yes(REDIRECT, "response_code", "301 (default), 302, 303, 307 or 308"),
    yes(REDIRECT, "path_redirect", "the path of Location (default: the request's)"),
    yes(REDIRECT, "host_redirect", "the host of Location (default: the request's Host)"),
    yes(REDIRECT, "scheme_redirect", "the scheme of Location (default: http)"),
    // --- request/response_headers_to_add[] (router, virtual host, route)
    yes(HEADER_ADD, "header", "{key, value}: value is literal or %variable%"),
    yes(HEADER_ADD, "append", "true (the default): append to an existing value as old,new; false: replace"),
    yes(HEADER_VALUE, "key", "the header name"),
    yes(HEADER_VALUE, "value", "the value"),
    // --- direct_response
    yes(DIRECT_RESPONSE, "status", "the status (100..=599)"),
    yes(DIRECT_RESPONSE, "body", "the body"),
    // --- tls_context (a listener's filter chain, a cluster)
    yes(TLS_CONTEXT, "status", "true: TLS on (false or absent: off, the other fields change nothing)"),
    yes(TLS_CONTEXT, "cert_chain", "PEM text or an absolute file path: the listener's certificate chain, or a cluster's client certificate"),
    yes(TLS_CONTEXT, "private_key", "PEM text or an absolute file path: the key of cert_chain"),
    yes(TLS_CONTEXT, "ca_cert", "PEM text or an absolute file path: the CAs that verify clients (listener) or the upstream (cluster; default: the system's)"),
    yes(TLS_CONTEXT, "verify_client", "listener: clients must present a certificate ca_cert signed"),
    yes(TLS_CONTEXT, "server_name", "cluster: the SNI sent and the name the upstream certificate must carry"),
    yes(TLS_CONTEXT, "insecure_skip", "cluster: the upstream certificate is not verified"),
    yes(TLS_CONTEXT, "min_version", "TLS_AUTO, TLS1_0 .. TLS1_3 (default TLS1_2)"),
    yes(TLS_CONTEXT, "max_version", "TLS_AUTO, TLS1_0 .. TLS1_3 (default TLS1_3)"),
    yes(TLS_CONTEXT, "cipher_suites", "OpenSSL cipher names for TLS 1.2 and below, ':'-separated"),
    no(TLS_CONTEXT, "type", "a TLS provider"),
    no(TLS_CONTEXT, "require_client_cert", "a certificate required but not verified"),
    no(TLS_CONTEXT, "ecdh_curves", "ECDH curve selection"),
    no(TLS_CONTEXT, "alpn", "ALPN protocols (derived from downstream_protocol)"),
    no(TLS_CONTEXT, "ticket", "session ticket keys"),
    no(TLS_CONTEXT, "fall_back", "falling back to plain text"),
    no(TLS_CONTEXT, "extend_verify", "extended verification"),
    no(TLS_CONTEXT, "sds_source", "certificates from SDS"),
    // --- cluster_manager
    yes(CLUSTER_MANAGER, "clusters", "the clusters"),
    yes(CLUSTER_MANAGER, "tls_context", "accepted with \"status\": false; TLS to upstreams is refused"),
    ign(CLUSTER_MANAGER, "cluster_pool_enable", HOST_POOLS),
    no(CLUSTER_MANAGER, "clusters_configs", "clusters loaded from a directory"),
    // --- clusters[]
    yes(CLUSTER, "name", "the name routes use"),
    yes(CLUSTER, "type", "SIMPLE, STATIC, DYNAMIC, EDS (a fixed host list, as in MOSN); STRICT_DNS (host names resolved at load and every dns_refresh_rate)"),
    yes(CLUSTER, "lb_type", "LB_ROUNDROBIN (default), LB_RANDOM, LB_WEIGHTED_ROUNDROBIN, LB_LEAST_REQUEST, LB_LEAST_CONNECTION, LB_MAGLEV, LB_REQUEST_ROUNDROBIN, LB_PEAK_EWMA"),
    yes(CLUSTER, "connect_timeout", "connect timeout (Go duration; default and \"0s\": 10s, MOSN's)"),
    yes(CLUSTER, "hosts", "the hosts (may be empty: requests get 502, no healthy upstream)"),
    yes(CLUSTER, "tls_context", "TLS to the cluster's hosts, spoken by the host (see tls_context below)"),
    yes(CLUSTER, "cluster_manager_tls", "false; true (TLS to upstreams) is refused"),
    yes(CLUSTER, "health_check", "active health checks, run when service_name is set (as in MOSN)"),
    yes(CLUSTER, "circuit_breakers", "[{max_connections, max_requests, max_retries}]: MOSN reads [0]; 0 is unlimited"),
    ign(CLUSTER, "max_request_per_conn", "MOSN stores it but does not enforce it either"),
    ign(CLUSTER, "conn_buffer_limit_bytes", HOST_IO),
    ign(CLUSTER, "cluster_pool_enable", HOST_POOLS),
    ign(CLUSTER, "keepalive", "MOSN uses it for RPC (xprotocol) pools only"),
    ign(CLUSTER, "sub_type", MOSN_UNUSED),
    yes(CLUSTER, "lbconfig", "{choice_count, active_request_bias}: least-request and peak-EWMA tuning"),
    ign(CLUSTER, "original_dst_lb_config", "only for ORIGINAL_DST clusters"),
    yes(CLUSTER, "dns_refresh_rate", "STRICT_DNS: names are resolved again this often (default 5s)"),
    yes(CLUSTER, "respect_dns_ttl", "STRICT_DNS: noted when true (the system resolver gives no TTL)"),
    yes(CLUSTER, "dns_lookup_family", "STRICT_DNS: V4_ONLY (default), V6_ONLY, AUTO/ALL"),
    yes(CLUSTER, "dns_resolvers", "STRICT_DNS: empty (the system resolver); others are refused"),
    yes(CLUSTER, "dns_resolver_file", "STRICT_DNS: empty; others are refused"),
    yes(CLUSTER, "dns_resolver_port", "STRICT_DNS: empty; others are refused"),
    yes(CLUSTER, "idle_timeout", "idle upstream connections are closed after it (Envoy's idle_timeout, nginx's keepalive_timeout)"),
    yes(CLUSTER, "lb_subset_config", "{fall_back_policy, default_subset, subset_selectors}: hosts grouped by metadata"),
    no(CLUSTER, "slow_start", "slow start"),
    no(CLUSTER, "spec", "service discovery subscriptions"),
    no(CLUSTER, "mark", "SO_MARK on upstream sockets"),
    // --- hosts[]
    yes(HOST, "address", "ip:port; in a STRICT_DNS cluster also name:port (each resolved address a host, up to 8)"),
    yes(HOST, "hostname", "a label"),
    yes(HOST, "weight", "1..=128 (clamped, as MOSN does; 0 is 1)"),
    yes(HOST, "metadata", "filter_metadata[\"mosn.lb\"]: string key/values for load balancing"),
    ign(HOST, "tls_disable", "TLS to upstreams is not used"),
    // --- lbconfig
    yes(LB_CONFIG, "choice_count", "hosts compared per pick (default 2)"),
    yes(LB_CONFIG, "active_request_bias", "exponent of (active requests + 1) in a host's load (default 1.0)"),
    no(LB_CONFIG, "client_error_bias", "error-rate bias of LB_PEAK_EWMA"),
    no(LB_CONFIG, "server_error_bias", "error-rate bias of LB_PEAK_EWMA"),
    // --- lb_subset_config
    yes(LB_SUBSET, "fall_back_policy", "0 NO_FALLBACK (502), 1 ANY_ENDPOINT, 2 DEFAULT_SUBSET: when the subset has no healthy host"),
    yes(LB_SUBSET, "default_subset", "{k: v}: the hosts DEFAULT_SUBSET falls back to"),
    yes(LB_SUBSET, "subset_selectors", "[[k, ...], ...]: the key sets subsets are built by; criteria must name exactly one set"),
    // --- circuit_breakers[]
    ign(CIRCUIT_BREAKER, "priority", "MOSN applies circuit_breakers[0] whatever its priority"),
    yes(CIRCUIT_BREAKER, "max_connections", "attempts in flight per host (each holds one HTTP/1 connection); a full host is skipped"),
    ign(CIRCUIT_BREAKER, "max_pending_requests", "MOSN never checks it either"),
    yes(CIRCUIT_BREAKER, "max_requests", "requests in flight to the cluster; more get 503 (UO)"),
    yes(CIRCUIT_BREAKER, "max_retries", "retries in flight to the cluster; more are not retried (UO)"),
    // --- health_check
    yes(HEALTH_CHECK, "protocol", "\"Http1\": an HTTP check (check_config); anything else: TCP connect"),
    yes(HEALTH_CHECK, "service_name", "set: checks run (MOSN's rule); empty: no checks"),
    yes(HEALTH_CHECK, "timeout", "one check's deadline (default 1s)"),
    yes(HEALTH_CHECK, "interval", "between checks of a host (default 15s)"),
    yes(HEALTH_CHECK, "interval_jitter", "up to this much is added to each interval at random (default 5ms)"),
    yes(HEALTH_CHECK, "initial_delay_seconds", "before the first check (Go duration; default 1s)"),
    yes(HEALTH_CHECK, "healthy_threshold", "passes in a row that bring a host back (default 1)"),
    yes(HEALTH_CHECK, "unhealthy_threshold", "failures in a row that take a host out (default 1)"),
    yes(HEALTH_CHECK, "check_config", "{http_check_config}"),
    ign(HEALTH_CHECK, "event_log_path", HOST_LOGS),
    no(HEALTH_CHECK, "common_callbacks", "health check callbacks"),
    yes(HEALTH_CHECK_CONFIG, "http_check_config", "{path, method, domain, port, timeout, codes}"),
    yes(HTTP_CHECK, "path", "the request path (default /)"),
    yes(HTTP_CHECK, "method", "the method (default GET)"),
    yes(HTTP_CHECK, "scheme", "http (https is refused)"),
    yes(HTTP_CHECK, "domain", "the Host header (default: the host's address)"),
    yes(HTTP_CHECK, "port", "check this port instead of the host's"),
    yes(HTTP_CHECK, "timeout", "the check's deadline when shorter than health_check.timeout"),
    yes(HTTP_CHECK, "codes", "[{start, end}]: statuses that pass, inclusive (default 200)"),
    yes(HOST_METADATA, "filter_metadata", "namespaces; only \"mosn.lb\" is used"),
    // --- fault
    yes(FAULT, "delay", "{fixed_delay, percentage}: delay that share of requests"),
    yes(FAULT, "abort", "{status, percentage}: answer that share with status"),
    yes(FAULT, "upstream_cluster", "only requests routed to this cluster"),
    yes(FAULT, "headers", "only requests whose headers match (as route headers)"),
    yes(FAULT_DELAY, "fixed_delay", "the delay (Go duration; 0: no delay)"),
    yes(FAULT_DELAY, "percentage", "0..=100 (0: never; MOSN's default)"),
    yes(FAULT_ABORT, "status", "the status (0 with a percentage is MOSN's 200)"),
    yes(FAULT_ABORT, "percentage", "0..=100 (0: never; MOSN's default)"),
    yes(FAULT_HEADER, "name", "header name"),
    yes(FAULT_HEADER, "value", "value"),
    yes(FAULT_HEADER, "regex", "true: value is an unanchored regex"),
    // --- gzip (done by the host's compression)
    yes(GZIP, "gzip_level", "1..=9 (default 6): the host's compression level"),
    yes(GZIP, "content_length", "the smallest response compressed, in bytes (default 0: any)"),
    yes(GZIP, "content_types", "media types compressed (default [\"text/html\"])"),
    // --- mirror
    yes(MIRROR, "amplification", "copies per mirrored request (default 1)"),
    yes(MIRROR, "broadcast", "true: each copy goes to every host of the mirror cluster"),
    // --- flowControlFilter
    yes(FLOW_CONTROL, "global_switch", "true: the rules apply (default false: the filter does nothing, as in MOSN)"),
    yes(FLOW_CONTROL, "monitor", "true: over-limit requests are logged, not rejected"),
    yes(FLOW_CONTROL, "limit_key_type", "the key rules' resource is compared with: PATH (default), ARG (the query), URI (both)"),
    yes(FLOW_CONTROL, "action", "{status, body}: the answer when limited (default 509, \"current request is limited\")"),
    yes(FLOW_CONTROL, "rules", "[{resource, threshold, statIntervalInMs}]: at most threshold per interval, shared by all workers"),
    ign(FLOW_CONTROL, "app_name", "Sentinel's application name, for its own logs"),
    ign(FLOW_CONTROL, "log_path", "Sentinel's log directory; the host writes the logs"),
    yes(FLOW_CONTROL_ACTION, "status", "the status (default 509)"),
    yes(FLOW_CONTROL_ACTION, "body", "the body (default \"current request is limited\")"),
    yes(FLOW_CONTROL_RULE, "resource", "the key this rule limits (a path with PATH)"),
    yes(FLOW_CONTROL_RULE, "threshold", "requests per interval (a token bucket: a burst of threshold, then the rate)"),
    yes(FLOW_CONTROL_RULE, "statIntervalInMs", "the interval (default 1000)"),
    ign(FLOW_CONTROL_RULE, "id", "a label"),
    yes(FLOW_CONTROL_RULE, "tokenCalculateStrategy", "0 (direct); warm-up is refused"),
    yes(FLOW_CONTROL_RULE, "controlBehavior", "0 (reject); throttling is refused"),
    yes(FLOW_CONTROL_RULE, "relationStrategy", "0 (this resource); others are refused"),
    yes(FLOW_CONTROL_RULE, "refResource", "empty; others are refused"),
    yes(FLOW_CONTROL_RULE, "maxQueueingTimeMs", "0; queueing is refused"),
    yes(FLOW_CONTROL_RULE, "warmUpPeriodSec", "0; warm-up is refused"),
    yes(FLOW_CONTROL_RULE, "warmUpColdFactor", "0; warm-up is refused"),
    // --- payload_limit
    yes(PAYLOAD_LIMIT, "max_entity_size ", "MOSN's key, with its trailing space: the largest request body in bytes (0: no limit)"),
    yes(PAYLOAD_LIMIT, "max_entity_size", "the same without the trailing space"),
    yes(PAYLOAD_LIMIT, "http_status", "the answer to a larger body (default 413)"),
    // --- ip_access
    yes(IP_ACCESS, "default_action", "allow (default) or deny: when no rule matches, or the client IP is unknown"),
    yes(IP_ACCESS, "header", "a trusted request header holding the client IP (its first comma-separated item); empty: the connection's address"),
    yes(IP_ACCESS, "ips", "[{action, addrs}]: the first rule whose addrs contain the IP decides; deny is a 403"),
    yes(IP_ACCESS_RULE, "action", "allow or deny"),
    yes(IP_ACCESS_RULE, "addrs", "IPs and CIDR blocks, IPv4 and IPv6"),
    // --- fault_tolerance
    yes(FAULT_TOLERANCE, "enabled", "true: hosts are ejected by what requests see (passive health)"),
    yes(FAULT_TOLERANCE, "exceptionTypes", "statuses that count as exceptions (default [502, 503, 504]; connect failures count as 502, timeouts as 504)"),
    yes(FAULT_TOLERANCE, "timeWindow", "the window in ms (default 10000)"),
    yes(FAULT_TOLERANCE, "leastWindowCount", "calls a host needs in a window to be judged (default 10); as many exceptions in a row eject at once"),
    yes(FAULT_TOLERANCE, "exceptionRateMultiple", "a host whose exception rate is this multiple of the cluster's average is ejected (default 5)"),
    yes(FAULT_TOLERANCE, "maxIpCount", "hosts of a cluster ejected at most at once (default 1)"),
    yes(FAULT_TOLERANCE, "maxIpRatio", "share of a cluster's hosts ejected at most at once (0: no cap; MOSN never checks it)"),
    yes(FAULT_TOLERANCE, "recoverTime", "ms an ejection lasts, times the host's ejection count up to 10 (default 900000)"),
    ign(FAULT_TOLERANCE, "taskSize", "the size of MOSN's evaluation goroutine pool"),
    // --- header_to_metadata
    yes(HEADER_TO_METADATA, "request_rules", "headers that become subset criteria (MOSN's x-mosn-router-meta)"),
    yes(HEADER_TO_METADATA_RULE, "header", "the request header"),
    yes(HEADER_TO_METADATA_RULE, "on_header_present", "{key, value}: when present, key gets value (empty: the header's value)"),
    yes(HEADER_TO_METADATA_RULE, "on_header_missing", "{key, value}: when missing, key gets value"),
    yes(HEADER_TO_METADATA_RULE, "remove", "true: the upstream does not get the header"),
    yes(HEADER_TO_METADATA_KV, "key", "the metadata key (a host's mosn.lb key)"),
    yes(HEADER_TO_METADATA_KV, "value", "the value"),
    // --- metadata
    yes(METADATA, "disable", "true: no driver runs (client-sent x-mosn-on-envoy-* are still removed)"),
    yes(METADATA, "case_sensitive", "false (default): values are lower-cased"),
    yes(METADATA, "metadataers", "the drivers, each writing x-mosn-on-envoy-<key>"),
    yes(METADATAER, "meta_data_key", "the driver: UNIT, ZONE, IDC"),
    yes(METADATAER, "config", "the driver's config"),
    yes(UNIT_DRIVER, "unit_key", "the header holding the integer uid (default userid)"),
    yes(UNIT_DRIVER, "body_key", "this library's addition: without the header, the uid is this top-level key of a JSON object body or field of a form body (the body is buffered)"),
    yes(UNIT_DRIVER, "trailers", "this library's addition: true: without the header, the uid is request trailer unit_key (Envoy; nginx 1.22 drops request trailers)"),
    yes(BODY_REWRITE, "request_rules", "this library's filter: byte strings replaced in the request body, in order (the body is buffered)"),
    yes(BODY_REWRITE, "response_rules", "this library's filter: byte strings replaced in the response body, in order (the body is buffered; an encoded one is left alone)"),
    yes(BODY_REWRITE_RULE, "from", "the bytes to find (not empty)"),
    yes(BODY_REWRITE_RULE, "to", "what replaces each occurrence (default empty: delete)"),
    yes(ZONE_DRIVER, "zone_env_name_list", "environment variables; the first one set is the zone"),
    yes(IDC_DRIVER, "idc_env_name_list", "environment variables; the first one set is the IDC"),
    yes(ADMIN, "address", "where the admin API listens"),
    yes(ADMIN_ADDRESS, "socket_address", "{address, port_value}"),
    yes(SOCKET_ADDRESS, "address", "the IP (default 127.0.0.1; MOSN's examples say 0.0.0.0: every interface)"),
    yes(SOCKET_ADDRESS, "port_value", "the port"),
    yes(METRICS, "sinks", "where the metrics go: one prometheus sink"),
    yes(METRICS, "stats_matcher", "which metrics are left out"),
    ign(METRICS, "shm_zone", "MOSN's shared-memory metrics for its hot upgrade; the counters here live in the host's shared state"),
    ign(METRICS, "shm_size", "as shm_zone"),
    ign(METRICS, "flush_mosn", "MOSN's internal flush to its own log"),
    ign(METRICS, "lazy_flush", "as flush_mosn"),
    yes(METRICS_SINK, "type", "prometheus (others: not supported yet)"),
    yes(METRICS_SINK, "config", "the sink's config"),
    yes(PROMETHEUS_SINK, "port", "the port the host serves the metrics on (127.0.0.1)"),
    yes(PROMETHEUS_SINK, "endpoint", "the path (default /metrics)"),
    no(PROMETHEUS_SINK, "export_url", "pushing to a gateway"),
    no(PROMETHEUS_SINK, "percentiles", "histograms"),
    no(PROMETHEUS_SINK, "disable_collect", "turning collection off"),
    yes(STATS_MATCHER, "reject_all", "true: no metric is exported"),
    yes(STATS_MATCHER, "exclusion_labels", "series with one of these labels are left out (e.g. host)"),
    yes(STATS_MATCHER, "exclusion_keys", "metrics with one of these keys are left out (e.g. request_total)"),
];

/// How `name` of `object` is treated, or `None` if MOSN has no such field there.
pub fn lookup(object: &str, name: &str) -> Option<Support> {
    FIELDS.iter().find(|f| f.object == object && f.name == name).map(|f| f.support)
}

/// The field names of `object` (for "did you mean").
pub fn names(object: &str) -> Vec<&'static str> {
    FIELDS.iter().filter(|f| f.object == object).map(|f| f.name).collect()
}

/// True if the table describes `object`.
pub fn has_object(object: &str) -> bool {
    object.is_empty() || FIELDS.iter().any(|f| f.object == object)
}

/// The README's configuration reference: one table per object, in table order.
pub fn markdown() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for f in FIELDS {
        if current != Some(f.object) {
            current = Some(f.object);
            let title = if f.object.is_empty() { "(top level)" } else { f.object };
            let _ = write!(out, "\n**`{title}`**\n\n| field | |\n|---|---|\n");
        }
        let what = match f.support {
            Yes => f.doc.to_string(),
            Refused(what) => format!("refused: not supported yet ({what})"),
            Ignored(why) => format!("noted, changes nothing: {why}"),
        };
        let _ = writeln!(out, "| `{}` | {} |", f.name, what);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for f in FIELDS {
            assert!(seen.insert((f.object, f.name)), "{}.{} is listed twice", f.object, f.name);
            if f.support == Yes {
                assert!(!f.doc.is_empty(), "{}.{} has no doc", f.object, f.name);
            }
        }
    }
}
