//! `router`: a random route table (virtual hosts with domains, routes with prefix / path /
//! regex and header tests, forward / direct response / redirect actions) and random
//! requests, built from the input with `arbitrary`.
//!
//! Properties: the table loads (the generator only writes valid tables); routing never
//! panics; the stream's decision (virtual host, route, cluster or local reply status) is the
//! one of a model written here from MOSN's rules (virtual host by `Host`: exact host and
//! port, exact host with port `*`, longest wildcard suffix with the port, then with `*`,
//! then the default; then the first route whose path test and header tests all hold, on
//! the decoded, normalized path); and `mosn-ext route-check` (`route_check::run`) gives
//! the same answer for the same request.

use arbitrary::{Arbitrary, Unstructured};
use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine};
use serde_json::{json, Value};

const DOMAINS: &[&str] = &[
    "*",
    "*:*",
    "a.com",
    "A.com:8080",
    "a.com:*",
    "*.a.com",
    "*.a.com:8080",
    "*.b.a.com",
    "*.B.a.com:*",
    "b.com",
    "*.com:*",
    "*:80",
    "[::1]",
    "[::1]:8080",
    "*a.com",
    "c.com:80",
];
const PREFIXES: &[&str] = &["/", "/a", "/a/", "/ab", "/A", "/a/b", "/%61", "/\u{e9}", "a"];
const PATHS: &[&str] = &["/a", "/A/B", "/a/b/", "/", "/x", "/a?b"];
const REGEXES: &[&str] = &["^/a", "b$", "^/[a-z]+$", "a.b", "^/$", "(?i)^/A", "\u{e9}", "/"];
const HNAMES: &[&str] = &["x-a", "uid", "service", "method", "host", "Service"];
const HVALUES: &[&str] = &["1", "2", ".*", "GET", "POST", "^[0-9]+$", "a|b", "", "a.com"];
const STATUSES: &[u16] = &[200, 204, 403, 503, 599, 100];
const REDIRECTS: &[u16] = &[301, 302, 303, 307, 308];
const PIECES: &[&str] = &["/", "a", "b", "A", "..", ".", "%2e", "%2F", "%61", "//", "?q=1", "#f", "x", "\u{e9}", "%", " "];
const AUTHORITIES: &[&str] = &[
    "a.com",
    "A.COM",
    "a.com:8080",
    "x.a.com",
    "x.a.com:8080",
    "y.b.a.com",
    "y.b.a.com:9",
    "b.com",
    "c.com:80",
    "[::1]",
    "[::1]:8080",
    "a.com:*",
    "",
    "a:b:c",
    "x.com",
    "xa.com",
    "q.com:80",
];
const METHODS: &[&str] = &["GET", "POST", "get"];

#[derive(Arbitrary, Debug)]
enum PathSpec {
    Any,
    Prefix(u8),
    Exact(u8),
    Regex(u8),
}

#[derive(Arbitrary, Debug)]
struct HeaderSpec {
    name: u8,
    value: u8,
    regex: bool,
}

#[derive(Arbitrary, Debug)]
enum ActionSpec {
    Cluster(u8),
    Direct(u8),
    Redirect(u8),
}

#[derive(Arbitrary, Debug)]
struct RouteSpec {
    path: PathSpec,
    headers: Vec<HeaderSpec>,
    action: ActionSpec,
}

#[derive(Arbitrary, Debug)]
struct VHostSpec {
    domains: Vec<u8>,
    routes: Vec<RouteSpec>,
}

#[derive(Arbitrary, Debug)]
enum HostSpec {
    None,
    Authority(u8),
    HostHeader(u8),
}

#[derive(Arbitrary, Debug)]
struct RequestSpec {
    method: u8,
    path: Vec<u8>,
    host: HostSpec,
    headers: Vec<(u8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    vhosts: Vec<VHostSpec>,
    requests: Vec<RequestSpec>,
}

fn pick<T: Copy>(pool: &[T], i: u8) -> T {
    pool[usize::from(i) % pool.len()]
}

// === The model ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    None,
    Literal(String),
    Any,
}

fn split(s: &str) -> Option<(String, Port)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        let port = if after.is_empty() { None } else { Some(after.strip_prefix(':')?) };
        (&rest[..close], port)
    } else {
        match s.find(':') {
            None => (s, None),
            Some(i) if !s[i + 1..].contains(':') => (&s[..i], Some(&s[i + 1..])),
            Some(_) => return None,
        }
    };
    let port = match port {
        None => Port::None,
        Some("*") => Port::Any,
        Some(p) => Port::Literal(p.to_string()),
    };
    Some((host.to_string(), port))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Domain {
    Default,
    Exact(String, Port),
    /// The suffix after the leading `*`.
    Wildcard(String, Port),
}

fn domain(d: &str) -> Domain {
    let (host, port) = split(&d.to_ascii_lowercase()).expect("the pool has valid domains");
    if host == "*" && port != Port::Literal(String::new()) && matches!(port, Port::None | Port::Any) {
        Domain::Default
    } else if let Some(sfx) = host.strip_prefix('*') {
        Domain::Wildcard(sfx.to_string(), port)
    } else {
        Domain::Exact(host, port)
    }
}

/// The virtual host (index) serving `authority`, by MOSN's priorities.
fn model_vhost(domains: &[(Domain, usize)], authority: Option<&[u8]>) -> Option<usize> {
    let default = domains.iter().find(|(d, _)| *d == Domain::Default).map(|(_, i)| *i);
    if domains.iter().all(|(d, _)| *d == Domain::Default) {
        return default;
    }
    let a = std::str::from_utf8(authority?).ok().filter(|a| !a.is_empty())?.to_ascii_lowercase();
    let (host, port) = split(&a)?;
    if port == Port::Any {
        return None;
    }
    let exact = |want: &Port| domains.iter().find(|(d, _)| *d == Domain::Exact(host.clone(), want.clone())).map(|(_, i)| *i);
    let wildcard = |any: bool| {
        domains
            .iter()
            .filter_map(|(d, i)| match d {
                Domain::Wildcard(sfx, p) if (if any { *p == Port::Any } else { *p == port }) => Some((sfx, *i)),
                _ => None,
            })
            .filter(|(sfx, _)| sfx.len() < host.len() && host.ends_with(sfx.as_str()))
            .max_by_key(|(sfx, _)| sfx.len())
            .map(|(_, i)| i)
    };
    exact(&port).or_else(|| exact(&Port::Any)).or_else(|| wildcard(false)).or_else(|| wildcard(true)).or(default)
}

fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes())
}

/// A route as the model sees it.
struct ModelRoute {
    path: Option<(u8, String)>,
    headers: Vec<(String, String, bool)>,
    action: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Cluster(String),
    Reply(u16),
}

fn route_matches(r: &ModelRoute, path: &[u8], headers: &[(String, String)]) -> bool {
    let path_ok = match &r.path {
        None => true,
        Some((0, p)) => path.starts_with(p.as_bytes()),
        Some((1, p)) => path.eq_ignore_ascii_case(p.as_bytes()),
        Some((_, re)) => regex::bytes::Regex::new(re).is_ok_and(|re| re.is_match(path)),
    };
    if !path_ok {
        return false;
    }
    // MOSN's legacy rule: a lone `service: .*` header test matches any non-empty value.
    if let (None, [(n, v, false)]) = (&r.path, &r.headers[..]) {
        if n.eq_ignore_ascii_case("service") && v == ".*" {
            return first(headers, "service").is_some_and(|v| !v.is_empty());
        }
    }
    r.headers.iter().all(|(n, v, regex)| {
        let n = if n.eq_ignore_ascii_case("method") { ":method".to_string() } else { n.to_ascii_lowercase() };
        match first(headers, &n) {
            None => false,
            Some(have) if *regex => regex::bytes::Regex::new(v).is_ok_and(|re| re.is_match(have)),
            Some(have) => have == v.as_bytes(),
        }
    })
}

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else { return };
    // The table, as JSON and as the model.
    let mut used: Vec<Domain> = Vec::new();
    let mut domains: Vec<(Domain, usize)> = Vec::new();
    let mut vhosts_json = Vec::new();
    let mut model: Vec<Vec<ModelRoute>> = Vec::new();
    for vh in input.vhosts.iter().take(4) {
        let mut ds = Vec::new();
        for &d in vh.domains.iter().take(3) {
            let text = pick(DOMAINS, d);
            let parsed = domain(text);
            if !used.contains(&parsed) {
                used.push(parsed.clone());
                domains.push((parsed, vhosts_json.len()));
                ds.push(text);
            }
        }
        if ds.is_empty() {
            continue;
        }
        let mut routes_json = Vec::new();
        let mut routes = Vec::new();
        for r in vh.routes.iter().take(6) {
            let mut m = serde_json::Map::new();
            let path = match r.path {
                PathSpec::Any => None,
                PathSpec::Prefix(i) => Some((0, pick(PREFIXES, i).to_string())),
                PathSpec::Exact(i) => Some((1, pick(PATHS, i).to_string())),
                PathSpec::Regex(i) => Some((2, pick(REGEXES, i).to_string())),
            };
            if let Some((kind, p)) = &path {
                m.insert(["prefix", "path", "regex"][usize::from(*kind)].into(), json!(p));
            }
            let headers: Vec<(String, String, bool)> =
                r.headers.iter().take(2).map(|h| (pick(HNAMES, h.name).to_string(), pick(HVALUES, h.value).to_string(), h.regex)).collect();
            if !headers.is_empty() {
                m.insert("headers".into(), headers.iter().map(|(n, v, re)| json!({"name": n, "value": v, "regex": re})).collect());
            }
            let (action_json, action) = match r.action {
                ActionSpec::Cluster(i) => {
                    let c = format!("c{}", i % 3);
                    (("route", json!({"cluster_name": c})), Expect::Cluster(c))
                }
                ActionSpec::Direct(i) => (("direct_response", json!({"status": pick(STATUSES, i)})), Expect::Reply(pick(STATUSES, i))),
                ActionSpec::Redirect(i) => (("redirect", json!({"response_code": pick(REDIRECTS, i)})), Expect::Reply(pick(REDIRECTS, i))),
            };
            let mut route = serde_json::Map::new();
            route.insert("match".into(), Value::Object(m));
            route.insert(action_json.0.into(), action_json.1);
            routes_json.push(Value::Object(route));
            routes.push(ModelRoute { path, headers, action });
        }
        vhosts_json.push(json!({"name": format!("vh{}", vhosts_json.len()), "domains": ds, "routers": routes_json}));
        model.push(routes);
    }
    if vhosts_json.is_empty() {
        return; // A router needs a virtual host.
    }
    let cfg = json!({
        "servers": [{
            "routers": [{"router_config_name": "r", "virtual_hosts": vhosts_json}],
            "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]
        }],
        "cluster_manager": {"clusters": [
            {"name": "c0", "hosts": [{"address": "127.0.0.1:2"}]},
            {"name": "c1", "hosts": [{"address": "127.0.0.1:3"}]},
            {"name": "c2", "hosts": []}
        ]}
    });
    let engine = match Engine::load(&cfg.to_string()) {
        Ok(e) => e,
        Err(e) => panic!("a valid route table is refused: {e}\n{cfg:#}"),
    };
    for req in input.requests.iter().take(4) {
        check_request(&engine, &domains, &model, req);
    }
}

fn check_request(engine: &Engine, domains: &[(Domain, usize)], model: &[Vec<ModelRoute>], req: &RequestSpec) {
    let method = pick(METHODS, req.method);
    let path: String = req.path.iter().take(12).map(|&i| pick(PIECES, i)).collect();
    let mut headers: Vec<(String, String)> = vec![(":method".into(), method.into()), (":path".into(), path.clone())];
    let mut authority = None;
    match req.host {
        HostSpec::None => {}
        HostSpec::Authority(i) => authority = Some(pick(AUTHORITIES, i)),
        HostSpec::HostHeader(i) => headers.push(("host".into(), pick(AUTHORITIES, i).into())),
    }
    if let Some(a) = authority.filter(|a| !a.is_empty()) {
        headers.push((":authority".into(), a.into()));
    }
    for &(n, v) in req.headers.iter().take(3) {
        let n = pick(&["x-a", "uid", "service", "x-b"], n);
        if !headers.iter().any(|(h, _)| h == n) {
            headers.push((n.into(), pick(HVALUES, v).into()));
        }
    }
    // The model's answer.
    let (raw, _) = mosn_extension::router::path::split_query(path.as_bytes());
    let normalized = super::path::model(raw);
    let auth = first(&headers, ":authority").or_else(|| first(&headers, "host"));
    let want: (Option<(usize, usize)>, Expect) = if !mosn_extension::router::path::is_valid(path.as_bytes()) {
        (None, Expect::Reply(400))
    } else {
        match model_vhost(domains, auth) {
            None => (None, Expect::Reply(404)),
            Some(v) => match model[v].iter().position(|r| route_matches(r, &normalized, &headers)) {
                None => (None, Expect::Reply(404)),
                Some(r) => (Some((v, r)), model[v][r].action.clone()),
            },
        }
    };
    // The core's answer.
    let hs: Vec<Header<'_>> = headers.iter().map(|(n, v)| Header { name: n.as_bytes(), value: v.as_bytes() }).collect();
    let mut s = engine.new_stream(0, None).expect("listener 0");
    let action = s.request_headers(&Headers(&hs), true);
    let got = match action {
        Action::Continue => Expect::Cluster(s.cluster().map(|c| c.name.to_string()).unwrap_or_default()),
        Action::LocalReply => Expect::Reply(s.local_reply().map_or(0, |r| r.status)),
        other => panic!("unexpected {other:?}"),
    };
    let route_path = |(v, r): (usize, usize)| format!("servers[0].routers[0].virtual_hosts[{v}].routers[{r}]");
    let got_route = s.route_info().map(|(r, vh)| (r.to_string(), vh.to_string()));
    let want_route = want.0.map(|m| (route_path(m), format!("vh{}", m.0)));
    assert_eq!((&got_route, &got), (&want_route, &want.1), "request {headers:?} (normalized {:?})", String::from_utf8_lossy(&normalized));
    // route-check says the same.
    let mut expect = serde_json::Map::new();
    match &want.1 {
        Expect::Cluster(c) => expect.insert("cluster".into(), json!(c)),
        Expect::Reply(st) => expect.insert("status".into(), json!(st)),
    };
    if let Some((route, vh)) = &want_route {
        expect.insert("route".into(), json!(route));
        expect.insert("virtual_host".into(), json!(vh));
    }
    let mut req_json = serde_json::Map::new();
    req_json.insert("method".into(), json!(method));
    req_json.insert("path".into(), json!(path));
    if let Some(a) = authority {
        req_json.insert("host".into(), json!(a));
    }
    let extra: serde_json::Map<String, Value> =
        headers.iter().filter(|(n, _)| !n.starts_with(':')).map(|(n, v)| (n.clone(), json!(v))).collect();
    req_json.insert("headers".into(), Value::Object(extra));
    let cases = json!([{"name": "fuzz", "listener": "l", "request": req_json, "expect": expect}]);
    let report = mosn_extension::route_check::run(engine, &cases.to_string()).expect("cases are valid");
    assert_eq!(report.failed, 0, "route-check disagrees with the core: {:?} for {cases}", report.mismatches);
}
