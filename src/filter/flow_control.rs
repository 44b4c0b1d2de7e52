//! MOSN's `flowControlFilter`: a request whose key (its path, query or both:
//! `limit_key_type`) is a rule's `resource` is answered with `action` (509 "current request
//! is limited") once more than the rule's `threshold` requests came per `statIntervalInMs`.
//!
//! MOSN hands the rules to Sentinel (a sliding window per resource, per process). Here each
//! rule is a token bucket of `threshold` tokens refilled at `threshold` per interval (kept as
//! one word, GCRA's "theoretical arrival time"), in the config's shared state, so every worker
//! (nginx's processes, Envoy's threads) draws from one bucket: a burst of `threshold`
//! requests passes, then `threshold` per interval. Only
//! Sentinel's default shape is taken (direct token calculation, reject); warm-up,
//! throttling and related-resource rules are refused. `monitor: true` counts but never
//! rejects (logged). Runs `AfterRoute`, as in MOSN.

use super::registry::ParseContext;
use super::{FilterStatus, LocalReply, ReceiveContext, ReceivePhase, StreamFilter};
use crate::config::fields::object;
use crate::config::reader::{is_empty, unknown, Diagnostics, Obj};
use crate::headers::SharedStr;
use crate::upstream::state::Words;
use std::sync::Arc;

/// The largest threshold accepted.
const MAX_THRESHOLD: u64 = 1_000_000;
/// Bucket times count in nanoseconds from 2024-01-01 UTC (comparable across processes).
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
    /// One token's worth of time: the interval / threshold (ns).
    emission_ns: u64,
    interval_ns: u64,
    /// One word: when the bucket would be full again (ns from `TIME_BASE_MS`; 0: never used).
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
    let interval_ns = interval_ms * 1_000_000;
    Some(Rule { resource: resource?, emission_ns: (interval_ns / threshold?).max(1), interval_ns, bucket: words.take(1) })
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
    fn may_wait(&self) -> bool {
        false
    }
    fn reads_client_address(&self) -> bool {
        false
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
            let now = now_ns();
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
    /// Takes one token; false if the bucket is empty. GCRA on one shared word: a request may
    /// pass while the theoretical arrival time is at most one interval minus one token ahead
    /// of now; passing moves it one token later (one compare-and-swap).
    fn take(&self, now_ns: u64) -> bool {
        let burst = self.interval_ns - self.emission_ns;
        crate::upstream::word::gcra_take(self.bucket.word(0), now_ns, self.emission_ns, burst, self.interval_ns)
    }
}

/// Nanoseconds since `TIME_BASE_MS` (wall clock: comparable across nginx's processes).
fn now_ns() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_nanos() as u64).saturating_sub(TIME_BASE_MS * 1_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::state::{Layout, StateBlock, WordAllocator};

    fn rule(threshold: u64, interval_ms: u64) -> (Rule, Arc<StateBlock>) {
        let state = Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let bucket = WordAllocator { state: &state, layout: std::cell::RefCell::new(&mut layout) }.take(1);
        state.allocate_for(&layout);
        let interval_ns = interval_ms * 1_000_000;
        (Rule { resource: "/x".into(), emission_ns: interval_ns / threshold, interval_ns, bucket }, state)
    }

    /// Milliseconds as the bucket's nanoseconds.
    fn ms(t: u64) -> u64 {
        t * 1_000_000
    }

    #[test]
    fn a_burst_of_threshold_then_the_rate() {
        let (r, _s) = rule(5, 1000);
        let t0 = 100_000_000;
        assert_eq!((0..8).filter(|_| r.take(ms(t0))).count(), 5, "the bucket starts full");
        assert!(!r.take(ms(t0 + 100)), "100 ms refills half a token");
        assert!(r.take(ms(t0 + 200)), "200 ms refills one");
        assert!(!r.take(ms(t0 + 200)));
        assert_eq!((0..10).filter(|_| r.take(ms(t0 + 10_000))).count(), 5, "refilled to the threshold, no more");
    }

    #[test]
    fn fractions_are_kept_and_a_clock_step_back_does_not_freeze() {
        let (r, _s) = rule(5, 1000);
        let t0 = 100_000_000;
        while r.take(ms(t0)) {}
        // A request every millisecond for a second: exactly the 5 the rate allows.
        let passed = (1..=1000).filter(|m| r.take(ms(t0 + m))).count();
        assert_eq!(passed, 5);
        // The clock steps back an hour: the bucket keeps refilling from the new now.
        let back = t0 - 3_600_000;
        while r.take(ms(back)) {}
        assert!(r.take(ms(back + 200)), "refilled after 200 ms of the stepped-back clock");
    }

    #[test]
    fn threads_share_one_bucket() {
        let (r, _s) = rule(100, 60_000);
        let r = Arc::new(r);
        let t0 = 100_000_000;
        let passed: usize = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..100).filter(|_| r.take(ms(t0))).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(passed, 100);
    }
}
