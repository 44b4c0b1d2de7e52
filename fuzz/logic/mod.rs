//! The logic of every fuzz target, shared by the libFuzzer targets (`fuzz_targets/*.rs`,
//! nightly, `cargo fuzz run <target>`) and the stable replay tests
//! (`ffi/tests/fuzz_replay*.rs`, run by `cargo test --release --workspace`), which feed
//! every file of `fuzz/corpus/<target>/` to the same `run` function.
//!
//! Each `run(data)` must not panic for any input: a panic is a finding.

#![allow(dead_code)]

pub mod abi;
pub mod config;
pub mod config_mutate;
pub mod headers;
pub mod path;
pub mod router;

use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine, UpstreamOutcome};

/// Seed configs (valid MOSN JSON) the structure-aware targets start from.
pub const SEEDS: &[&str] = &[
    include_str!("../seeds/full.json"),
    include_str!("../../examples/unit-routing/mosn.json"),
    include_str!("../../examples/unit-subset/mosn.json"),
];

/// True for config text that would make the loader resolve host names (STRICT_DNS): slow and
/// dependent on the machine's resolver, so the targets skip it.
pub fn resolves_names(text: &[u8]) -> bool {
    text.windows(3).any(|w| w.eq_ignore_ascii_case(b"dns"))
}

/// One request as a host would drive it, with wake-less streams (a waiting filter answers
/// 500): headers, a body if asked, a host choice and an outcome per attempt, the response.
pub struct Request<'a> {
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
    pub end_of_stream: bool,
    /// Outcome of each attempt, in order (the host stops when the core says no retry).
    pub outcomes: Vec<UpstreamOutcome>,
    pub downstream: &'a [u8],
}

/// Runs `r` through listener `listener` of `engine`. Panics only on a broken invariant.
pub fn drive(engine: &Engine, listener: usize, r: &Request<'_>) {
    let hs: Vec<Header<'_>> = r.headers.iter().map(|(n, v)| Header { name: n, value: v }).collect();
    let hs = Headers(&hs);
    let Some(mut s) = engine.new_stream(listener, None) else { return };
    s.set_downstream_address(r.downstream);
    let mut a = s.request_headers(&hs, r.end_of_stream);
    if a == Action::BufferBody {
        a = s.request_body(&hs, r.body, true);
    }
    assert_ne!(a, Action::Wait, "a stream without a wake function never waits");
    assert_ne!(a, Action::BufferBody, "the whole body was given");
    if a == Action::LocalReply {
        let reply = s.local_reply().expect("a local reply has a reply");
        assert!((100..=999).contains(&reply.status), "reply status {}", reply.status);
        s.response_headers(reply.status, &Headers(&[]), true);
        return;
    }
    let _ = (s.route_info(), s.timeout(), s.per_try_timeout(), s.max_attempts(), s.mirrors().len());
    let mut status = 200;
    for o in &r.outcomes {
        let chosen = s.choose_host();
        if chosen.is_err() {
            break;
        }
        if let UpstreamOutcome::Response(st) = o {
            status = *st;
        }
        if !s.upstream_result(*o) {
            break;
        }
    }
    let status = s.failure_status().unwrap_or(status);
    s.response_headers(status, &Headers(&[]), true);
}
