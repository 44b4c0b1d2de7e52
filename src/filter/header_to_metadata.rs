//! MOSN's `header_to_metadata` filter: request headers become subset criteria (MOSN's
//! `x-mosn-router-meta`), so one cluster's hosts can be picked by their `mosn.lb` metadata.
//!
//! Each rule reads one header. Present: `on_header_present.key` gets `on_header_present.value`,
//! or the header's own value when that is empty. Missing: `on_header_missing` gives the key
//! and value. `remove` drops the header from the upstream request. Runs `AfterRoute`, as in
//! MOSN: routes still match on the header.

use super::registry::ParseContext;
use super::{FilterStatus, ReceiveContext, ReceivePhase, StreamFilter};
use crate::config::fields::object;
use crate::config::reader::{Diagnostics, Obj};
use crate::headers::SharedStr;
use std::sync::Arc;

/// The filter, built once per config.
pub struct HeaderToMetadata {
    rules: Vec<Rule>,
}

struct Rule {
    header: SharedStr,
    /// `(key, value)`; an empty value takes the header's.
    on_present: Option<(SharedStr, SharedStr)>,
    on_missing: Option<(SharedStr, SharedStr)>,
    remove: bool,
}

// === impl parse ===

/// Reads `{request_rules: [{header, on_header_present, on_header_missing, remove}]}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(HeaderToMetadata { rules: Vec::new() })) };
    let errors = d.error_count();
    let mut rules = Vec::new();
    for mut r in c.objects("request_rules", object::HEADER_TO_METADATA_RULE, d) {
        let header = r.required_string("header", d).map(str::to_ascii_lowercase);
        let on_present = r.object("on_header_present", object::HEADER_TO_METADATA_KV, d).and_then(|o| key_value(o, false, d));
        let on_missing = r.object("on_header_missing", object::HEADER_TO_METADATA_KV, d).and_then(|o| key_value(o, true, d));
        let remove = r.boolean("remove", d).unwrap_or(false);
        // MOSN requires exactly one of the two.
        if on_present.is_some() == on_missing.is_some() && d.error_count() == errors {
            d.error(r.path().to_string(), "needs exactly one of on_header_present, on_header_missing");
        }
        r.finish(d);
        if let Some(header) = header {
            rules.push(Rule { header: header.into(), on_present, on_missing, remove });
        }
    }
    c.finish(d);
    (d.error_count() == errors).then(|| Arc::new(HeaderToMetadata { rules }) as Arc<dyn StreamFilter>)
}

/// `{key, value}`; `value` is required when there is no header to take it from.
fn key_value(mut o: Obj<'_>, value_required: bool, d: &mut Diagnostics) -> Option<(SharedStr, SharedStr)> {
    let key = o.required_string("key", d);
    let value = if value_required { o.required_string("value", d) } else { o.string("value", d).or(Some("")) };
    o.finish(d);
    Some((key?.into(), value?.into()))
}

// === impl HeaderToMetadata ===

impl StreamFilter for HeaderToMetadata {
    fn name(&self) -> &'static str {
        "header_to_metadata"
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
        for rule in &self.rules {
            let value: Option<SharedStr> = cx.header(&rule.header).first().map(|v| String::from_utf8_lossy(v).as_ref().into());
            match (value, &rule.on_present, &rule.on_missing) {
                (Some(v), Some((key, with)), _) => {
                    let v = if with.is_empty() { v } else { with.clone() };
                    cx.set_router_meta(key.clone(), v);
                }
                (None, _, Some((key, with))) => cx.set_router_meta(key.clone(), with.clone()),
                _ => {}
            }
            if rule.remove && cx.header(&rule.header).first().is_some() {
                cx.remove_header(rule.header.clone());
            }
        }
        FilterStatus::Continue
    }
}
