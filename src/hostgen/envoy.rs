//! envoy.yaml for Envoy 1.40 from a MOSN config.
//!
//! Shape (measured against the 1.40 binary, see docs/envoy.md):
//! - per MOSN listener: an Envoy listener on its `address`, an HTTP connection manager
//!   whose first HTTP filter is our dynamic module (`mosn_envoy`) running the MOSN
//!   listener's stream filters and router; a single route whose cluster specifier (the
//!   module again) names the cluster the filter chose;
//! - per MOSN cluster: an `envoy.clusters.dynamic_modules` cluster with
//!   `lb_policy: CLUSTER_PROVIDED`: the module adds the MOSN hosts and picks the host. Its
//!   circuit breaker thresholds are effectively unlimited (MOSN's limits are the core's);
//!   MOSN's `connect_timeout` and `idle_timeout` are Envoy's; the per-attempt upstream
//!   filter runs where a route retries on status.

use super::{quote, HostOptions};
use crate::config::tls::{Pem, TlsConfig, TlsVersion, SYSTEM_CAS};
use crate::config::{DownstreamProtocol, MosnConfig, RouteActionConfig};
use std::collections::HashSet;
use std::fmt::Write as _;

/// The Host Envoy gives an HTTP/1.0 request that has none (Envoy needs one); the module
/// reads it as "no Host", so the core decides as for nginx (MOSN: 404 with several virtual
/// hosts). `.invalid` is reserved (RFC 6761): it can never be a real host.
pub const NO_HOST: &str = "mosn-no-host.invalid";

/// The clusters a route with `retry_on` can reach: only their responses are ever retried,
/// so only they get the per-attempt upstream filter (all of them when a `cluster_header`
/// route retries).
fn clusters_with_status_retries(cfg: &MosnConfig) -> HashSet<&str> {
    let mut out = HashSet::new();
    for rt in cfg.routers.iter().flat_map(|r| &r.virtual_hosts).flat_map(|v| &v.routers) {
        let RouteActionConfig::Forward(f) = &rt.action else { continue };
        if !f.retry_policy.as_ref().is_some_and(|p| p.retry_on) {
            continue;
        }
        if f.cluster_header.is_some() {
            return cfg.clusters.iter().map(|c| c.name.as_str()).collect();
        }
        out.extend(f.clusters.iter().map(|w| w.name.as_str()));
    }
    out
}

/// The dynamic module's name: Envoy loads `lib<name>.so` from its search path.
pub const MODULE_NAME: &str = "mosn_envoy";

/// Envoy's compressor (gzip) from the listener's `gzip` filter (MOSN's gzip is done by the
/// host), placed before the router; else nothing.
fn compressor(l: &crate::config::ListenerConfig) -> String {
    let Some(g) = l.stream_filters.iter().find_map(crate::filter::gzip::Gzip::settings) else { return String::new() };
    let types: Vec<String> = g.content_types.iter().map(|t| quote(t)).collect();
    format!(
        r#"          # MOSN's gzip filter: the host compresses.
          - name: envoy.filters.http.compressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
              response_direction_config:
                common_config:
                  min_content_length: {min}
                  content_type: [{types}]
              compressor_library:
                name: gzip
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip
                  compression_level: COMPRESSION_LEVEL_{level}
"#,
        min = g.min_length,
        types = types.join(", "),
        level = g.level,
    )
}

/// Envoy's circuit breaker thresholds when MOSN sets none (MOSN: 0 = unlimited).
const UNLIMITED: u32 = 1_000_000_000;

/// Access log format (see [`super::ACCESS_LOG_FIELDS`]).
pub const ACCESS_LOG_FORMAT: &str = "mosn_access method=%REQ(:METHOD)% path=%REQ(:PATH)% status=%RESPONSE_CODE% cluster=%UPSTREAM_CLUSTER% upstream_host=%UPSTREAM_HOST% unit=%FILTER_STATE(mosn.unit:PLAIN)% flags=%DYNAMIC_METADATA(mosn:flags)% attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% details=%RESPONSE_CODE_DETAILS% duration_ms=%DURATION% live_streams=%FILTER_STATE(mosn.live_streams:PLAIN)% envoy_flags=%RESPONSE_FLAGS%\n";

fn module_config() -> String {
    format!("{{ name: {MODULE_NAME}, do_not_close: true }}")
}

/// A listener whose only filter is the module serving one of its endpoints (`key`:
/// `metrics` or `admin`), answering every request before Envoy's router.
fn endpoint_listener(y: &mut String, name: &str, addr: std::net::SocketAddr, key: &str, config_path: &str) {
    let cfg = serde_json::json!({ "config_path": config_path, key: true }).to_string();
    let _ = write!(
        y,
        r#"{head}          codec_type: HTTP1
          http_filters:
{filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: {name}
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, direct_response: {{ status: 404 }} }}]
"#,
        head = listener_head(name, addr, ""),
        filter = module_http_filter(&cfg),
    );
}

/// A listener's start, up to its HTTP connection manager's `stat_prefix`; `tls`: the filter
/// chain's transport socket (see [`downstream_tls`]) or "".
fn listener_head(name: &str, addr: std::net::SocketAddr, tls: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }}
    filter_chains:
    - {tls}filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
"#,
        name = quote(name),
        ip = quote(&addr.ip().to_string()),
        port = addr.port(),
    )
}

// === TLS (MOSN's tls_context: done by Envoy) ===

/// An Envoy data source for a certificate or key: its file, or the PEM text inline.
fn data_source(p: &Pem) -> String {
    match p {
        Pem::File(f) => format!("{{ filename: {} }}", quote(f)),
        Pem::Inline(t) => format!("{{ inline_string: {} }}", quote(t)),
    }
}

/// `common_tls_context` lines at `indent`: versions and ciphers, the certificate, the CA
/// (`validation`, already formatted, or none) and ALPN.
fn common_tls_context(t: &TlsConfig, indent: &str, validation: Option<Vec<String>>, alpn: &[&str]) -> String {
    let mut out = format!("{indent}common_tls_context:\n");
    let versions = TlsVersion::range(t.min_version, t.max_version);
    if let (Some(lo), Some(hi)) = (versions.first(), versions.last()) {
        let ciphers = if t.cipher_suites.is_empty() {
            String::new()
        } else {
            format!(", cipher_suites: [{}]", t.cipher_suites.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "))
        };
        let _ = writeln!(
            out,
            "{indent}  tls_params: {{ tls_minimum_protocol_version: {}, tls_maximum_protocol_version: {}{ciphers} }}",
            lo.envoy(),
            hi.envoy()
        );
    }
    if let (Some(c), Some(k)) = (&t.cert_chain, &t.private_key) {
        let _ = writeln!(
            out,
            "{indent}  tls_certificates:\n{indent}  - certificate_chain: {}\n{indent}    private_key: {}",
            data_source(c),
            data_source(k)
        );
    }
    if let Some(lines) = validation {
        let _ = writeln!(out, "{indent}  validation_context:");
        for l in lines {
            let _ = writeln!(out, "{indent}    {l}");
        }
    }
    if !alpn.is_empty() {
        let _ = writeln!(out, "{indent}  alpn_protocols: [{}]", alpn.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", "));
    }
    out
}

/// The ALPN protocols a listener offers for its `downstream_protocol`.
fn alpn(p: DownstreamProtocol) -> &'static [&'static str] {
    match p {
        DownstreamProtocol::Http1 => &["http/1.1"],
        DownstreamProtocol::Http2 => &["h2"],
        DownstreamProtocol::Auto => &["h2", "http/1.1"],
    }
}

/// A listener's filter chain transport socket (after `- `), or "" without TLS.
fn downstream_tls(l: &crate::config::ListenerConfig) -> String {
    let Some(t) = &l.tls else { return String::new() };
    let validation = t.ca_cert.as_ref().map(|ca| vec![format!("trusted_ca: {}", data_source(ca))]);
    format!(
        r#"transport_socket:
        # MOSN's tls_context: Envoy terminates TLS.
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: {verify}
{common}      "#,
        verify = t.verify_client,
        common = common_tls_context(t, "          ", validation, alpn(l.protocol)),
    )
}

/// A cluster's transport socket lines, or "" without TLS.
fn upstream_tls(c: &crate::config::ClusterConfig) -> String {
    let Some(t) = &c.tls else { return String::new() };
    let validation = (!t.insecure_skip).then(|| {
        let ca = t.ca_cert.clone().unwrap_or(Pem::File(SYSTEM_CAS.into()));
        let mut v = vec![format!("trusted_ca: {}", data_source(&ca))];
        if let Some(name) = &t.server_name {
            // Envoy checks the name only when told to (MOSN's Go TLS always does).
            let san = if name.parse::<std::net::IpAddr>().is_ok() { "IP_ADDRESS" } else { "DNS" };
            v.push(format!("match_typed_subject_alt_names: [{{ san_type: {san}, matcher: {{ exact: {} }} }}]", quote(name)));
        }
        v
    });
    let sni = t.server_name.as_ref().map_or(String::new(), |n| format!("        sni: {}\n", quote(n)));
    format!(
        r#"    # MOSN's tls_context: Envoy speaks TLS to the hosts.
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
{sni}{common}"#,
        common = common_tls_context(t, "        ", validation, &[]),
    )
}

/// The module as an HTTP filter of a connection manager, with `filter_config` `cfg` (JSON).
fn module_http_filter(cfg: &str) -> String {
    format!(
        r#"          - name: mosn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {module}
              filter_name: mosn
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {cfg}
"#,
        module = module_config(),
        cfg = quote(cfg),
    )
}

/// Generates envoy.yaml.
pub fn generate(cfg: &MosnConfig, o: &HostOptions) -> String {
    let config_path = o.config_path.display().to_string();
    let access_log = o.work_dir.join("access.log").display().to_string();
    let mut y = String::new();
    let _ = writeln!(y, "# Generated by `mosn-ext start --host envoy` from {config_path}. Do not edit: edit mosn.json.");
    let _ = writeln!(y, "admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}", o.admin_port);
    let _ = writeln!(y, "static_resources:\n  listeners:");
    for l in &cfg.listeners {
        // `router_follows`: nothing between the module and the router holds a request's
        // headers (the compressor only reads them), so the host the core chose goes
        // straight to the cluster's LB, not through Envoy's override host.
        let filter_cfg = serde_json::json!({ "config_path": config_path, "listener": l.name, "router_follows": true }).to_string();
        let _ = write!(
            y,
            r#"{head}          # MOSN's downstream_protocol.
          codec_type: {codec}
          # HTTP/1.0 is served, as by nginx (Envoy answers 426 otherwise); one without Host
          # gets a Host the module reads as none.
          # Trailers are read (filters see them) and passed on, as over HTTP/2.
          http_protocol_options: {{ accept_http_10: true, default_host_for_http_10: {no_host}, enable_trailers: true }}
          # The core decodes and normalizes the path and hands Envoy the one it routed on
          # (as :path), so Envoy does not normalize it first.
          normalize_path: false
          merge_slashes: false
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {access_log}
              log_format: {{ text_format_source: {{ inline_string: {format} }} }}
          # Keep the router after the module with no filter between that may hold a
          # request's headers (or drop "router_follows" from the module's config).
          http_filters:
{filter}{compressor}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            name: {name}
            virtual_hosts:
            - name: mosn
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  timeout: 60s
                  # The module's HTTP filter chose the cluster; this names it (an unknown
                  # name, the one before the filter decided, is a 500).
                  cluster_not_found_response_code: INTERNAL_SERVER_ERROR
                  inline_cluster_specifier_plugin:
                    extension:
                      name: mosn
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3.DynamicModuleClusterSpecifier
                        dynamic_module_config: {module}
                        specifier_name: mosn
"#,
            head = listener_head(&l.name, l.address, &downstream_tls(l)),
            codec = match l.protocol {
                DownstreamProtocol::Http1 => "HTTP1",
                DownstreamProtocol::Http2 => "HTTP2",
                DownstreamProtocol::Auto => "AUTO",
            },
            name = quote(&l.name),
            // MOSN's listener log_path, else the work dir's access.log.
            access_log = quote(l.log_path.as_deref().unwrap_or(&access_log)),
            format = quote(ACCESS_LOG_FORMAT),
            filter = module_http_filter(&filter_cfg),
            module = module_config(),
            no_host = NO_HOST,
            compressor = compressor(l),
        );
    }
    if let Some(p) = &cfg.metrics.prometheus {
        // MOSN's prometheus sink: a listener whose only filter (the module) answers it.
        let ip: std::net::IpAddr = [127, 0, 0, 1].into();
        endpoint_listener(&mut y, "mosn_metrics", std::net::SocketAddr::new(ip, p.port), "metrics", &config_path);
    }
    if let Some(a) = cfg.admin {
        // MOSN's admin API, likewise.
        endpoint_listener(&mut y, "mosn_admin", a, "admin", &config_path);
    }
    let _ = writeln!(y, "  clusters:");
    let status_retries = clusters_with_status_retries(cfg);
    let upstream_cfg = serde_json::json!({ "config_path": config_path, "upstream": true }).to_string();
    for c in &cfg.clusters {
        let cluster_cfg = serde_json::json!({ "config_path": config_path, "cluster": c.name }).to_string();
        let attempt_filter = status_retries.contains(c.name.as_str());
        let module_cluster = ModuleCluster { name: &c.name, cluster_cfg: &cluster_cfg, upstream_cfg: &upstream_cfg };
        module_cluster.write(&mut y, c.connect_timeout, c.idle_timeout, &upstream_tls(c), attempt_filter);
    }
    added_clusters(&mut y, &config_path, &upstream_cfg);
    y
}

/// Envoy's config for a fleet: the listeners and clusters of [`generate`] as xDS resources
/// whose module configs carry the MOSN config inline (`"config": {...}` instead of
/// `config_path`), so a control plane distributes it with Envoy's own machinery; and a
/// bootstrap that reads them from files (`dynamic_resources` with `path_config_source`, the
/// file-based xDS Envoy watches: a file renamed into place is a new version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xds {
    /// The bootstrap: admin, node, LDS and CDS from `lds.yaml` / `cds.yaml` in `dir`.
    pub bootstrap: String,
    /// LDS: the Listener resources.
    pub lds: String,
    /// CDS: the Cluster resources.
    pub cds: String,
}

/// [`Xds`] for `cfg` (`raw`: its JSON, carried inline); `dir`: where `lds.yaml` and
/// `cds.yaml` will be. `version` names the resources' version (`version_info`).
pub fn xds(cfg: &MosnConfig, raw: &serde_json::Value, o: &HostOptions, dir: &std::path::Path, version: &str) -> Xds {
    let y = generate(cfg, o);
    // The module configs' `"config_path":"<path>"`, as written (JSON inside a YAML string),
    // becomes `"config":{...}`.
    let inner = |s: String| s[1..s.len() - 1].to_string();
    let path = inner(quote(&format!("\"config_path\":{}", quote(&o.config_path.display().to_string()))));
    let inline = inner(quote(&format!("\"config\":{raw}")));
    let y = y.replace(&path, &inline);
    let (head, rest) = y.split_once("static_resources:\n  listeners:\n").unwrap_or((&y, ""));
    let (listeners, clusters) = rest.split_once("  clusters:\n").unwrap_or((rest, ""));
    let resources = |blocks: &str, ty: &str| {
        let mut out = format!("version_info: {}\nresources:\n", quote(version));
        for line in blocks.lines() {
            match line.strip_prefix("  - name: ") {
                Some(name) => {
                    let _ = writeln!(out, "  - \"@type\": type.googleapis.com/envoy.config.{ty}\n    name: {name}");
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    };
    let file = |name: &str| quote(&dir.join(name).display().to_string());
    let mut bootstrap = head.replace("`mosn-ext start --host envoy`", "`mosn-ext xds`");
    let _ = write!(
        bootstrap,
        r#"node: {{ id: mosn-extension, cluster: mosn-extension }}
dynamic_resources:
  # File-based xDS: Envoy watches these files; a new version is a file renamed into place
  # (CDS first, then LDS: a route's cluster must exist before the listener naming it).
  cds_config: {{ path_config_source: {{ path: {cds} }}, resource_api_version: V3 }}
  lds_config: {{ path_config_source: {{ path: {lds} }}, resource_api_version: V3 }}
"#,
        cds = file("cds.yaml"),
        lds = file("lds.yaml"),
    );
    Xds { bootstrap, lds: resources(listeners, "listener.v3.Listener"), cds: resources(clusters, "cluster.v3.Cluster") }
}

/// The Envoy cluster that serves every MOSN cluster a reload adds (Envoy's static clusters
/// are fixed at start): the module adds the new clusters' hosts to it, and the HTTP filter
/// names it in `x-mosn-cluster` for them. MOSN's defaults: 10 s connect timeout, no idle
/// timeout; every attempt's response reaches the core (retry on status).
pub const ADDED_CLUSTERS: &str = "mosn_added_clusters";

fn added_clusters(y: &mut String, config_path: &str, upstream_cfg: &str) {
    let cluster_cfg = serde_json::json!({ "config_path": config_path, "cluster": ADDED_CLUSTERS_KEY }).to_string();
    let _ = writeln!(y, "  # MOSN clusters added by a reload (mosn.json changed while Envoy runs).");
    let module_cluster = ModuleCluster { name: ADDED_CLUSTERS, cluster_cfg: &cluster_cfg, upstream_cfg };
    module_cluster.write(y, crate::config::DEFAULT_CONNECT_TIMEOUT, None, "", true);
}

/// One `envoy.clusters.dynamic_modules` cluster of the module: a MOSN cluster's, or
/// [`ADDED_CLUSTERS`].
struct ModuleCluster<'a> {
    name: &'a str,
    /// The module's cluster config (JSON).
    cluster_cfg: &'a str,
    /// The per-attempt upstream filter's config (JSON).
    upstream_cfg: &'a str,
}

impl ModuleCluster<'_> {
    /// Writes the cluster: its connect timeout, no Envoy limits, the module as its LB,
    /// `tls` (its transport socket lines, or ""), HTTP/1.1 with trailers, the idle timeout,
    /// and where a route retries on status, the per-attempt upstream filter.
    fn write(&self, y: &mut String, connect: std::time::Duration, idle: Option<std::time::Duration>, tls: &str, attempt_filter: bool) {
        // The config applies MOSN's default (10 s); protobuf durations are written in seconds.
        let connect_s = connect.as_secs_f64().max(0.001);
        let _ = write!(
            y,
            r#"  - name: {name}
    connect_timeout: {connect_s:.3}s
    # MOSN's limits decide (none without circuit_breakers); Envoy's defaults (1024
    # connections, 3 concurrent retries) must not.
    circuit_breakers:
      thresholds:
      - {{ priority: DEFAULT, max_connections: {unlimited}, max_pending_requests: {unlimited}, max_requests: {unlimited}, max_retries: {unlimited} }}
    lb_policy: CLUSTER_PROVIDED
    # Without router_follows the HTTP filter names the core's host as the override host of a
    # request it can not retry: Envoy takes it whatever its own view of the host's health
    # (the core's decides).
    common_lb_config:
      override_host_status: {{ statuses: [UNKNOWN, HEALTHY, UNHEALTHY, DRAINING, TIMEOUT, DEGRADED] }}
    cluster_type:
      name: envoy.clusters.dynamic_modules
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.clusters.dynamic_modules.v3.ClusterConfig
        dynamic_module_config: {module}
        cluster_name: {name}
        cluster_config:
          "@type": type.googleapis.com/google.protobuf.StringValue
          value: {cluster_cfg}
{tls}"#,
            name = quote(self.name),
            module = module_config(),
            cluster_cfg = quote(self.cluster_cfg),
            unlimited = UNLIMITED,
        );
        // HTTP/1.1 to the upstream, with the request's trailers (Envoy drops them by default).
        let _ = write!(
            y,
            r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http_protocol_options: {{ enable_trailers: true }} }}
"#
        );
        if let Some(idle) = idle {
            // MOSN's idle_timeout: an upstream connection idle that long is closed.
            let _ = writeln!(y, "        common_http_protocol_options: {{ idle_timeout: {:.3}s }}", idle.as_secs_f64().max(0.001));
        }
        if attempt_filter {
            // Every attempt's response to the core, which marks the ones it retries.
            let _ = write!(
                y,
                r#"        http_filters:
        - name: mosn_attempt
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
            dynamic_module_config: {module}
            filter_name: mosn_attempt
            filter_config:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: {upstream_cfg}
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"#,
                module = module_config(),
                upstream_cfg = quote(self.upstream_cfg),
            );
        }
    }
}

/// The `cluster` value of [`ADDED_CLUSTERS`]' module config (no MOSN cluster can be named
/// so: MOSN names are not empty and this one is reserved).
pub const ADDED_CLUSTERS_KEY: &str = "*";

/// The blocks of generated envoy.yaml by section and name (`("listeners", "l")`).
fn yaml_blocks(y: &str) -> std::collections::BTreeMap<(&'static str, String), String> {
    let mut out = std::collections::BTreeMap::new();
    let mut section = "";
    let mut current: Option<(&'static str, String)> = None;
    for line in y.lines() {
        match line {
            "  listeners:" => section = "listeners",
            "  clusters:" => section = "clusters",
            _ => {}
        }
        if line.starts_with("  #") {
            continue;
        }
        if let Some(name) = line.strip_prefix("  - name: ") {
            let name = serde_json::from_str::<String>(name).unwrap_or_else(|_| name.to_string());
            current = Some((section, name));
        } else if !line.starts_with("    ") {
            current = None;
        }
        if let Some(k) = &current {
            let b: &mut String = out.entry(k.clone()).or_default();
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

/// What a running Envoy, started on the envoy.yaml generated from `started`, can not take
/// from a reload to `new`, each as `(JSON path, why)`; empty if the reload can apply.
///
/// `own_clusters`: the MOSN clusters that have an Envoy cluster of their own in the running
/// Envoy, plus [`ADDED_CLUSTERS`] if it has that one. Envoy's listeners and clusters are
/// fixed at start: a MOSN listener added, removed or changed where Envoy sees it (address,
/// log path, gzip, metrics, admin) needs a restart, as does a cluster whose Envoy settings
/// changed (connect and idle timeouts, a route's retry on status). Routes, filters, hosts
/// and balancers are the core's and reload freely; a new cluster is served by
/// [`ADDED_CLUSTERS`], with MOSN's default timeouts only.
pub fn reload_blockers(started: &MosnConfig, new: &MosnConfig, own_clusters: &HashSet<String>) -> Vec<(String, String)> {
    let opts =
        HostOptions { config_path: "/mosn.json".into(), work_dir: "/".into(), module_dir: "/".into(), concurrency: 1, admin_port: 0 };
    let (a, b) = (generate(started, &opts), generate(new, &opts));
    let (a, b) = (yaml_blocks(&a), yaml_blocks(&b));
    let mut out = Vec::new();
    let restart = "restart Envoy to apply it";
    for l in &new.listeners {
        let key = ("listeners", l.name.clone());
        match a.get(&key) {
            None => {
                out.push((l.path.clone(), format!("listener \"{}\" is new: Envoy serves the listeners it started with; {restart}", l.name)))
            }
            Some(old) if b.get(&key) != Some(old) => out.push((
                l.path.clone(),
                format!("listener \"{}\" changes where Envoy sees it (address, log_path, gzip); {restart}", l.name),
            )),
            _ => {}
        }
    }
    for l in &started.listeners {
        if !new.listeners.iter().any(|n| n.name == l.name) {
            out.push(("servers[0].listeners".into(), format!("listener \"{}\" is gone: Envoy still serves it; {restart}", l.name)));
        }
    }
    for (key, what) in [("mosn_metrics", "metrics"), ("mosn_admin", "admin")] {
        let key = ("listeners", key.to_string());
        if a.get(&key) != b.get(&key) {
            out.push((what.into(), format!("the {what} endpoint changed; {restart}")));
        }
    }
    let default_timeout = crate::config::DEFAULT_CONNECT_TIMEOUT;
    for c in &new.clusters {
        let key = ("clusters", c.name.clone());
        if own_clusters.contains(&c.name) {
            if a.get(&key) != b.get(&key) {
                out.push((
                    c.path.clone(),
                    format!("cluster \"{}\" changes Envoy's cluster settings (connect_timeout, idle_timeout, or a route's retry on status); {restart}", c.name),
                ));
            }
        } else if !own_clusters.contains(ADDED_CLUSTERS) {
            out.push((
                c.path.clone(),
                format!("cluster \"{}\" is new and the running Envoy has no \"{ADDED_CLUSTERS}\" cluster to serve it; {restart}", c.name),
            ));
        } else if c.connect_timeout != default_timeout || c.idle_timeout.is_some() {
            out.push((
                c.path.clone(),
                format!("cluster \"{}\" is new: Envoy serves it with MOSN's default timeouts (connect_timeout 10s, no idle_timeout) until a restart; set those or restart Envoy", c.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::Diagnostics;

    const CONFIG: &str = r#"{"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a", "retry_policy": {"retry_on": true}}}]}]}],
      "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "a", "idle_timeout": "90s", "hosts": [{"address": "127.0.0.1:2"}]},
                                       {"name": "b", "idle_timeout": "1500ms", "hosts": [{"address": "127.0.0.1:3"}]},
                                       {"name": "c", "hosts": [{"address": "127.0.0.1:4"}]},
                                       {"name": "d", "idle_timeout": "0s", "hosts": [{"address": "127.0.0.1:5"}]}]}}"#;

    fn generated() -> String {
        let mut d = Diagnostics::default();
        let cfg = MosnConfig::parse(CONFIG, &mut d);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let o =
            HostOptions { config_path: "/m.json".into(), work_dir: "/w".into(), module_dir: "/o".into(), concurrency: 2, admin_port: 0 };
        generate(&cfg, &o)
    }

    /// The YAML of cluster `name` (up to the next cluster).
    fn cluster<'a>(y: &'a str, name: &str) -> &'a str {
        let start = y.find(&format!("  - name: \"{name}\"\n")).unwrap_or_else(|| panic!("cluster {name}:\n{y}"));
        let end = y[start + 1..].find("\n  - name: ").map_or(y.len(), |e| start + 1 + e + 1);
        &y[start..end]
    }

    #[test]
    fn mosns_idle_timeout_is_envoys_upstream_idle_timeout() {
        let y = generated();
        let options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions:";
        let http1 = "explicit_http_config: { http_protocol_options: { enable_trailers: true } }";
        // With the upstream filter (a route retries on status) and an idle timeout.
        let a = cluster(&y, "a");
        assert!(a.contains(options) && a.contains(http1), "{a}");
        assert!(a.contains("common_http_protocol_options: { idle_timeout: 90.000s }"), "{a}");
        assert_eq!(a.matches("mosn_attempt").count(), 2, "{a}");
        assert_eq!(a.matches("typed_extension_protocol_options:").count(), 1, "one options block: {a}");
        // An idle timeout alone: the options block, HTTP/1.1, no filter.
        let b = cluster(&y, "b");
        assert!(b.contains(options) && b.contains(http1) && b.contains("idle_timeout: 1.500s }"), "{b}");
        assert!(!b.contains("mosn_attempt") && !b.contains("http_filters"), "{b}");
        // Neither (and "0s" is no idle timeout, as in MOSN): HTTP/1.1 with trailers only.
        for name in ["c", "d"] {
            let c = cluster(&y, name);
            assert!(c.contains(http1) && !c.contains("idle_timeout") && !c.contains("mosn_attempt"), "{c}");
        }
        // Envoy's own breakers never decide: MOSN's limits are the core's.
        assert_eq!(y.matches("max_requests: 1000000000").count(), 5, "four clusters and {ADDED_CLUSTERS}");
        // The core's host is Envoy's override host whatever Envoy thinks of its health.
        let statuses = "override_host_status: { statuses: [UNKNOWN, HEALTHY, UNHEALTHY, DRAINING, TIMEOUT, DEGRADED] }";
        assert_eq!(y.matches(statuses).count(), 5, "four clusters and {ADDED_CLUSTERS}");
        assert!(cluster(&y, ADDED_CLUSTERS).contains("\\\"cluster\\\":\\\"*\\\""), "{y}");
    }

    #[test]
    fn xds_resources_carry_the_mosn_config_inline() {
        let cfg = parsed(CONFIG);
        let raw: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
        let o =
            HostOptions { config_path: "/m.json".into(), work_dir: "/w".into(), module_dir: "/o".into(), concurrency: 2, admin_port: 0 };
        let x = xds(&cfg, &raw, &o, std::path::Path::new("/x"), "7");
        assert!(!x.lds.contains("config_path") && !x.cds.contains("config_path"), "{}", x.lds);
        assert_eq!(x.lds.matches("\"@type\": type.googleapis.com/envoy.config.listener.v3.Listener").count(), 1, "{}", x.lds);
        assert_eq!(x.cds.matches("\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster").count(), 5, "{}", x.cds);
        assert!(x.lds.starts_with("version_info: \"7\"\nresources:\n"));
        // The module config of cluster "a": the MOSN config inline, parsed back whole.
        let line = x.cds.lines().find(|l| l.contains("\\\"cluster\\\":\\\"a\\\"")).unwrap();
        let value: String = serde_json::from_str(line.trim().strip_prefix("value: ").unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&value).unwrap();
        assert_eq!(v["config"], raw);
        assert!(
            x.bootstrap.contains("path_config_source: { path: \"/x/lds.yaml\" }") && !x.bootstrap.contains("static_resources"),
            "{}",
            x.bootstrap
        );
    }

    fn parsed(text: &str) -> MosnConfig {
        let mut d = Diagnostics::default();
        let cfg = MosnConfig::parse(text, &mut d);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        cfg
    }

    #[test]
    fn a_reload_may_change_routes_and_hosts_and_add_clusters_with_default_timeouts() {
        let started = parsed(CONFIG);
        let own: HashSet<String> = ["a", "b", "c", "d", ADDED_CLUSTERS].iter().map(|s| s.to_string()).collect();
        let hosts = CONFIG.replace("127.0.0.1:4", "127.0.0.1:44").replace(r#""prefix": "/""#, r#""prefix": "/x""#);
        assert_eq!(reload_blockers(&started, &parsed(&hosts), &own), vec![]);
        let added = CONFIG.replace(r#"{"name": "c","#, r#"{"name": "e", "hosts": [{"address": "127.0.0.1:6"}]}, {"name": "c","#);
        assert_eq!(reload_blockers(&started, &parsed(&added), &own), vec![]);
        // Without the cluster that serves added clusters, or with a timeout of its own: refused.
        let without: HashSet<String> = own.iter().filter(|n| *n != ADDED_CLUSTERS).cloned().collect();
        let refused = reload_blockers(&started, &parsed(&added), &without);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, "cluster_manager.clusters[2]");
        let timeout = added.replace(r#""name": "e","#, r#""name": "e", "connect_timeout": "1s","#);
        assert_eq!(reload_blockers(&started, &parsed(&timeout), &own).len(), 1);
    }

    #[test]
    fn a_reload_that_changes_what_envoy_itself_holds_is_refused_with_the_path() {
        let started = parsed(CONFIG);
        let own: HashSet<String> = ["a", "b", "c", "d", ADDED_CLUSTERS].iter().map(|s| s.to_string()).collect();
        let idle = CONFIG.replace(r#""idle_timeout": "90s""#, r#""idle_timeout": "91s""#);
        let r = reload_blockers(&started, &parsed(&idle), &own);
        assert_eq!(r.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["cluster_manager.clusters[0]"], "{r:?}");
        let moved = CONFIG.replace("127.0.0.1:1\"", "127.0.0.1:9\"");
        let r = reload_blockers(&started, &parsed(&moved), &own);
        assert_eq!(r.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["servers[0].listeners[0]"], "{r:?}");
    }
}
