//! The decision path for the demo config: filter chain (metadata/UNIT) + route + host
//! choice, from request headers in to decision out, with a heap-allocation count per
//! request (a counting global allocator).
//!
//! `cargo bench --bench decision` (or `make bench`); results in docs/benchmarks.md.

use criterion::{black_box, criterion_group, Criterion};
use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

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

const DEMO: &str = include_str!("../examples/unit-routing/mosn.json");

/// The request a browser-ish client sends, with the uid to route on.
fn headers(uid: &'static str) -> Vec<Header<'static>> {
    let mut v = vec![
        Header { name: b":method", value: b"GET" },
        Header { name: b":path", value: b"/api/orders?id=42" },
        Header { name: b":authority", value: b"localhost:2990" },
        Header { name: b"user-agent", value: b"curl/7.88.1" },
        Header { name: b"accept", value: b"*/*" },
    ];
    if !uid.is_empty() {
        v.push(Header { name: b"uid", value: uid.as_bytes() });
    }
    v
}

fn decide(e: &std::sync::Arc<Engine>, hs: &[Header<'_>]) -> usize {
    let Some(mut s) = e.new_stream(0, None) else { return usize::MAX };
    let a = s.request_headers(&Headers(hs), true);
    debug_assert_eq!(a, Action::Continue);
    let i = s.choose_host().map(|c| c.index).unwrap_or(usize::MAX);
    black_box(s.request_mutations().len());
    i
}

fn allocations_per_request(e: &std::sync::Arc<Engine>, hs: &[Header<'_>]) -> f64 {
    for _ in 0..1000 {
        decide(e, hs); // warm up (thread-locals, lazy statics)
    }
    let n = 100_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        black_box(decide(e, hs));
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn bench(c: &mut Criterion) {
    let e = Engine::from_json(DEMO).unwrap();
    for (name, uid) in [("uid_s1", "2"), ("uid_s3", "201"), ("no_uid_round_robin", ""), ("forged_unit", "")] {
        let mut hs = headers(uid);
        if name == "forged_unit" {
            hs.push(Header { name: b"x-mosn-on-envoy-unit", value: b"s2" });
        }
        let allocs = allocations_per_request(&e, &hs);
        println!("decision/{name}: {allocs:.2} heap allocations per request");
        c.bench_function(&format!("decision/{name}"), |b| b.iter(|| decide(&e, black_box(&hs))));
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
