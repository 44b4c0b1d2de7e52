//! MOSN's `fault` filter (fault injection): delay and/or abort a share of the requests
//! bound to `upstream_cluster` whose headers match `headers`.
//!
//! Runs `AfterRoute`, as in MOSN, so `upstream_cluster` can be checked. The delay parks
//! the stream ([`FilterStatus::Wait`]) and a library timer thread wakes it: the host's
//! worker keeps serving other requests meanwhile.

use super::registry::ParseContext;
use super::{FilterStatus, LocalReply, ReceiveContext, ReceivePhase, StreamFilter};
use crate::api::flags;
use crate::config::fields::object;
use crate::config::reader::{Diagnostics, Obj};
use crate::headers::HeaderMatcher;
use std::sync::Arc;
use std::time::Duration;

/// The filter, built once per config.
pub struct FaultFilter {
    /// `(fixed_delay, percentage)`.
    delay: Option<(Duration, u32)>,
    /// `(status, percentage)`.
    abort: Option<(u16, u32)>,
    upstream_cluster: Option<String>,
    headers: Vec<HeaderMatcher>,
}

// === impl parse ===

/// Reads `{delay, abort, upstream_cluster, headers}` with MOSN's meaning: an empty config,
/// a percentage of 0 or a delay of 0 injects nothing (MOSN's own test configs write these).
pub fn parse(config: Option<Obj<'_>>, cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(FaultFilter::none())) };
    let errors = d.error_count();
    // MOSN's defaults are its zero values: a percentage of 0 (or a delay of 0) never fires;
    // above 100 always fires.
    let delay = c.object("delay", object::FAULT_DELAY, d).and_then(|mut o| {
        let fixed_delay = o.duration("fixed_delay", d).unwrap_or_default();
        let percentage = o.uint("percentage", 0, u64::from(u32::MAX), d).unwrap_or(0) as u32;
        o.finish(d);
        (!fixed_delay.is_zero() && percentage > 0).then_some((fixed_delay, percentage.min(100)))
    });
    let abort = c.object("abort", object::FAULT_ABORT, d).and_then(|mut o| {
        let status_path = o.field_path("status");
        let status = o.uint("status", 0, 599, d).unwrap_or(0) as u16;
        let percentage = o.uint("percentage", 0, u64::from(u32::MAX), d).unwrap_or(0) as u32;
        o.finish(d);
        if (1..200).contains(&status) {
            d.error(status_path, format!("{status} is not a final HTTP status (200..=599, or 0 for MOSN's 200)"));
            return None;
        }
        // MOSN hijacks with status 0, which its HTTP/1 codec sends as 200.
        let status = if status == 0 { 200 } else { status };
        (percentage > 0).then_some((status, percentage.min(100)))
    });
    let cluster_path = c.field_path("upstream_cluster");
    let upstream_cluster = c.string("upstream_cluster", d).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(name) = &upstream_cluster {
        if cx.config.cluster(name).is_none() {
            d.error(cluster_path, format!("cluster \"{name}\" does not exist in cluster_manager.clusters"));
        }
    }
    let headers = crate::config::parse_header_matchers(&mut c, object::FAULT_HEADER, d)
        .into_iter()
        .filter_map(|h| match HeaderMatcher::new(&h.name, &h.value, h.regex) {
            Ok(m) => Some(m),
            Err(e) => {
                d.error(format!("{}.value", h.path), e);
                None
            }
        })
        .collect();
    c.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(Arc::new(FaultFilter { delay, abort, upstream_cluster, headers }))
}

// === impl FaultFilter ===

impl FaultFilter {
    fn none() -> FaultFilter {
        FaultFilter { delay: None, abort: None, upstream_cluster: None, headers: Vec::new() }
    }

    fn applies(&self, cx: &ReceiveContext<'_>) -> bool {
        if let Some(c) = &self.upstream_cluster {
            if cx.cluster() != Some(c.as_str()) {
                return false;
            }
        }
        let view = cx.headers();
        self.headers.iter().all(|m| m.matches(&view))
    }
}

fn roll(percentage: u32) -> bool {
    percentage >= 100 || fastrand::u32(0..100) < percentage
}

impl StreamFilter for FaultFilter {
    fn name(&self) -> &'static str {
        "fault"
    }
    fn receive_phase(&self) -> Option<ReceivePhase> {
        Some(ReceivePhase::AfterRoute)
    }
    fn reads_client_address(&self) -> bool {
        false
    }

    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if !self.applies(cx) {
            return FilterStatus::Continue;
        }
        if !cx.resumed() {
            if let Some((delay, pct)) = self.delay {
                if roll(pct) {
                    cx.set_flag(flags::DELAY_INJECTED);
                    let waker = cx.waker();
                    crate::timer::wake_after(delay, waker);
                    return FilterStatus::Wait;
                }
            }
        }
        if let Some((status, pct)) = self.abort {
            if roll(pct) {
                cx.set_flag(flags::FAULT_INJECTED);
                cx.local_reply(LocalReply::new(status, "fault filter abort", "fault_abort"));
                return FilterStatus::LocalReply;
            }
        }
        FilterStatus::Continue
    }
}
