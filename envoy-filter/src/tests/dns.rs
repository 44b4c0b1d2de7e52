//! STRICT_DNS clusters on Envoy: only resolved addresses are added at init, the LB finds a
//! slot's host by address (and passes over one the worker does not have yet), and the
//! core's address changes reach Envoy: watch → queue → scheduler commit →
//! `on_cluster_scheduled` → add the new address, remove the old host; nothing after the
//! cluster is destroyed.
//!
//! DNS can not be changed from a test: the changes are driven through the watcher the
//! engine would call (`ClusterShared::address_watch`), with the addresses a refresh would
//! report.

use super::request;
use crate::host::HostHandle;
use crate::http_logic::{self, HttpConfig};
use crate::lb::{ClusterShared, Lb, HOST_EVENT};
use crate::testing::{self, Call, FakeCluster, FakeLb};
use mosn_extension::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

const A_HOSTS: &str = r#""hosts": [{"address": "127.0.0.1:11"}, {"address": "127.0.0.1:12"}, {"address": "127.0.0.1:13"}]"#;

/// The test config with cluster `a` of type STRICT_DNS and these hosts. `localhost`
/// resolves to 127.0.0.1 (V4_ONLY); the refresh is an hour away.
fn dns_engine(hosts: &str) -> Arc<Engine> {
    let text = testing::CONFIG
        .replacen(
            r#""type": "SIMPLE", "lb_type": "LB_ROUNDROBIN","#,
            r#""type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY", "dns_refresh_rate": "1h", "lb_type": "LB_ROUNDROBIN","#,
            1,
        )
        .replacen(A_HOSTS, &format!(r#""hosts": {hosts}"#), 1);
    Engine::from_json(&text).unwrap_or_else(|e| panic!("test config: {e:?}"))
}

/// `localhost:8080` (8 slots: core hosts 0..8, slot 0 resolved) and a static host (core host 8).
const MIXED: &str = r#"[{"address": "localhost:8080", "weight": 5}, {"address": "127.0.0.1:13"}]"#;

/// Cluster `a` of `engine`, initialized against `fc` (handles 0xa00..).
fn init(engine: &Arc<Engine>, fc: &mut FakeCluster) -> Arc<ClusterShared> {
    let shared = ClusterShared::new(engine.clone(), engine.cluster("a").unwrap().clone());
    fc.base = 0xa00;
    shared.init(fc);
    assert_eq!(fc.pre_init_completed, 1);
    shared
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

/// A worker's LB for the request served by `host`, seeing what `fc` has now.
fn worker(fc: &FakeCluster, host: &crate::testing::FakeHttp) -> FakeLb {
    let mut lb = FakeLb::new(fc.live.iter().map(|(_, h)| *h).collect(), &host.filter_state);
    lb.by_address = fc.worker_view();
    lb
}

fn attempts(f: &http_logic::HttpFilter) -> u32 {
    f.cell().state.borrow().stream.as_ref().unwrap().attempts()
}

// === Init ===

#[test]
fn init_adds_only_the_addresses_that_resolved() {
    let engine = dns_engine(MIXED);
    assert_eq!(engine.cluster("a").unwrap().hosts.len(), 9);
    let mut fc = FakeCluster::default();
    let _shared = init(&engine, &mut fc);
    let added: Vec<(&str, u32)> = fc.added.iter().map(|(a, w, _)| (a.as_str(), *w)).collect();
    assert_eq!(added, [("127.0.0.1:8080", 5), ("127.0.0.1:13", 1)], "never a name, never an empty slot");
    // The refresh is connected to Envoy (a scheduler), and nothing changed since the adds.
    assert_eq!(fc.sched_calls(), [Call::SchedulerNew]);
}

#[test]
fn validation_mode_adds_the_hosts_and_starts_no_refresh() {
    let engine = dns_engine(MIXED);
    let mut fc = FakeCluster { validation: true, ..FakeCluster::default() };
    let _shared = init(&engine, &mut fc);
    assert_eq!(fc.live_addresses(), ["127.0.0.1:8080", "127.0.0.1:13"]);
    assert!(fc.sched_calls().is_empty(), "no scheduler, no watcher in validate mode");
}

#[test]
fn a_cluster_whose_names_resolve_to_nothing_yet_adds_nothing_and_still_warms() {
    // `.invalid` never resolves (RFC 6761).
    let engine = dns_engine(r#"[{"address": "mosn-test.invalid:80"}]"#);
    let mut fc = FakeCluster::default();
    let shared = init(&engine, &mut fc);
    assert!(fc.added.is_empty());
    // Later a refresh finds an address: it is added then.
    shared.address_watch()(engine.cluster("a").unwrap(), 2, addr("10.0.0.1:80"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["add 10.0.0.1:80 -> 0xa00"]);
}

// === The LB ===

#[test]
fn a_request_copy_goes_to_the_dns_host_at_its_address_or_nowhere() {
    let engine = dns_engine(MIXED);
    let mut fc = FakeCluster::default();
    let a = Lb::new(init(&engine, &mut fc));
    let copy = |address: &str, fc: &FakeCluster| {
        let mut lb = FakeLb::new(fc.live.iter().map(|(_, h)| *h).collect(), &Default::default());
        lb.by_address = fc.worker_view();
        lb.headers.insert(crate::mirror::MIRROR_HOST_KEY.into(), address.into());
        lb
    };
    // The slot's current address: its host, found by address; the static host: its handle.
    let lb = copy("127.0.0.1:8080", &fc);
    assert_eq!(a.choose_host(&lb), Some(HostHandle(0xa00)));
    assert_eq!(*lb.lookups.borrow(), ["127.0.0.1:8080"]);
    assert_eq!(a.choose_host(&copy("127.0.0.1:13", &fc)), Some(HostHandle(0xa01)));
    // An address no slot has now (one a slot had when the copy was made and moved from):
    // no host, never another one.
    assert_eq!(a.choose_host(&copy("127.0.0.2:8080", &fc)), None);
    // A slot the worker does not have (yet): no host either.
    let mut lb = copy("127.0.0.1:8080", &fc);
    lb.by_address.clear();
    assert_eq!(a.choose_host(&lb), None);
}

#[test]
fn the_lb_finds_a_dns_host_by_address() {
    let engine = dns_engine(MIXED);
    let http = HttpConfig::new(engine.clone(), 0);
    let mut fc = FakeCluster::default();
    let a = Lb::new(init(&engine, &mut fc));

    let (f, host, _) = request(&http, &[(":path", "/")]);
    let lb = worker(&fc, &host);
    assert_eq!(a.choose_host(&lb), Some(HostHandle(0xa00)), "slot 0 by its address");
    assert_eq!(*lb.lookups.borrow(), ["127.0.0.1:8080"]);
    assert_eq!(attempts(&f), 1);
    // Round robin goes on to the static host (its handle; no lookup).
    let (_g, host2, _) = request(&http, &[(":path", "/")]);
    let lb2 = worker(&fc, &host2);
    assert_eq!(a.choose_host(&lb2), Some(HostHandle(0xa01)));
    assert!(lb2.lookups.borrow().is_empty());
}

#[test]
fn a_dns_host_the_worker_does_not_have_yet_is_passed_over() {
    let engine = dns_engine(MIXED);
    let http = HttpConfig::new(engine.clone(), 0);
    let mut fc = FakeCluster::default();
    let a = Lb::new(init(&engine, &mut fc));

    // The worker has not applied the update that adds 127.0.0.1:8080.
    let (f, host, _) = request(&http, &[(":path", "/")]);
    let mut lb = worker(&fc, &host);
    lb.by_address.remove("127.0.0.1:8080");
    assert_eq!(a.choose_host(&lb), Some(HostHandle(0xa01)), "the core's next choice");
    assert_eq!(attempts(&f), 1, "a passed-over slot is not an attempt");
    assert_eq!(f.cell().state.borrow().stream.as_ref().unwrap().upstream_host().unwrap().address_text.as_ref(), "127.0.0.1:13");

    // Without a stream, likewise.
    lb.context = false;
    assert_eq!(a.choose_host(&lb), Some(HostHandle(0xa01)));

    // Only DNS hosts, none in the worker's view: no host (Envoy answers 503), bounded.
    let engine = dns_engine(r#"[{"address": "localhost:8080"}]"#);
    let http = HttpConfig::new(engine.clone(), 0);
    let a = Lb::new(init(&engine, &mut FakeCluster::default()));
    let (f, host, _) = request(&http, &[(":path", "/")]);
    let lb = FakeLb::new(vec![], &host.filter_state);
    assert_eq!(a.choose_host(&lb), None);
    assert!(attempts(&f) <= 8, "{}", attempts(&f));
    assert_eq!(a.choose_host(&FakeLb::default()), None, "no context");
}

// === Address changes ===

#[test]
fn an_address_change_adds_the_new_host_then_removes_the_old_one() {
    let engine = dns_engine(MIXED);
    let (a, b) = (engine.cluster("a").unwrap().clone(), engine.cluster("b").unwrap().clone());
    let mut fc = FakeCluster::default();
    let shared = init(&engine, &mut fc);
    let watch = shared.address_watch();
    fc.ops.clear();

    // Slot 0 moves; another cluster's change is not ours. One event carries the changes.
    watch(&a, 0, addr("127.0.0.2:8080"));
    watch(&b, 0, addr("127.0.0.9:21"));
    assert_eq!(fc.sched_calls(), [Call::SchedulerNew, Call::Commit(HOST_EVENT)]);
    shared.scheduled(&mut fc, 77); // not ours
    assert!(fc.ops.is_empty());
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["add 127.0.0.2:8080 -> 0xa02", "remove 0xa00"]);
    assert_eq!(fc.added[2].1, 5, "the slot's weight");
    assert_eq!(fc.live_addresses(), ["127.0.0.1:13", "127.0.0.2:8080"]);

    // A slot that never resolved gets an address: added only. A repeated address: nothing.
    fc.ops.clear();
    watch(&a, 3, addr("127.0.0.3:8080"));
    watch(&a, 3, addr("127.0.0.3:8080"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["add 127.0.0.3:8080 -> 0xa03"]);

    // Health changes go to each slot's current host; a slot without one has none to change.
    fc.ops.clear();
    let health = shared.health_watch();
    health(&a, 3, false);
    health(&a, 5, false);
    health(&a, 8, false);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["health 0xa03 false", "health 0xa01 false"]);

    // The slot loses its address: removed, nothing added; its handle is forgotten, so a
    // later health change does not reach the removed host.
    fc.ops.clear();
    watch(&a, 3, None);
    health(&a, 3, true);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["remove 0xa03"]);

    // Destroyed: the scheduler is deleted, later changes are dropped.
    watch(&a, 0, addr("127.0.0.4:8080"));
    shared.destroy();
    assert_eq!(fc.sched_calls().last(), Some(&Call::SchedulerDelete));
    let calls = fc.sched_calls().len();
    watch(&a, 0, addr("127.0.0.5:8080"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.sched_calls().len(), calls, "no commit after destroy");
    assert_eq!(fc.ops, ["remove 0xa03"], "nothing applied after destroy");

    // Gone altogether (the LBs dropped their share too): the engine's watcher is a no-op.
    drop(shared);
    watch(&a, 0, None);
    assert_eq!(fc.sched_calls().len(), calls);
}

#[test]
fn a_slot_the_checks_have_out_is_added_unhealthy() {
    let engine = dns_engine(MIXED);
    let a = engine.cluster("a").unwrap().clone();
    let mut fc = FakeCluster::default();
    let shared = init(&engine, &mut fc);
    fc.ops.clear();
    a.hosts[4].set_healthy(false);
    shared.address_watch()(&a, 4, addr("127.0.0.4:8080"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["add 127.0.0.4:8080 -> 0xa02", "health 0xa02 false"]);
}

#[test]
fn an_address_envoy_already_has_is_handed_over_when_its_owner_moves() {
    // Newer Envoys add no second host for an address the cluster has: the slot that
    // shares it gets its own host when the owner's host is removed.
    let engine = dns_engine(MIXED);
    let a = engine.cluster("a").unwrap().clone();
    let mut fc = FakeCluster { dedup: true, ..FakeCluster::default() };
    let shared = init(&engine, &mut fc);
    let watch = shared.address_watch();
    fc.ops.clear();
    watch(&a, 1, addr("127.0.0.1:8080"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops, ["add 127.0.0.1:8080 -> none"]);
    watch(&a, 0, addr("127.0.0.9:8080"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.ops[1..], ["add 127.0.0.9:8080 -> 0xa03", "remove 0xa00", "add 127.0.0.1:8080 -> 0xa04"]);
    assert_eq!(fc.live_addresses(), ["127.0.0.1:13", "127.0.0.9:8080", "127.0.0.1:8080"]);
}

#[test]
fn a_refused_init_applies_no_address_changes() {
    let engine = dns_engine(MIXED);
    let mut fc = FakeCluster { refuse: true, ..FakeCluster::default() };
    let shared = init(&engine, &mut fc);
    assert!(fc.sched_calls().is_empty(), "no feed for a cluster Envoy has no hosts of");
    shared.address_watch()(engine.cluster("a").unwrap(), 0, addr("127.0.0.2:8080"));
    shared.scheduled(&mut fc, HOST_EVENT);
    assert!(fc.ops.is_empty());
}
