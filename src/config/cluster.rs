//! `cluster_manager.clusters[]`: hosts and load balancing.

use super::fields::object;
use super::reader::{unknown, Diagnostics, Obj};
use super::{
    parse_address, CircuitBreakers, ClusterConfig, DnsConfig, DnsFamily, FallbackPolicy, HealthCheckConfig, HealthCheckProtocol,
    HostConfig, HttpCheck, LbConfig, LbType, SubsetConfig, DEFAULT_CONNECT_TIMEOUT,
};
use std::collections::HashSet;
use std::time::Duration;

/// Every `lb_type` MOSN registers, for "did you mean" and "not supported yet".
const LB_TYPES: &[&str] = &[
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

/// Cluster types with a fixed host list; MOSN treats them all as SIMPLE.
const STATIC_TYPES: &[&str] = &["SIMPLE", "STATIC", "DYNAMIC", "EDS", ""];
const OTHER_TYPES: &[&str] = &["ORIGINAL_DST"];

/// MOSN clamps host weights into this range.
const MIN_WEIGHT: u64 = 1;
const MAX_WEIGHT: u64 = 128;

pub(super) fn parse(mut c: Obj<'_>, d: &mut Diagnostics) -> Option<ClusterConfig> {
    let errors = d.error_count();
    let path = c.path().to_string();
    let name = c.required_string("name", d);
    let mut strict_dns = false;
    if let Some(t) = c.string("type", d) {
        let t = t.to_ascii_uppercase();
        let t = t.as_str();
        if t == "STRICT_DNS" {
            strict_dns = true;
        } else if OTHER_TYPES.contains(&t) {
            d.error(c.field_path("type"), format!("cluster type \"{t}\" is not supported yet (SIMPLE, STATIC, DYNAMIC, EDS are)"));
        } else if !STATIC_TYPES.contains(&t) {
            let known: Vec<&str> =
                STATIC_TYPES.iter().chain(OTHER_TYPES).chain(&["STRICT_DNS"]).copied().filter(|t| !t.is_empty()).collect();
            d.error(c.field_path("type"), unknown("cluster type", t, &known));
        }
    }
    let mut lb = LbConfig { lb_type: parse_lb_type(&mut c, d), ..LbConfig::default() };
    if let Some(o) = c.object("lbconfig", object::LB_CONFIG, d) {
        parse_lbconfig(o, &mut lb, d);
    }
    // MOSN: absent or "0s" is its 10 s default.
    let connect_timeout = c.duration("connect_timeout", d).filter(|t| !t.is_zero()).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let idle_timeout = c.duration("idle_timeout", d).filter(|t| !t.is_zero());
    let tls = super::tls::parse(&mut c, "tls_context", super::tls::Side::Upstream, d);
    if c.boolean("cluster_manager_tls", d) == Some(true) {
        d.error(
            c.field_path("cluster_manager_tls"),
            "true (cluster_manager's tls_context) is not supported yet; set the cluster's tls_context",
        );
    }
    let health_check = c.object("health_check", object::HEALTH_CHECK, d).and_then(|o| parse_health_check(o, d));
    let limits = parse_circuit_breakers(&mut c, d);
    let dns = parse_dns(&mut c, strict_dns, d);
    let mut hosts = Vec::new();
    let mut seen = HashSet::new();
    for h in c.objects("hosts", object::HOST, d) {
        if let Some(host) = parse_host(h, strict_dns, &mut seen, d) {
            hosts.push(host);
        }
    }
    let subset = c.object("lb_subset_config", object::LB_SUBSET, d).and_then(|o| parse_subset(o, d));
    c.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(ClusterConfig { path, name: name?.to_string(), lb, connect_timeout, idle_timeout, hosts, subset, limits, health_check, dns, tls })
}

/// STRICT_DNS's settings; on other cluster types they change nothing (noted, as MOSN
/// ignores them there).
fn parse_dns(c: &mut Obj<'_>, strict_dns: bool, d: &mut Diagnostics) -> Option<DnsConfig> {
    if !strict_dns {
        for k in ["dns_refresh_rate", "respect_dns_ttl", "dns_lookup_family", "dns_resolvers", "dns_resolver_file", "dns_resolver_port"] {
            let p = c.field_path(k);
            if c.raw(k).is_some() {
                d.note(p, "only for STRICT_DNS clusters");
            }
        }
        return None;
    }
    // MOSN: 0 or absent is its 5 s default.
    let refresh = c.duration("dns_refresh_rate", d).filter(|t| !t.is_zero()).unwrap_or(Duration::from_secs(5));
    let fpath = c.field_path("dns_lookup_family");
    let family = match c.string("dns_lookup_family", d).unwrap_or("").to_ascii_uppercase().as_str() {
        "" | "V4_ONLY" | "V4" => DnsFamily::V4Only,
        "V6_ONLY" | "V6" => DnsFamily::V6Only,
        "AUTO" | "ALL" => DnsFamily::All,
        other => {
            d.error(fpath, unknown("dns_lookup_family", other, &["V4_ONLY", "V6_ONLY", "AUTO", "ALL"]));
            DnsFamily::V4Only
        }
    };
    if c.boolean("respect_dns_ttl", d) == Some(true) {
        d.note(c.field_path("respect_dns_ttl"), "the system resolver gives no TTL: names are resolved again every dns_refresh_rate");
    }
    for k in ["dns_resolvers", "dns_resolver_file", "dns_resolver_port"] {
        let p = c.field_path(k);
        if c.raw(k).is_some_and(|v| !super::reader::is_empty(v)) {
            d.error(p, "is not supported yet (names are resolved by the system resolver, /etc/resolv.conf)");
        }
    }
    Some(DnsConfig { refresh, family })
}

/// `lbconfig {choice_count, active_request_bias}`.
fn parse_lbconfig(mut o: Obj<'_>, lb: &mut LbConfig, d: &mut Diagnostics) {
    // 0 is "not set" (Go's zero value): MOSN's default.
    if let Some(n) = o.uint("choice_count", 0, 100, d).filter(|&n| n > 0) {
        lb.choice_count = n as u32;
    }
    let bpath = o.field_path("active_request_bias");
    if let Some(v) = o.get("active_request_bias") {
        match v.as_f64() {
            Some(b) if (0.0..=100.0).contains(&b) => lb.active_request_bias = b,
            _ => d.error(bpath, format!("expected a number in 0..=100, found {v}")),
        }
    }
    o.finish(d);
}

/// `lb_subset_config`: subsets exist only when `subset_selectors` has a selector (MOSN).
fn parse_subset(mut o: Obj<'_>, d: &mut Diagnostics) -> Option<SubsetConfig> {
    let fpath = o.field_path("fall_back_policy");
    let fall_back_policy = match o.get("fall_back_policy").map(|v| (v.as_u64(), v)) {
        None | Some((Some(0), _)) => FallbackPolicy::NoFallback,
        Some((Some(1), _)) => FallbackPolicy::AnyEndpoint,
        Some((Some(2), _)) => FallbackPolicy::DefaultSubset,
        Some((_, v)) => {
            d.error(fpath.clone(), format!("expected 0 (NO_FALLBACK), 1 (ANY_ENDPOINT) or 2 (DEFAULT_SUBSET), found {v}"));
            FallbackPolicy::NoFallback
        }
    };
    let default_subset = o.string_map("default_subset", d);
    let spath = o.field_path("subset_selectors");
    let mut selectors: Vec<Vec<String>> = Vec::new();
    if let Some(arr) = o.array("subset_selectors", d) {
        for (i, sel) in arr.iter().enumerate() {
            let p = super::reader::index(&spath, i);
            let keys: Option<Vec<String>> = sel.as_array().and_then(|a| a.iter().map(|k| k.as_str().map(str::to_string)).collect());
            match keys {
                Some(mut keys) if !keys.is_empty() && keys.iter().all(|k| !k.is_empty()) => {
                    keys.sort();
                    let n = keys.len();
                    keys.dedup();
                    if keys.len() != n {
                        d.error(p, "names a key twice");
                    } else if !selectors.contains(&keys) {
                        selectors.push(keys);
                    }
                }
                _ => d.error(p, format!("expected a non-empty array of metadata keys, found {sel}")),
            }
        }
    }
    let path = o.path().to_string();
    o.finish(d);
    if selectors.is_empty() {
        d.note(path, "has no subset_selectors, so MOSN builds no subsets either");
        return None;
    }
    if fall_back_policy == FallbackPolicy::DefaultSubset && default_subset.is_empty() {
        d.error(fpath, "2 (DEFAULT_SUBSET) needs a default_subset");
    }
    Some(SubsetConfig { fall_back_policy, default_subset, selectors })
}

/// `circuit_breakers`: an array of which MOSN reads `[0]`; 0 is unlimited.
fn parse_circuit_breakers(c: &mut Obj<'_>, d: &mut Diagnostics) -> CircuitBreakers {
    let mut limits = CircuitBreakers::default();
    let path = c.field_path("circuit_breakers");
    match c.raw("circuit_breakers") {
        None => {}
        Some(serde_json::Value::Array(a)) => {
            for (i, t) in a.iter().enumerate() {
                let Some(mut o) = Obj::open(t, super::reader::index(&path, i), object::CIRCUIT_BREAKER, d) else { continue };
                let max = |o: &mut Obj<'_>, k: &'static str, d: &mut Diagnostics| o.uint(k, 0, u64::from(u32::MAX), d).unwrap_or(0);
                let t = CircuitBreakers {
                    max_connections: max(&mut o, "max_connections", d),
                    max_requests: max(&mut o, "max_requests", d),
                    max_retries: max(&mut o, "max_retries", d),
                };
                if i == 0 {
                    limits = t;
                } else if t != CircuitBreakers::default() {
                    d.note(o.path().to_string(), "MOSN applies only circuit_breakers[0]");
                }
                o.finish(d);
            }
        }
        Some(_) => d.error(path, "expected an array (MOSN's circuit_breakers is [{max_connections, ...}])"),
    }
    limits
}

/// `health_check`: MOSN runs a checker only when `service_name` is set; without it the block
/// changes nothing and is accepted.
fn parse_health_check(mut o: Obj<'_>, d: &mut Diagnostics) -> Option<HealthCheckConfig> {
    let service_name = o.string("service_name", d).unwrap_or("").to_string();
    let protocol = o.string("protocol", d).unwrap_or("").to_string();
    let dur = |o: &mut Obj<'_>, k: &'static str, default: Duration, d: &mut Diagnostics| {
        o.duration(k, d).filter(|t| !t.is_zero()).unwrap_or(default)
    };
    let timeout = dur(&mut o, "timeout", Duration::from_secs(1), d);
    let interval = dur(&mut o, "interval", Duration::from_secs(15), d);
    let interval_jitter = dur(&mut o, "interval_jitter", Duration::from_millis(5), d);
    let initial_delay = dur(&mut o, "initial_delay_seconds", Duration::from_secs(1), d);
    let healthy_threshold = o.uint("healthy_threshold", 0, 1000, d).filter(|&n| n > 0).unwrap_or(1) as u32;
    let unhealthy_threshold = o.uint("unhealthy_threshold", 0, 1000, d).filter(|&n| n > 0).unwrap_or(1) as u32;
    let mut http = None;
    if let Some(mut cc) = o.object("check_config", object::HEALTH_CHECK_CONFIG, d) {
        if let Some(h) = cc.object("http_check_config", object::HTTP_CHECK, d) {
            http = parse_http_check(h, d);
        }
        cc.finish(d);
    }
    let path = o.path().to_string();
    o.finish(d);
    if service_name.is_empty() {
        d.note(path, "has no service_name, so MOSN runs no health check either");
        return None;
    }
    // MOSN: "Http1" checks over HTTP (with http_check_config's defaults when it is absent);
    // any other protocol is a TCP connect check.
    let protocol = if protocol == "Http1" {
        HealthCheckProtocol::Http(http.unwrap_or_else(HttpCheck::default_for_mosn))
    } else {
        HealthCheckProtocol::Tcp
    };
    Some(HealthCheckConfig {
        service_name,
        protocol,
        timeout,
        interval,
        interval_jitter,
        initial_delay,
        healthy_threshold,
        unhealthy_threshold,
    })
}

/// `check_config.http_check_config {port, path, method, scheme, domain, timeout, codes}`.
fn parse_http_check(mut h: Obj<'_>, d: &mut Diagnostics) -> Option<HttpCheck> {
    let mut check = HttpCheck::default_for_mosn();
    if let Some(p) = h.string("path", d).filter(|p| !p.is_empty()) {
        if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            d.error(h.field_path("path"), format!("\"{p}\" is not a request path (starts with /, visible ASCII)"));
        }
        check.path = p.to_string();
    }
    if let Some(m) = h.string("method", d).filter(|m| !m.is_empty()) {
        if !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            d.error(h.field_path("method"), format!("\"{m}\" is not an HTTP method"));
        }
        check.method = m.to_ascii_uppercase();
    }
    if let Some(s) = h.string("scheme", d).filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("http")) {
        d.error(h.field_path("scheme"), format!("\"{s}\": only http health checks are supported yet"));
    }
    check.domain = h.string("domain", d).filter(|s| !s.is_empty()).map(str::to_string);
    check.port = h.uint("port", 0, 65535, d).filter(|&p| p > 0).map(|p| p as u16);
    check.timeout = h.duration("timeout", d).filter(|t| !t.is_zero());
    let cpath = h.field_path("codes");
    if let Some(codes) = h.array("codes", d) {
        let mut out = Vec::new();
        for (i, v) in codes.iter().enumerate() {
            let p = super::reader::index(&cpath, i);
            let start = v.get("start").and_then(serde_json::Value::as_u64);
            let end = v.get("end").and_then(serde_json::Value::as_u64);
            let extra = v.as_object().is_some_and(|o| o.keys().any(|k| k != "start" && k != "end"));
            match (start, end) {
                (Some(s), Some(e)) if (100..=599).contains(&s) && (s..=599).contains(&e) && !extra => out.push((s as u16, e as u16)),
                _ => d.error(p, format!("expected {{\"start\": 100..=599, \"end\": start..=599}}, found {v}")),
            }
        }
        if !out.is_empty() {
            check.codes = out;
        }
    }
    h.finish(d);
    Some(check)
}

/// `name:port` where name is a DNS name (not an IP), for STRICT_DNS.
fn dns_name(a: &str) -> Option<(&str, u16)> {
    let (name, port) = a.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    valid.then_some((name, port))
}

fn parse_lb_type(c: &mut Obj<'_>, d: &mut Diagnostics) -> LbType {
    let got = c.string("lb_type", d).unwrap_or("");
    if got.is_empty() {
        return LbType::RoundRobin;
    }
    if let Some(t) = LbType::ALL.iter().find(|t| t.name() == got) {
        return *t;
    }
    let msg = if LB_TYPES.contains(&got) { format!("lb_type \"{got}\" is not supported yet") } else { unknown("lb_type", got, LB_TYPES) };
    d.error(c.field_path("lb_type"), msg);
    LbType::RoundRobin
}

fn parse_host(mut h: Obj<'_>, strict_dns: bool, seen: &mut HashSet<String>, d: &mut Diagnostics) -> Option<HostConfig> {
    let apath = h.field_path("address");
    let raw = h.required_string("address", d);
    // STRICT_DNS: `name:port` (an IP is used as it is).
    let dns = raw.filter(|_| strict_dns).and_then(|a| dns_name(a)).map(|(n, p)| (n.to_ascii_lowercase(), p));
    let (address, dns_name) = match dns {
        Some((name, port)) if port != 0 => (Some(std::net::SocketAddr::from(([0, 0, 0, 0], port))), Some(name)),
        _ => (raw.and_then(|a| parse_address(a, &apath, d)), None),
    };
    if let Some(key) =
        dns_name.as_ref().map(|n| format!("{n}:{}", address.map_or(0, |a| a.port()))).or_else(|| address.map(|a| a.to_string()))
    {
        if !seen.insert(key.clone()) {
            d.error(apath.clone(), format!("\"{key}\" is listed twice in this cluster"));
        }
    }
    let hostname = h.string("hostname", d).filter(|s| !s.is_empty()).map(str::to_string);
    // MOSN clamps the weight into 1..=128 (0 or absent is 1).
    let wpath = h.field_path("weight");
    let weight = match h.get("weight") {
        None => MIN_WEIGHT,
        Some(v) => match v.as_u64() {
            Some(w) => w.clamp(MIN_WEIGHT, MAX_WEIGHT),
            None => {
                d.error(wpath, format!("expected an integer, found {v}"));
                MIN_WEIGHT
            }
        },
    } as u32;
    let mut metadata = Vec::new();
    if let Some(mut md) = h.object("metadata", object::HOST_METADATA, d) {
        let fm_path = md.field_path("filter_metadata");
        match md.raw("filter_metadata") {
            Some(serde_json::Value::Object(namespaces)) => {
                for (ns, v) in namespaces {
                    let ns_path = format!("{fm_path}.{ns}");
                    if ns != "mosn.lb" {
                        d.note(ns_path, "only the \"mosn.lb\" metadata namespace is used (load balancing)");
                        continue;
                    }
                    match v {
                        serde_json::Value::Object(kv) => {
                            for (k, v) in kv {
                                match v.as_str() {
                                    Some(s) => metadata.push((k.clone(), s.to_string())),
                                    None => d.error(format!("{ns_path}.{k}"), format!("expected a string, found {v}")),
                                }
                            }
                        }
                        other => d.error(ns_path, format!("expected an object of strings, found {other}")),
                    }
                }
            }
            Some(other) => d.error(fm_path, format!("expected an object, found {other}")),
            None => {}
        }
        md.finish(d);
    }
    metadata.sort();
    h.finish(d);
    Some(HostConfig { address: address?, dns_name, hostname, weight, metadata })
}
