//! `body_rewrite`: replaces byte strings in the request body before it goes upstream, and
//! in the response body before it goes to the client.
//!
//! This library's addition, not one of MOSN's filters: MOSN's own body-changing filters
//! (`transcoder`, `dsl`) are not supported yet, and this is the smallest filter that shows a
//! body filter end to end (and the file to start from when writing one). Each rule replaces
//! every occurrence of `from` with `to`, in order; the host sends the new body with its new
//! `Content-Length`. A request with a body is buffered whole first (the host's body limit
//! applies, a 413); one without a body costs nothing. Likewise a response with a body, unless
//! it is encoded (`Content-Encoding`, e.g. gzip from the upstream: its bytes are not the
//! text). Runs `AfterRoute` and `BeforeSend`, so a route can replace or turn it off
//! (`per_filter_config: {"body_rewrite": {"disable": true}}`).

use super::registry::ParseContext;
use super::{FilterStatus, ReceiveContext, ReceivePhase, SendContext, StreamFilter};
use crate::config::fields::object;
use crate::config::reader::{Diagnostics, Obj};
use crate::headers::HeaderMap;
use std::sync::Arc;

/// One `request_rules[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    from: Vec<u8>,
    to: Vec<u8>,
}

/// The filter, built once per config.
pub struct BodyRewrite {
    request: Vec<Rule>,
    response: Vec<Rule>,
}

// === impl parse ===

/// Reads `{"request_rules": [{"from": "...", "to": "..."}], "response_rules": [...]}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(BodyRewrite { request: Vec::new(), response: Vec::new() })) };
    let errors = d.error_count();
    let request = rules(&mut c, "request_rules", d);
    let response = rules(&mut c, "response_rules", d);
    c.finish(d);
    (d.error_count() == errors).then(|| Arc::new(BodyRewrite { request, response }) as Arc<dyn StreamFilter>)
}

fn rules(c: &mut Obj<'_>, key: &'static str, d: &mut Diagnostics) -> Vec<Rule> {
    let mut out = Vec::new();
    for mut r in c.objects(key, object::BODY_REWRITE_RULE, d) {
        let from = r.required_string("from", d).map(|s| s.as_bytes().to_vec());
        let to = r.string("to", d).unwrap_or("").as_bytes().to_vec();
        r.finish(d);
        if let Some(from) = from {
            out.push(Rule { from, to });
        }
    }
    out
}

/// `body` with every rule applied in order; `None` when nothing matched.
fn rewrite(rules: &[Rule], body: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for rule in rules {
        let cur = out.as_deref().unwrap_or(body);
        if let Some(next) = replace_all(cur, &rule.from, &rule.to) {
            out = Some(next);
        }
    }
    out
}

/// `hay` with every non-overlapping `from` (left to right) replaced by `to`; `None` if
/// there is none.
fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let finder = memchr::memmem::Finder::new(from);
    let mut at = finder.find_iter(hay).peekable();
    at.peek()?;
    let mut out = Vec::with_capacity(hay.len());
    let mut done = 0;
    for i in at {
        // find_iter's matches do not overlap, left to right.
        out.extend_from_slice(&hay[done..i]);
        out.extend_from_slice(to);
        done = i + from.len();
    }
    out.extend_from_slice(&hay[done..]);
    Some(out)
}

// === impl BodyRewrite ===

impl StreamFilter for BodyRewrite {
    fn name(&self) -> &'static str {
        "body_rewrite"
    }
    fn receive_phase(&self) -> Option<ReceivePhase> {
        Some(ReceivePhase::AfterRoute)
    }
    fn needs_body(&self) -> bool {
        !self.request.is_empty()
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn reads_client_address(&self) -> bool {
        false
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if let Some(new) = cx.body().and_then(|b| rewrite(&self.request, b)) {
            cx.set_body(new);
        }
        FilterStatus::Continue
    }
    /// Always: a route's replacement with response rules is found through the listener's.
    fn sends(&self) -> bool {
        true
    }
    fn needs_response_body(&self, _status: u16, headers: &dyn HeaderMap) -> bool {
        !self.response.is_empty() && headers.get("content-encoding").first().is_none_or(|v| v.eq_ignore_ascii_case(b"identity"))
    }
    fn on_send(&self, cx: &mut SendContext<'_>) -> FilterStatus {
        if let Some(new) = cx.body().and_then(|b| rewrite(&self.response, b)) {
            cx.set_body(new);
        }
        FilterStatus::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::{replace_all, rewrite, Rule};

    fn rule(from: &str, to: &str) -> Rule {
        Rule { from: from.into(), to: to.into() }
    }

    #[test]
    fn rules_apply_in_order_to_every_occurrence() {
        assert_eq!(replace_all(b"aXbXc", b"X", b"YY").as_deref(), Some(&b"aYYbYYc"[..]));
        assert_eq!(replace_all(b"aaa", b"aa", b"b").as_deref(), Some(&b"ba"[..]), "non-overlapping, left to right");
        assert_eq!(replace_all(b"abc", b"x", b"y"), None);
        assert_eq!(replace_all(b"ab", b"abc", b"y"), None, "longer than the body");
        let rules = [rule("secret", "[redacted]"), rule("[redacted]", "***")];
        assert_eq!(rewrite(&rules, b"a secret b").as_deref(), Some(&b"a *** b"[..]));
        assert_eq!(rewrite(&rules, b"nothing"), None);
        assert_eq!(rewrite(&[rule("x", "")], b"xax").as_deref(), Some(&b"a"[..]), "a rule can delete");
    }
}
