//! MOSN's `fault` filter (fault injection): delay and/or abort a share of the requests
//! bound to `upstream_cluster` whose headers match `headers`.
//!
//! Runs `AfterRoute`, as in MOSN, so `upstream_cluster` can be checked. The delay parks
//! the stream ([`FilterStatus::Wait`]) and a library timer thread wakes it: the host's
//! worker keeps serving other requests meanwhile.

use super::{FilterStatus, HeaderMatcher, LocalReply, ReceiveContext, ReceivePhase, StreamFilter};
use crate::config::FaultConfig;
use crate::stream::flags;
use std::time::Duration;

pub struct FaultFilter {
    delay: Option<(Duration, u32)>,
    abort: Option<(u16, u32)>,
    upstream_cluster: Option<String>,
    headers: Vec<HeaderMatcher>,
}

impl FaultFilter {
    pub fn new(cfg: &FaultConfig) -> FaultFilter {
        FaultFilter {
            delay: cfg.delay.as_ref().map(|d| (d.fixed_delay, d.percentage)),
            abort: cfg.abort.as_ref().map(|a| (a.status, a.percentage)),
            upstream_cluster: cfg.upstream_cluster.clone(),
            headers: cfg.headers.iter().map(HeaderMatcher::new).collect(),
        }
    }

    fn applies(&self, cx: &ReceiveContext<'_>) -> bool {
        if let Some(c) = &self.upstream_cluster {
            if cx.cluster() != Some(c.as_str()) {
                return false;
            }
        }
        let view = crate::headers::Overlay { base: cx.headers, mutations: cx.mutations };
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
                cx.local_reply(LocalReply { status, headers: Vec::new(), body: "fault filter abort".into(), details: "fault_abort" });
                return FilterStatus::LocalReply;
            }
        }
        FilterStatus::Continue
    }
}
