//! The filter chain's cost: one request through 0, 1 and 5 filters (then route and host
//! choice), and a 1 MiB request body handed to a body-reading filter, with heap
//! allocations per request (a counting global allocator).
//!
//! `cargo bench --bench chain` (or `make bench`); results in docs/benchmarks.md.

use criterion::{black_box, criterion_group, Criterion};
use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// One listener, one route to one cluster, with `filters`.
fn engine(filters: serde_json::Value) -> Arc<Engine> {
    let cfg = serde_json::json!({
        "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:8080", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
                "stream_filters": filters}]}],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:2"}]}]}
    });
    Engine::from_json(&cfg.to_string()).unwrap()
}

/// Five common filters, each doing its work on this request (none rejects it).
fn five() -> serde_json::Value {
    serde_json::json!([
        {"type": "ip_access", "config": {"header": "x-real-ip", "ips": [{"action": "deny", "addrs": ["10.0.0.0/8"]}]}},
        {"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}},
        {"type": "header_to_metadata", "config": {"request_rules": [{"header": "x-mosn-on-envoy-unit", "on_header_present": {"key": "unit"}}]}},
        {"type": "payload_limit", "config": {"max_entity_size ": 2097152}},
        {"type": "fault", "config": {"abort": {"status": 503, "percentage": 0}}}
    ])
}

fn headers(content_length: Option<&'static [u8]>) -> Vec<Header<'static>> {
    let mut v = vec![
        Header { name: b":method", value: b"POST" },
        Header { name: b":path", value: b"/api/orders?id=42" },
        Header { name: b":authority", value: b"localhost:2990" },
        Header { name: b"user-agent", value: b"curl/7.88.1" },
        Header { name: b"x-real-ip", value: b"192.168.1.9" },
        Header { name: b"uid", value: b"42" },
    ];
    if let Some(n) = content_length {
        v.push(Header { name: b"content-length", value: n });
    }
    v
}

fn run(e: &Arc<Engine>, hs: &[Header<'_>], body: Option<&[u8]>) -> usize {
    let Some(mut s) = e.new_stream(0, None) else { return usize::MAX };
    let h = Headers(hs);
    let mut a = s.request_headers(&h, body.is_none());
    if a == Action::BufferBody {
        a = s.request_body(&h, body.unwrap_or_default(), true);
    }
    debug_assert_eq!(a, Action::Continue);
    s.choose_host().map(|c| c.index).unwrap_or(usize::MAX)
}

fn allocations(e: &Arc<Engine>, hs: &[Header<'_>], body: Option<&[u8]>) -> f64 {
    for _ in 0..1000 {
        run(e, hs, body);
    }
    let n = 20_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        black_box(run(e, hs, body));
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("0_filters", engine(serde_json::json!([])), headers(None), None),
        (
            "1_filter",
            engine(
                serde_json::json!([{"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}}]),
            ),
            headers(None),
            None,
        ),
        ("5_filters", engine(five()), headers(None), None),
    ];
    for (name, e, hs, body) in &cases {
        eprintln!("chain/{name}: {:.2} heap allocations per request", allocations(e, hs, *body));
        c.bench_function(&format!("chain/{name}"), |b| b.iter(|| black_box(run(e, hs, *body))));
    }
    // A 1 MiB body of unknown length (no Content-Length): buffered by the host, handed to the
    // chain once, measured by payload_limit.
    let body = vec![b'x'; 1 << 20];
    let e = engine(five());
    let hs = headers(None);
    eprintln!("chain/5_filters_1MiB_body: {:.2} heap allocations per request", allocations(&e, &hs, Some(&body)));
    c.bench_function("chain/5_filters_1MiB_body", |b| b.iter(|| black_box(run(&e, &hs, Some(&body)))));
    // The UNIT driver reading the uid from the end of a 1 MiB JSON body (no uid header).
    let tail = br#"", "uid": 150}"#;
    let mut json = br#"{"pad": ""#.to_vec();
    json.resize((1 << 20) - tail.len(), b'x');
    json.extend_from_slice(tail);
    let e = engine(serde_json::json!([{"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT",
        "config": {"unit_key": "uid", "body_key": "uid"}}]}}]));
    let hs: Vec<Header<'_>> = headers(None).into_iter().filter(|h| h.name != b"uid").collect();
    eprintln!("chain/uid_in_1MiB_json: {:.2} heap allocations per request", allocations(&e, &hs, Some(&json)));
    c.bench_function("chain/uid_in_1MiB_json", |b| b.iter(|| black_box(run(&e, &hs, Some(&json)))));
    // body_rewrite replacing two words in a 1 MiB request body (a new 1 MiB body).
    let e = engine(serde_json::json!([{"type": "body_rewrite", "config": {"request_rules": [{"from": "secret", "to": "[redacted]"}]}}]));
    let mut text = vec![b'x'; 1 << 20];
    text[1000..1006].copy_from_slice(b"secret");
    text[900_000..900_006].copy_from_slice(b"secret");
    eprintln!("chain/body_rewrite_1MiB: {:.2} heap allocations per request", allocations(&e, &hs, Some(&text)));
    c.bench_function("chain/body_rewrite_1MiB", |b| b.iter(|| black_box(run(&e, &hs, Some(&text)))));
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
