//! The cluster extension's logic: host registration, the LB host-choice loop (stream
//! found / not found / routed elsewhere, tried hosts, Envoy's retry predicate), the panic
//! policy of the LB, and how attempt outcomes reach the core.

use super::request;
use crate::host::{HeadersStatus, HostHandle};
use crate::http_logic::{self, HttpConfig, HttpFilter};
use crate::lb::{ClusterConfig, ClusterShared, Lb};
use crate::testing::{self, logs, FakeCluster, FakeHttp, FakeLb};
use mosn_extension::Engine;
use std::sync::Arc;

/// The HTTP filter config and the LBs of clusters `a` (3 hosts, handles 0xa00..) and `b`
/// (1 host, 0xb00), all on one engine.
struct Setup {
    engine: Arc<Engine>,
    http: HttpConfig,
    a: Lb,
    b: Lb,
}

fn setup() -> Setup {
    let (engine, _) = testing::engine(false);
    let lb = |name: &str, base: usize| {
        let shared = ClusterShared::new(engine.clone(), engine.cluster(name).unwrap().clone());
        let mut fc = FakeCluster { base, ..FakeCluster::default() };
        shared.init(&mut fc);
        assert_eq!(fc.pre_init_completed, 1);
        Lb::new(shared)
    };
    let (a, b) = (lb("a", 0xa00), lb("b", 0xb00));
    Setup { http: HttpConfig::new(engine.clone(), 0), engine, a, b }
}

fn a_hosts() -> Vec<HostHandle> {
    (0..3).map(|i| HostHandle(0xa00 + i)).collect()
}

/// Envoy's LB for one attempt of the request served by `host` (its filter state).
fn lb_for(host: &FakeHttp) -> FakeLb {
    FakeLb::new(a_hosts(), &host.filter_state)
}

fn attempts(f: &HttpFilter) -> u32 {
    f.cell().state.borrow().stream.as_ref().unwrap().attempts()
}

// === Cluster init ===

#[test]
fn init_adds_the_hosts_in_core_order_then_completes_pre_init() {
    let engine = Engine::from_json(&testing::CONFIG.replace(
        r#""hosts": [{"address": "127.0.0.1:11"}, {"address": "127.0.0.1:12"}, {"address": "127.0.0.1:13"}]"#,
        r#""hosts": [{"address": "127.0.0.1:11", "weight": 200, "metadata": {"filter_metadata": {"mosn.lb": {"zone": "z1"}}}},
                     {"address": "127.0.0.1:12", "weight": 0, "metadata": {"filter_metadata": {"mosn.lb": {"zone": "z2"}}}},
                     {"address": "127.0.0.1:13", "weight": 7, "metadata": {"filter_metadata": {"mosn.lb": {"zone": "z3"}}}}]"#,
    ))
    .unwrap();
    let shared = ClusterShared::new(engine.clone(), engine.cluster("a").unwrap().clone());
    let mut fc = FakeCluster::default();
    shared.init(&mut fc);
    let got: Vec<(&str, u32, &str)> = fc.added.iter().map(|(a, w, md)| (a.as_str(), *w, md[0].2.as_str())).collect();
    assert_eq!(got, [("127.0.0.1:11", 128, "z1"), ("127.0.0.1:12", 1, "z2"), ("127.0.0.1:13", 7, "z3")]);
    assert!(fc.added.iter().all(|(_, _, md)| md.len() == 1 && md[0].0 == "mosn.lb" && md[0].1 == "zone"));
    assert_eq!(fc.pre_init_completed, 1);
    // Without a stream the cluster's own (weighted) round robin picks: one cycle of the
    // total weight gives each host its weight.
    let lb = Lb::new(shared);
    let no_ctx = FakeLb { healthy: vec![HostHandle(0), HostHandle(1), HostHandle(2)], ..FakeLb::default() };
    let mut counts = [0; 3];
    for _ in 0..136 {
        counts[lb.choose_host(&no_ctx).unwrap().0] += 1;
    }
    assert_eq!(counts, [128, 1, 7]);
}

#[test]
fn refused_hosts_still_complete_pre_init_and_then_give_no_host() {
    let (engine, _) = testing::engine(false);
    let shared = ClusterShared::new(engine.clone(), engine.cluster("a").unwrap().clone());
    let mut fc = FakeCluster { refuse: true, ..FakeCluster::default() };
    shared.init(&mut fc);
    assert_eq!(fc.pre_init_completed, 1, "Envoy's init must not wait forever");
    assert!(logs().iter().any(|l| l.contains("cluster a: Envoy refused its hosts")));
    assert_eq!(Lb::new(shared).choose_host(&FakeLb::default()), None);
}

#[test]
fn cluster_config_names_its_mosn_cluster() {
    let p = std::env::temp_dir().join(format!("mosn-envoy-lb-{}.json", std::process::id()));
    std::fs::write(&p, testing::CONFIG).unwrap();
    let json = |extra: &str| format!(r#"{{"config_path": "{}"{extra}}}"#, p.display());
    assert!(ClusterConfig::load("a", json("").as_bytes()).is_some(), "defaults to the Envoy cluster name");
    assert!(ClusterConfig::load("x", json(r#", "cluster": "b""#).as_bytes()).is_some());
    assert!(ClusterConfig::load("zz", json("").as_bytes()).is_none());
    assert!(logs().iter().any(|l| l.contains(r#"cluster "zz" is not in"#)));
    std::fs::remove_file(p).ok();
}

// === The host-choice loop ===

#[test]
fn a_registered_stream_chooses_through_the_core() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    assert_eq!(s.a.choose_host(&lb_for(&host)), Some(HostHandle(0xa00)));
    assert_eq!(attempts(&f), 1);
    assert!(f.cell().state.borrow().chosen);
    // The next request continues the shared round robin.
    let (_g, host2, _) = request(&s.http, &[(":path", "/")]);
    assert_eq!(s.a.choose_host(&lb_for(&host2)), Some(HostHandle(0xa01)));
}

#[test]
fn without_a_stream_the_cluster_chooses_on_its_own() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    let mut lb = lb_for(&host);
    lb.context = false; // health checks and some async paths pass no context
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa00)));
    let empty = FakeLb::new(a_hosts(), &Default::default());
    assert_eq!(s.a.choose_host(&empty), Some(HostHandle(0xa01)));
    for bad in ["999999999999", "x", ""] {
        let lb = FakeLb::new(a_hosts(), &[("mosn.stream_id".to_string(), bad.to_string())].into());
        assert!(s.a.choose_host(&lb).is_some(), "{bad}");
    }
    assert_eq!(attempts(&f), 0, "the request's stream was never asked");
}

#[test]
fn a_stream_routed_to_another_cluster_does_not_decide_here() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(s.a.choose_host(&lb_for(&host)), Some(HostHandle(0xa00)), "cluster a's own choice");
    assert_eq!(attempts(&f), 0);
    assert!(!f.cell().state.borrow().chosen);
    let lb_b = FakeLb::new(vec![HostHandle(0xb00)], &host.filter_state);
    assert_eq!(s.b.choose_host(&lb_b), Some(HostHandle(0xb00)));
    assert_eq!(attempts(&f), 1);
}

#[test]
fn a_retry_never_picks_a_tried_host_while_another_is_healthy() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    let lb = lb_for(&host);
    let mut picked: Vec<HostHandle> = (0..3).map(|_| s.a.choose_host(&lb).unwrap()).collect();
    picked.sort_by_key(|h| h.0);
    assert_eq!(picked, a_hosts());
    // Each retry told the core the previous attempt failed (Envoy retried on its own).
    let st = f.cell().state.borrow();
    let stream = st.stream.as_ref().unwrap();
    assert_eq!(stream.failure_status(), Some(502));
    assert_eq!(s.engine.cluster("a").unwrap().hosts.iter().map(|h| h.state.failures()).sum::<u64>(), 2);
    drop(st);
    // The route's budget (1 + 2 retries) is spent: the core allows no fourth attempt.
    assert!(s.a.choose_host(&lb).is_none());

    // A host the core knows is unhealthy is skipped too.
    let s = setup();
    s.engine.cluster("a").unwrap().hosts[1].set_healthy(false);
    let (_f, host, _) = request(&s.http, &[(":path", "/")]);
    let lb = lb_for(&host);
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa00)));
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa02)));
}

#[test]
fn envoys_retry_predicate_is_honoured_on_retries() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    let mut lb = lb_for(&host);
    // The core's next choice (a01) is one Envoy's previous_hosts predicate rejects.
    lb.rejected = vec![HostHandle(0xa01)];
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa00)));
    assert!(lb.asked.borrow().is_empty(), "not asked on the first attempt");
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa02)));
    assert_eq!(*lb.asked.borrow(), [1, 2], "asked about a01 (rejected), then a02");
    assert_eq!(attempts(&f), 2, "a rejected pick is not an attempt (the core picked again within it)");

    // A host Envoy does not count as healthy can not be asked about: the core's pick stands.
    let s = setup();
    let (_f, host, _) = request(&s.http, &[(":path", "/")]);
    let mut lb = lb_for(&host);
    lb.healthy = vec![HostHandle(0xa00)];
    lb.rejected = vec![HostHandle(0xa01)];
    s.a.choose_host(&lb);
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa01)));
}

#[test]
fn a_predicate_rejecting_every_host_keeps_the_last_core_choice() {
    let s = setup();
    let (_f, host, _) = request(&s.http, &[(":path", "/")]);
    let mut lb = lb_for(&host);
    lb.rejected = a_hosts();
    assert_eq!(s.a.choose_host(&lb), Some(HostHandle(0xa00)));
    let h = s.a.choose_host(&lb);
    assert!(h.is_some() && h != Some(HostHandle(0xa00)), "{h:?}");
}

// === Fail closed ===

#[test]
fn a_stream_that_can_not_decide_gets_no_host() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    let lb = lb_for(&host);
    {
        let _busy = f.cell().state.borrow_mut();
        assert_eq!(s.a.choose_host(&lb), None, "busy");
    }
    let stream = f.cell().state.borrow_mut().stream.take();
    assert_eq!(s.a.choose_host(&lb), None, "core stream gone");
    f.cell().state.borrow_mut().stream = stream;
    assert!(s.a.choose_host(&lb).is_some());
    f.cell().poison();
    assert_eq!(s.a.choose_host(&lb), None, "poisoned");
}

#[test]
fn an_lb_panic_gives_no_host_and_poisons_the_stream() {
    let s = setup();
    let (f, mut host, _) = request(&s.http, &[(":path", "/")]);
    let mut lb = lb_for(&host);
    assert!(s.a.choose_host(&lb).is_some());
    lb.panic = true; // the retry path asks Envoy's healthy hosts
    assert_eq!(s.a.choose_host(&lb), None);
    assert!(f.cell().is_poisoned());
    assert!(logs().iter().any(|l| l == "mosn: panic in cluster_lb_choose_host: fake LB panics on purpose"), "{:?}", logs());
    // Envoy answers 503 no_healthy_upstream; it reaches the client unchanged.
    http_logic::local_reply(Some(&f), b"no_healthy_upstream");
    host.response = vec![(":status".into(), "503".into())];
    assert_eq!(http_logic::response_headers(Some(&f), &mut host, true), HeadersStatus::Continue);
    assert_eq!(host.response_values(":status"), ["503"]);
}

// === Outcome mapping ===

/// A request to `a` whose first attempt ended with Envoy local reply `details`; the
/// response status the client gets when Envoy's reply says `envoy_status`.
///
/// Asked both ways: with the status Envoy records (no copy of the response's headers) and
/// from the `:status` header; the two must agree.
fn status_after_local_reply(details: &str, envoy_status: &str) -> String {
    let [recorded, header] = [true, false].map(|records| {
        let s = setup();
        let (f, mut host, _) = request(&s.http, &[(":path", "/")]);
        s.a.choose_host(&lb_for(&host)).unwrap();
        http_logic::local_reply(Some(&f), details.as_bytes());
        host.response = vec![(":status".into(), envoy_status.into())];
        host.records_response_code = records;
        http_logic::response_headers(Some(&f), &mut host, true);
        assert_eq!(host.response_values("x-sent"), ["1"]);
        host.response_values(":status").join(",")
    });
    assert_eq!(recorded, header, "{details}");
    recorded
}

#[test]
fn envoy_local_replies_become_mosn_statuses() {
    assert_eq!(status_after_local_reply("upstream_reset_before_response_started{remote_connection_failure}", "503"), "502");
    assert_eq!(status_after_local_reply("upstream_reset_before_response_started{connection_termination}", "503"), "502");
    assert_eq!(status_after_local_reply("upstream_response_timeout", "504"), "504");
    assert_eq!(status_after_local_reply("upstream_per_try_timeout", "503"), "504");
    assert_eq!(status_after_local_reply("upstream_reset_before_response_started{overflow}", "503"), "503");
    // Not about an attempt: left alone.
    assert_eq!(status_after_local_reply("route_not_found", "404"), "404");
}

#[test]
fn an_upstream_response_is_reported_as_is() {
    for records in [true, false] {
        let s = setup();
        let (f, mut host, _) = request(&s.http, &[(":path", "/")]);
        s.a.choose_host(&lb_for(&host)).unwrap();
        host.response = vec![(":status".into(), "503".into())];
        host.records_response_code = records;
        http_logic::response_headers(Some(&f), &mut host, false);
        assert_eq!(host.response_values(":status"), ["503"], "an upstream's own 503 stays");
        let st = f.cell().state.borrow();
        assert!(st.outcome_reported);
        assert_eq!(st.stream.as_ref().unwrap().failure_status(), None);
        assert_eq!(s.engine.cluster("a").unwrap().hosts[0].state.failures(), 0);
        let stats = s.engine.listeners[0].counters.stats();
        assert_eq!(stats.codes.iter().find(|(c, _)| *c == 503).map(|(_, n)| *n), Some(1), "records: {records}");
    }
}

#[test]
fn no_healthy_host_is_502() {
    let s = setup();
    for h in &s.engine.cluster("a").unwrap().hosts {
        h.set_healthy(false);
    }
    let (f, mut host, _) = request(&s.http, &[(":path", "/")]);
    assert_eq!(s.a.choose_host(&lb_for(&host)), None);
    http_logic::local_reply(Some(&f), b"no_healthy_upstream");
    host.response = vec![(":status".into(), "503".into())];
    http_logic::response_headers(Some(&f), &mut host, true);
    assert_eq!(host.response_values(":status"), ["502"]);
}

#[test]
fn a_reported_outcome_is_not_reported_again_on_the_retry() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    let lb = lb_for(&host);
    s.a.choose_host(&lb).unwrap();
    http_logic::local_reply(Some(&f), b"upstream_per_try_timeout");
    // Envoy retries after its per-try timeout: the LB must not add a ConnectFailure.
    s.a.choose_host(&lb).unwrap();
    let st = f.cell().state.borrow();
    assert_eq!(st.stream.as_ref().unwrap().failure_status(), Some(504));
}

// === The upstream filter: each attempt's response, the core's retry verdict ===

/// The upstream filter's view of one attempt of the request served by `host`: its filter
/// state and this response.
fn attempt_response(host: &FakeHttp, status: &str, extra: &[(&str, &str)]) -> FakeHttp {
    let mut up = FakeHttp::new(&[]);
    up.filter_state = host.filter_state.clone();
    up.response = [(":status", status)].iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    crate::upstream::response_headers(&mut up);
    up
}

#[test]
fn the_core_decides_which_responses_are_retried() {
    let s = setup();
    let (f, host, status) = request(&s.http, &[(":path", "/x")]);
    assert_eq!(status, HeadersStatus::Continue);
    // Attempt 1: a 503 → retried (retry_on, any 5xx): marked for Envoy's retriable-headers.
    assert!(s.a.choose_host(&lb_for(&host)).is_some());
    let up = attempt_response(&host, "503", &[]);
    assert_eq!(up.response_values("x-mosn-retry"), ["1"], "{:?}", up.calls());
    // Attempt 2: a 404 is not retried; a backend's own mark is removed first.
    assert!(s.a.choose_host(&lb_for(&host)).is_some());
    let up = attempt_response(&host, "404", &[("x-mosn-retry", "1")]);
    assert!(up.response_values("x-mosn-retry").is_empty(), "a backend must not ask for retries: {:?}", up.calls());
    assert_eq!(attempts(&f), 2);
    // The downstream filter does not report the final response again (one outcome per attempt).
    let mut down = FakeHttp::new(&[]);
    down.response = vec![(":status".into(), "404".into())];
    http_logic::response_headers(Some(&f), &mut down, true);
    let stream_ok = f.cell().state.borrow().stream.as_ref().unwrap().failure_status().is_none();
    assert!(stream_ok, "the last outcome is the 404 response");
}

#[test]
fn retries_end_with_the_policy_and_the_mark_never_reaches_the_client() {
    let s = setup();
    let (f, host, _) = request(&s.http, &[(":path", "/x")]);
    // num_retries 2: attempts 1 and 2 are marked, attempt 3 (the last) is not.
    for (i, want) in [(1, true), (2, true), (3, false)] {
        assert!(s.a.choose_host(&lb_for(&host)).is_some(), "attempt {i}");
        let up = attempt_response(&host, "500", &[]);
        assert_eq!(!up.response_values("x-mosn-retry").is_empty(), want, "attempt {i}");
    }
    // Had Envoy stopped retrying earlier, the downstream filter strips a mark left on.
    let mut down = FakeHttp::new(&[]);
    down.response = vec![(":status".into(), "500".into()), ("x-mosn-retry".into(), "1".into())];
    http_logic::response_headers(Some(&f), &mut down, true);
    assert!(down.response_values("x-mosn-retry").is_empty());
}

#[test]
fn an_upstream_filter_without_a_stream_only_strips_the_mark() {
    let mut up = FakeHttp::new(&[]);
    up.response = vec![(":status".into(), "503".into()), ("x-mosn-retry".into(), "1".into())];
    crate::upstream::response_headers(&mut up);
    assert!(up.response_values("x-mosn-retry").is_empty());
    assert!(crate::upstream::is_upstream_config(br#"{"config_path": "/x", "upstream": true}"#));
    assert!(!crate::upstream::is_upstream_config(br#"{"config_path": "/x", "listener": "l"}"#));
    assert!(!crate::upstream::is_upstream_config(br#"{"upstream": true, "listener": "l"}"#));
}

// === The client address ===

/// A filter config and the LB of cluster `a` (handles 0xa00..) with `a` as LB_MAGLEV.
fn maglev_setup() -> (HttpConfig, Lb) {
    let engine = Engine::from_json(&testing::CONFIG.replacen(r#""lb_type": "LB_ROUNDROBIN""#, r#""lb_type": "LB_MAGLEV""#, 1)).unwrap();
    let shared = ClusterShared::new(engine.clone(), engine.cluster("a").unwrap().clone());
    shared.init(&mut FakeCluster { base: 0xa00, ..FakeCluster::default() });
    (HttpConfig::new(engine, 0), Lb::new(shared))
}

/// The host `a` picks for one request from `client` (Envoy's `source.address`).
fn pick_for_client(http: &HttpConfig, a: &Lb, client: Option<&str>) -> HostHandle {
    let f = http.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    host.source_address = client.map(str::to_string);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::Continue);
    let h = a.choose_host(&lb_for(&host)).expect("a host");
    http_logic::stream_complete(Some(&f), &mut FakeHttp::new(&[]));
    h
}

#[test]
fn any_client_address_value_is_safe() {
    let (http, a) = maglev_setup();
    // Something that is not an address is not handed to the core; the request is served.
    for client in [None, Some("127.0.0.1:40000"), Some("/tmp/envoy.sock"), Some("HTTP/1.1"), Some("")] {
        pick_for_client(&http, &a, client);
    }
}

#[test]
fn the_client_address_is_maglevs_hash_key() {
    let (http, a) = maglev_setup();
    // One client IP, any port: always the same host.
    let first = pick_for_client(&http, &a, Some("10.0.0.1:1000"));
    for port in [1001, 2000, 65000] {
        assert_eq!(pick_for_client(&http, &a, Some(&format!("10.0.0.1:{port}"))), first);
    }
    // Many clients spread over the hosts.
    let spread: std::collections::HashSet<_> = (1..=32).map(|i| pick_for_client(&http, &a, Some(&format!("10.0.1.{i}:5000")))).collect();
    assert!(spread.len() > 1, "{spread:?}");
}

// === Override host (a request the core can not retry) ===

/// [`setup`]'s clusters, with a filter config that hands hosts to Envoy directly.
fn pinning() -> Setup {
    let s = setup();
    Setup { http: HttpConfig::pinning_hosts(s.engine.clone(), 0), ..s }
}

/// A 200 from cluster b's host for `f`, then its end: the response hook reported the
/// attempt's outcome to the core, and the end left nothing in flight on b or its host.
fn answered_and_ended(s: &Setup, f: &HttpFilter, host: &mut FakeHttp) {
    host.response = vec![(":status".into(), "200".into())];
    http_logic::response_headers(Some(f), host, true);
    assert!(f.cell().state.borrow().outcome_reported);
    http_logic::stream_complete(Some(f), &mut FakeHttp::new(&[]));
    assert_eq!(s.engine.cluster("b").unwrap().hosts[0].state.active(), 0);
    assert_eq!(s.engine.cluster("b").unwrap().stats().rq_active, 0);
}

#[test]
fn a_request_that_can_not_be_retried_gets_its_host_as_envoys_override_host() {
    let s = pinning();
    // Route to `b` (no retry policy): its one host, chosen by the core in the filter.
    let (f, mut host, status) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(status, HeadersStatus::Continue);
    assert_eq!(host.override_host.as_deref(), Some("127.0.0.1:21"));
    assert_eq!(host.routed.as_deref(), Some("b"));
    // Not published: the LB is never asked (Envoy takes the override host) and finds no stream.
    assert!(!host.filter_state.contains_key("mosn.stream_id"));
    assert!(crate::registry::get(f.id()).is_none());
    assert_eq!(attempts(&f), 1);
    {
        let st = f.cell().state.borrow();
        assert!(st.chosen && !st.outcome_reported);
        assert_eq!(st.stream.as_ref().unwrap().upstream_host().map(|h| &*h.address_text), Some("127.0.0.1:21"));
    }
    // The attempt's outcome reaches the core from the response hook.
    answered_and_ended(&s, &f, &mut host);
}

#[test]
fn a_request_the_core_may_retry_is_published_for_the_lb_instead() {
    let s = pinning();
    // Route to `a` retries: every attempt's host comes from the LB.
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    assert_eq!(host.override_host, None);
    assert_eq!(host.filter_state.get("mosn.stream_id"), Some(&f.id().to_string()));
    assert_eq!(attempts(&f), 0);
    assert_eq!(s.a.choose_host(&lb_for(&host)), Some(HostHandle(0xa00)));
    assert_eq!(attempts(&f), 1);
}

#[test]
fn a_request_the_core_has_no_host_for_gets_that_answer_from_the_lb_once() {
    let s = pinning();
    s.engine.cluster("b").unwrap().hosts[0].set_healthy(false);
    let (f, host, status) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(status, HeadersStatus::Continue);
    assert_eq!(host.override_host, None);
    assert_eq!(host.filter_state.get("mosn.stream_id"), Some(&f.id().to_string()));
    // The LB gives Envoy the core's answer without asking the core again.
    let lb = FakeLb::new(vec![HostHandle(0xb00)], &host.filter_state);
    let before = s.engine.cluster("b").unwrap().stats().no_healthy;
    assert_eq!(s.b.choose_host(&lb), None);
    assert_eq!(s.engine.cluster("b").unwrap().stats().no_healthy, before, "counted once, in the filter");
    assert!(lb.ended.borrow().is_empty(), "Envoy's own no_healthy_upstream details");
    let st = f.cell().state.borrow();
    assert!(st.chosen && st.outcome_reported && st.no_host.is_none());
}

#[test]
fn a_refused_override_host_answers_500() {
    let s = pinning();
    let f = s.http.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-route", "b")]);
    host.refuse_override_host = true;
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_override_host_refused".to_string())]);
}

// === Pinned through the LB (`router_follows`) ===

/// [`setup`]'s clusters, with a filter config whose router follows (the generated one's).
fn pinning_through_lb() -> Setup {
    let s = setup();
    crate::pin::clear();
    Setup { http: HttpConfig::pinning_hosts_through_lb(s.engine.clone(), 0), ..s }
}

#[test]
fn when_the_router_follows_the_lb_gets_the_host_the_core_chose_in_the_filter() {
    let s = pinning_through_lb();
    let (f, mut host, status) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(status, HeadersStatus::Continue);
    // No override host, no filter state, no registry: the choice waits for the LB.
    assert_eq!(host.override_host, None);
    assert!(!host.filter_state.contains_key("mosn.stream_id"));
    assert!(crate::registry::get(f.id()).is_none());
    assert_eq!(crate::pin::waiting(), Some((f.id(), 0)));
    assert_eq!(attempts(&f), 1);
    // b's LB takes it, once.
    let lb_b = FakeLb::new(vec![HostHandle(0xb00)], &host.filter_state);
    assert_eq!(s.b.choose_host(&lb_b), Some(HostHandle(0xb00)));
    assert_eq!(crate::pin::waiting(), None);
    assert_eq!(attempts(&f), 1, "the LB did not ask the core again");
    // The attempt's outcome reaches the core from the response hook, as with an override host.
    answered_and_ended(&s, &f, &mut host);
}

#[test]
fn another_clusters_lb_drops_a_pinned_host_with_an_error() {
    let s = pinning_through_lb();
    let (f, host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(crate::pin::waiting(), Some((f.id(), 0)));
    // Not meant for a request of cluster a: dropped, logged, and a's request is served as
    // one without a stream (a's own round robin).
    let lb_a = FakeLb::new(a_hosts(), &host.filter_state);
    let got = s.a.choose_host(&lb_a).expect("a's own choice");
    assert!(a_hosts().contains(&got), "{got:?}");
    assert_eq!(crate::pin::waiting(), None);
    assert!(logs().iter().any(|l| l.contains("cluster a's LB found a host pinned for cluster b")), "{:?}", logs());
}

#[test]
fn a_poisoned_stream_still_clears_its_pin_when_envoy_answers() {
    let s = pinning_through_lb();
    // Envoy's local reply (the router answered without asking the LB), the stream poisoned.
    let (f, _host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    f.cell().poison();
    http_logic::local_reply(Some(&f), b"maintenance_mode");
    assert_eq!(crate::pin::waiting(), None);
    // Or only the response headers come.
    let (g, mut host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    g.cell().poison();
    host.response = vec![(":status".into(), "503".into())];
    http_logic::response_headers(Some(&g), &mut host, true);
    assert_eq!(crate::pin::waiting(), None);
}

#[test]
fn a_dropped_filter_clears_its_pin() {
    let s = pinning_through_lb();
    let (f, _host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(crate::pin::waiting(), Some((f.id(), 0)));
    drop(f);
    assert_eq!(crate::pin::waiting(), None);
}

#[test]
fn a_host_pinned_from_another_config_of_the_same_cluster_is_found_by_address() {
    let s = pinning_through_lb();
    // Cluster b of a second engine (a reload's config): not the LB's own cluster object, so
    // its host index says nothing about the LB's handles; the worker's host at the
    // address is the one.
    let (other, _) = testing::engine(false);
    // SAFETY: `other` keeps its cluster b alive past the LB's use of the slot below.
    unsafe { crate::pin::pin(7, other.cluster("b").unwrap(), 0) };
    let mut lb = FakeLb::new(vec![HostHandle(0xb00)], &Default::default());
    lb.by_address.insert("127.0.0.1:21".into(), HostHandle(0xb21));
    assert_eq!(s.b.choose_host(&lb), Some(HostHandle(0xb21)));
    assert_eq!(*lb.lookups.borrow(), ["127.0.0.1:21"]);
    assert_eq!(crate::pin::waiting(), None);
    // Not in the worker's view: no host (as Envoy's strict override host), not another.
    // SAFETY: as above.
    unsafe { crate::pin::pin(7, other.cluster("b").unwrap(), 0) };
    let lb = FakeLb::new(vec![HostHandle(0xb00)], &Default::default());
    assert_eq!(s.b.choose_host(&lb), None);
}

#[test]
fn a_host_pinned_after_the_headers_waited_for_the_body_reaches_the_lb_too() {
    // The core asks for the body first (the script filter's `needs_body`): the host is
    // chosen and pinned in the body hook, which lets the headers and body go on together.
    let (engine, _) = testing::engine(true);
    let shared = ClusterShared::new(engine.clone(), engine.cluster("b").unwrap().clone());
    shared.init(&mut FakeCluster { base: 0xb00, ..FakeCluster::default() });
    let b = Lb::new(shared);
    crate::pin::clear();
    let http = HttpConfig::pinning_hosts_through_lb(engine.clone(), 0);
    let f = http.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-route", "b")]);
    host.received = b"hello".to_vec();
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, false), HeadersStatus::StopIteration);
    assert_eq!(crate::pin::waiting(), None, "nothing chosen before the body");
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), crate::host::BodyStatus::Continue);
    assert_eq!(crate::pin::waiting(), Some((f.id(), 0)));
    let lb = FakeLb::new(vec![HostHandle(0xb00)], &host.filter_state);
    assert_eq!(b.choose_host(&lb), Some(HostHandle(0xb00)));
    assert_eq!(crate::pin::waiting(), None);
}

#[test]
fn an_lb_without_a_request_never_takes_a_pinned_host() {
    let s = pinning_through_lb();
    let (f, _host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    // A health check or a NULL context: the cluster's own choice, the pin stays.
    let no_ctx = FakeLb { healthy: vec![HostHandle(0xb00)], ..FakeLb::default() };
    assert_eq!(s.b.choose_host(&no_ctx), Some(HostHandle(0xb00)));
    assert_eq!(crate::pin::waiting(), Some((f.id(), 0)));
    crate::pin::clear();
}

#[test]
fn a_pinned_host_the_lb_never_took_is_cleared_at_the_streams_next_hook_or_end() {
    let s = pinning_through_lb();
    // The router answered before it asked for a host: the response hook clears the pin.
    let (f, mut host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(crate::pin::waiting(), Some((f.id(), 0)));
    host.response = vec![(":status".into(), "503".into())];
    http_logic::response_headers(Some(&f), &mut host, true);
    assert_eq!(crate::pin::waiting(), None);
    // Or the stream ends first.
    let (g, _host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(crate::pin::waiting(), Some((g.id(), 0)));
    http_logic::stream_complete(Some(&g), &mut FakeHttp::new(&[]));
    assert_eq!(crate::pin::waiting(), None);
    // Another stream's end leaves a pin alone.
    let (h, _host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    http_logic::stream_complete(Some(&f), &mut FakeHttp::new(&[]));
    assert_eq!(crate::pin::waiting(), Some((h.id(), 0)));
    http_logic::stream_complete(Some(&h), &mut FakeHttp::new(&[]));
}

#[test]
fn a_request_whose_host_comes_from_the_lb_clears_a_pin_left_behind() {
    let s = pinning_through_lb();
    // A pin nobody cleared (a bug elsewhere), of cluster a's third host.
    // SAFETY: `s.engine` keeps cluster a alive past the test's use of the slot.
    unsafe { crate::pin::pin(u64::MAX, s.engine.cluster("a").unwrap(), 2) };
    // Route to `a` retries: published for the LB, which asks the stream, not the pin.
    let (f, host, _) = request(&s.http, &[(":path", "/")]);
    assert_eq!(host.filter_state.get("mosn.stream_id"), Some(&f.id().to_string()));
    assert_eq!(crate::pin::waiting(), None);
    assert_eq!(s.a.choose_host(&lb_for(&host)), Some(HostHandle(0xa00)));
    assert_eq!(attempts(&f), 1);
}

#[test]
fn without_router_follows_the_host_stays_envoys_override_host() {
    let s = pinning();
    crate::pin::clear();
    let (_f, host, _) = request(&s.http, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(host.override_host.as_deref(), Some("127.0.0.1:21"));
    assert_eq!(crate::pin::waiting(), None);
}

// === Circuit breakers ===

#[test]
fn an_overflow_ends_the_selection_with_its_own_details_and_answers_503() {
    // Cluster `a` takes one request at a time (MOSN's max_requests).
    let engine = Engine::from_json(&testing::CONFIG.replacen(
        r#""lb_type": "LB_ROUNDROBIN","#,
        r#""lb_type": "LB_ROUNDROBIN", "circuit_breakers": [{"max_requests": 1}],"#,
        1,
    ))
    .unwrap();
    let http = HttpConfig::new(engine.clone(), 0);
    let shared = ClusterShared::new(engine.clone(), engine.cluster("a").unwrap().clone());
    shared.init(&mut FakeCluster { base: 0xa00, ..FakeCluster::default() });
    let a = Lb::new(shared);

    let (_first, host1, _) = request(&http, &[(":path", "/")]);
    let lb1 = lb_for(&host1);
    assert_eq!(a.choose_host(&lb1), Some(HostHandle(0xa00)));
    assert!(lb1.ended.borrow().is_empty());

    // The second request overflows: no host, and the selection ends with the overflow's details.
    let (f, mut host2, _) = request(&http, &[(":path", "/")]);
    let lb2 = lb_for(&host2);
    assert_eq!(a.choose_host(&lb2), None);
    assert_eq!(*lb2.ended.borrow(), ["mosn_upstream_overflow"]);
    assert!(f.cell().state.borrow().outcome_reported, "no attempt is in flight");
    // Envoy answers 503 with those details: the status stays (MOSN's overflow is 503), no
    // attempt outcome is reported for it, and the core's flags say UO.
    http_logic::local_reply(Some(&f), b"mosn_upstream_overflow");
    host2.response = vec![(":status".into(), "503".into())];
    http_logic::response_headers(Some(&f), &mut host2, true);
    assert_eq!(host2.response_values(":status"), ["503"]);
    let st = f.cell().state.borrow();
    let stream = st.stream.as_ref().unwrap();
    assert_eq!(stream.failure_status(), Some(503));
    assert_ne!(stream.flags() & mosn_extension::api::flags::UPSTREAM_OVERFLOW, 0);
    assert_eq!(attempts(&f), 0);
    assert_eq!(engine.cluster("a").unwrap().hosts.iter().map(|h| h.state.failures()).sum::<u64>(), 0);
}

#[test]
fn no_healthy_host_keeps_envoys_own_details() {
    let s = setup();
    for h in &s.engine.cluster("a").unwrap().hosts {
        h.set_healthy(false);
    }
    let (_f, host, _) = request(&s.http, &[(":path", "/")]);
    let lb = lb_for(&host);
    assert_eq!(s.a.choose_host(&lb), None);
    assert!(lb.ended.borrow().is_empty(), "Envoy's no_healthy_upstream reply");
}
