//! The HTTP filter's logic: header application, local replies, the request state machine,
//! fail-closed paths and the panic policy.

use super::{config, request};
use crate::host::{BodyStatus, HeaderKind, HeadersStatus, TrailersStatus};
use crate::http_logic::{self, HttpConfig};
use crate::policy;
use crate::registry::{self, Phase};
use crate::testing::{logs, Call, FakeHttp};
use mosn_extension::Engine;

const REQ: HeaderKind = HeaderKind::Request;

fn set(name: &str, value: &str) -> Call {
    Call::Set(REQ, name.into(), value.into())
}

/// What sets a header the request did not have and no mutation named (an add).
fn add(name: &str, value: &str) -> Call {
    Call::Add(REQ, name.into(), value.into())
}

fn remove(name: &str) -> Call {
    Call::Remove(REQ, name.into())
}

fn position(calls: &[Call], c: &Call) -> usize {
    calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c:?} not in {calls:#?}"))
}

// === Header application ===

#[test]
fn forward_applies_core_mutations_in_order_then_the_policy_headers_then_names_the_cluster() {
    let (cfg, _) = config(false);
    let (f, host, status) = request(
        &cfg,
        &[
            (":path", "/x"),
            ("uid", "2"),
            ("b", "old"),
            ("x-test-ops", "1"),
            ("x-mosn-cluster", "client-forged"),
            ("x-envoy-retriable-status-codes", "404"),
        ],
    );
    assert_eq!(status, HeadersStatus::Continue);
    let calls = host.calls();
    // The core's mutations, in the order the filter made them; a set of a header that is not
    // there (in the request, or from an earlier mutation) is an add.
    let ops = [add("a", "1"), add("a", "2"), remove("b"), add("c", "3"), set("x-mosn-cluster", "forged")];
    let at: Vec<usize> = ops.iter().map(|c| position(&calls, c)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{calls:#?}");
    // Then the route's policy, in the fixed order, after the filter's forged value: set over
    // a value the client or a filter gave, added where there was none.
    let policy = [
        set("x-envoy-max-retries", "2"),
        add("x-envoy-retry-on", "connect-failure,reset,retriable-headers"),
        add("x-envoy-retriable-header-names", "x-mosn-retry"),
        remove("x-envoy-retriable-status-codes"),
        add("x-envoy-upstream-rq-timeout-ms", "3000"),
        add("x-envoy-upstream-rq-per-try-timeout-ms", "1000"),
    ];
    let p: Vec<usize> = policy.iter().map(|c| position(&calls, c)).collect();
    assert!(p[0] > at[4] && p.windows(2).all(|w| w[0] < w[1]), "{calls:#?}");
    assert!(position(&calls, &add("x-envoy-max-retries", "99")) < p[0]);
    // Filter state, then the cluster through the route's specifier, once; then, for the
    // LB (the route retries), the stream's id.
    assert!(calls.contains(&Call::FilterState("mosn.unit".into(), "s1".into())));
    assert_eq!(calls[calls.len() - 2], Call::RouteTo("a".into()));
    assert_eq!(calls.last(), Some(&Call::FilterState("mosn.stream_id".into(), f.id().to_string())));
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::RouteTo(_))).count(), 1);
    assert_eq!(host.routed.as_deref(), Some("a"));
    // What Envoy's router sees.
    assert_eq!(host.values("a"), ["1", "2"]);
    assert_eq!(host.values("b"), Vec::<String>::new());
    assert_eq!(host.values("c"), ["3"]);
    // x-mosn-cluster is an ordinary header now (no route reads it), as on nginx.
    assert_eq!(host.values("x-mosn-cluster"), ["forged"]);
    assert_eq!(host.values("x-envoy-max-retries"), ["2"]);
    assert_eq!(host.values("x-envoy-retriable-status-codes"), Vec::<String>::new());
    assert_eq!(host.values("x-mosn-on-envoy-unit"), ["s1"]);
    assert_eq!(f.cell().state.borrow().phase, Phase::Forwarded);
    assert!(host.replies().is_empty());
}

#[test]
fn a_route_without_policy_removes_client_sent_envoy_headers() {
    let (cfg, _) = config(false);
    let (_f, host, status) = request(
        &cfg,
        &[
            (":path", "/"),
            ("x-route", "b"),
            ("x-mosn-cluster", "a"),
            ("x-envoy-max-retries", "5"),
            ("x-envoy-retry-on", "5xx"),
            ("x-envoy-upstream-rq-timeout-ms", "1"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "1"),
            ("x-envoy-retry-grpc-on", "cancelled"),
            ("x-envoy-hedge-on-per-try-timeout", "true"),
        ],
    );
    assert_eq!(status, HeadersStatus::Continue);
    assert_eq!(host.routed.as_deref(), Some("b"), "a client's x-mosn-cluster steers nothing");
    for h in http_logic::GUARDED {
        assert!(host.values(h).is_empty(), "{h} kept: {:?}", host.request);
    }
    // No unit: no metadata.
    assert!(!host.calls().iter().any(|c| matches!(c, Call::Metadata(..))));
}

#[test]
fn only_headers_that_can_be_there_are_removed_and_a_filters_forged_one_is() {
    let (cfg, _) = config(false);
    // No guarded header in the request, none from the core: no removal call.
    let (_f, host, status) = request(&cfg, &[(":path", "/"), ("x-route", "b")]);
    assert_eq!(status, HeadersStatus::Continue);
    let calls = host.calls();
    assert!(!calls.iter().any(|c| matches!(c, Call::Remove(..))), "{calls:#?}");
    assert!(calls.contains(&Call::RouteTo("b".into())), "{calls:#?}");
    // A filter's x-envoy-max-retries on a route without policy is removed after it was set.
    let (_f, host, _) = request(&cfg, &[(":path", "/"), ("x-route", "b"), ("x-test-ops", "1")]);
    let calls = host.calls();
    assert!(position(&calls, &add("x-envoy-max-retries", "99")) < position(&calls, &remove("x-envoy-max-retries")));
    assert!(host.values("x-envoy-max-retries").is_empty());
    assert_eq!(host.routed.as_deref(), Some("b"), "a filter's x-mosn-cluster steers nothing");
}

#[test]
fn a_route_that_is_not_the_cluster_specifier_gets_a_500_not_another_cluster() {
    // A hand-written route (say `cluster_header`) never asks the specifier: the request
    // would go wherever that route says, so it is answered instead.
    let (cfg, _) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-route", "b")]);
    host.route_without_specifier = true;
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_route_without_specifier".to_string())]);
    assert_eq!(f.cell().state.borrow().phase, Phase::Replied);
    assert!(crate::testing::logs().iter().any(|l| l.contains("cluster specifier")), "the operator is told why");
}

#[test]
fn no_scheduler_for_a_chain_that_never_waits() {
    // Only the UNIT driver: no filter can make the stream wait, so no scheduler per stream.
    let engine = Engine::from_json(crate::testing::CONFIG).unwrap();
    let cfg = HttpConfig::new(engine, 0);
    let (_f, host, status) = request(&cfg, &[(":path", "/"), ("uid", "150"), ("x-route", "b")]);
    assert_eq!(status, HeadersStatus::Continue);
    assert!(!host.calls().contains(&Call::SchedulerNew), "{:#?}", host.calls());
    assert_eq!(host.routed.as_deref(), Some("b"));
    // The other tests' chain adds a scripted filter that may wait: it gets one.
    let (cfg, _) = config(false);
    let (_f, host, _) = request(&cfg, &[(":path", "/")]);
    assert_eq!(host.calls()[0], Call::SchedulerNew);
}

// === Local replies ===

#[test]
fn a_core_local_reply_is_sent_as_is_and_nothing_is_forwarded() {
    let (cfg, _) = config(false);
    let (f, host, status) = request(&cfg, &[(":path", "/"), ("uid", "150"), ("x-test-reply", "1"), ("x-mosn-cluster", "a")]);
    assert_eq!(status, HeadersStatus::StopIteration);
    let calls = host.calls();
    let reply =
        Call::Reply { status: 418, body: "teapot".into(), details: "test_reply".into(), headers: vec![("x-why".into(), "test".into())] };
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::Reply { .. })).collect::<Vec<_>>(), [&reply]);
    // The unit is known before the reply (access logs), and the metadata goes first.
    assert!(position(&calls, &Call::FilterState("mosn.unit".into(), "s2".into())) < position(&calls, &reply));
    assert!(!calls.iter().any(|c| matches!(c, Call::Set(..) | Call::RouteTo(_))), "{calls:#?}");
    assert_eq!(host.routed, None, "the request never reaches the router");
    assert_eq!(f.cell().state.borrow().phase, Phase::Replied);
    assert!(f.cell().own_reply());
}

#[test]
fn direct_responses_and_unrouted_requests_are_local_replies() {
    let (cfg, _) = config(false);
    let (_f, host, status) = request(&cfg, &[(":path", "/direct")]);
    assert_eq!(status, HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(403, "direct_response".to_string())]);

    let engine = Engine::from_json(
        &crate::testing::CONFIG
            .replace(r#""prefix": "/"}, "route": {"cluster_name": "a""#, r#""prefix": "/only"}, "route": {"cluster_name": "a""#),
    )
    .unwrap();
    let cfg = HttpConfig::new(engine, 0);
    let (_f, host, _) = request(&cfg, &[(":path", "/elsewhere")]);
    assert_eq!(host.replies(), [(404, "route_not_found".to_string())]);
}

#[test]
fn the_local_reply_hook_of_an_own_reply_reports_no_outcome() {
    let (cfg, _) = config(false);
    let (f, mut host, _) = request(&cfg, &[(":path", "/"), ("x-test-reply", "1")]);
    // What Envoy does inside send_response: the local-reply hook, then response headers.
    http_logic::local_reply(Some(&f), b"upstream_reset_before_response_started{connection_failure}");
    host.response = vec![(":status".into(), "418".into())];
    assert_eq!(http_logic::response_headers(Some(&f), &mut host, true), HeadersStatus::Continue);
    assert_eq!(host.response_values(":status"), ["418"], "no failure outcome, so no status mapping");
    assert_eq!(host.response_values("x-sent"), ["1"], "send filters run on local replies too");
}

// === Wait, scheduler, resume ===

#[test]
fn wait_parks_then_the_wake_commits_and_scheduled_resumes_and_continues_decoding() {
    let (cfg, waker) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(f.cell().state.borrow().phase, Phase::Waiting);
    let calls = host.calls();
    assert_eq!(calls[0], Call::SchedulerNew);
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Set(..) | Call::RouteTo(_) | Call::FilterState(..))),
        "nothing forwarded (nor published for the LB) while parked"
    );
    assert!(registry::get(f.id()).is_none());
    host.clear_calls();

    // The core wakes the stream from another thread: only a scheduler commit happens there.
    let w = waker.lock().unwrap().take().expect("the filter waited");
    std::thread::spawn(move || w.wake()).join().unwrap();
    assert_eq!(host.calls(), [Call::Commit(1)]);

    // Envoy runs the scheduled hook on the worker: resume, forward, continue_decoding.
    http_logic::scheduled(Some(&f), &mut host, 1);
    let calls = host.calls();
    assert!(position(&calls, &Call::RouteTo("a".into())) < position(&calls, &Call::ContinueDecoding));
    let published = Call::FilterState("mosn.stream_id".into(), f.id().to_string());
    assert!(position(&calls, &published) < position(&calls, &Call::ContinueDecoding), "the LB finds it");
    assert!(registry::get(f.id()).is_some());
    assert_eq!(calls.last(), Some(&Call::ContinueDecoding));
    assert_eq!(f.cell().state.borrow().phase, Phase::Forwarded);

    // A stale event later does nothing.
    host.clear_calls();
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert!(host.calls().is_empty());
}

#[test]
fn a_waiting_request_with_a_body_holds_the_body() {
    let (cfg, waker) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, false), HeadersStatus::StopAllIterationAndBuffer);
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::StopIterationAndBuffer);
    assert_eq!(http_logic::request_trailers(Some(&f), &mut host), TrailersStatus::StopIteration);
    waker.lock().unwrap().take().unwrap().wake();
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert_eq!(host.calls().last(), Some(&Call::ContinueDecoding));
    // Forwarded: the rest of the body flows.
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
}

#[test]
fn wait_without_an_envoy_scheduler_answers_500() {
    let (cfg, _) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    host.no_scheduler = true;
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "no_wake_fn".to_string())]);
}

#[test]
fn destroy_ends_the_stream_before_deleting_the_scheduler() {
    let (cfg, waker) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    http_logic::request_headers(Some(&f), &mut host, true);
    let before = registry::len();
    assert!(registry::get(f.id()).is_none(), "a parked request is not the LB's yet");
    host.clear_calls();
    f.destroy();
    assert_eq!(registry::len(), before);
    assert_eq!(host.calls(), [Call::SchedulerDelete]);
    // A wake after the stream ended never reaches the (deleted) scheduler.
    waker.lock().unwrap().take().unwrap().wake();
    assert_eq!(host.calls(), [Call::SchedulerDelete]);
}

#[test]
fn stream_complete_unregisters_and_drops_the_core_stream() {
    let (cfg, _) = config(false);
    let (f, _host, _) = request(&cfg, &[(":path", "/")]);
    assert!(registry::get(f.id()).is_some());
    http_logic::stream_complete(Some(&f), &mut FakeHttp::new(&[]));
    assert!(registry::get(f.id()).is_none());
    assert!(f.cell().state.borrow().stream.is_none());
    http_logic::stream_complete(Some(&f), &mut FakeHttp::new(&[])); // idempotent
    http_logic::stream_complete(None, &mut FakeHttp::new(&[]));
}

// === Body buffering ===

#[test]
fn buffer_body_collects_buffered_and_received_chunks_then_runs_the_core() {
    let (cfg, _) = config(true);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("uid", "300")]);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, false), HeadersStatus::StopIteration);
    assert_eq!(f.cell().state.borrow().phase, Phase::Buffering);
    assert!(!host.calls().iter().any(|c| matches!(c, Call::Set(..))));
    assert_eq!(http_logic::request_body(Some(&f), &mut host, false), BodyStatus::StopIterationAndBuffer);
    host.buffered = vec![b"hello ".to_vec(), b"wor".to_vec()];
    host.received = b"ld".to_vec();
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
    assert_eq!(host.values("x-body-len"), ["11"]);
    assert_eq!(host.routed.as_deref(), Some("a"));
    assert_eq!(host.values("x-mosn-on-envoy-unit"), ["s3"]);

    // When the last chunk is already in the buffer it is not counted twice.
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    http_logic::request_headers(Some(&f), &mut host, false);
    host.buffered = vec![b"abc".to_vec()];
    host.received = b"c".to_vec();
    host.received_is_buffered = true;
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
    assert_eq!(host.values("x-body-len"), ["3"]);
}

#[test]
fn a_body_the_core_rejects_gets_its_local_reply() {
    let (cfg, _) = config(true);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    http_logic::request_headers(Some(&f), &mut host, false);
    host.received = b"please reject this".to_vec();
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::StopIterationNoBuffer);
    assert_eq!(host.replies(), [(403, "test_body_reject".to_string())]);
    assert_eq!(host.routed, None);
    // Later body hooks keep it stopped.
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::StopIterationNoBuffer);
}

#[test]
fn trailers_end_a_buffered_body() {
    let (cfg, _) = config(true);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    http_logic::request_headers(Some(&f), &mut host, false);
    host.received = b"xy".to_vec();
    assert_eq!(http_logic::request_body(Some(&f), &mut host, false), BodyStatus::StopIterationAndBuffer);
    host.buffered = vec![b"xy".to_vec()];
    assert_eq!(http_logic::request_trailers(Some(&f), &mut host), TrailersStatus::Continue);
    assert_eq!(host.values("x-body-len"), ["2"], "the trailers hook reads only the buffer");
    assert_eq!(host.routed.as_deref(), Some("a"));
}

#[test]
fn a_replaced_body_goes_in_place_of_the_buffered_one_with_its_length() {
    let (cfg, _) = config(true);
    // The last chunk not yet buffered: the new body takes its place, the buffer is emptied.
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("transfer-encoding", "chunked")]);
    http_logic::request_headers(Some(&f), &mut host, false);
    host.buffered = vec![b"replace ".to_vec()];
    host.received = b"me".to_vec();
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
    assert!(host.buffered.is_empty() && host.received == b"replaced!", "{:?} {:?}", host.buffered, host.received);
    assert_eq!(host.values("content-length"), ["9"]);
    assert!(host.values("transfer-encoding").is_empty());
    let calls = host.calls();
    assert!(position(&calls, &Call::ReplaceBody(b"replaced!".to_vec())) < position(&calls, &set("content-length", "9")));
    // From the trailers hook (no current chunk): into the buffer; the filter read the trailer.
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    http_logic::request_headers(Some(&f), &mut host, false);
    host.buffered = vec![b"replace it".to_vec()];
    host.request_trailers = vec![("x-trailer".into(), "t1".into())];
    assert_eq!(http_logic::request_trailers(Some(&f), &mut host), TrailersStatus::Continue);
    assert_eq!(host.buffered, [b"replaced!".to_vec()]);
    assert_eq!(host.values("x-seen-trailer"), ["t1"]);
    // An untouched body is left alone.
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    http_logic::request_headers(Some(&f), &mut host, false);
    host.received = b"keep".to_vec();
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::Continue);
    assert!(!host.calls().iter().any(|c| matches!(c, Call::ReplaceBody(_))));
    assert!(host.values("x-seen-trailer").is_empty());
}

// === Fail closed ===

#[test]
fn a_null_filter_answers_500_instead_of_passing_the_request() {
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-mosn-cluster", "client-forged")]);
    assert_eq!(http_logic::request_headers(None, &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_filter_missing".to_string())]);
    assert!(logs().iter().any(|l| l.contains("without a filter object")));
    // The headers hook answered; later hooks keep the request stopped without a second reply.
    assert_eq!(http_logic::request_body(None, &mut host, true), BodyStatus::StopIterationNoBuffer);
    assert_eq!(http_logic::request_trailers(None, &mut host), TrailersStatus::StopIteration);
    assert_eq!(host.replies().len(), 1);
    // The response side passes.
    assert_eq!(http_logic::response_headers(None, &mut host, true), HeadersStatus::Continue);
}

#[test]
fn a_busy_stream_state_answers_500_in_every_request_hook() {
    let (cfg, _) = config(false);
    type Hook = fn(&crate::http_logic::HttpFilter, &mut FakeHttp) -> bool;
    let hooks: [(&str, Hook); 4] = [
        ("headers", |f, h| http_logic::request_headers(Some(f), h, true) == HeadersStatus::StopIteration),
        ("body", |f, h| http_logic::request_body(Some(f), h, true) == BodyStatus::StopIterationNoBuffer),
        ("trailers", |f, h| http_logic::request_trailers(Some(f), h) == TrailersStatus::StopIteration),
        ("scheduled", |f, h| {
            http_logic::scheduled(Some(f), h, 1);
            true
        }),
    ];
    for (name, hook) in hooks {
        let f = cfg.new_filter().unwrap();
        let mut host = FakeHttp::new(&[(":path", "/"), ("x-mosn-cluster", "client-forged")]);
        let busy = f.cell().state.borrow_mut();
        assert!(hook(&f, &mut host), "{name}: not stopped");
        drop(busy);
        assert_eq!(host.replies(), [(500, "mosn_state_busy".to_string())], "{name}");
        assert_eq!(host.values("x-mosn-cluster"), ["client-forged"], "{name}: never forwarded");
    }
}

#[test]
fn a_gone_core_stream_answers_500() {
    let (cfg, waker) = config(false);
    // Request headers.
    let f = cfg.new_filter().unwrap();
    f.cell().state.borrow_mut().stream = None;
    let mut host = FakeHttp::new(&[(":path", "/")]);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_stream_gone".to_string())]);
    // A parked request whose stream vanished is answered, not left hanging.
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    http_logic::request_headers(Some(&f), &mut host, true);
    f.cell().state.borrow_mut().stream = None;
    drop(waker.lock().unwrap().take());
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert_eq!(host.replies(), [(500, "mosn_stream_gone".to_string())]);
    assert!(!host.calls().contains(&Call::ContinueDecoding));
}

#[test]
fn body_or_trailers_without_a_verdict_answer_500() {
    let (cfg, _) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::StopIterationNoBuffer);
    assert_eq!(host.replies(), [(500, "mosn_no_verdict".to_string())]);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/")]);
    assert_eq!(http_logic::request_trailers(Some(&f), &mut host), TrailersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_no_verdict".to_string())]);
}

#[test]
fn request_headers_twice_answers_500_and_a_replied_stream_stays_stopped() {
    let (cfg, waker) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    http_logic::request_headers(Some(&f), &mut host, true);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_unexpected_headers".to_string())]);
    // A reply answers the request: the wake-up does not forward it.
    waker.lock().unwrap().take().unwrap().wake();
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert!(!host.calls().contains(&Call::ContinueDecoding));
    assert_eq!(host.routed, None);
    assert_eq!(host.replies().len(), 1);
}

#[test]
fn no_second_reply_while_envoy_answers_locally() {
    let (cfg, waker) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1")]);
    http_logic::request_headers(Some(&f), &mut host, true);
    // Envoy answers on its own while the request is parked (e.g. a stream timeout).
    http_logic::local_reply(Some(&f), b"stream_idle_timeout");
    f.cell().state.borrow_mut().stream = None;
    waker.lock().unwrap().take();
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::StopIterationNoBuffer);
    assert!(host.replies().is_empty());
    assert!(!host.calls().contains(&Call::ContinueDecoding));
}

// === Panic policy ===

#[test]
fn a_request_side_panic_answers_500_once_and_poisons_the_stream() {
    let (cfg, _) = config(false);
    let (f, mut host, status) = request(&cfg, &[(":path", "/"), ("x-test-panic", "now"), ("x-mosn-cluster", "client-forged")]);
    assert_eq!(status, HeadersStatus::StopIteration);
    assert_eq!(host.replies(), [(500, "mosn_panic".to_string())]);
    assert!(f.cell().is_poisoned());
    assert!(logs().iter().any(|l| l == "mosn: panic in http_filter_request_headers: script filter panics on purpose"), "{:?}", logs());
    assert_eq!(host.values("x-mosn-cluster"), ["client-forged"], "never forwarded");
    // Envoy's nested hooks and every later hook skip the core; no second reply.
    http_logic::local_reply(Some(&f), b"mosn_panic");
    host.response = vec![(":status".into(), "500".into())];
    assert_eq!(http_logic::response_headers(Some(&f), &mut host, true), HeadersStatus::Continue);
    assert!(host.response_values("x-sent").is_empty(), "send filters skipped");
    assert_eq!(http_logic::request_body(Some(&f), &mut host, true), BodyStatus::StopIterationNoBuffer);
    assert_eq!(http_logic::request_trailers(Some(&f), &mut host), TrailersStatus::StopIteration);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert_eq!(host.replies().len(), 1);
    assert!(!host.calls().contains(&Call::ContinueDecoding));
    // Cleanup still works.
    let id = f.id();
    f.destroy();
    assert!(registry::get(id).is_none());
}

#[test]
fn a_panic_on_resume_answers_500_and_does_not_continue() {
    let (cfg, waker) = config(false);
    let f = cfg.new_filter().unwrap();
    let mut host = FakeHttp::new(&[(":path", "/"), ("x-test-wait", "1"), ("x-test-panic", "resume")]);
    assert_eq!(http_logic::request_headers(Some(&f), &mut host, true), HeadersStatus::StopIteration);
    waker.lock().unwrap().take().unwrap().wake();
    http_logic::scheduled(Some(&f), &mut host, 1);
    assert_eq!(host.replies(), [(500, "mosn_panic".to_string())]);
    assert!(!host.calls().contains(&Call::ContinueDecoding));
    assert!(f.cell().is_poisoned());
    assert!(logs().iter().any(|l| l.starts_with("mosn: panic in http_filter_scheduled: script filter panics on resume")));
}

#[test]
fn a_response_side_panic_passes_the_upstream_response_unchanged() {
    let (cfg, _) = config(false);
    let (f, mut host, _) = request(&cfg, &[(":path", "/")]);
    host.clear_calls();
    host.response = vec![(":status".into(), "200".into()), ("x-test-panic".into(), "1".into())];
    let before = host.response.clone();
    assert_eq!(http_logic::response_headers(Some(&f), &mut host, false), HeadersStatus::Continue);
    assert_eq!(host.response, before, "unchanged");
    assert!(host.calls().is_empty(), "no reply, no header change: {:?}", host.calls());
    assert!(f.cell().is_poisoned());
    assert!(logs().iter().any(|l| l == "mosn: panic in http_filter_response_headers: script filter panics on the response"));
    // A later response hook passes through as well.
    assert_eq!(http_logic::response_headers(Some(&f), &mut host, false), HeadersStatus::Continue);
    assert!(host.calls().is_empty());
}

#[test]
fn config_errors_reject_the_filter_config() {
    let p = std::env::temp_dir().join(format!("mosn-envoy-http-{}.json", std::process::id()));
    std::fs::write(&p, crate::testing::CONFIG).unwrap();
    let cfg = |listener: &str| format!(r#"{{"config_path": "{}", "listener": "{listener}"}}"#, p.display());
    assert!(HttpConfig::load(cfg("l").as_bytes()).is_some());
    assert!(HttpConfig::load(cfg("nope").as_bytes()).is_none());
    assert!(logs().iter().any(|l| l.contains(r#"listener "nope" is not in"#)));
    assert!(HttpConfig::load(b"{}").is_none());
    std::fs::remove_file(p).ok();
}

#[test]
fn log_filter_state_limits_what_is_written_for_access_logs() {
    let p = std::env::temp_dir().join(format!("mosn-envoy-logfs-{}.json", std::process::id()));
    std::fs::write(&p, crate::testing::CONFIG).unwrap();
    let written = |log: Option<&str>| {
        let extra = log.map_or(String::new(), |l| format!(r#", "log_filter_state": {l}"#));
        let cfg = HttpConfig::load(format!(r#"{{"config_path": "{}", "listener": "l"{extra}}}"#, p.display()).as_bytes()).unwrap();
        let (f, mut host, status) = request(&cfg, &[(":path", "/x"), ("uid", "2")]);
        assert_eq!(status, HeadersStatus::Continue);
        http_logic::stream_complete(Some(&f), &mut host);
        let mut keys: Vec<String> = host
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::FilterState(k, _) if k != policy::STREAM_ID_KEY => Some(k.clone()),
                _ => None,
            })
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(written(None), ["mosn.live_streams", "mosn.unit"]);
    assert_eq!(written(Some(r#"["mosn.unit"]"#)), ["mosn.unit"]);
    assert_eq!(written(Some(r#"["mosn.live_streams"]"#)), ["mosn.live_streams"]);
    assert!(written(Some("[]")).is_empty());
    // The LB's stream id is written whatever the log reads.
    let cfg =
        HttpConfig::load(format!(r#"{{"config_path": "{}", "listener": "l", "log_filter_state": []}}"#, p.display()).as_bytes()).unwrap();
    let (_, host, _) = request(&cfg, &[(":path", "/x"), ("uid", "2")]);
    assert!(host.calls().iter().any(|c| matches!(c, Call::FilterState(k, _) if k == policy::STREAM_ID_KEY)));
    std::fs::remove_file(p).ok();
}

/// `apply_request` knows the route policy's headers by their index in GUARDED.
#[test]
fn policy_headers_are_the_guarded_ones_in_order() {
    let names: Vec<&str> = policy::route_policy_headers(None, None, None).iter().map(|(n, _)| *n).collect();
    assert_eq!(names, http_logic::GUARDED[1..7]);
    assert_eq!(http_logic::GUARDED[7..], [policy::RETRY_GRPC_ON, policy::HEDGE_ON_PER_TRY_TIMEOUT]);
    assert_eq!(http_logic::GUARDED[0], crate::mirror::MIRROR_HOST_KEY);
}

/// Every guarded name is found in any case; other names, of the same lengths too, are not.
#[test]
fn guarded_headers_are_found_by_name_in_any_case() {
    for (i, g) in http_logic::GUARDED.iter().enumerate() {
        assert_eq!(http_logic::guarded_index(g.as_bytes()), Some(i));
        assert_eq!(http_logic::guarded_index(g.to_ascii_uppercase().as_bytes()), Some(i));
        let other = format!("y{}", &g[1..]);
        assert_eq!(http_logic::guarded_index(other.as_bytes()), None, "{other}");
    }
    for n in ["", "uid", ":path", "x-forwarded-proto", "x-request-id", &"x".repeat(100)] {
        assert_eq!(http_logic::guarded_index(n.as_bytes()), None, "{n}");
    }
}
