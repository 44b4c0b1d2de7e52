//! Request mirroring: the copies a released request leaves in its config's queue (headers as
//! they go upstream, the buffered body, one per host the core chose), their way to the main
//! thread (one scheduler commit per batch, bounds, a closed queue), the callouts sent there,
//! and the LB sending each copy to exactly its host, for copies only.

use crate::host::{BodyStatus, HeaderKind, HeadersStatus, HostHandle};
use crate::http_logic::{self, HttpConfig, HttpFilter};
use crate::lb::{ClusterShared, Lb};
use crate::mirror::{self, MirrorCopy, MirrorSender, MAX_IN_FLIGHT, MAX_PENDING_BYTES, MAX_PENDING_COPIES, MIRROR_EVENT, MIRROR_HOST_KEY};
use crate::testing::{recording_scheduler, Call, FakeCluster, FakeConfig, FakeHttp, FakeLb, ScriptFilter};
use mosn_extension::Engine;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Routes: `x-route: plain` → cluster `a`, no mirroring; `x-route: bare` → `a`, mirrored,
/// no timeout; anything else → `a` (3 s timeout, a retry policy), mirrored to cluster `m`
/// (two hosts) at 100 %. The listener's `mirror` filter broadcasts; a second listener has
/// none.
const CONFIG: &str = r#"{
  "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
      {"match": {"prefix": "/", "headers": [{"name": "x-route", "value": "plain"}]}, "route": {"cluster_name": "a"}},
      {"match": {"prefix": "/", "headers": [{"name": "x-route", "value": "bare"}]}, "route": {"cluster_name": "a"},
       "request_mirror_policies": {"cluster": "m", "percent": 100}},
      {"match": {"prefix": "/"}, "route": {"cluster_name": "a", "timeout": "3s",
        "retry_policy": {"retry_on": true, "num_retries": 2, "retry_timeout": "1s"}},
       "request_mirror_policies": {"cluster": "m", "percent": 100}}]}]}],
    "listeners": [
     {"name": "l", "address": "127.0.0.1:1", "bind_port": true,
      "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
      "stream_filters": [{"type": "mirror", "config": {"broadcast": true}}]},
     {"name": "nomirror", "address": "127.0.0.1:2", "bind_port": true,
      "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
  "cluster_manager": {"clusters": [
    {"name": "a", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": "127.0.0.1:11"}, {"address": "127.0.0.1:12"}]},
    {"name": "m", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": "127.0.0.1:31"}, {"address": "127.0.0.1:32"}]}]}
}"#;

const M1: &str = "127.0.0.1:31";
const M2: &str = "127.0.0.1:32";

fn engine() -> Arc<Engine> {
    Engine::from_json(CONFIG).unwrap_or_else(|e| panic!("mirror test config: {e:?}"))
}

/// The filter config of `listener` with an open copy queue, and its scheduler's calls.
fn config(engine: &Arc<Engine>, listener: usize) -> (HttpConfig, Arc<Mutex<Vec<Call>>>) {
    let cfg = HttpConfig::new(engine.clone(), listener);
    let (sched, calls) = recording_scheduler();
    cfg.mirror().open(sched);
    (cfg, calls)
}

/// A request with a body, released after the body was buffered.
fn post(cfg: &HttpConfig, headers: &[(&str, &str)], body: &[u8]) -> (HttpFilter, FakeHttp) {
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(headers);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, false), HeadersStatus::StopIteration, "the body is buffered first");
    assert_eq!(cfg.mirror().pending(), 0, "no copy before the request is released");
    host.received = body.to_vec();
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
    (f, host)
}

/// A request without a body.
fn get(cfg: &HttpConfig, headers: &[(&str, &str)]) -> (HttpFilter, FakeHttp) {
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(headers);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::Continue);
    (f, host)
}

fn commits(calls: &Mutex<Vec<Call>>) -> usize {
    calls.lock().unwrap().iter().filter(|c| **c == Call::Commit(MIRROR_EVENT)).count()
}

fn end(f: HttpFilter) {
    http_logic::stream_complete(Some(&f), &mut FakeHttp::new(&[]));
    f.destroy();
}

// === Copies ===

#[test]
fn a_released_request_sends_one_copy_per_mirror_host_with_its_upstream_headers_and_body() {
    let e = engine();
    let (cfg, sched) = config(&e, 0);
    let (f, host) = post(
        &cfg,
        &[
            (":method", "POST"),
            (":path", "/p?q=1"),
            (":authority", "a.example"),
            ("x-a", "1"),
            ("content-length", "5"),
            ("connection", "keep-alive"),
            ("expect", "100-continue"),
            ("x-mosn-cluster", "forged"),
            ("x-envoy-max-retries", "9"),
            (MIRROR_HOST_KEY, "127.0.0.1:9"),
        ],
        b"hello",
    );
    assert_eq!(cfg.mirror().pending(), 2);
    assert_eq!(commits(&sched), 1, "one event brings the batch to the main thread");
    // The request itself goes upstream without the mirror key.
    assert!(host.calls().contains(&Call::Remove(HeaderKind::Request, MIRROR_HOST_KEY.into())));
    assert!(host.values(MIRROR_HOST_KEY).is_empty());
    assert_eq!(host.routed.as_deref(), Some("a"));
    // The stream ends before the main thread runs: the copies do not depend on it.
    end(f);
    let mut main = FakeConfig::default();
    mirror::send_pending(cfg.mirror(), &mut main);
    assert_eq!(main.callouts.len(), 2);
    let hosts: Vec<Vec<&str>> = main.callouts.iter().map(|c| c.values(MIRROR_HOST_KEY)).collect();
    assert_eq!(hosts, [[M1], [M2]], "each copy names the host the core chose for it");
    for c in &main.callouts {
        assert_eq!(c.cluster, "m");
        assert_eq!(c.body, b"hello");
        assert_eq!(c.timeout_ms, 3000, "the route's timeout");
        let names: Vec<&str> = c.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [":method", ":path", ":authority", "x-a", "x-mosn-cluster", "content-length", MIRROR_HOST_KEY],
            "{:?}",
            c.headers
        );
        assert_eq!(c.values(":path"), ["/p?q=1"]);
        assert_eq!(c.values(":authority"), ["a.example"]);
        assert_eq!(c.values("content-length"), ["5"]);
    }
    // Drained: the main thread sends each copy once.
    let mut again = FakeConfig::default();
    mirror::send_pending(cfg.mirror(), &mut again);
    assert!(again.callouts.is_empty());
}

#[test]
fn copies_carry_the_cores_header_mutations_and_the_bodys_length() {
    // The script filter (before the mirror filter) makes SET a=1, ADD a=2, REMOVE b, SET c=3
    // and forges x-envoy-max-retries (and x-mosn-cluster, an ordinary header).
    let mut engine = Engine::load(CONFIG).unwrap_or_else(|e| panic!("{e:?}"));
    let script = ScriptFilter { needs_body: false, waker: Arc::new(Mutex::new(None)) };
    engine.listener_mut(0).unwrap().insert_filter(0, Arc::new(script));
    let e = Arc::new(engine);
    let (cfg, _) = config(&e, 0);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[
        (":method", "PUT"),
        (":path", "/u"),
        (":authority", "h"),
        ("b", "old"),
        ("x-test-ops", "1"),
        ("transfer-encoding", "chunked"),
    ]);
    http_logic::request_headers(Some(&f), &mut host, false);
    // A chunked body, buffered in two chunks (the last one already in the buffer).
    host.buffered = vec![b"ab".to_vec(), b"cd".to_vec()];
    host.received = b"cd".to_vec();
    host.received_is_buffered = true;
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
    host.request.push(("x-late".into(), "after".into()));
    let mut main = FakeConfig::default();
    mirror::send_pending(cfg.mirror(), &mut main);
    assert_eq!(main.callouts.len(), 2);
    let c = &main.callouts[0];
    assert_eq!((c.values("a"), c.values("b"), c.values("c")), (vec!["1", "2"], vec![], vec!["3"]), "{:?}", c.headers);
    assert!(c.values("x-envoy-max-retries").is_empty(), "{:?}", c.headers);
    assert_eq!(c.values("x-mosn-cluster"), ["forged"], "as the request itself carries it");
    assert_eq!(c.body, b"abcd");
    assert_eq!(c.values("content-length"), ["4"], "the body's length instead of chunked");
    assert!(c.values("transfer-encoding").is_empty());
    assert!(c.values("x-late").is_empty(), "the headers are taken as the request is released");
    end(f);
}

#[test]
fn a_request_without_a_body_is_copied_without_one() {
    let e = engine();
    let (cfg, _) = config(&e, 0);
    let (f, _host) = get(&cfg, &[(":method", "GET"), (":path", "/g"), (":authority", "h"), ("x-route", "bare")]);
    let mut main = FakeConfig::default();
    mirror::send_pending(cfg.mirror(), &mut main);
    assert_eq!(main.callouts.len(), 2);
    for c in &main.callouts {
        assert!(c.body.is_empty());
        assert!(c.values("content-length").is_empty());
        assert_eq!(c.timeout_ms, 5000, "no route timeout: the default");
    }
    end(f);
}

#[test]
fn no_policy_or_no_mirror_filter_no_copies() {
    let e = engine();
    let (cfg, sched) = config(&e, 0);
    let (f, _) = get(&cfg, &[(":path", "/"), ("x-route", "plain")]);
    end(f);
    // The route mirrors, but this listener has no mirror filter (MOSN: no copies then).
    let (other, other_sched) = config(&e, 1);
    let (g, _) = get(&other, &[(":path", "/")]);
    end(g);
    assert_eq!((cfg.mirror().pending(), other.mirror().pending()), (0, 0));
    assert_eq!(commits(&sched) + commits(&other_sched), 0);
}

// === The queue ===

fn copy(cluster: &str, address: &str, body: usize) -> MirrorCopy {
    MirrorCopy {
        cluster: cluster.into(),
        address: address.into(),
        headers: Arc::from(vec![(b":path".to_vec(), b"/".to_vec())]),
        body: Arc::from(vec![b'x'; body]),
        timeout_ms: 100,
    }
}

#[test]
fn one_commit_per_batch_and_another_after_the_main_thread_drained() {
    let q = MirrorSender::new();
    let (sched, calls) = recording_scheduler();
    q.open(sched);
    q.push(vec![copy("m", M1, 1)]);
    q.push(vec![copy("m", M2, 1), copy("m", M1, 1)]);
    assert_eq!((q.pending(), commits(&calls)), (3, 1));
    let mut main = FakeConfig::default();
    mirror::send_pending(&q, &mut main);
    assert_eq!(main.callouts.len(), 3);
    q.push(vec![copy("m", M1, 1)]);
    assert_eq!(commits(&calls), 2);
    q.push(Vec::new());
    assert_eq!(commits(&calls), 2, "nothing to send, no event");
}

#[test]
fn a_full_queue_drops_copies_and_never_blocks() {
    let q = MirrorSender::new();
    let (sched, _) = recording_scheduler();
    q.open(sched);
    q.push((0..MAX_PENDING_COPIES + 5).map(|_| copy("m", M1, 0)).collect());
    assert_eq!((q.pending(), q.dropped()), (MAX_PENDING_COPIES, 5));
    let mut main = FakeConfig::default();
    mirror::send_pending(&q, &mut main);
    // Bytes: one copy larger than the whole budget is dropped, a small one still goes.
    q.push(vec![copy("m", M1, MAX_PENDING_BYTES + 1), copy("m", M2, 10)]);
    assert_eq!((q.pending(), q.dropped()), (1, 6));
}

#[test]
fn without_a_scheduler_or_after_close_copies_are_dropped() {
    let never = MirrorSender::new();
    never.push(vec![copy("m", M1, 1)]);
    assert_eq!((never.pending(), never.dropped()), (0, 1));

    let q = MirrorSender::new();
    let (sched, calls) = recording_scheduler();
    q.open(sched);
    q.push(vec![copy("m", M1, 1)]);
    q.close();
    assert_eq!(*calls.lock().unwrap(), [Call::Commit(MIRROR_EVENT), Call::SchedulerDelete]);
    assert_eq!(q.pending(), 0, "queued copies are dropped with the config");
    // A late push (a worker finishing a request) neither queues nor commits.
    q.push(vec![copy("m", M1, 1)]);
    let (again, _) = recording_scheduler();
    q.open(again);
    q.push(vec![copy("m", M1, 1)]);
    assert_eq!(q.pending(), 0);
    assert_eq!(calls.lock().unwrap().len(), 2);
    q.close();
}

#[test]
fn a_refused_callout_is_logged_and_the_others_still_go() {
    let q = MirrorSender::new();
    let (sched, _) = recording_scheduler();
    q.open(sched);
    q.push(vec![copy("gone", M1, 1), copy("m", M2, 1)]);
    let mut main = FakeConfig { missing: vec!["gone".into()], ..FakeConfig::default() };
    mirror::send_pending(&q, &mut main);
    assert_eq!(main.refused, ["gone"]);
    assert_eq!(main.callouts.len(), 1);
    assert_eq!(main.callouts[0].cluster, "m");
    assert_eq!(q.in_flight(), 1, "only the copy sent waits for an answer");
    // A copy's answer is only logged.
    mirror::callout_done(&q, 1, 0, Some(b"200"));
    assert_eq!(q.in_flight(), 0);
    mirror::callout_done(&q, 2, 1, None);
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn copies_beyond_the_in_flight_bound_are_dropped_until_answers_come() {
    let q = MirrorSender::new();
    let (sched, _) = recording_scheduler();
    q.open(sched);
    let mut main = FakeConfig::default();
    for _ in 0..3 {
        q.push((0..MAX_PENDING_COPIES).map(|_| copy("m", M1, 0)).collect());
        mirror::send_pending(&q, &mut main);
    }
    assert_eq!(main.callouts.len(), MAX_IN_FLIGHT);
    assert_eq!(q.dropped(), (3 * MAX_PENDING_COPIES - MAX_IN_FLIGHT) as u64);
    mirror::callout_done(&q, 1, 0, Some(b"200"));
    q.push(vec![copy("m", M2, 0), copy("m", M2, 0)]);
    mirror::send_pending(&q, &mut main);
    assert_eq!(main.callouts.len(), MAX_IN_FLIGHT + 1, "one answer, one more copy");
}

// === The LB ===

/// Cluster `m`'s LB (hosts 0xe00, 0xe01).
fn m_lb(e: &Arc<Engine>) -> Lb {
    let shared = ClusterShared::new(e.clone(), e.cluster("m").unwrap().clone());
    shared.init(&mut FakeCluster { base: 0xe00, ..FakeCluster::default() });
    Lb::new(shared)
}

fn copy_lb(address: &str) -> FakeLb {
    let mut lb = FakeLb::new(vec![HostHandle(0xe00), HostHandle(0xe01)], &HashMap::new());
    lb.headers.insert(MIRROR_HOST_KEY.into(), address.into());
    lb
}

#[test]
fn the_lb_sends_each_copy_to_exactly_the_host_the_core_chose() {
    let e = engine();
    let lb = m_lb(&e);
    for _ in 0..3 {
        assert_eq!(lb.choose_host(&copy_lb(M2)), Some(HostHandle(0xe01)));
        assert_eq!(lb.choose_host(&copy_lb(M1)), Some(HostHandle(0xe00)));
    }
    // An address that is no host of this cluster: no host (never another one).
    assert_eq!(lb.choose_host(&copy_lb("127.0.0.1:11")), None);
    // Not an address: an ordinary request without a stream (the cluster's own choice).
    assert!(lb.choose_host(&copy_lb("mr1")).is_some());
    // A request with a stream id (even one this worker does not know) is no copy: the key is
    // ignored, the cluster's own round robin picks.
    let mut forged = copy_lb(M2);
    forged.filter_state.insert(crate::policy::STREAM_ID_KEY.into(), b"999999".to_vec());
    let picks: Vec<_> = (0..4).map(|_| lb.choose_host(&forged)).collect();
    assert!(picks.contains(&Some(HostHandle(0xe00))), "{picks:?}");
    // Without a context nothing is read.
    let mut no_ctx = copy_lb(M2);
    no_ctx.context = false;
    assert!(lb.choose_host(&no_ctx).is_some());
}

#[test]
fn a_client_request_can_not_pick_its_host_with_the_mirror_key() {
    let e = engine();
    let (cfg, _) = config(&e, 0);
    let a = {
        let shared = ClusterShared::new(e.clone(), e.cluster("a").unwrap().clone());
        shared.init(&mut FakeCluster { base: 0xa00, ..FakeCluster::default() });
        Lb::new(shared)
    };
    // Suppose the key reached the LB on a client's request (it can not: Envoy's codecs refuse
    // it, and the filter removes it): the request has a stream, so the core chooses.
    for (i, want) in [(0, 0xa00), (1, 0xa01)] {
        let (f, host) = get(&cfg, &[(":path", "/"), ("x-route", "plain")]);
        let mut lb = FakeLb::new(vec![HostHandle(0xa00), HostHandle(0xa01)], &host.filter_state);
        lb.headers.insert(MIRROR_HOST_KEY.into(), "127.0.0.1:12".into());
        assert_eq!(a.choose_host(&lb), Some(HostHandle(want)), "request {i}: the core's round robin");
        assert_eq!(f.cell().state.borrow().stream.as_ref().unwrap().attempts(), 1);
        end(f);
    }
}
