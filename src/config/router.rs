//! `servers[].routers[]`: virtual hosts and routes.

use super::fields::object;
use super::reader::{index, Diagnostics, Obj};
use super::{ForwardConfig, HeaderMatcherConfig, PathMatchConfig, RetryPolicyConfig, RouteActionConfig, RouteConfig, RouteMatchConfig};
use super::{RouterConfig, VirtualHostConfig};

pub(super) fn parse(mut r: Obj<'_>, d: &mut Diagnostics) -> Option<RouterConfig> {
    let path = r.path().to_string();
    let name = r.required_string("router_config_name", d).map(str::to_string);
    let mut virtual_hosts = Vec::new();
    for vh in r.objects("virtual_hosts", object::VIRTUAL_HOST, d) {
        virtual_hosts.push(parse_virtual_host(vh, d));
    }
    if virtual_hosts.is_empty() && !r.has("router_configs") {
        d.error(r.field_path("virtual_hosts"), "is required (at least one virtual host)");
    }
    r.finish(d);
    Some(RouterConfig { path, router_config_name: name?, virtual_hosts })
}

fn parse_virtual_host(mut vh: Obj<'_>, d: &mut Diagnostics) -> VirtualHostConfig {
    let errors = d.error_count();
    let path = vh.path().to_string();
    let name = vh.string("name", d).unwrap_or("").to_string();
    let mut domains = Vec::new();
    let domains_path = vh.field_path("domains");
    if let Some(ds) = vh.array("domains", d) {
        for (i, dv) in ds.iter().enumerate() {
            match dv.as_str() {
                Some(s) if !s.is_empty() => domains.push(s.to_ascii_lowercase()),
                _ => d.error(index(&domains_path, i), "expected a non-empty string"),
            }
        }
    }
    if domains.is_empty() && d.error_count() == errors {
        // MOSN registers no domain for it, so it could never be chosen.
        d.error(domains_path, "needs at least one domain (\"*\" serves any Host)");
    }
    let routers = vh.objects("routers", object::ROUTE, d).into_iter().filter_map(|rt| parse_route(rt, d)).collect();
    vh.finish(d);
    VirtualHostConfig { path, name, domains, routers }
}

fn parse_route(mut rt: Obj<'_>, d: &mut Diagnostics) -> Option<RouteConfig> {
    let path = rt.path().to_string();
    let errors = d.error_count();
    let matcher = match rt.object("match", object::MATCH, d) {
        Some(m) => parse_match(m, d),
        None => {
            if !rt.has("match") {
                d.error(rt.field_path("match"), "is required");
            }
            RouteMatchConfig::default()
        }
    };
    let actions: Vec<&str> = ["route", "direct_response", "redirect"].into_iter().filter(|k| rt.has(k)).collect();
    if actions.len() > 1 {
        d.error(path.clone(), format!("has {} and {}: a route takes one action", actions[0], actions[1]));
    }
    let action = match actions.first().copied() {
        Some("route") => rt.object("route", object::ROUTE_ACTION, d).and_then(|o| parse_forward(o, d)).map(RouteActionConfig::Forward),
        Some("direct_response") => rt.object("direct_response", object::DIRECT_RESPONSE, d).and_then(|dr| parse_direct_response(dr, d)),
        // `redirect` stays unread: the field table refuses it ("not supported yet").
        Some(_) => None,
        None => {
            d.error(path.clone(), "needs \"route\", \"direct_response\" or \"redirect\"");
            None
        }
    };
    rt.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(RouteConfig { path, matcher, action: action? })
}

/// `match`: at most one of `prefix` / `path` / `regex`, none empty; then `headers`.
fn parse_match(mut m: Obj<'_>, d: &mut Diagnostics) -> RouteMatchConfig {
    let mut found = Vec::new();
    for key in ["prefix", "path", "regex"] {
        if let Some(v) = m.string(key, d) {
            if v.is_empty() {
                d.error(m.field_path(key), "must not be empty (leave it out for a route that matches any path)");
            } else {
                found.push((key, v.to_string()));
            }
        }
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
        d.error(m.path().to_string(), format!("has {}: set only one of prefix, path, regex", names.join(" and ")));
    }
    // MOSN's precedence when several are set: prefix, then path, then regex.
    let path = match found.into_iter().next() {
        None => PathMatchConfig::Any,
        Some(("prefix", v)) => PathMatchConfig::Prefix(v),
        Some(("path", v)) => PathMatchConfig::Path(v),
        Some((_, v)) => PathMatchConfig::Regex(v, m.field_path("regex")),
    };
    let headers = parse_header_matchers(&mut m, object::MATCH_HEADER, d);
    m.finish(d);
    RouteMatchConfig { path, headers }
}

/// `headers[] {name, value, regex}` of the object `o`, read as `schema`.
pub(crate) fn parse_header_matchers(o: &mut Obj<'_>, schema: &'static str, d: &mut Diagnostics) -> Vec<HeaderMatcherConfig> {
    let mut out = Vec::new();
    for mut h in o.objects("headers", schema, d) {
        let name = h.required_string("name", d);
        let value = h.string("value", d).unwrap_or("");
        let regex = h.boolean("regex", d).unwrap_or(false);
        let path = h.path().to_string();
        h.finish(d);
        if let Some(name) = name {
            out.push(HeaderMatcherConfig { path, name: name.to_string(), value: value.to_string(), regex });
        }
    }
    out
}

fn parse_direct_response(mut dr: Obj<'_>, d: &mut Diagnostics) -> Option<RouteActionConfig> {
    let status = if dr.has("status") {
        dr.uint("status", 100, 599, d)
    } else {
        d.error(dr.field_path("status"), "is required");
        None
    };
    let body = dr.string("body", d).unwrap_or("").to_string();
    dr.finish(d);
    Some(RouteActionConfig::DirectResponse { status: status? as u16, body })
}

fn parse_forward(mut o: Obj<'_>, d: &mut Diagnostics) -> Option<ForwardConfig> {
    let errors = d.error_count();
    let mut clusters = Vec::new();
    let cluster_name = o.string("cluster_name", d).filter(|s| !s.is_empty()).map(str::to_string);
    let cluster_name_path = o.field_path("cluster_name");
    let weighted = o.has("weighted_clusters");
    for mut w in o.objects("weighted_clusters", object::WEIGHTED_CLUSTERS, d) {
        if let Some(mut c) = w.object("cluster", object::WEIGHTED_CLUSTER, d) {
            let name = c.required_string("name", d);
            let weight = c.uint("weight", 0, u32::MAX as u64, d).unwrap_or(0) as u32;
            let name_path = c.field_path("name");
            c.finish(d);
            if let Some(name) = name {
                clusters.push((name.to_string(), weight, name_path));
            }
        }
        w.finish(d);
    }
    // MOSN: a weighted list wins over cluster_name.
    if weighted && cluster_name.is_some() {
        d.note(cluster_name_path.clone(), "cluster_name is not used when weighted_clusters is set (as in MOSN)");
    }
    if !weighted {
        if let Some(name) = cluster_name {
            clusters.push((name, 1, cluster_name_path.clone()));
        }
    }
    if clusters.is_empty() && d.error_count() == errors {
        d.error(cluster_name_path, "is required (or weighted_clusters)");
    } else if weighted && !clusters.is_empty() && clusters.iter().all(|(_, w, _)| *w == 0) {
        d.error(o.field_path("weighted_clusters"), "all weights are 0");
    }
    let timeout = o.duration("timeout", d);
    if let Some(p) = o.string("upstream_protocol", d).filter(|p| !p.is_empty()) {
        super::listener::http1_only(p, &o.field_path("upstream_protocol"), d);
    }
    let retry_policy = o.object("retry_policy", object::RETRY_POLICY, d).map(|rp| parse_retry_policy(rp, d));
    o.finish(d);
    (d.error_count() == errors).then_some(ForwardConfig { clusters, timeout, retry_policy })
}

fn parse_retry_policy(mut rp: Obj<'_>, d: &mut Diagnostics) -> RetryPolicyConfig {
    let retry_on = rp.boolean("retry_on", d).unwrap_or(false);
    let num_retries = rp.uint("num_retries", 0, 100, d).unwrap_or(3) as u32;
    let retry_timeout = rp.duration("retry_timeout", d);
    let mut status_codes = Vec::new();
    let codes_path = rp.field_path("status_codes");
    if let Some(arr) = rp.array("status_codes", d) {
        for (i, v) in arr.iter().enumerate() {
            match v.as_u64() {
                Some(n) if (100..=599).contains(&n) => status_codes.push(n as u16),
                _ => d.error(index(&codes_path, i), format!("{v} is not an HTTP status (100..=599)")),
            }
        }
    }
    rp.finish(d);
    RetryPolicyConfig { retry_on, num_retries, retry_timeout, status_codes }
}
