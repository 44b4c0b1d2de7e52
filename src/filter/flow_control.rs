//! MOSN's `flowControlFilter`: a request whose key (its path, query or both:
//! `limit_key_type`) is a rule's `resource` is answered with `action` (509 "current request
//! is limited") once more than the rule's `threshold` requests came per `statIntervalInMs`.
//!
//! MOSN hands the rules to Sentinel (a sliding window per resource, per process). Here each
//! rule is a token bucket of `threshold` tokens refilled at `threshold` per interval, in the
//! config's shared state, so every worker (nginx's processes, Envoy's threads) draws from
//! one bucket: a burst of `threshold` requests passes, then `threshold` per interval. Only
//! Sentinel's default shape is taken (direct token calculation, reject); warm-up,
//! throttling and related-resource rules are refused. `monitor: true` counts but never
//! rejects (logged). Runs `AfterRoute`, as in MOSN.

use super::registry::ParseContext;
use super::{FilterStatus, LocalReply, ReceiveContext, ReceivePhase, StreamFilter};
use crate::config::fields::object;
use crate::config::reader::{is_empty, unknown, Diagnostics, Obj};
use crate::headers::SharedStr;
use crate::upstream::state::Words;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Token units per token (fractions of a token accumulate between requests).
const UNIT: u64 = 256;
/// Bits of a bucket word holding the tokens (in units); the rest is the refill time in ms.
const TOKEN_BITS: u32 = 24;
const TOKEN_MASK: u64 = (1 << TOKEN_BITS) - 1;
/// The largest threshold a bucket holds.
const MAX_THRESHOLD: u64 = TOKEN_MASK / UNIT;
/// Bucket times count from 2024-01-01 UTC, so they fit the word's 40 time bits until 2058.
const TIME_BASE_MS: u64 = 1_704_067_200_000;

/// The filter, built once per config.
pub struct FlowControl {
    enabled: bool,
    monitor: bool,
    key: KeyType,
    status: u16,
    body: SharedStr,
    rules: Vec<Rule>,
}

/// What a request's key is (`limit_key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    /// The path, without the query (MOSN's default).
    Path,
    /// The query string.
    Arg,
    /// The path with the query.
    Uri,
}

struct Rule {
    resource: String,
    threshold: u64,
    interval_ms: u64,
    /// One word: the bucket's tokens and when it was last refilled.
    bucket: Words,
}

// === impl parse ===

/// Reads `{global_switch, monitor, limit_key_type, action {status, body}, rules [...]}`.
pub fn parse(config: Option<Obj<'_>>, cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let off = || {
        Some(Arc::new(FlowControl { enabled: false, monitor: false, key: KeyType::Path, status: 509, body: "".into(), rules: Vec::new() })
            as Arc<dyn StreamFilter>)
    };
    let Some(mut c) = config else { return off() };
    let errors = d.error_count();
    let enabled = c.boolean("global_switch", d).unwrap_or(false);
    let monitor = c.boolean("monitor", d).unwrap_or(false);
    let kpath = c.field_path("limit_key_type");
    let key = match c.string("limit_key_type", d).unwrap_or("").to_ascii_uppercase().as_str() {
        "" | "PATH" => KeyType::Path,
        "ARG" => KeyType::Arg,
        "URI" => KeyType::Uri,
        other => {
            d.error(kpath, unknown("limit_key_type", other, &["PATH", "ARG", "URI"]));
            KeyType::Path
        }
    };
    let (mut status, mut body) = (509u16, SharedStr::from("current request is limited"));
    if let Some(mut a) = c.object("action", object::FLOW_CONTROL_ACTION, d) {
        if let Some(s) = a.uint("status", 0, 599, d).filter(|s| *s != 0) {
            if s < 200 {
                d.error(a.field_path("status"), format!("{s} is not a final HTTP status (200..=599)"));
            }
            status = s as u16;
        }
        if let Some(b) = a.string("body", d).filter(|b| !b.is_empty()) {
            body = b.into();
        }
        a.finish(d);
    }
    let mut rules = Vec::new();
    for r in c.objects("rules", object::FLOW_CONTROL_RULE, d) {
        if let Some(rule) = parse_rule(r, cx, d) {
            rules.push(rule);
        }
    }
    c.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(Arc::new(FlowControl { enabled, monitor, key, status, body, rules }))
}

fn parse_rule(mut r: Obj<'_>, cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Rule> {
    let rpath = r.path().to_string();
    let resource = r.required_string("resource", d).map(str::to_string);
    let tpath = r.field_path("threshold");
    let threshold = match r.get("threshold") {
        Some(v) => match v.as_f64() {
            Some(t) if t >= 1.0 && t <= MAX_THRESHOLD as f64 && t.fract() == 0.0 => Some(t as u64),
            _ => {
                d.error(tpath, format!("expected a whole number of requests in 1..={MAX_THRESHOLD}, found {v}"));
                None
            }
        },
        None => {
            d.error(tpath, "is required");
            None
        }
    };
    let interval_ms = r.uint("statIntervalInMs", 0, 3_600_000, d).filter(|i| *i > 0).unwrap_or(1000);
    // Sentinel's other rule shapes: refused unless set to their default.
    for k in [
        "tokenCalculateStrategy",
        "controlBehavior",
        "relationStrategy",
        "refResource",
        "maxQueueingTimeMs",
        "warmUpPeriodSec",
        "warmUpColdFactor",
    ] {
        let p = r.field_path(k);
        if r.raw(k).is_some_and(|v| !is_empty(v)) {
            d.error(p, "is not supported yet (only direct token counting that rejects: Sentinel's defaults)");
        }
    }
    let _ = r.raw("id");
    r.finish(d);
    let Some(words) = cx.words else {
        d.error(rpath, "flowControlFilter rules need shared state (only a listener's filter has it)");
        return None;
    };
    Some(Rule { resource: resource?, threshold: threshold?, interval_ms, bucket: words.take(1) })
}

// === impl FlowControl ===

impl FlowControl {
    fn key<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        let q = raw.iter().position(|b| *b == b'?');
        match (self.key, q) {
            (KeyType::Path, Some(i)) => &raw[..i],
            (KeyType::Arg, Some(i)) => &raw[i + 1..],
            (KeyType::Arg, None) => b"",
            _ => raw,
        }
    }
}

impl StreamFilter for FlowControl {
    fn name(&self) -> &'static str {
        "flowControlFilter"
    }
    fn receive_phase(&self) -> Option<ReceivePhase> {
        Some(ReceivePhase::AfterRoute)
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if !self.enabled || self.rules.is_empty() {
            return FilterStatus::Continue;
        }
        let limited = {
            let raw = cx.header(":path").first().unwrap_or(b"/");
            let key = self.key(raw);
            let now = now_ms();
            // Every matching rule takes a token (no short circuit); a request passes only if
            // all had one.
            let mut limited = false;
            for r in self.rules.iter().filter(|r| r.resource.as_bytes() == key) {
                limited |= !r.take(now);
            }
            limited
        };
        if !limited {
            return FilterStatus::Continue;
        }
        if self.monitor {
            tracing::info!("flowControlFilter: request over the limit (monitor mode: passed)");
            return FilterStatus::Continue;
        }
        cx.set_flag(crate::api::flags::RATE_LIMITED);
        cx.local_reply(LocalReply::new(self.status, self.body.clone(), "flow_control_limited"));
        FilterStatus::LocalReply
    }
}

// === impl Rule ===

impl Rule {
    /// Takes one token; false if the bucket is empty. One compare-and-swap on the shared
    /// word: refill by the time since the last refill, then take.
    fn take(&self, now_ms: u64) -> bool {
        let now_ms = now_ms.saturating_sub(TIME_BASE_MS) & ((1 << (64 - TOKEN_BITS)) - 1);
        let full = self.threshold * UNIT;
        let w = self.bucket.word(0);
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            let (tokens, last) = if cur == 0 { (full, now_ms) } else { (cur & TOKEN_MASK, cur >> TOKEN_BITS) };
            let elapsed = now_ms.saturating_sub(last);
            let refill = elapsed.saturating_mul(full) / self.interval_ms;
            let tokens = (tokens + refill).min(full);
            // Keep the time of the last whole refill step so fractions are not lost.
            let last = if refill > 0 { now_ms } else { last };
            let (ok, left) = if tokens >= UNIT { (true, tokens - UNIT) } else { (false, tokens) };
            let next = (last << TOKEN_BITS) | left;
            // 0 means "never used": store at least 1 in the time part.
            let next = if next == 0 { 1 << TOKEN_BITS } else { next };
            match w.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return ok,
                Err(v) => cur = v,
            }
        }
    }
}

/// Milliseconds since the Unix epoch: comparable across nginx's worker processes.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::state::{Layout, StateBlock, WordAllocator};

    fn rule(threshold: u64, interval_ms: u64) -> (Rule, Arc<StateBlock>) {
        let state = Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let bucket = WordAllocator { state: &state, layout: std::cell::RefCell::new(&mut layout) }.take(1);
        state.allocate(layout.next);
        (Rule { resource: "/x".into(), threshold, interval_ms, bucket }, state)
    }

    #[test]
    fn a_burst_of_threshold_then_the_rate() {
        let (r, _s) = rule(5, 1000);
        let t0 = 1_800_000_000_000;
        assert_eq!((0..8).filter(|_| r.take(t0)).count(), 5, "the bucket starts full");
        assert!(!r.take(t0 + 100), "100 ms refills half a token");
        assert!(r.take(t0 + 200), "200 ms refills one");
        assert!(!r.take(t0 + 200));
        assert_eq!((0..10).filter(|_| r.take(t0 + 10_000)).count(), 5, "refilled to the threshold, no more");
    }

    #[test]
    fn threads_share_one_bucket() {
        let (r, _s) = rule(100, 60_000);
        let r = Arc::new(r);
        let t0 = 1_800_000_000_000;
        let passed: usize = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..100).filter(|_| r.take(t0)).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(passed, 100);
    }
}
