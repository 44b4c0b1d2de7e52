//! The upstream stack through the public API: subsets, circuit breakers, consistent
//! hashing, as hosts drive it (route, choose a host, report the outcome).

use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine, NoHost, UpstreamOutcome};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn h<'a>(n: &'a str, v: &'a str) -> Header<'a> {
    Header { name: n.as_bytes(), value: v.as_bytes() }
}

/// One listener routing everything to cluster `c` (route extras merged in), with `filters`.
fn config(cluster: Value, route: Value, filters: Value) -> Arc<Engine> {
    let mut r = json!({"cluster_name": "c"});
    r.as_object_mut().unwrap().extend(route.as_object().unwrap().clone());
    let mut c = json!({"name": "c"});
    c.as_object_mut().unwrap().extend(cluster.as_object().unwrap().clone());
    let cfg = json!({
        "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": r}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:8080", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
                "stream_filters": filters}]}],
        "cluster_manager": {"clusters": [c]}
    });
    Engine::from_json(&cfg.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// Hosts 127.0.0.1:1..=n with `mosn.lb` metadata `unit: units[i]`.
fn unit_hosts(units: &[&str]) -> Value {
    let hosts: Vec<Value> = units
        .iter()
        .enumerate()
        .map(|(i, u)| json!({"address": format!("127.0.0.1:{}", i + 1), "metadata": {"filter_metadata": {"mosn.lb": {"unit": u}}}}))
        .collect();
    Value::Array(hosts)
}

/// The host ports `picks` requests with `headers` get (first attempt each).
fn ports(e: &Engine, headers: &[Header<'_>], picks: usize) -> Result<Vec<u16>, NoHost> {
    let mut out = Vec::new();
    for _ in 0..picks {
        let mut s = e.new_stream(0, None).unwrap();
        assert_eq!(s.request_headers(&Headers(headers), true), Action::Continue);
        out.push(s.choose_host()?.host.address.port());
    }
    Ok(out)
}

fn subset_cluster(policy: u64) -> Value {
    json!({"hosts": unit_hosts(&["s1", "s1", "s2", "s3"]),
           "lb_subset_config": {"fall_back_policy": policy, "default_subset": {"unit": "s3"}, "subset_selectors": [["unit"]]}})
}

const H2M: &str = r#"[{"type": "header_to_metadata", "config": {"request_rules": [{"header": "x-unit", "on_header_present": {"key": "unit"}, "remove": true}]}}]"#;

#[test]
fn header_to_metadata_picks_the_subset_and_removes_the_header() {
    let e = config(subset_cluster(0), json!({}), serde_json::from_str(H2M).unwrap());
    let mut got = ports(&e, &[h(":path", "/"), h("x-unit", "s1")], 20).unwrap();
    got.sort();
    got.dedup();
    assert_eq!(got, [1, 2], "both s1 hosts, only them");
    assert_eq!(ports(&e, &[h(":path", "/"), h("x-unit", "s2")], 5).unwrap(), [3; 5]);
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("x-unit", "s2")]), true);
    assert!(s.request_mutations().iter().any(|m| &*m.name == "x-unit"), "the header is removed upstream");
}

#[test]
fn no_criteria_means_every_host_and_no_fallback() {
    let e = config(subset_cluster(0), json!({}), serde_json::from_str(H2M).unwrap());
    let mut got = ports(&e, &[h(":path", "/")], 40).unwrap();
    got.sort();
    got.dedup();
    assert_eq!(got, [1, 2, 3, 4]);
    assert_eq!(e.cluster("c").unwrap().stats().subsets_fallback, 0);
}

#[test]
fn each_fallback_policy() {
    let unknown = [h(":path", "/"), h("x-unit", "s9")];
    // 0: NO_FALLBACK → no host (502).
    let e = config(subset_cluster(0), json!({}), serde_json::from_str(H2M).unwrap());
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&unknown), true);
    assert_eq!(s.choose_host().err(), Some(NoHost::NoHealthyHost));
    assert_eq!(s.failure_status(), Some(502));
    assert_eq!(e.cluster("c").unwrap().stats().subsets_fallback, 1);
    // 1: ANY_ENDPOINT → every host.
    let e = config(subset_cluster(1), json!({}), serde_json::from_str(H2M).unwrap());
    let mut got = ports(&e, &unknown, 40).unwrap();
    got.sort();
    got.dedup();
    assert_eq!(got, [1, 2, 3, 4]);
    // 2: DEFAULT_SUBSET → the unit s3 host.
    let e = config(subset_cluster(2), json!({}), serde_json::from_str(H2M).unwrap());
    assert_eq!(ports(&e, &unknown, 5).unwrap(), [4; 5]);
}

#[test]
fn a_subset_without_healthy_hosts_falls_back() {
    let e = config(subset_cluster(2), json!({}), serde_json::from_str(H2M).unwrap());
    e.cluster("c").unwrap().hosts[2].set_healthy(false); // the only s2 host
    assert_eq!(ports(&e, &[h(":path", "/"), h("x-unit", "s2")], 3).unwrap(), [4; 3]);
}

#[test]
fn criteria_must_name_a_whole_selector() {
    // Selector [unit, zone]: {unit} alone names no subset (MOSN) → fallback (none here).
    let hosts = json!([
        {"address": "127.0.0.1:1", "metadata": {"filter_metadata": {"mosn.lb": {"unit": "s1", "zone": "a"}}}},
        {"address": "127.0.0.1:2", "metadata": {"filter_metadata": {"mosn.lb": {"unit": "s1", "zone": "b"}}}}
    ]);
    let cluster = json!({"hosts": hosts, "lb_subset_config": {"subset_selectors": [["zone", "unit"]]}});
    let e = config(cluster.clone(), json!({"metadata_match": {"filter_metadata": {"mosn.lb": {"unit": "s1"}}}}), json!([]));
    assert_eq!(ports(&e, &[h(":path", "/")], 1).err(), Some(NoHost::NoHealthyHost));
    let e = config(cluster, json!({"metadata_match": {"filter_metadata": {"mosn.lb": {"unit": "s1", "zone": "b"}}}}), json!([]));
    assert_eq!(ports(&e, &[h(":path", "/")], 3).unwrap(), [2; 3]);
    assert_eq!(e.cluster("c").unwrap().subsets_created(), 2);
}

#[test]
fn filter_metadata_wins_over_the_routes_metadata_match() {
    let e = config(
        subset_cluster(0),
        json!({"metadata_match": {"filter_metadata": {"mosn.lb": {"unit": "s2"}}}}),
        serde_json::from_str(H2M).unwrap(),
    );
    assert_eq!(ports(&e, &[h(":path", "/")], 2).unwrap(), [3; 2]);
    assert_eq!(ports(&e, &[h(":path", "/"), h("x-unit", "s3")], 2).unwrap(), [4; 2]);
}

#[test]
fn weighted_clusters_carry_their_own_metadata_match() {
    let cfg = json!({"weighted_clusters": [
        {"cluster": {"name": "c", "weight": 1, "metadata_match": {"filter_metadata": {"mosn.lb": {"unit": "s3"}}}}}]});
    let mut r = cfg.as_object().unwrap().clone();
    r.insert("cluster_name".into(), Value::Null);
    let e = config(subset_cluster(0), Value::Object(r), json!([]));
    assert_eq!(ports(&e, &[h(":path", "/")], 3).unwrap(), [4; 3]);
}

// === circuit breakers ===

fn breaker_cluster(limits: Value, hosts: usize) -> Value {
    let hosts: Vec<Value> = (1..=hosts).map(|p| json!({"address": format!("127.0.0.1:{p}")})).collect();
    json!({"hosts": hosts, "circuit_breakers": [limits]})
}

#[test]
fn max_requests_overflows_with_503_and_frees_on_end() {
    let e = config(breaker_cluster(json!({"max_requests": 2}), 3), json!({}), json!([]));
    let start = |e: &Engine| {
        let mut s = e.new_stream(0, None).unwrap();
        s.request_headers(&Headers(&[h(":path", "/")]), true);
        let r = s.choose_host().map(|_| ());
        (s, r)
    };
    let (a, ra) = start(&e);
    let (_b, rb) = start(&e);
    let (c, rc) = start(&e);
    assert_eq!((ra, rb, rc), (Ok(()), Ok(()), Err(NoHost::Overflow)));
    assert_eq!(c.failure_status(), Some(503));
    assert_ne!(c.flags() & mosn_extension::api::flags::UPSTREAM_OVERFLOW, 0);
    drop(a);
    let (_d, rd) = start(&e);
    assert_eq!(rd, Ok(()));
    let st = e.cluster("c").unwrap().stats();
    assert_eq!((st.rq_active, st.rq_total, st.rq_overflow), (2, 3, 1));
}

#[test]
fn max_connections_skips_full_hosts_then_overflows() {
    let e = config(breaker_cluster(json!({"max_connections": 1}), 2), json!({}), json!([]));
    let mut held = Vec::new();
    let mut got = Vec::new();
    for _ in 0..3 {
        let mut s = e.new_stream(0, None).unwrap();
        s.request_headers(&Headers(&[h(":path", "/")]), true);
        got.push(s.choose_host().map(|c| c.host.address.port()));
        held.push(s);
    }
    let mut first_two: Vec<u16> = got[..2].iter().map(|r| r.unwrap()).collect();
    first_two.sort();
    assert_eq!(first_two, [1, 2]);
    assert_eq!(got[2], Err(NoHost::Overflow));
    // The attempt's end frees its connection.
    assert!(!held[0].upstream_result(UpstreamOutcome::Response(200)));
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/")]), true);
    assert!(s.choose_host().is_ok());
}

#[test]
fn max_retries_refuses_retries_beyond_the_limit() {
    let e = config(breaker_cluster(json!({"max_retries": 1}), 3), json!({"retry_policy": {"retry_on": true, "num_retries": 2}}), json!([]));
    let mut a = e.new_stream(0, None).unwrap();
    a.request_headers(&Headers(&[h(":path", "/")]), true);
    a.choose_host().unwrap();
    assert!(a.upstream_result(UpstreamOutcome::Response(503)), "first retry in flight");
    a.choose_host().unwrap();
    let mut b = e.new_stream(0, None).unwrap();
    b.request_headers(&Headers(&[h(":path", "/")]), true);
    b.choose_host().unwrap();
    assert!(!b.upstream_result(UpstreamOutcome::Response(503)), "a second concurrent retry overflows");
    assert_ne!(b.flags() & mosn_extension::api::flags::UPSTREAM_OVERFLOW, 0);
    assert_eq!(b.failure_status(), None, "the upstream's response stands");
    // a's retry ends: retries are free again.
    assert!(!a.upstream_result(UpstreamOutcome::Response(200)));
    let mut c = e.new_stream(0, None).unwrap();
    c.request_headers(&Headers(&[h(":path", "/")]), true);
    c.choose_host().unwrap();
    assert!(c.upstream_result(UpstreamOutcome::ConnectFailure));
    let st = e.cluster("c").unwrap().stats();
    assert_eq!((st.retry_total, st.retry_overflow, st.retry_active), (2, 1, 1));
}

#[test]
fn breaker_accounting_holds_under_concurrent_threads() {
    let e = config(breaker_cluster(json!({"max_requests": 8, "max_connections": 3}), 4), json!({}), json!([]));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (e, peak) = (e.clone(), peak.clone());
            std::thread::spawn(move || {
                let mut overflow = 0;
                for i in 0..2_000 {
                    let mut s = e.new_stream(0, None).unwrap();
                    s.request_headers(&Headers(&[h(":path", "/")]), true);
                    match s.choose_host() {
                        Ok(c) => {
                            peak.fetch_max(c.host.state.active(), std::sync::atomic::Ordering::Relaxed);
                            if i % 2 == 0 {
                                s.upstream_result(UpstreamOutcome::Response(200));
                            } // else: dropped mid-attempt (client gone)
                        }
                        Err(NoHost::Overflow) => overflow += 1,
                        Err(other) => panic!("{other:?}"),
                    }
                }
                overflow
            })
        })
        .collect();
    let overflow: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let c = e.cluster("c").unwrap();
    let st = c.stats();
    assert_eq!(st.rq_active, 0, "every request released its slot");
    assert!(c.hosts.iter().all(|h| h.state.active() == 0), "every attempt released its host");
    assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 3, "max_connections held");
    assert_eq!(st.rq_total + st.rq_overflow, 16_000);
    assert_eq!(overflow, st.rq_overflow + st.cx_overflow);
}

// === consistent hashing ===

#[test]
fn maglev_sends_one_key_to_one_host_and_moves_it_on_failure() {
    let hosts: Vec<Value> = (1..=5).map(|p| json!({"address": format!("127.0.0.1:{p}")})).collect();
    let e = config(json!({"hosts": hosts, "lb_type": "LB_MAGLEV"}), json!({"hash_policy": [{"header": {"key": "x-user"}}]}), json!([]));
    let mut by_user: HashMap<String, u16> = HashMap::new();
    for u in 0..50 {
        let user = format!("user-{u}");
        let got = ports(&e, &[h(":path", "/"), h("x-user", &user)], 4).unwrap();
        assert!(got.iter().all(|p| *p == got[0]), "{user}: {got:?}");
        by_user.insert(user, got[0]);
    }
    let mut spread: Vec<u16> = by_user.values().copied().collect();
    spread.sort();
    spread.dedup();
    assert!(spread.len() >= 4, "50 keys over 5 hosts use most of them: {spread:?}");
    // A retry goes to another host, and the next request with the key too while its host is down.
    let (user, port) = by_user.iter().next().map(|(u, p)| (u.clone(), *p)).unwrap();
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/"), h("x-user", &user)]), true);
    assert_eq!(s.choose_host().unwrap().host.address.port(), port);
    s.upstream_result(UpstreamOutcome::ConnectFailure);
    e.cluster("c").unwrap().hosts[usize::from(port) - 1].set_healthy(false);
    let moved = ports(&e, &[h(":path", "/"), h("x-user", &user)], 3).unwrap();
    assert!(moved.iter().all(|p| *p == moved[0] && *p != port));
    // Other keys stay where they were.
    for (u, p) in by_user.iter().filter(|(_, p)| **p != port) {
        assert_eq!(ports(&e, &[h(":path", "/"), h("x-user", u)], 1).unwrap(), [*p]);
    }
}

#[test]
fn source_ip_hash_uses_the_client_address() {
    let hosts: Vec<Value> = (1..=5).map(|p| json!({"address": format!("127.0.0.1:{p}")})).collect();
    let e = config(json!({"hosts": hosts, "lb_type": "LB_MAGLEV"}), json!({}), json!([]));
    let port = |addr: &str| {
        let mut s = e.new_stream(0, None).unwrap();
        s.set_downstream_address(addr.as_bytes());
        s.request_headers(&Headers(&[h(":path", "/")]), true);
        s.choose_host().unwrap().host.address.port()
    };
    // nginx gives the IP, Envoy ip:port: the same client hashes alike.
    for i in 0..20 {
        let ip = format!("10.1.2.{i}");
        assert_eq!(port(&ip), port(&format!("{ip}:{}", 40000 + i)));
    }
}

// === passive health ===

mod passive {
    use super::*;
    use mosn_extension::upstream::outlier::{recover_if_due, OutlierConfig};

    fn cluster_of(n: usize) -> Arc<Engine> {
        config(breaker_cluster(json!({}), n), json!({}), json!([]))
    }

    fn ejected(e: &Engine) -> Vec<bool> {
        e.cluster("c").unwrap().hosts.iter().map(|h| !h.is_healthy()).collect()
    }

    #[test]
    fn consecutive_exceptions_eject_and_the_ejection_ends_and_grows() {
        let e = cluster_of(3);
        let c = e.cluster("c").unwrap();
        let cfg = OutlierConfig { least_window_count: 5, ..OutlierConfig::default() };
        let t0 = 1_000_000;
        for _ in 0..4 {
            cfg.record(c, 0, UpstreamOutcome::ConnectFailure, t0);
        }
        cfg.record(c, 0, UpstreamOutcome::Response(200), t0); // a success breaks the run
        for _ in 0..4 {
            cfg.record(c, 0, UpstreamOutcome::Response(503), t0);
        }
        assert_eq!(ejected(&e), [false, false, false]);
        cfg.record(c, 0, UpstreamOutcome::Timeout, t0);
        assert_eq!(ejected(&e), [true, false, false], "5 exceptions in a row");
        // maxIpCount 1: a second failing host stays in.
        for _ in 0..5 {
            cfg.record(c, 1, UpstreamOutcome::ConnectFailure, t0);
        }
        assert_eq!(ejected(&e), [true, false, false]);
        let recover = cfg.recover_time.as_millis() as u64;
        assert!(!recover_if_due(&c.hosts[0].state, t0 + recover - 1));
        assert!(recover_if_due(&c.hosts[0].state, t0 + recover));
        // Ejected again: twice as long.
        for _ in 0..5 {
            cfg.record(c, 0, UpstreamOutcome::ConnectFailure, t0 + recover);
        }
        assert!(!recover_if_due(&c.hosts[0].state, t0 + 2 * recover + recover - 1));
        assert!(recover_if_due(&c.hosts[0].state, t0 + 3 * recover));
        assert_eq!(c.hosts[0].state.ejections(), 2);
    }

    #[test]
    fn statuses_outside_exception_types_do_not_count() {
        let e = cluster_of(2);
        let c = e.cluster("c").unwrap();
        let cfg = OutlierConfig { least_window_count: 3, exception_statuses: vec![503], ..OutlierConfig::default() };
        for _ in 0..10 {
            cfg.record(c, 0, UpstreamOutcome::Response(500), 5);
        }
        assert_eq!(ejected(&e), [false, false]);
    }

    #[test]
    fn mosns_rate_rule_ejects_at_the_end_of_the_window() {
        let e = cluster_of(6);
        let c = e.cluster("c").unwrap();
        let cfg = OutlierConfig { least_window_count: 10, max_ip_count: 2, ..OutlierConfig::default() };
        let t0 = 50_000;
        cfg.record(c, 5, UpstreamOutcome::Response(200), t0); // opens the window
        for round in 0..10 {
            for h in 0..6 {
                // Host 0 fails every other call: never 10 in a row, rate 0.5; average ≈ 0.083.
                let bad = h == 0 && round % 2 == 0;
                cfg.record(c, h, if bad { UpstreamOutcome::Response(502) } else { UpstreamOutcome::Response(200) }, t0 + 1);
            }
        }
        assert_eq!(ejected(&e), [false; 6], "judged only when the window ends");
        cfg.record(c, 1, UpstreamOutcome::Response(200), t0 + cfg.time_window.as_millis() as u64);
        assert_eq!(ejected(&e), [true, false, false, false, false, false]);
    }

    #[test]
    fn the_stream_feeds_outcomes_and_ejected_hosts_get_no_traffic() {
        let filters = json!([{"type": "fault_tolerance", "config": {"enabled": true, "leastWindowCount": 3, "recoverTime": 60000}}]);
        let e = config(breaker_cluster(json!({}), 3), json!({}), filters);
        let mut failed_on_1 = 0;
        for _ in 0..30 {
            let mut s = e.new_stream(0, None).unwrap();
            s.request_headers(&Headers(&[h(":path", "/")]), true);
            let port = s.choose_host().unwrap().host.address.port();
            if port == 1 {
                failed_on_1 += 1;
                s.upstream_result(UpstreamOutcome::ConnectFailure);
            } else {
                s.upstream_result(UpstreamOutcome::Response(200));
            }
        }
        assert_eq!(failed_on_1, 3, "the dead host got exactly leastWindowCount attempts");
        assert_eq!(ejected(&e), [true, false, false]);
    }
}

// === active health ===

mod active {
    use super::*;
    use mosn_extension::config::{HealthCheckConfig, HealthCheckProtocol, HttpCheck};
    use mosn_extension::upstream::health_check::{probe, record};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// A one-thread HTTP server answering `status` to every request until dropped.
    struct Backend {
        addr: std::net::SocketAddr,
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Backend {
        fn start(port: u16, status: u16) -> Backend {
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            l.set_nonblocking(true).unwrap();
            let addr = l.local_addr().unwrap();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s2 = stop.clone();
            let thread = std::thread::spawn(move || {
                while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut c, _)) => {
                            c.set_nonblocking(false).unwrap();
                            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                            let mut buf = [0u8; 1024];
                            let _ = c.read(&mut buf);
                            let _ = write!(c, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            Backend { addr, stop, thread: Some(thread) }
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    fn http_cfg(codes: Vec<(u16, u16)>) -> HealthCheckConfig {
        HealthCheckConfig {
            service_name: "s".into(),
            protocol: HealthCheckProtocol::Http(HttpCheck { codes, ..HttpCheck::default_for_mosn() }),
            timeout: Duration::from_millis(500),
            interval: Duration::from_millis(100),
            interval_jitter: Duration::ZERO,
            initial_delay: Duration::ZERO,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }

    #[test]
    fn probes_check_connects_and_statuses() {
        let b = Backend::start(0, 503);
        assert!(probe(&HealthCheckConfig { protocol: HealthCheckProtocol::Tcp, ..http_cfg(vec![]) }, b.addr));
        assert!(!probe(&http_cfg(vec![(200, 200)]), b.addr), "503 is not 200");
        assert!(probe(&http_cfg(vec![(200, 299), (500, 503)]), b.addr));
        let dead = b.addr;
        drop(b);
        assert!(!probe(&HealthCheckConfig { protocol: HealthCheckProtocol::Tcp, ..http_cfg(vec![]) }, dead));
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        let e = config(breaker_cluster(json!({}), 1), json!({}), json!([]));
        let host = &e.cluster("c").unwrap().hosts[0];
        let cfg = http_cfg(vec![(200, 200)]);
        assert_eq!(record(&cfg, &host.state, false), None);
        assert_eq!(record(&cfg, &host.state, true), None, "a pass breaks the failure run");
        assert_eq!(record(&cfg, &host.state, false), None);
        assert_eq!(record(&cfg, &host.state, false), Some(false), "2 failures in a row");
        assert!(!host.is_healthy());
        assert_eq!(record(&cfg, &host.state, true), None);
        assert_eq!(record(&cfg, &host.state, true), Some(true), "2 passes in a row");
        assert!(host.is_healthy());
        assert_eq!(host.state.health_changes(), 2);
    }

    fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) -> Duration {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        t0.elapsed()
    }

    #[test]
    fn the_checker_takes_a_dead_host_out_and_brings_it_back() {
        let a = Backend::start(0, 200);
        let b = Backend::start(0, 200);
        let cluster = json!({"hosts": [{"address": a.addr.to_string()}, {"address": b.addr.to_string()}],
            "health_check": {"protocol": "Http1", "service_name": "c", "interval": "100ms", "interval_jitter": "10ms", "timeout": "200ms",
                             "initial_delay_seconds": "10ms", "healthy_threshold": 1, "unhealthy_threshold": 2,
                             "check_config": {"http_check_config": {"path": "/health", "codes": [{"start": 200, "end": 299}]}}}});
        let e = config(cluster, json!({}), json!([]));
        let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c2 = changes.clone();
        e.watch_health(Arc::new(move |c, i, healthy| c2.lock().unwrap().push((c.name.to_string(), i, healthy))));
        assert!(e.start_health_checks());
        assert!(e.start_health_checks(), "idempotent");
        let hosts = &e.cluster("c").unwrap().hosts;
        std::thread::sleep(Duration::from_millis(300));
        assert!(hosts.iter().all(|h| h.is_healthy()));
        let port = b.addr.port();
        drop(b);
        // Down within interval × unhealthy_threshold (+ a probe timeout and scheduling slack).
        let took = wait_for("marked down", Duration::from_secs(3), || !hosts[1].is_healthy());
        // interval × threshold (+ a timeout) is ~0.4 s; the rest is slack for a loaded machine.
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        // Traffic avoids it.
        assert!(ports(&e, &[h(":path", "/")], 10).unwrap().iter().all(|p| *p == a.addr.port()));
        let _b = Backend::start(port, 200);
        wait_for("back up", Duration::from_secs(3), || hosts[1].is_healthy());
        assert_eq!(*changes.lock().unwrap(), [("c".to_string(), 1, false), ("c".to_string(), 1, true)]);
    }
}

// === the single-cluster subset example ===

#[test]
fn the_subset_example_routes_exactly_like_the_three_cluster_demo() {
    let demo = Engine::from_json(include_str!("../examples/unit-routing/mosn.json")).unwrap();
    let subset = Engine::from_json(include_str!("../examples/unit-subset/mosn.json")).unwrap();
    // The hosts requests with these headers can reach (enough picks to see every host).
    let reach = |e: &Engine, uid: Option<&str>| {
        let mut hs = vec![h(":path", "/")];
        if let Some(u) = uid {
            hs.push(h("uid", u));
        }
        let mut got: Vec<String> = (0..16)
            .map(|_| {
                let mut s = e.new_stream(0, None).unwrap();
                s.request_headers(&Headers(&hs), true);
                s.choose_host().unwrap().host.address_text.to_string()
            })
            .collect();
        got.sort();
        got.dedup();
        got
    };
    for uid in [
        None,
        Some("1"),
        Some("2"),
        Some("100"),
        Some("101"),
        Some("200"),
        Some("201"),
        Some("0"),
        Some("-1"),
        Some("abc"),
        Some("9223372036854775807"),
    ] {
        assert_eq!(reach(&subset, uid), reach(&demo, uid), "uid {uid:?}");
    }
}

#[test]
fn a_retry_refused_for_want_of_a_host_gets_the_status_of_why() {
    // Two hosts at max_connections 1: a second stream's retry finds both full → 503, not the
    // first attempt's 502.
    let e =
        config(breaker_cluster(json!({"max_connections": 1}), 2), json!({"retry_policy": {"retry_on": true, "num_retries": 2}}), json!([]));
    let mut a = e.new_stream(0, None).unwrap();
    a.request_headers(&Headers(&[h(":path", "/")]), true);
    a.choose_host().unwrap();
    let mut b = e.new_stream(0, None).unwrap();
    b.request_headers(&Headers(&[h(":path", "/")]), true);
    b.choose_host().unwrap();
    assert!(b.upstream_result(UpstreamOutcome::ConnectFailure));
    // b's own host is free again but tried; a holds the other: the retry takes b's host again
    // (a one-host retry) — so fill it from a third stream first.
    let mut c = e.new_stream(0, None).unwrap();
    c.request_headers(&Headers(&[h(":path", "/")]), true);
    c.choose_host().unwrap();
    assert_eq!(b.choose_host().err(), Some(NoHost::Overflow));
    assert_eq!(b.failure_status(), Some(503));
}

// === STRICT_DNS ===

#[test]
fn strict_dns_names_become_hosts() {
    let cluster = json!({"type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY", "dns_refresh_rate": "1s",
                         "hosts": [{"address": "localhost:8080", "weight": 3}, {"address": "127.0.0.2:9090"}]});
    let e = config(cluster, json!({}), json!([]));
    let c = e.cluster("c").unwrap();
    // localhost: 8 slots (one filled); the IP entry: one host.
    assert_eq!(c.hosts.len(), 9);
    let with_address: Vec<String> = c.hosts.iter().filter_map(|h| h.current().map(|(_, t)| t.to_string())).collect();
    assert_eq!(with_address, ["127.0.0.1:8080", "127.0.0.2:9090"]);
    // Only hosts with an address are picked, and the stream hands out the resolved address.
    let mut seen: Vec<String> = (0..8)
        .map(|_| {
            let mut s = e.new_stream(0, None).unwrap();
            s.request_headers(&Headers(&[h(":path", "/")]), true);
            s.choose_host().unwrap().address.to_string()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["127.0.0.1:8080", "127.0.0.2:9090"]);
    assert!(c.refresh_dns().is_empty(), "nothing changed");
    assert!(e.start_dns_refresh());
}

#[test]
fn strict_dns_settings_are_checked() {
    let base = |extra: Value| {
        let mut c = json!({"name": "c", "type": "STRICT_DNS", "hosts": [{"address": "localhost:80"}]});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let cfg = json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:8080", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
            "cluster_manager": {"clusters": [c]}});
        Engine::load(&cfg.to_string()).err().map(|e| e.to_string())
    };
    assert_eq!(base(json!({})), None);
    assert!(base(json!({"dns_resolvers": ["8.8.8.8"]}))
        .unwrap()
        .contains("cluster_manager.clusters[0].dns_resolvers: is not supported yet"));
    assert!(base(json!({"dns_lookup_family": "V5"})).unwrap().contains("dns_lookup_family"));
    // Outside STRICT_DNS a name is still refused.
    let mut simple = json!({"name": "c", "hosts": [{"address": "localhost:80"}]});
    simple["type"] = json!("SIMPLE");
    let cfg = json!({"servers": [{"routers": [], "listeners": [{"name": "l", "address": "127.0.0.1:8080", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1"}}]}]}]}],
        "cluster_manager": {"clusters": [simple]}});
    let err = Engine::load(&cfg.to_string()).err().unwrap().to_string();
    assert!(err.contains("is not an IP address"), "{err}");
}

// === mirroring ===

#[test]
fn the_mirror_filter_copies_by_the_routes_policy() {
    let cfg = |percent: u32, filter: Value| {
        let c = json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"},
                         "request_mirror_policies": {"cluster": "m", "percent": percent}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:8080", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
                "stream_filters": filter}]}],
            "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]},
                                             {"name": "m", "hosts": [{"address": "127.0.0.1:7"}, {"address": "127.0.0.1:8"}]}]}});
        Engine::from_json(&c.to_string()).unwrap()
    };
    let mirrors = |e: &Engine| {
        let mut s = e.new_stream(0, None).unwrap();
        s.request_headers(&Headers(&[h(":path", "/")]), true);
        let mut got: Vec<String> = s.mirrors().iter().map(|m| m.address().to_string()).collect();
        got.sort();
        got
    };
    // No filter: MOSN mirrors only through it.
    assert!(mirrors(&cfg(100, json!([]))).is_empty());
    let e = cfg(100, json!([{"type": "mirror", "config": {"amplification": 2}}]));
    assert_eq!(mirrors(&e).len(), 2, "two copies, one host each");
    let e = cfg(100, json!([{"type": "mirror", "config": {"broadcast": true}}]));
    assert_eq!(mirrors(&e), ["127.0.0.1:7", "127.0.0.1:8"], "one copy to every host");
    assert!(mirrors(&cfg(0, json!([{"type": "mirror"}]))).is_empty());
    let e = cfg(50, json!([{"type": "mirror"}]));
    let n = (0..2000).filter(|_| !mirrors(&e).is_empty()).count();
    assert!((850..=1150).contains(&n), "50 % of 2000 requests: {n}");
}

#[test]
fn an_expired_ejection_does_not_block_the_next() {
    use mosn_extension::upstream::outlier::OutlierConfig;
    let e = config(breaker_cluster(json!({}), 3), json!({}), json!([]));
    let c = e.cluster("c").unwrap();
    let cfg = OutlierConfig { least_window_count: 2, ..OutlierConfig::default() };
    let t0 = 10_000_000;
    cfg.record(c, 0, UpstreamOutcome::ConnectFailure, t0);
    cfg.record(c, 0, UpstreamOutcome::ConnectFailure, t0);
    assert!(!c.hosts[0].is_healthy());
    // Host 0's ejection is over (nobody looked at it since); host 1 may be ejected now.
    let later = t0 + cfg.recover_time.as_millis() as u64 + 1;
    cfg.record(c, 1, UpstreamOutcome::ConnectFailure, later);
    cfg.record(c, 1, UpstreamOutcome::ConnectFailure, later);
    assert!(c.hosts[0].is_healthy() && !c.hosts[1].is_healthy());
}

#[test]
fn peak_ewma_learns_each_attempts_latency() {
    let hosts: Vec<Value> = (1..=2).map(|p| json!({"address": format!("127.0.0.1:{p}")})).collect();
    let e = config(json!({"hosts": hosts, "lb_type": "LB_PEAK_EWMA"}), json!({}), json!([]));
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/")]), true);
    let i = s.choose_host().unwrap().index;
    std::thread::sleep(std::time::Duration::from_millis(20));
    s.upstream_result(UpstreamOutcome::Response(200));
    // Read at time 0 (before the stamp): no decay, the sample itself.
    let v = e.cluster("c").unwrap().hosts[i].state.latency_ewma_ns(0, 10e9);
    assert!(v.is_some_and(|v| v >= 20e6), "the attempt's 20 ms were recorded: {v:?}");
}

#[test]
fn a_refused_host_is_replaced_within_the_attempt() {
    let e = config(breaker_cluster(json!({}), 3), json!({"retry_policy": {"retry_on": true, "num_retries": 1}}), json!([]));
    let mut s = e.new_stream(0, None).unwrap();
    s.request_headers(&Headers(&[h(":path", "/")]), true);
    let first = s.choose_host().unwrap().index;
    let second = s.choose_another_host().unwrap().index;
    assert_ne!(first, second);
    assert_eq!(s.attempts(), 1, "still the first attempt");
    let c = e.cluster("c").unwrap();
    assert_eq!(c.hosts[first].state.active(), 0, "the refused host is released");
    assert_eq!(c.hosts[second].state.active(), 1);
    // The one retry the policy allows is still there.
    assert!(s.upstream_result(UpstreamOutcome::ConnectFailure));
    assert_eq!(s.choose_host().unwrap().attempt, 2);
}

#[test]
fn a_full_subset_is_an_overflow_not_a_fallback() {
    let mut cluster = subset_cluster(1);
    cluster["circuit_breakers"] = json!([{"max_connections": 1}]);
    let e = config(cluster, json!({}), serde_json::from_str(H2M).unwrap());
    let hs = [h(":path", "/"), h("x-unit", "s2")];
    let mut a = e.new_stream(0, None).unwrap();
    a.request_headers(&Headers(&hs), true);
    assert_eq!(a.choose_host().unwrap().host.address.port(), 3);
    let mut b = e.new_stream(0, None).unwrap();
    b.request_headers(&Headers(&hs), true);
    assert_eq!(b.choose_host().err(), Some(NoHost::Overflow), "not another unit's host");
    assert_eq!(b.failure_status(), Some(503));
}

// === Reload: the new config takes over the old one's state ===

#[test]
fn a_reload_keeps_round_robin_position_health_and_counts_of_an_unchanged_cluster() {
    let hosts = json!([{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:2"}, {"address": "127.0.0.1:3"}]);
    let old = config(json!({"hosts": hosts.clone()}), json!({}), json!([]));
    let first = ports(&old, &[], 2).unwrap();
    let c = old.cluster("c").unwrap();
    c.hosts[2].state.set_flag(mosn_extension::upstream::host::health::FAILED_ACTIVE_HC, true);
    // One request still in flight on the old config.
    let mut in_flight = old.new_stream(0, None).unwrap();
    assert_eq!(in_flight.request_headers(&Headers(&[]), true), Action::Continue);
    in_flight.choose_host().unwrap();
    let new = config(json!({"hosts": hosts}), json!({}), json!([]));
    new.inherit_state(&old);
    let n = new.cluster("c").unwrap();
    // The cursor moved on: the next pick continues where the old config stopped, and the
    // host marked down stays down.
    assert_eq!(n.hosts.iter().map(|h| h.state.active()).sum::<u64>(), 0, "the old config's request in flight ends there");
    assert_eq!(c.hosts.iter().map(|h| h.state.active()).sum::<u64>(), 1);
    assert_eq!(ports(&new, &[], 1).unwrap(), ports(&old, &[], 1).unwrap(), "after {first:?}");
    assert!(!n.hosts[2].state.is_healthy());
    assert_eq!(n.hosts[0].state.requests() + n.hosts[1].state.requests(), 4, "old counts carried, new added");
    drop(in_flight);
    assert_eq!(new.listeners[0].counters.stats().request_total, old.listeners[0].counters.stats().request_total);
}

#[test]
fn a_reload_that_changes_a_cluster_keeps_the_state_of_hosts_with_the_same_address() {
    let old = config(json!({"hosts": [{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:2"}]}), json!({}), json!([]));
    ports(&old, &[], 4).unwrap();
    let down = mosn_extension::upstream::host::health::FAILED_OUTLIER_CHECK;
    old.cluster("c").unwrap().hosts[1].state.set_flag(down, true);
    // Host 1 removed, host 2 kept (now first), host 3 added.
    let new = config(json!({"hosts": [{"address": "127.0.0.1:2"}, {"address": "127.0.0.1:3"}]}), json!({}), json!([]));
    new.inherit_state(&old);
    let n = new.cluster("c").unwrap();
    assert_eq!(n.hosts[0].state.flags(), down, "127.0.0.1:2 keeps its ejection");
    assert_eq!(n.hosts[0].state.requests(), 2);
    assert_eq!((n.hosts[1].state.flags(), n.hosts[1].state.requests()), (0, 0), "a new host starts afresh");
    assert_eq!(n.hosts.iter().map(|h| h.state.active()).sum::<u64>(), 0);
}
