//! MOSN's `payload_limit` filter: a request body over `max_entity_size` bytes is answered
//! with `http_status` (413 by default) and never reaches the upstream.
//!
//! MOSN's JSON key has a trailing space (`"max_entity_size "`); both spellings are read.
//! The size is the `Content-Length` when the request has one (nothing is buffered); a body
//! without one (chunked) is buffered by the host first and measured. Runs `AfterRoute`, as in
//! MOSN, and honours a route's `per_filter_config`. The host's own body limit still applies
//! (Envoy's buffer limit, nginx's `client_max_body_size`, both 413).

use super::registry::ParseContext;
use super::{FilterStatus, LocalReply, ReceiveContext, ReceivePhase, StreamFilter};
use crate::config::reader::{Diagnostics, Obj};
use crate::headers::HeaderMap;
use std::sync::Arc;

/// The filter, built once per config (0: no limit).
pub struct PayloadLimit {
    max: u64,
    status: u16,
}

// === impl parse ===

/// Reads `{"max_entity_size ": N, "http_status": S}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(PayloadLimit { max: 0, status: 413 })) };
    let errors = d.error_count();
    let spaced = c.uint("max_entity_size ", 0, u64::MAX, d);
    let clean = c.uint("max_entity_size", 0, u64::MAX, d);
    if spaced.is_some() && clean.is_some() {
        d.error(c.field_path("max_entity_size"), "is set twice (with and without MOSN's trailing space)");
    }
    let max = spaced.or(clean).unwrap_or(0);
    // MOSN: 0 is its default status, 413.
    let status = c.uint("http_status", 0, 599, d).filter(|s| *s != 0).unwrap_or(413) as u16;
    if status < 200 {
        d.error(c.field_path("http_status"), format!("{status} is not a final HTTP status (200..=599)"));
    }
    c.finish(d);
    (d.error_count() == errors).then(|| Arc::new(PayloadLimit { max, status }) as Arc<dyn StreamFilter>)
}

/// The request's `Content-Length`, if it has exactly one valid value.
fn content_length(headers: &dyn HeaderMap) -> Option<u64> {
    std::str::from_utf8(headers.get("content-length").single()?).ok()?.trim().parse().ok()
}

// === impl PayloadLimit ===

impl StreamFilter for PayloadLimit {
    fn name(&self) -> &'static str {
        "payload_limit"
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
    fn may_need_body(&self) -> bool {
        self.max > 0
    }
    /// Only a body of unknown length is buffered.
    fn needs_body_for(&self, headers: &dyn HeaderMap) -> bool {
        self.max > 0 && content_length(headers).is_none()
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if self.max == 0 {
            return FilterStatus::Continue;
        }
        let size = content_length(&cx.headers()).or_else(|| cx.body().map(|b| b.len() as u64)).unwrap_or(0);
        if size <= self.max {
            return FilterStatus::Continue;
        }
        cx.set_flag(crate::api::flags::REQ_ENTITY_TOO_LARGE);
        cx.local_reply(LocalReply::new(self.status, "", "payload_too_large"));
        FilterStatus::LocalReply
    }
}
