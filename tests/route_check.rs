//! `mosn-ext route-check`: the cases file format and its mismatch reports.

use mosn_extension::route_check::run;
use mosn_extension::Engine;

const DEMO: &str = include_str!("../examples/unit-routing/mosn.json");
const CASES: &str = include_str!("../examples/unit-routing/route-cases.json");

#[test]
fn the_demo_cases_hold() {
    let e = Engine::load(DEMO).unwrap();
    let r = run(&e, CASES).unwrap();
    assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
    assert_eq!((r.passed, r.failed), (5, 0));
}

#[test]
fn each_mismatch_is_reported() {
    let e = Engine::load(DEMO).unwrap();
    let cases = r#"{"cases": [
        {"name": "wrong cluster", "request": {"headers": {"uid": "2"}}, "expect": {"cluster": "s2", "status": 404}},
        {"name": "right", "request": {"headers": {"uid": "2"}}, "expect": {"cluster": "s1"}},
        {"name": "bad", "request": "GET /"}
    ]}"#;
    let r = run(&e, cases).unwrap();
    assert_eq!((r.passed, r.failed), (1, 2));
    let text: Vec<String> = r.mismatches.iter().map(|m| format!("{}: {}", m.case, m.what)).collect();
    assert!(text.contains(&"wrong cluster: cluster: want \"s2\", got \"s1\"".to_string()), "{text:?}");
    assert!(text.contains(&"wrong cluster: status: want \"404\", got (none)".to_string()), "{text:?}");
    assert!(text.iter().any(|t| t.starts_with("bad: needs \"request\"")), "{text:?}");
    assert!(run(&e, "{").is_err());
}

/// Found by the `router` fuzz target: a direct response or a redirect matched a route, but
/// route-check reported no route and no virtual host for it.
#[test]
fn local_reply_routes_are_named() {
    let cfg = r#"{"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "vh", "domains": ["*"], "routers": [
        {"match": {"path": "/d"}, "direct_response": {"status": 204}},
        {"match": {"prefix": "/old"}, "redirect": {"response_code": 308, "path_redirect": "/new"}},
        {"match": {"prefix": "/"}, "route": {"cluster_header": "x-cluster"}}]}]}],
      "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:2"}]}]}}"#;
    let e = Engine::load(cfg).unwrap();
    let route = |i: usize| format!("servers[0].routers[0].virtual_hosts[0].routers[{i}]");
    let cases = serde_json::json!([
        {"name": "direct", "request": {"path": "/d"}, "expect": {"status": 204, "route": route(0), "virtual_host": "vh"}},
        {"name": "redirect", "request": {"path": "/old"}, "expect": {"status": 308, "route": route(1)}},
        {"name": "no cluster", "request": {"path": "/x"}, "expect": {"status": 404, "route": route(2)}}
    ]);
    let r = run(&e, &cases.to_string()).unwrap();
    assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
}
