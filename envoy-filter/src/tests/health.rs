//! Active health checks on Envoy: started once per engine from a cluster's init (never in
//! validate mode), and their results carried to Envoy's view of the hosts: watch → queue
//! → scheduler commit → `on_cluster_scheduled` → `update_host_health`; nothing after the
//! cluster is destroyed.

use crate::host::HostHandle;
use crate::lb::{ClusterShared, Lb, HOST_EVENT};
use crate::testing::{self, logs, Call, FakeCluster, FakeLb};
use mosn_extension::Engine;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

const A_HOSTS: &str = r#""hosts": [{"address": "127.0.0.1:11"}, {"address": "127.0.0.1:12"}, {"address": "127.0.0.1:13"}]"#;

/// The test config with `check` as cluster `a`'s `health_check` (and `hosts`, if given).
fn engine_with_check(check: &str, hosts: Option<&str>) -> Arc<Engine> {
    let text =
        testing::CONFIG.replacen(r#""lb_type": "LB_ROUNDROBIN","#, &format!(r#""lb_type": "LB_ROUNDROBIN", "health_check": {check},"#), 1);
    let text = match hosts {
        Some(h) => text.replacen(A_HOSTS, h, 1),
        None => text,
    };
    Engine::from_json(&text).unwrap_or_else(|e| panic!("test config: {e:?}"))
}

/// Checks that never probe during a test (the first probe is an hour away).
const IDLE_CHECK: &str = r#"{"service_name": "a", "initial_delay_seconds": "1h"}"#;

/// Cluster `a` of `engine`, initialized against a fake Envoy cluster (handles 0xa00..).
fn init(engine: &Arc<Engine>, fc: &mut FakeCluster) -> Arc<ClusterShared> {
    let shared = ClusterShared::new(engine.clone(), engine.cluster("a").unwrap().clone());
    fc.base = 0xa00;
    shared.init(fc);
    assert_eq!(fc.pre_init_completed, 1);
    shared
}

fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_health_change_reaches_envoy_through_the_scheduler() {
    let engine = engine_with_check(IDLE_CHECK, None);
    let mut fc = FakeCluster::default();
    let shared = init(&engine, &mut fc);
    assert_eq!(fc.sched_calls(), [Call::SchedulerNew], "a scheduler, nothing committed yet");
    let (a, b) = (engine.cluster("a").unwrap(), engine.cluster("b").unwrap());
    let watch = shared.health_watch();

    // The checker thread: two changes ride on one event; another cluster's are not ours.
    watch(a, 1, false);
    watch(a, 2, false);
    watch(b, 0, false);
    assert_eq!(fc.sched_calls(), [Call::SchedulerNew, Call::Commit(HOST_EVENT)]);
    // Main thread: Envoy's scheduled hook applies them, with the Envoy handles of those hosts.
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.health, [(HostHandle(0xa01), false), (HostHandle(0xa02), false)]);

    watch(a, 1, true);
    assert_eq!(fc.commits(), 2, "a change after the drain commits again");
    shared.scheduled(&mut fc, 77); // not ours
    shared.scheduled(&mut fc, HOST_EVENT);
    shared.scheduled(&mut fc, HOST_EVENT); // a stale event: nothing queued
    assert_eq!(fc.health[2..], [(HostHandle(0xa01), true)]);

    // Destroyed: the scheduler is deleted, later changes are dropped.
    watch(a, 2, false);
    shared.destroy();
    assert_eq!(fc.sched_calls().last(), Some(&Call::SchedulerDelete));
    let calls = fc.sched_calls().len();
    watch(a, 1, false);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.sched_calls().len(), calls, "no commit after destroy");
    assert_eq!(fc.health.len(), 3, "nothing applied after destroy (the queued change was dropped)");

    // Gone altogether (the LBs dropped their share too): the engine's watcher is a no-op.
    drop(shared);
    watch(a, 0, false);
    assert_eq!(fc.sched_calls().len(), calls);
}

#[test]
fn hosts_taken_out_before_the_cluster_was_watched_are_reported() {
    // Another cluster's init may have started the checks before this one registered.
    let engine = engine_with_check(IDLE_CHECK, None);
    engine.cluster("a").unwrap().hosts[2].set_healthy(false);
    let mut fc = FakeCluster::default();
    let shared = init(&engine, &mut fc);
    assert_eq!(fc.commits(), 1);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.health, [(HostHandle(0xa02), false)]);
}

#[test]
fn a_host_envoy_lists_as_unhealthy_is_still_returned_when_the_core_picks_it() {
    // Envoy's healthy list lags (or differs from) the core's view: the core decides.
    let engine = engine_with_check(IDLE_CHECK, None);
    let lb = Lb::new(init(&engine, &mut FakeCluster::default()));
    let envoy_sees = FakeLb { healthy: vec![HostHandle(0xa00)], ..FakeLb::default() };
    let picked: Vec<usize> = (0..3).map(|_| lb.choose_host(&envoy_sees).unwrap().0).collect();
    assert_eq!(picked, [0xa00, 0xa01, 0xa02]);
}

#[test]
fn validation_mode_starts_no_checks() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check = r#"{"service_name": "a", "interval": "20ms", "timeout": "100ms", "initial_delay_seconds": "10ms"}"#;
    let engine = engine_with_check(check, Some(&format!(r#""hosts": [{{"address": "{dead}"}}]"#)));
    let mut fc = FakeCluster { validation: true, ..FakeCluster::default() };
    let _shared = init(&engine, &mut fc);
    assert!(fc.sched_calls().is_empty(), "no scheduler in validate mode");
    std::thread::sleep(Duration::from_millis(300));
    assert!(engine.cluster("a").unwrap().hosts[0].is_healthy(), "the dead host was never probed");
}

#[test]
fn without_a_scheduler_the_checks_still_run_for_the_core() {
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check = r#"{"service_name": "a", "interval": "20ms", "timeout": "100ms", "initial_delay_seconds": "10ms"}"#;
    let engine = engine_with_check(check, Some(&format!(r#""hosts": [{{"address": "{dead}"}}]"#)));
    let mut fc = FakeCluster { no_scheduler: true, ..FakeCluster::default() };
    let _shared = init(&engine, &mut fc);
    assert!(logs().iter().any(|l| l.contains("cluster a: Envoy gave no scheduler")), "{:?}", logs());
    wait_for("the core takes the dead host out", Duration::from_secs(3), || !engine.cluster("a").unwrap().hosts[0].is_healthy());
}

#[test]
fn the_checks_take_a_dead_host_out_of_envoys_view_and_bring_it_back() {
    let live = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let check = r#"{"service_name": "a", "interval": "50ms", "interval_jitter": "5ms", "timeout": "200ms",
                    "initial_delay_seconds": "10ms", "unhealthy_threshold": 2}"#;
    let hosts = format!(r#""hosts": [{{"address": "{}"}}, {{"address": "{dead}"}}]"#, live.local_addr().unwrap());
    let engine = engine_with_check(check, Some(&hosts));
    let mut fc = FakeCluster::default();
    let shared = init(&engine, &mut fc);
    let sched = fc.sched.clone();
    let commits = move || sched.lock().unwrap().iter().filter(|c| matches!(c, Call::Commit(_))).count();

    // TCP checks: a listening socket passes, a closed port fails.
    wait_for("the dead host's change is committed", Duration::from_secs(3), || commits() >= 1);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.health, [(HostHandle(0xa01), false)]);

    let back = TcpListener::bind(dead).expect("the dead port is still free");
    wait_for("the recovery is committed", Duration::from_secs(3), || commits() >= 2);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.health, [(HostHandle(0xa01), false), (HostHandle(0xa01), true)]);

    // After destroy, the core still sees the host go down; Envoy's cluster hears nothing.
    shared.destroy();
    drop(back);
    let host = &engine.cluster("a").unwrap().hosts[1];
    wait_for("the core takes the host out again", Duration::from_secs(3), || !host.is_healthy());
    assert_eq!(commits(), 2);
    shared.scheduled(&mut fc, HOST_EVENT);
    assert_eq!(fc.health.len(), 2);
    drop(live);
}
