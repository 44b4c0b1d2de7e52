//! Unit tests of the adapter's logic against the recording fakes (no Envoy).
//!
//! `http.rs`: header application, local replies, the request state machine, fail-closed
//! paths and the panic policy of the HTTP filter. `lb.rs`: cluster init, the LB host-choice
//! loop, outcome mapping. `health.rs`: active health results to Envoy. `dns.rs`: STRICT_DNS
//! hosts (added as they resolve, found by address, moved when the core re-resolves).
//! `mirror.rs`: request copies (what they carry, their queue to the main thread, the LB
//! sending each to the host the core chose).

mod dns;
mod health;
mod http;
mod lb;
mod mirror;

use crate::host::HeadersStatus;
use crate::http_logic::{self, HttpConfig, HttpFilter};
use crate::testing::{self, FakeHttp};
use mosn_extension::wake::Waker;
use std::sync::{Arc, Mutex};

/// A filter config over the test engine, and the script filter's waker slot.
fn config(needs_body: bool) -> (HttpConfig, Arc<Mutex<Option<Waker>>>) {
    let (engine, waker) = testing::engine(needs_body);
    (HttpConfig::new(engine, 0), waker)
}

/// A new stream whose request headers (`end_of_stream`) went through the filter.
fn request(cfg: &HttpConfig, headers: &[(&str, &str)]) -> (HttpFilter, FakeHttp, HeadersStatus) {
    let f = cfg.new_filter().expect("listener 0 exists");
    let mut host = FakeHttp::new(headers);
    let status = http_logic::request_headers(Some(&f), &mut host, true);
    (f, host, status)
}
