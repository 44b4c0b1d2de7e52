//! One request's life through the public Rust API (what the Envoy adapter uses).

use mosn_extension::headers::{Header, HeaderOp, Headers};
use mosn_extension::{Action, Engine, UpstreamOutcome};

const DEMO: &str = include_str!("../examples/unit-routing/mosn.json");

fn h<'a>(n: &'a str, v: &'a str) -> Header<'a> {
    Header { name: n.as_bytes(), value: v.as_bytes() }
}

#[test]
fn demo_routes_by_uid_and_round_robins_hosts() {
    let e = Engine::from_json(DEMO).unwrap();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let mut s = e.new_stream(0, None).unwrap();
        let hs = [h(":path", "/"), h("uid", "2")];
        assert_eq!(s.request_headers(&Headers(&hs), true), Action::Continue);
        assert_eq!(&*s.cluster().unwrap().name, "s1");
        let m = &s.request_mutations()[0];
        assert_eq!((m.op, &*m.name, &*m.value), (HeaderOp::Set, "x-mosn-on-envoy-unit", "s1"));
        hosts.push(s.choose_host().unwrap().host.address_text.to_string());
    }
    assert_ne!(hosts[0], hosts[1]);
}

#[test]
fn forged_unit_header_is_removed_before_the_driver_runs() {
    let e = Engine::from_json(DEMO).unwrap();
    let mut s = e.new_stream(0, None).unwrap();
    let hs = [h(":path", "/"), h("x-mosn-on-envoy-unit", "s2")];
    s.request_headers(&Headers(&hs), true);
    assert_eq!(&*s.cluster().unwrap().name, "all_sites");
    assert_eq!(s.request_mutations()[0].op, HeaderOp::Remove);
    assert_eq!(s.metadata("unit"), None);
}

#[test]
fn two_uid_headers_are_ambiguous() {
    let e = Engine::from_json(DEMO).unwrap();
    let mut s = e.new_stream(0, None).unwrap();
    let hs = [h(":path", "/"), h("uid", "2"), h("uid", "150")];
    s.request_headers(&Headers(&hs), true);
    assert_eq!(&*s.cluster().unwrap().name, "all_sites");
}

#[test]
fn retry_policy_decides_retries() {
    let e = Engine::from_json(DEMO).unwrap();
    // s1 has retry_on: true, num_retries: 1.
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("uid", "9")]), true);
    let first = s.choose_host().unwrap().index;
    assert!(s.upstream_result(UpstreamOutcome::Response(503)), "5xx is retried with retry_on");
    let second = s.choose_host().unwrap().index;
    assert_ne!(first, second);
    assert!(!s.upstream_result(UpstreamOutcome::ConnectFailure), "budget of 1 retry spent");
    assert_eq!(s.failure_status(), Some(502));
    // s2 has no retry policy: nothing is retried, a timeout maps to 504.
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("uid", "150")]), true);
    s.choose_host().unwrap();
    assert!(!s.upstream_result(UpstreamOutcome::ConnectFailure));
    assert_eq!(s.failure_status(), Some(502));
    s.upstream_result(UpstreamOutcome::Timeout);
    assert_eq!(s.failure_status(), Some(504));
    s.response_headers(503, &Headers(&[]), true);
    let m = &s.response_mutations()[0];
    assert_eq!((&*m.name, &*m.value), (":status", "504"));
}

fn engine(routes: serde_json::Value, filters: serde_json::Value) -> std::sync::Arc<Engine> {
    let cfg = serde_json::json!({
      "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": routes}],
        "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
          "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
          "stream_filters": filters}]}],
      "cluster_manager": {"clusters": [
        {"name": "a", "hosts": [{"address": "127.0.0.1:1"}]},
        {"name": "b", "hosts": [{"address": "127.0.0.1:2"}]}]}
    });
    Engine::from_json(&cfg.to_string()).unwrap()
}

#[test]
fn virtual_hosts_paths_and_direct_responses() {
    let e = engine(
        serde_json::json!([
          {"name": "api", "domains": ["api.example.com", "api.example.com:*", "*.api.example.com"], "routers": [
            {"match": {"path": "/status"}, "direct_response": {"status": 200, "body": "ok"}},
            {"match": {"prefix": "/v1/"}, "route": {"cluster_name": "a"}},
            {"match": {"regex": "/v[0-9]+/.*"}, "route": {"cluster_name": "b"}}]},
          {"name": "default", "domains": ["*"], "routers": [
            {"match": {"prefix": "/", "headers": [{"name": "method", "value": "POST"}]}, "route": {"cluster_name": "b"}}]}
        ]),
        serde_json::json!([]),
    );
    let run = |authority: &str, method: &str, path: &str| {
        let mut s = e.new_stream(0, None).unwrap();
        let hs = [h(":authority", authority), h(":method", method), h(":path", path)];
        let a = s.request_headers(&Headers(&hs), true);
        (a, s.cluster().map(|c| c.name.to_string()), s.local_reply().map(|r| (r.status, r.body.to_string())))
    };
    assert_eq!(run("api.example.com", "GET", "/status?x=1").2, Some((200, "ok".into())));
    assert_eq!(run("API.example.com:8080", "GET", "/v1/x").1.as_deref(), Some("a"));
    assert_eq!(run("eu.api.example.com", "GET", "/v2/x").1.as_deref(), Some("b"));
    assert_eq!(run("api.example.com", "GET", "/v2").2.map(|r| r.0), Some(404), "the regex needs a slash after the version");
    assert_eq!(run("other", "POST", "/").1.as_deref(), Some("b"));
    let (a, _, reply) = run("other", "GET", "/");
    assert_eq!((a, reply.map(|r| r.0)), (Action::LocalReply, Some(404)));
}

#[test]
fn fault_abort_answers_locally_for_its_cluster_only() {
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/a"}, "route": {"cluster_name": "a"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
        serde_json::json!([{"type": "fault", "config": {"abort": {"status": 503, "percentage": 100}, "upstream_cluster": "a"}}]),
    );
    let mut s = e.new_stream(0, None).unwrap();
    assert_eq!(s.request_headers(&Headers(&[h(":path", "/a")]), true), Action::LocalReply);
    assert_eq!(s.local_reply().unwrap().status, 503);
    // Answered locally: no upstream host either, though the route has a cluster.
    assert_eq!(s.choose_host().err(), Some(mosn_extension::NoHost::NotRouted));
    let mut s = e.new_stream(0, None).unwrap();
    assert_eq!(s.request_headers(&Headers(&[h(":path", "/b")]), true), Action::Continue);
    assert!(s.choose_host().is_ok());
}

/// From the `abi` fuzz target's "a stream answers once" property: a request that waits for
/// a fault delay gets no upstream host until it is let through.
#[test]
fn a_waiting_request_gets_no_host_before_it_continues() {
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]),
        serde_json::json!([{"type": "fault", "config": {"delay": {"fixed_delay": "1ms", "percentage": 100}}}]),
    );
    let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = woken.clone();
    let wake = mosn_extension::wake::WakeFn::Rust(std::sync::Arc::new(move || w.store(true, std::sync::atomic::Ordering::SeqCst)));
    let mut s = e.new_stream(0, Some(wake)).unwrap();
    let hs = [h(":path", "/")];
    assert_eq!(s.request_headers(&Headers(&hs), true), Action::Wait);
    assert_eq!(s.choose_host().err(), Some(mosn_extension::NoHost::NotRouted));
    while !woken.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(s.resume(&Headers(&hs), None), Action::Continue);
    assert!(s.choose_host().is_ok());
}

#[test]
fn weighted_clusters_follow_weights() {
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/"}, "route": {"weighted_clusters": [
                {"cluster": {"name": "a", "weight": 90}}, {"cluster": {"name": "b", "weight": 10}}]}}]}]),
        serde_json::json!([]),
    );
    let mut a = 0;
    for _ in 0..2000 {
        let mut s = e.new_stream(0, None).unwrap();
        s.request_headers(&Headers(&[h(":path", "/")]), true);
        a += usize::from(&*s.cluster().unwrap().name == "a");
    }
    assert!((1650..1950).contains(&a), "a chosen {a}/2000 times with weight 90/100");
}

#[test]
fn zone_driver_from_the_readme_example() {
    // The README's "Adding a metadata driver" example: ZONE reads the environment at load.
    std::env::set_var("MOSN_EXT_TEST_ZONE", "GZ00A");
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/", "headers": [{"name": "x-mosn-on-envoy-zone", "value": "gz00a"}]}, "route": {"cluster_name": "a"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
        serde_json::json!([{"type": "metadata", "config": {"metadataers": [
            {"meta_data_key": "ZONE", "config": {"zone_env_name_list": ["MOSN_EXT_TEST_NO_SUCH_VAR", "MOSN_EXT_TEST_ZONE"]}}]}}]),
    );
    let mut s = e.new_stream(0, None).unwrap();
    assert_eq!(s.request_headers(&Headers(&[h(":path", "/")]), true), Action::Continue);
    assert_eq!(s.metadata("zone"), Some("gz00a"), "values are lower-cased unless case_sensitive");
    assert_eq!(&*s.cluster().unwrap().name, "a");
}

#[test]
fn idc_driver_reads_its_own_list() {
    std::env::set_var("MOSN_EXT_TEST_IDC", "HZ-1");
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/", "headers": [{"name": "x-mosn-on-envoy-idc", "value": "HZ-1"}]}, "route": {"cluster_name": "a"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
        serde_json::json!([{"type": "metadata", "config": {"case_sensitive": true, "metadataers": [
            {"meta_data_key": "IDC", "config": {"idc_env_name_list": ["MOSN_EXT_TEST_IDC"]}}]}}]),
    );
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/")]), true);
    assert_eq!(s.metadata("idc"), Some("HZ-1"));
    assert_eq!(&*s.cluster().unwrap().name, "a");
}

#[test]
fn forwarded_path_is_the_matched_path() {
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/admin"}, "direct_response": {"status": 403, "body": "denied"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]),
        serde_json::json!([]),
    );
    let run = |p: &str| {
        let mut s = e.new_stream(0, None).unwrap();
        let a = s.request_headers(&Headers(&[h(":path", p)]), true);
        let path = s.request_mutations().iter().find(|m| &*m.name == ":path").map(|m| m.value.to_string());
        (a, s.local_reply().map(|r| r.status), path)
    };
    // Every spelling of /admin is caught, %2F included (MOSN decodes it).
    for p in ["/admin", "/x/../admin", "//admin", "/%61dmin", "/public%2F..%2Fadmin", "/public%2f%2e%2e%2fadmin/x"] {
        assert_eq!(run(p).1, Some(403), "{p}");
    }
    // A normal path is forwarded as it came (no mutation); others as matched.
    assert_eq!(run("/a/b?x=1"), (Action::Continue, None, None));
    assert_eq!(run("/a/./b?x=%2F"), (Action::Continue, None, Some("/a/b?x=%2F".into())));
    assert_eq!(run("/a%20b"), (Action::Continue, None, None), "already in the forwarded form");
    assert_eq!(run("/%7Ea"), (Action::Continue, None, Some("/~a".into())));
    // A raw byte outside visible ASCII is a malformed request target: 400 before any filter.
    assert_eq!(run("/a\u{80}").1, Some(400));
}

#[test]
fn no_host_finds_no_virtual_host_when_there_are_several() {
    let e = engine(
        serde_json::json!([
            {"name": "a", "domains": ["a.com"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]},
            {"name": "d", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
        serde_json::json!([]),
    );
    let mut s = e.new_stream(0, None).unwrap();
    assert_eq!(s.request_headers(&Headers(&[h(":path", "/")]), true), Action::LocalReply);
    assert_eq!(s.local_reply().unwrap().status, 404, "MOSN: no Host, several virtual hosts: 404");
    let mut s = e.new_stream(0, None).unwrap();
    assert_eq!(s.request_headers(&Headers(&[h(":path", "/"), h("host", "b.com")]), true), Action::Continue);
    assert_eq!(&*s.cluster().unwrap().name, "b");
}

#[test]
fn a_disabled_metadata_filter_still_strips_forged_headers() {
    let e = engine(
        serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/", "headers": [{"name": "x-mosn-on-envoy-unit", "value": "s1"}]}, "route": {"cluster_name": "a"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
        serde_json::json!([{"type": "metadata", "config": {"disable": true, "metadataers": [
            {"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}}]),
    );
    let mut s = e.new_stream(0, None).unwrap();
    let hs = [h(":path", "/"), h("x-mosn-on-envoy-unit", "s1"), h("uid", "2")];
    assert_eq!(s.request_headers(&Headers(&hs), true), Action::Continue);
    assert_eq!(&*s.cluster().unwrap().name, "b", "a forged unit header must not route");
    assert_eq!(s.metadata("unit"), None, "disabled: no driver ran");
    assert!(s.request_mutations().iter().any(|m| m.op == HeaderOp::Remove && &*m.name == "x-mosn-on-envoy-unit"));
}

#[test]
fn timeout_headers_override_the_routes_timeouts() {
    let e = Engine::from_json(DEMO).unwrap();
    // s1's route has no timeout; its retry policy has no retry_timeout.
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("uid", "2"), h("x-mosn-global-timeout", "300"), h("x-mosn-try-timeout", "100")]), true);
    assert_eq!(s.timeout(), Some(std::time::Duration::from_millis(300)));
    assert_eq!(s.per_try_timeout(), Some(std::time::Duration::from_millis(100)));
    // A per-try timeout not below the global one is ignored (MOSN); garbage is no value.
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("uid", "2"), h("x-mosn-global-timeout", "300"), h("x-mosn-try-timeout", "300")]), true);
    assert_eq!(s.per_try_timeout(), None);
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("uid", "2"), h("x-mosn-global-timeout", "3s")]), true);
    assert_eq!(s.timeout(), None);
}

/// A request-side filter's state reaches its response side (MOSN's `gzip` lost it under
/// GOHPNF): it records the request's Accept-Encoding as stream metadata and reads it back on
/// the response; per stream, so two interleaved streams keep their own.
struct Remember;

impl mosn_extension::filter::StreamFilter for Remember {
    fn name(&self) -> &'static str {
        "remember"
    }
    fn on_receive(&self, cx: &mut mosn_extension::filter::ReceiveContext<'_>) -> mosn_extension::filter::FilterStatus {
        let v = cx.header("accept-encoding").first().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        cx.set_metadata("accept".into(), v.into());
        mosn_extension::filter::FilterStatus::Continue
    }
    fn sends(&self) -> bool {
        true
    }
    fn on_send(&self, cx: &mut mosn_extension::filter::SendContext<'_>) -> mosn_extension::filter::FilterStatus {
        let v = cx.metadata("accept").unwrap_or("none").to_string();
        cx.set_header("x-request-accepted".into(), v.into());
        mosn_extension::filter::FilterStatus::Continue
    }
}

#[test]
fn a_filters_request_state_reaches_its_response_side() {
    let mut e = Engine::load(DEMO).expect("demo config");
    e.listener_mut(0).expect("listener").insert_filter(0, std::sync::Arc::new(Remember));
    let (mut a, mut b) = (e.new_stream(0, None).unwrap(), e.new_stream(0, None).unwrap());
    let ha = [h(":path", "/"), h(":authority", "x"), h("accept-encoding", "gzip")];
    let hb = [h(":path", "/"), h(":authority", "x"), h("accept-encoding", "br")];
    assert_eq!(a.request_headers(&Headers(&ha), true), Action::Continue);
    assert_eq!(b.request_headers(&Headers(&hb), true), Action::Continue);
    for (s, want) in [(&mut b, "br"), (&mut a, "gzip")] {
        assert_eq!(s.response_headers(200, &Headers(&[]), false), Action::Continue);
        let m = s.response_mutations().iter().find(|m| &*m.name == "x-request-accepted").expect("the send side ran");
        assert_eq!(&*m.value, want);
    }
}

#[test]
fn a_host_with_a_comma_is_refused() {
    let e = Engine::from_json(DEMO).expect("demo config");
    for (authority, want) in [("x,y", Action::LocalReply), ("a.test:80", Action::Continue), ("x", Action::Continue)] {
        let mut s = e.new_stream(0, None).unwrap();
        let hs = [h(":path", "/"), h(":authority", authority)];
        assert_eq!(s.request_headers(&Headers(&hs), true), want, "{authority}");
        if want == Action::LocalReply {
            let r = s.local_reply().unwrap();
            assert_eq!((r.status, r.details), (400, "invalid_host"));
        }
    }
}

#[test]
fn only_a_chain_with_a_filter_that_can_wait_asks_the_host_for_a_wake_function() {
    let routes = serde_json::json!([{"name": "v", "domains": ["*"], "routers": [
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]);
    let may_wait = |filters: serde_json::Value| {
        let e = engine(routes.clone(), filters);
        let s = e.new_stream(0, None).unwrap();
        s.listener().may_wait()
    };
    // The demo's chain: the UNIT driver never waits.
    let unit =
        serde_json::json!([{"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}}]);
    assert!(!may_wait(unit));
    assert!(!may_wait(serde_json::json!([])));
    // A fault filter may delay a request.
    let fault = serde_json::json!([{"type": "fault", "config": {"delay": {"fixed_delay": "1s", "percentage": 10}}}]);
    assert!(may_wait(fault));
}
