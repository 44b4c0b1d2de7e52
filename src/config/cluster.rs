//! `cluster_manager.clusters[]`: hosts and load balancing.

use super::fields::object;
use super::listener::tls_off;
use super::reader::{is_empty, unknown, Diagnostics, Obj};
use super::{parse_address, ClusterConfig, HostConfig, LbType, DEFAULT_CONNECT_TIMEOUT};
use std::collections::HashSet;

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
const OTHER_TYPES: &[&str] = &["STRICT_DNS", "ORIGINAL_DST"];

/// MOSN clamps host weights into this range.
const MIN_WEIGHT: u64 = 1;
const MAX_WEIGHT: u64 = 128;

pub(super) fn parse(mut c: Obj<'_>, d: &mut Diagnostics) -> Option<ClusterConfig> {
    let errors = d.error_count();
    let path = c.path().to_string();
    let name = c.required_string("name", d);
    if let Some(t) = c.string("type", d) {
        let t = t.to_ascii_uppercase();
        let t = t.as_str();
        if OTHER_TYPES.contains(&t) {
            d.error(c.field_path("type"), format!("cluster type \"{t}\" is not supported yet (SIMPLE, STATIC, DYNAMIC, EDS are)"));
        } else if !STATIC_TYPES.contains(&t) {
            let known: Vec<&str> = STATIC_TYPES.iter().chain(OTHER_TYPES).copied().filter(|t| !t.is_empty()).collect();
            d.error(c.field_path("type"), unknown("cluster type", t, &known));
        }
    }
    let lb_type = parse_lb_type(&mut c, d);
    // MOSN: absent or "0s" is its 10 s default.
    let connect_timeout = c.duration("connect_timeout", d).filter(|t| !t.is_zero()).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    tls_off(&mut c, "tls_context", d);
    if c.boolean("cluster_manager_tls", d) == Some(true) {
        d.error(c.field_path("cluster_manager_tls"), "true: TLS to upstreams is not supported yet");
    }
    health_check_off(&mut c, d);
    circuit_breakers_off(&mut c, d);
    let mut hosts = Vec::new();
    let mut seen = HashSet::new();
    for h in c.objects("hosts", object::HOST, d) {
        if let Some(host) = parse_host(h, &mut seen, d) {
            hosts.push(host);
        }
    }
    c.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(ClusterConfig {
        path,
        name: name?.to_string(),
        lb: super::LbConfig { lb_type, ..Default::default() },
        connect_timeout,
        idle_timeout: None,
        hosts,
        subset: None,
        limits: Default::default(),
        health_check: None,
    })
}

/// MOSN runs a health checker only when `health_check.service_name` is set; without it the
/// block changes nothing and is accepted.
fn health_check_off(c: &mut Obj<'_>, d: &mut Diagnostics) {
    let path = c.field_path("health_check");
    let Some(v) = c.raw("health_check") else { return };
    match v.get("service_name").and_then(|s| s.as_str()) {
        Some(name) if !name.is_empty() => {
            d.error(path, "is not supported yet (active health checks; MOSN runs them when service_name is set)")
        }
        _ => d.note(path, "has no service_name, so MOSN runs no health check either"),
    }
}

/// `circuit_breakers` (an array; MOSN reads `[0]`) with every limit 0 means unlimited.
fn circuit_breakers_off(c: &mut Obj<'_>, d: &mut Diagnostics) {
    let path = c.field_path("circuit_breakers");
    let Some(v) = c.raw("circuit_breakers") else { return };
    let limited = match v {
        serde_json::Value::Array(a) => a.first().is_some_and(|t| t.as_object().is_some_and(|o| o.values().any(|v| !is_empty(v)))),
        _ => {
            d.error(path, "expected an array (MOSN's circuit_breakers is [{max_connections, ...}])");
            return;
        }
    };
    if limited {
        d.error(path, "is not supported yet (circuit breaker limits)");
    }
}

fn parse_lb_type(c: &mut Obj<'_>, d: &mut Diagnostics) -> LbType {
    match c.string("lb_type", d).unwrap_or("") {
        "LB_ROUNDROBIN" | "" => LbType::RoundRobin,
        "LB_RANDOM" => LbType::Random,
        other => {
            let msg = if LB_TYPES.contains(&other) {
                format!("lb_type \"{other}\" is not supported yet (LB_ROUNDROBIN, LB_RANDOM are)")
            } else {
                unknown("lb_type", other, LB_TYPES)
            };
            d.error(c.field_path("lb_type"), msg);
            LbType::RoundRobin
        }
    }
}

fn parse_host(mut h: Obj<'_>, seen: &mut HashSet<std::net::SocketAddr>, d: &mut Diagnostics) -> Option<HostConfig> {
    let apath = h.field_path("address");
    let address = h.required_string("address", d).and_then(|a| parse_address(a, &apath, d));
    if let Some(a) = address {
        if !seen.insert(a) {
            d.error(apath.clone(), format!("\"{a}\" is listed twice in this cluster"));
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
    Some(HostConfig { address: address?, hostname, weight, metadata })
}
