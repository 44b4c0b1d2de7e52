//! MOSN's `mirror` filter: for a route with `request_mirror_policies`, copies of the
//! request (headers and body) go to the mirror cluster; their answers are dropped.
//!
//! Per request: the policy's `percent` decides; `amplification` copies are made, each to one
//! host the mirror cluster's balancer picks, or to every healthy host with `broadcast`. The
//! host sends the copies once the request goes upstream. A listener with this filter buffers
//! request bodies (a copy carries the body). Runs `AfterRoute`, as in MOSN.

use super::registry::ParseContext;
use super::{FilterStatus, ReceiveContext, ReceivePhase, StreamFilter};
use crate::config::reader::{Diagnostics, Obj};
use std::sync::Arc;

/// The filter, built once per config.
pub struct Mirror {
    amplification: u32,
    broadcast: bool,
}

/// Reads `{amplification, broadcast}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(Mirror { amplification: 1, broadcast: false })) };
    let errors = d.error_count();
    // MOSN: 0 (unset) is one copy.
    let amplification = c.uint("amplification", 0, 100, d).filter(|a| *a > 0).unwrap_or(1) as u32;
    let broadcast = c.boolean("broadcast", d).unwrap_or(false);
    c.finish(d);
    (d.error_count() == errors).then(|| Arc::new(Mirror { amplification, broadcast }) as Arc<dyn StreamFilter>)
}

impl StreamFilter for Mirror {
    fn name(&self) -> &'static str {
        "mirror"
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
    /// A copy carries the body, and which route mirrors is known only after the host has
    /// buffered it: every body on this listener is buffered.
    fn needs_body(&self) -> bool {
        true
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if let Some(p) = cx.mirror_policy {
            if p.roll() {
                let targets = p.targets(self.amplification, self.broadcast);
                cx.mirrors.extend(targets);
            }
        }
        FilterStatus::Continue
    }
}
