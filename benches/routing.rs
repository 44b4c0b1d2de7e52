//! Route matching as the table grows: `make bench` (or `cargo bench --bench routing`).
//!
//! Each case: one request through a listener with no stream filters, so the time is the
//! router's (virtual host by Host, then the first matching route) plus the stream around it.
//! The matching route is the last one, the worst case for a one-by-one scan.
//! - `prefix/N`: N plain prefix routes (indexed: one hash lookup per distinct prefix length);
//! - `header/N`: N routes that test a header (tried one by one, as MOSN does);
//! - `vhosts/N`: N virtual hosts with exact domains, the request for the last one.

use criterion::{black_box, criterion_group, BenchmarkId, Criterion};
use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine};
use serde_json::json;
use std::sync::Arc;

fn engine(vhosts: serde_json::Value) -> Arc<Engine> {
    let cfg = json!({
      "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": vhosts}],
        "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
          "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]}
    });
    Engine::from_json(&cfg.to_string()).expect("bench config")
}

fn decide(e: &Engine, hs: &[Header<'_>]) -> bool {
    let Some(mut s) = e.new_stream(0, None) else { return false };
    s.request_headers(&Headers(hs), true) == Action::Continue
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("routing");
    for n in [10usize, 100, 1000] {
        let routes: Vec<_> = (0..n).map(|i| json!({"match": {"prefix": format!("/svc{i}/")}, "route": {"cluster_name": "c"}})).collect();
        let e = engine(json!([{"name": "v", "domains": ["*"], "routers": routes}]));
        let path = format!("/svc{}/x", n - 1);
        let hs = [Header { name: b":path", value: path.as_bytes() }];
        assert!(decide(&e, &hs));
        g.bench_with_input(BenchmarkId::new("prefix", n), &n, |b, _| b.iter(|| decide(&e, black_box(&hs))));

        let routes: Vec<_> = (0..n)
            .map(|i| json!({"match": {"prefix": "/", "headers": [{"name": "x-svc", "value": format!("s{i}")}]}, "route": {"cluster_name": "c"}}))
            .collect();
        let e = engine(json!([{"name": "v", "domains": ["*"], "routers": routes}]));
        let svc = format!("s{}", n - 1);
        let hs = [Header { name: b":path", value: b"/x" }, Header { name: b"x-svc", value: svc.as_bytes() }];
        assert!(decide(&e, &hs));
        g.bench_with_input(BenchmarkId::new("header", n), &n, |b, _| b.iter(|| decide(&e, black_box(&hs))));
    }
    for n in [10usize, 1000, 10000] {
        let vhosts: Vec<_> = (0..n)
            .map(|i| json!({"name": format!("v{i}"), "domains": [format!("svc{i}.example.com")], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}))
            .collect();
        let e = engine(json!(vhosts));
        let host = format!("svc{}.example.com", n - 1);
        let hs = [Header { name: b":path", value: b"/x" }, Header { name: b":authority", value: host.as_bytes() }];
        assert!(decide(&e, &hs));
        g.bench_with_input(BenchmarkId::new("vhosts", n), &n, |b, _| b.iter(|| decide(&e, black_box(&hs))));
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
