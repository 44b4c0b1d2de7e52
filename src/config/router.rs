//! `servers[].routers[]`: virtual hosts and routes.

use super::fields::object;
use super::reader::{index, Diagnostics, Obj};
use super::{ForwardConfig, HeaderMatcherConfig, PathMatchConfig, RetryPolicyConfig, RouteActionConfig, RouteConfig, RouteMatchConfig};
use super::{
    HashPolicyConfig, HeaderAddConfig, HeaderEditsConfig, MirrorPolicyConfig, RedirectConfig, RouterConfig, VariableMatcherConfig,
    VirtualHostConfig, WeightedClusterConfig,
};

/// Redirect codes MOSN accepts.
const REDIRECT_CODES: &[u16] = &[301, 302, 303, 307, 308];

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
    let headers = parse_header_edits(&mut r, d);
    r.finish(d);
    Some(RouterConfig { path, router_config_name: name?, virtual_hosts, headers })
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
    let headers = parse_header_edits(&mut vh, d);
    vh.finish(d);
    VirtualHostConfig { path, name, domains, routers, headers }
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
        Some("route") => {
            rt.object("route", object::ROUTE_ACTION, d).and_then(|o| parse_forward(o, d)).map(|f| RouteActionConfig::Forward(Box::new(f)))
        }
        Some("direct_response") => rt.object("direct_response", object::DIRECT_RESPONSE, d).and_then(|dr| parse_direct_response(dr, d)),
        Some(_) => rt.object("redirect", object::REDIRECT, d).and_then(|o| parse_redirect(o, d)).map(RouteActionConfig::Redirect),
        None => {
            d.error(path.clone(), "needs \"route\", \"direct_response\" or \"redirect\"");
            None
        }
    };
    let per_filter_config = parse_per_filter_config(&mut rt, d);
    let mirror = rt.object("request_mirror_policies", object::MIRROR_POLICY, d).and_then(|mut m| {
        let cluster_path = m.field_path("cluster");
        let cluster = m.required_string("cluster", d).map(str::to_string);
        // MOSN: a percent above 100 always mirrors.
        let percent = m.uint("percent", 0, u64::from(u32::MAX), d).unwrap_or(0).min(100) as u32;
        m.finish(d);
        Some(MirrorPolicyConfig { cluster: cluster?, cluster_path, percent })
    });
    rt.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(RouteConfig { path, matcher, action: action?, per_filter_config, mirror })
}

/// `per_filter_config {"<filter type>": {config}}`; the filter reads the config when the
/// router is built.
fn parse_per_filter_config(rt: &mut Obj<'_>, d: &mut Diagnostics) -> Vec<(String, serde_json::Value, String)> {
    let path = rt.field_path("per_filter_config");
    match rt.raw("per_filter_config") {
        None => Vec::new(),
        Some(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone(), format!("{path}.{k}"))).collect(),
        Some(other) => {
            d.error(path, format!("expected an object of filter configs by type, found {other}"));
            Vec::new()
        }
    }
}

/// `redirect {response_code, path_redirect, host_redirect, scheme_redirect}` with MOSN's
/// checks: the code is 301 (default), 302, 303, 307 or 308; the scheme is a URI scheme.
fn parse_redirect(mut o: Obj<'_>, d: &mut Diagnostics) -> Option<RedirectConfig> {
    let errors = d.error_count();
    let code_path = o.field_path("response_code");
    let response_code = match o.uint("response_code", 0, 999, d).unwrap_or(0) as u16 {
        0 => 301,
        c if REDIRECT_CODES.contains(&c) => c,
        c => {
            d.error(code_path, format!("{c} is not a redirect code (301, 302, 303, 307, 308)"));
            301
        }
    };
    let path = o.string("path_redirect", d).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(p) = &path {
        if !p.starts_with('/') {
            d.error(o.field_path("path_redirect"), format!("\"{p}\" must start with /"));
        }
    }
    let host = o.string("host_redirect", d).filter(|s| !s.is_empty()).map(str::to_string);
    let scheme = o.string("scheme_redirect", d).filter(|s| !s.is_empty()).map(str::to_ascii_lowercase);
    if let Some(sc) = &scheme {
        let ok = sc.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && sc.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if !ok {
            d.error(o.field_path("scheme_redirect"), format!("\"{sc}\" is not a URI scheme"));
        }
    }
    o.finish(d);
    (d.error_count() == errors).then_some(RedirectConfig { response_code, path, host, scheme })
}

/// The four header edit lists of a route action, virtual host or router.
fn parse_header_edits(o: &mut Obj<'_>, d: &mut Diagnostics) -> HeaderEditsConfig {
    HeaderEditsConfig {
        request_add: parse_header_adds(o, "request_headers_to_add", d),
        request_remove: parse_header_removes(o, "request_headers_to_remove", d),
        response_add: parse_header_adds(o, "response_headers_to_add", d),
        response_remove: parse_header_removes(o, "response_headers_to_remove", d),
    }
}

fn parse_header_adds(o: &mut Obj<'_>, key: &'static str, d: &mut Diagnostics) -> Vec<HeaderAddConfig> {
    let mut out = Vec::new();
    for mut a in o.objects(key, object::HEADER_ADD, d) {
        let append = a.boolean("append", d).unwrap_or(true);
        if let Some(mut h) = a.object("header", object::HEADER_VALUE, d) {
            let k = h.required_string("key", d);
            if let Some(k) = k {
                if !crate::headers::valid_name(k) {
                    d.error(h.field_path("key"), format!("\"{k}\" is not a valid header name"));
                }
            }
            let value = h.string("value", d).unwrap_or("").to_string();
            h.finish(d);
            if let Some(k) = k {
                out.push(HeaderAddConfig { key: k.to_ascii_lowercase(), value, append });
            }
        } else if !a.has("header") {
            d.error(a.field_path("header"), "is required ({\"key\", \"value\"})");
        }
        a.finish(d);
    }
    out
}

fn parse_header_removes(o: &mut Obj<'_>, key: &'static str, d: &mut Diagnostics) -> Vec<String> {
    let path = o.field_path(key);
    let mut out = Vec::new();
    for (i, v) in o.array(key, d).into_iter().flatten().enumerate() {
        match v.as_str() {
            Some(s) if crate::headers::valid_name(s) => out.push(s.to_ascii_lowercase()),
            _ => d.error(index(&path, i), format!("{v} is not a header name")),
        }
    }
    out
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
    let variables = parse_variables(&mut m, d);
    if !variables.is_empty() && path != PathMatchConfig::Any {
        // MOSN would ignore the variables here (the path matcher decides the rule's kind).
        d.error(m.path().to_string(), "has a path matcher and variables: set only one of prefix, path, regex, variables");
    }
    m.finish(d);
    RouteMatchConfig { path, headers, variables }
}

/// `variables[] {name, value, regex, model}`; the names are checked when the router is built.
fn parse_variables(m: &mut Obj<'_>, d: &mut Diagnostics) -> Vec<VariableMatcherConfig> {
    let mut out = Vec::new();
    for mut v in m.objects("variables", object::MATCH_VARIABLE, d) {
        let path = v.path().to_string();
        let name = v.required_string("name", d).map(str::to_string);
        let value = v.string("value", d).filter(|s| !s.is_empty()).map(str::to_string);
        let regex = v.string("regex", d).filter(|s| !s.is_empty()).map(str::to_string);
        let or = match v.string("model", d).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("and") => false,
            Some("or") => true,
            Some(other) => {
                d.error(v.field_path("model"), format!("\"{other}\" is not a model (and, or)"));
                false
            }
        };
        v.finish(d);
        if let Some(name) = name {
            out.push(VariableMatcherConfig { path, name, value, regex, or });
        }
    }
    out
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
    let cluster_header = o.string("cluster_header", d).filter(|s| !s.is_empty()).map(str::to_ascii_lowercase);
    let cluster_name_path = o.field_path("cluster_name");
    let weighted = o.has("weighted_clusters");
    for mut w in o.objects("weighted_clusters", object::WEIGHTED_CLUSTERS, d) {
        if let Some(mut c) = w.object("cluster", object::WEIGHTED_CLUSTER, d) {
            let name = c.required_string("name", d);
            let weight = c.uint("weight", 0, u32::MAX as u64, d).unwrap_or(0) as u32;
            let name_path = c.field_path("name");
            let metadata_match = metadata_match(&mut c, d);
            c.finish(d);
            if let Some(name) = name {
                clusters.push(WeightedClusterConfig { name: name.to_string(), weight, name_path, metadata_match });
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
            clusters.push(WeightedClusterConfig { name, weight: 1, name_path: cluster_name_path.clone(), metadata_match: Vec::new() });
        }
    }
    if clusters.is_empty() && cluster_header.is_none() && d.error_count() == errors {
        d.error(cluster_name_path, "is required (or weighted_clusters, or cluster_header)");
    } else if weighted && !clusters.is_empty() && clusters.iter().all(|w| w.weight == 0) {
        d.error(o.field_path("weighted_clusters"), "all weights are 0");
    }
    let timeout = o.duration("timeout", d);
    if let Some(p) = o.string("upstream_protocol", d).filter(|p| !p.is_empty()) {
        super::listener::http1_only(p, &o.field_path("upstream_protocol"), d);
    }
    let retry_policy = o.object("retry_policy", object::RETRY_POLICY, d).map(|rp| parse_retry_policy(rp, d));
    let prefix_rewrite = o.string("prefix_rewrite", d).filter(|s| !s.is_empty()).map(str::to_string);
    let regex_rewrite = o.object("regex_rewrite", object::REGEX_REWRITE, d).and_then(|rr| parse_regex_rewrite(rr, d));
    let host_rewrite = o.string("host_rewrite", d).filter(|s| !s.is_empty()).map(str::to_string);
    let host_rewrite_header = o.string("auto_host_rewrite_header", d).filter(|s| !s.is_empty()).map(str::to_ascii_lowercase);
    let headers = parse_header_edits(&mut o, d);
    let metadata_match = metadata_match(&mut o, d);
    let hash_policy = hash_policy(&mut o, d);
    o.finish(d);
    (d.error_count() == errors).then_some(ForwardConfig {
        clusters,
        metadata_match,
        hash_policy,
        cluster_header,
        timeout,
        retry_policy,
        prefix_rewrite,
        regex_rewrite,
        host_rewrite,
        host_rewrite_header,
        headers,
    })
}

/// `metadata_match {"filter_metadata": {"mosn.lb": {k: v}}}`, sorted by key.
fn metadata_match(o: &mut Obj<'_>, d: &mut Diagnostics) -> Vec<(String, String)> {
    let Some(mut m) = o.object("metadata_match", object::METADATA_MATCH, d) else { return Vec::new() };
    let fpath = m.field_path("filter_metadata");
    let mut out = Vec::new();
    match m.raw("filter_metadata") {
        None => {}
        Some(serde_json::Value::Object(namespaces)) => {
            for (ns, v) in namespaces {
                let p = format!("{fpath}.{ns}");
                if ns != "mosn.lb" {
                    d.error(p, "only the \"mosn.lb\" namespace selects hosts");
                    continue;
                }
                match v {
                    serde_json::Value::Object(kv) => {
                        for (k, v) in kv {
                            match v.as_str() {
                                Some(s) => out.push((k.clone(), s.to_string())),
                                None => d.error(format!("{p}.{k}"), format!("expected a string, found {v}")),
                            }
                        }
                    }
                    other => d.error(p, format!("expected an object of strings, found {other}")),
                }
            }
        }
        Some(other) => d.error(fpath, format!("expected an object, found {other}")),
    }
    m.finish(d);
    out.sort();
    out
}

/// `hash_policy [{header: {key}} | {cookie: {name, path, ttl}} | {source_ip: {}}]`: MOSN
/// uses the first entry.
fn hash_policy(o: &mut Obj<'_>, d: &mut Diagnostics) -> Option<HashPolicyConfig> {
    let mut first = None;
    for (i, mut h) in o.objects("hash_policy", object::HASH_POLICY, d).into_iter().enumerate() {
        let kinds = ["header", "cookie", "source_ip"].iter().filter(|k| h.has(k)).count();
        if kinds != 1 {
            d.error(h.path().to_string(), "needs exactly one of header, cookie, source_ip");
        }
        let mut policy = None;
        if let Some(mut hd) = h.object("header", object::HASH_HEADER, d) {
            policy = hd.required_string("key", d).map(|k| HashPolicyConfig::Header(k.to_ascii_lowercase()));
            hd.finish(d);
        }
        if let Some(mut c) = h.object("cookie", object::HASH_COOKIE, d) {
            policy = c.required_string("name", d).map(|n| HashPolicyConfig::Cookie(n.to_string()));
            c.finish(d);
        }
        let sp = h.field_path("source_ip");
        match h.raw("source_ip") {
            Some(serde_json::Value::Object(m)) if m.is_empty() => policy = Some(HashPolicyConfig::SourceIp),
            Some(other) => d.error(sp, format!("expected {{}}, found {other}")),
            None => {}
        }
        if i > 0 {
            d.note(h.path().to_string(), "MOSN uses only hash_policy[0]");
        }
        h.finish(d);
        if i == 0 {
            first = policy;
        }
    }
    first
}

/// `regex_rewrite {pattern {regex}, substitution}`; MOSN applies it only when the regex is
/// longer than one character, and only without a `prefix_rewrite`.
fn parse_regex_rewrite(mut rr: Obj<'_>, d: &mut Diagnostics) -> Option<(String, String, String)> {
    let substitution = rr.string("substitution", d).unwrap_or("").to_string();
    let mut regex = None;
    if let Some(mut p) = rr.object("pattern", object::REGEX_REWRITE_PATTERN, d) {
        let path = p.field_path("regex");
        regex = p.string("regex", d).filter(|r| r.len() > 1).map(|r| (r.to_string(), path));
        p.finish(d);
    }
    rr.finish(d);
    regex.map(|(r, path)| (r, substitution, path))
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
