//! Host choice per balancer: one `select` (every host accepted) for each `lb_type` over
//! 10, 1,000 and 10,000 hosts, equal weights and, for every balancer that uses weights,
//! pseudo-random weights 1..=128; every host has reported a latency. With the time to build
//! the hosts and balancer, and a heap-allocation count per pick (a counting global
//! allocator), which must be 0.
//!
//! `cargo bench --bench balancers` (part of `make bench`); results in docs/benchmarks.md.

use criterion::{black_box, criterion_group, Criterion};
use mosn_extension::config::LbType;
use mosn_extension::upstream::lb::bench_balancer;
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

/// Request hash values: consecutive multiples of the golden ratio (spread over the table).
const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

fn allocations_per_pick(pick: &impl Fn(u64) -> Option<usize>) -> f64 {
    let mut h = 0u64;
    for _ in 0..1000 {
        h = h.wrapping_add(STEP);
        pick(h); // warm up (thread-locals, the clock's epoch)
    }
    let n = 100_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        h = h.wrapping_add(STEP);
        black_box(pick(black_box(h)));
    }
    (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

fn bench(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(7);
    for lb_type in LbType::ALL {
        let weighted = lb_type != LbType::RequestRoundRobin;
        for n in [10usize, 1_000, 10_000] {
            let mut cases = vec![("equal", vec![1u32; n])];
            if weighted {
                cases.push(("weights_1_128", (0..n).map(|_| rng.u32(1..=128)).collect()));
            }
            for (weights_name, weights) in cases {
                let name = format!("balancers/{}/{n}/{weights_name}", lb_type.name());
                let built = std::time::Instant::now();
                let pick = bench_balancer(lb_type, &weights);
                let built = built.elapsed();
                let allocs = allocations_per_pick(&pick);
                println!("{name}: built in {built:.1?}, {allocs:.2} heap allocations per pick");
                assert_eq!(allocs, 0.0, "{name} allocates");
                let mut h = 0u64;
                c.bench_function(&name, |b| {
                    b.iter(|| {
                        h = h.wrapping_add(STEP);
                        pick(black_box(h))
                    })
                });
            }
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
