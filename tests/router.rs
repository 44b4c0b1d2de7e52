//! MOSN's router through the public API (what `mosn-ext route-check` and the hosts see):
//! matchers, actions and MOSN's quirks, table-driven. Each case: a request in, the
//! decision out (route, cluster, local reply, upstream path and Host, header mutations).

use mosn_extension::headers::{Header, HeaderOp, Headers};
use mosn_extension::{Action, Engine};
use serde_json::{json, Value};
use std::sync::Arc;

/// An engine whose router has `vhosts`; clusters a, b, c.
fn engine(vhosts: Value, router_extra: Value) -> Arc<Engine> {
    let mut router = json!({"router_config_name": "r", "virtual_hosts": vhosts});
    if let Value::Object(extra) = router_extra {
        router.as_object_mut().unwrap().extend(extra);
    }
    let cfg = json!({
      "servers": [{"routers": [router],
        "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
          "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
          "stream_filters": [{"type": "fault", "config": {}}]}]}],
      "cluster_manager": {"clusters": [
        {"name": "a", "hosts": [{"address": "127.0.0.1:1"}]},
        {"name": "b", "hosts": [{"address": "127.0.0.1:2"}]},
        {"name": "c", "hosts": [{"address": "127.0.0.1:3"}]}]}
    });
    Engine::from_json(&cfg.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// What a request got.
#[derive(Debug, Default, PartialEq)]
struct Decision {
    cluster: Option<String>,
    status: Option<u16>,
    body: Option<String>,
    location: Option<String>,
    /// The `:path` / `:authority` the upstream gets, when changed.
    path: Option<String>,
    authority: Option<String>,
    /// Other request header changes, `name=value` (`-name` for a removal).
    set: Vec<String>,
}

fn run(e: &Engine, method: &str, authority: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
    let mut hs = vec![Header { name: b":method", value: method.as_bytes() }, Header { name: b":path", value: path.as_bytes() }];
    if !authority.is_empty() {
        hs.push(Header { name: b":authority", value: authority.as_bytes() });
    }
    hs.extend(headers.iter().map(|(n, v)| Header { name: n.as_bytes(), value: v.as_bytes() }));
    let mut s = e.new_stream(0, None).unwrap();
    let a = s.request_headers(&Headers(&hs), true);
    let mut d = Decision::default();
    if a == Action::LocalReply {
        let r = s.local_reply().unwrap();
        d.status = Some(r.status);
        d.body = Some(r.body.to_string());
        d.location = r.headers.iter().find(|(n, _)| &**n == "location").map(|(_, v)| v.to_string());
        return d;
    }
    d.cluster = s.cluster().map(|c| c.name.to_string());
    for m in s.request_mutations() {
        match (&*m.name, m.op) {
            (":path", _) => d.path = Some(m.value.to_string()),
            (":authority", _) => d.authority = Some(m.value.to_string()),
            (n, HeaderOp::Remove) => d.set.push(format!("-{n}")),
            (n, _) => d.set.push(format!("{n}={}", m.value)),
        }
    }
    d
}

fn to(cluster: &str) -> Decision {
    Decision { cluster: Some(cluster.into()), ..Default::default() }
}

fn reply(status: u16) -> Decision {
    Decision { status: Some(status), ..Default::default() }
}

/// `(method, path, extra headers, expected decision)`.
type Case = (&'static str, &'static str, Vec<(&'static str, &'static str)>, Decision);

fn route(m: Value, cluster: &str) -> Value {
    json!({"match": m, "route": {"cluster_name": cluster}})
}

#[test]
fn matchers_follow_mosn() {
    let e = engine(
        json!([{"name": "v", "domains": ["*"], "routers": [
            route(json!({"path": "/Exact"}), "a"),
            route(json!({"prefix": "/api/"}), "b"),
            route(json!({"regex": "/v[0-9]+/"}), "c"),
            route(json!({"variables": [{"name": "x-mosn-method", "value": "PUT", "model": "or"}, {"name": "Http1_request_header_x-k", "value": "1"}]}), "a"),
            route(json!({"headers": [{"name": "method", "value": "DELETE"}]}), "b"),
            route(json!({"headers": [{"name": "service", "value": ".*"}]}), "c"),
            route(json!({"headers": [{"name": "x-r", "value": "^a+$", "regex": true}]}), "a"),
        ]}]),
        json!({}),
    );
    let cases: Vec<Case> = vec![
        // `path` is case-insensitive, `prefix` is not (MOSN).
        ("GET", "/exact", vec![], to("a")),
        ("GET", "/EXACT?q=1", vec![], to("a")),
        ("GET", "/API/x", vec![], reply(404)),
        ("GET", "/api/x", vec![], to("b")),
        // `regex` is an unanchored search (MOSN): it matches inside the path.
        ("GET", "/x/v2/y", vec![], to("c")),
        ("GET", "/x/v2", vec![], reply(404)),
        // variables `PUT or x-k: 1`: a true result at an `or` item ends the walk; after it
        // the next item's result replaces the running one.
        ("PUT", "/z", vec![], to("a")),
        ("GET", "/z", vec![("x-k", "1")], to("a")),
        ("GET", "/z", vec![("x-k", "2")], reply(404)),
        // header `method` is the method.
        ("DELETE", "/z", vec![], to("b")),
        // MOSN's legacy RPC rule: service `.*` is any non-empty service.
        ("GET", "/z", vec![("service", "com.foo.Bar")], to("c")),
        ("GET", "/z", vec![("service", "")], reply(404)),
        // header regex is unanchored too, but ^$ anchor it.
        ("GET", "/z", vec![("x-r", "aaa")], to("a")),
        ("GET", "/z", vec![("x-r", "aab")], reply(404)),
    ];
    for (method, path, headers, want) in cases {
        let got = run(&e, method, "h", path, &headers);
        assert_eq!(got.cluster, want.cluster, "{method} {path} {headers:?}: {got:?}");
        assert_eq!(got.status, want.status, "{method} {path} {headers:?}: {got:?}");
    }
}

#[test]
fn variables_walk_like_mosn() {
    // a AND (b OR c): MOSN's walk ANDs after an `and` item and restarts after an `or` item.
    let e = engine(
        json!([{"name": "v", "domains": ["*"], "routers": [
            route(json!({"variables": [
                {"name": "Http1_request_header_a", "value": "1"},
                {"name": "Http1_request_header_b", "value": "1", "model": "or"},
                {"name": "Http1_request_header_c", "regex": "^y"}]}), "a")]}]),
        json!({}),
    );
    let m = |hs: &[(&str, &str)]| run(&e, "GET", "h", "/", hs).cluster.is_some();
    assert!(m(&[("a", "1"), ("b", "1")]));
    assert!(m(&[("c", "yes")]), "after an `or` item the next result replaces the running one");
    assert!(!m(&[("a", "1"), ("c", "no")]));
    assert!(!m(&[]));
}

#[test]
fn rewrites_host_and_path() {
    let e = engine(
        json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/old/"}, "route": {"cluster_name": "a", "prefix_rewrite": "/new/", "host_rewrite": "new.example"}},
            {"match": {"prefix": "/re/"}, "route": {"cluster_name": "b",
                "regex_rewrite": {"pattern": {"regex": "^/re/(\\w+)/(\\w+)"}, "substitution": "/$2/$1"},
                "auto_host_rewrite_header": "x-host"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]),
        json!({}),
    );
    let d = run(&e, "GET", "h", "/old/x%20y?q=1", &[]);
    assert_eq!(d.path.as_deref(), Some("/new/x%20y?q=1"));
    assert_eq!(d.authority.as_deref(), Some("new.example"));
    assert!(d.set.contains(&"x-mosn-original-path=/old/x y".to_string()), "{:?}", d.set);
    let d = run(&e, "GET", "h", "/re/a/b/c", &[("x-host", "from-header:8080")]);
    assert_eq!((d.path.as_deref(), d.authority.as_deref()), (Some("/b/a/c"), Some("from-header:8080")));
    let d = run(&e, "GET", "h", "/re/a", &[]);
    assert_eq!((d.path, d.authority), (None, None), "no match, no rewrite; no header, no Host rewrite");
    assert_eq!(run(&e, "GET", "h", "/x", &[]).path, None);
}

#[test]
fn header_edits_in_mosn_order_with_append() {
    let e = engine(
        json!([{"name": "v", "domains": ["*"],
            "request_headers_to_add": [{"header": {"key": "x-vh", "value": "vh"}}, {"header": {"key": "x-r", "value": "vh"}, "append": false}],
            "routers": [
            {"match": {"prefix": "/"}, "route": {"cluster_name": "a",
                "request_headers_to_add": [
                    {"header": {"key": "x-r", "value": "route"}},
                    {"header": {"key": "x-app", "value": "2"}},
                    {"header": {"key": "x-host", "value": "%x-mosn-host%"}},
                    {"header": {"key": "x-lit", "value": "%not-a-variable%"}}],
                "request_headers_to_remove": ["x-drop"]}}]}]),
        json!({"request_headers_to_add": [{"header": {"key": "x-global", "value": "g"}}], "request_headers_to_remove": ["x-vh"]}),
    );
    let d = run(&e, "GET", "svc:80", "/", &[("x-app", "1"), ("x-drop", "z")]);
    assert_eq!(
        d.set,
        vec!["x-r=route", "x-app=1,2", "x-host=svc:80", "x-lit=%not-a-variable%", "-x-drop", "x-vh=vh", "x-r=vh", "x-global=g", "-x-vh"],
        "route adds, route removes, vhost, router; append joins with the old value"
    );
}

#[test]
fn redirects_and_direct_responses() {
    let e = engine(
        json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/r1"}, "redirect": {}},
            {"match": {"prefix": "/r2"}, "redirect": {"response_code": 308, "scheme_redirect": "HTTPS", "path_redirect": "/new"}},
            {"match": {"prefix": "/r3"}, "redirect": {"response_code": 302, "host_redirect": "other.example"}},
            {"match": {"prefix": "/d"}, "direct_response": {"status": 418, "body": "teapot"}}]}]),
        json!({}),
    );
    let d = run(&e, "GET", "a.example:80", "/r1/x?q=1", &[]);
    assert_eq!((d.status, d.location.as_deref()), (Some(301), Some("http://a.example:80/r1/x?q=1")));
    let d = run(&e, "GET", "a.example:80", "/r2?q", &[]);
    assert_eq!((d.status, d.location.as_deref()), (Some(308), Some("https://a.example/new?q")), "the other scheme's port goes");
    let d = run(&e, "GET", "a.example", "/r3", &[]);
    assert_eq!((d.status, d.location.as_deref()), (Some(302), Some("http://other.example/r3")));
    let d = run(&e, "GET", "a.example", "/d", &[]);
    assert_eq!((d.status, d.body.as_deref()), (Some(418), Some("teapot")));
}

#[test]
fn cluster_from_header_and_weights() {
    let e = engine(
        json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/h"}, "route": {"cluster_header": "x-cluster"}},
            {"match": {"prefix": "/w"}, "route": {"cluster_name": "c", "weighted_clusters": [
                {"cluster": {"name": "a", "weight": 1}}, {"cluster": {"name": "b", "weight": 3}}]}}]}]),
        json!({}),
    );
    assert_eq!(run(&e, "GET", "h", "/h", &[("x-cluster", "b")]).cluster.as_deref(), Some("b"));
    assert_eq!(run(&e, "GET", "h", "/h", &[("x-cluster", "zz")]).status, Some(404), "no such cluster: MOSN's 404");
    assert_eq!(run(&e, "GET", "h", "/h", &[]).status, Some(404));
    // The weighted list wins over cluster_name (MOSN); 1:3 over 4000 requests.
    let b = (0..4000).filter(|_| run(&e, "GET", "h", "/w", &[]).cluster.as_deref() == Some("b")).count();
    assert!((2800..3200).contains(&b), "b chosen {b}/4000 with weight 3/4 (±200)");
}

#[test]
fn per_route_filter_config_replaces_the_listeners() {
    let e = engine(
        json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/faulty"}, "route": {"cluster_name": "a"},
             "per_filter_config": {"fault": {"abort": {"status": 503, "percentage": 100}}}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
        json!({}),
    );
    assert_eq!(run(&e, "GET", "h", "/faulty", &[]).status, Some(503));
    assert_eq!(run(&e, "GET", "h", "/fine", &[]).cluster.as_deref(), Some("b"));
}

#[test]
fn virtual_hosts_with_mosn_port_rules() {
    let e = engine(
        json!([
            {"name": "exact", "domains": ["api.example.com"], "routers": [route(json!({"prefix": "/"}), "a")]},
            {"name": "any-port", "domains": ["api.example.com:*", "*.api.example.com"], "routers": [route(json!({"prefix": "/"}), "b")]},
            {"name": "default", "domains": ["*"], "routers": [route(json!({"prefix": "/"}), "c")]}]),
        json!({}),
    );
    for (host, want) in [
        ("api.example.com", Some("a")),
        ("API.example.com:8080", Some("b")),
        ("x.api.example.com", Some("b")),
        ("other", Some("c")),
        ("", None),
    ] {
        assert_eq!(run(&e, "GET", host, "/", &[]).cluster.as_deref(), want, "Host {host:?}");
    }
}

#[test]
fn indexed_runs_keep_first_match_order() {
    // Random tables of prefix routes and header-value routes (runs of either are indexed)
    // mixed with routes testing both, against the first match in config order computed
    // here, one route at a time.
    #[derive(Clone, Copy)]
    enum R {
        Prefix(&'static str, bool),
        Value(&'static str),
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let prefixes = ["/", "/a", "/a/b", "/a/bc", "/b", "/b/", "/ab", "/a/b/c", "/c", "/a/"];
    let values = ["v0", "v1", "v2", "v3"];
    for table in 0..60 {
        let mut routes = Vec::new();
        let mut model = Vec::new();
        let header_heavy = table % 2 == 0;
        for _ in 0..rng.usize(1..40) {
            let r = if rng.u8(0..3) == 0 || (header_heavy && rng.bool()) {
                R::Value(values[rng.usize(0..values.len())])
            } else {
                R::Prefix(prefixes[rng.usize(0..prefixes.len())], rng.u8(0..10) == 0)
            };
            let m = match r {
                R::Value(v) => json!({"prefix": "/", "headers": [{"name": "x-v", "value": v}]}),
                R::Prefix(p, true) => json!({"prefix": p, "headers": [{"name": "x-h", "value": "1"}]}),
                R::Prefix(p, false) => json!({"prefix": p}),
            };
            routes.push(json!({"match": m, "direct_response": {"status": 200, "body": format!("r{}", routes.len())}}));
            model.push(r);
        }
        let e = engine(json!([{"name": "v", "domains": ["*"], "routers": routes}]), json!({}));
        for path in ["/", "/a", "/a/b", "/a/bcd", "/a/b/c/d", "/b", "/b/x", "/abc", "/c", "/zzz", "/a/"] {
            for (with_header, value) in [(false, None), (true, None), (false, Some("v2")), (true, Some("v0")), (false, Some("v9"))] {
                let want = model.iter().position(|r| match *r {
                    R::Prefix(p, h) => path.starts_with(p) && (!h || with_header),
                    R::Value(v) => value == Some(v),
                });
                let mut hs: Vec<(&str, &str)> = if with_header { vec![("x-h", "1")] } else { vec![] };
                if let Some(v) = value {
                    hs.push(("x-v", v));
                }
                let got = run(&e, "GET", "h", path, &hs);
                let got = got.body.and_then(|b| b.strip_prefix('r').and_then(|n| n.parse::<usize>().ok()));
                assert_eq!(got, want, "table {table}, {path} ({hs:?})");
            }
        }
    }
}
