//! MOSN's `gzip` filter, done by the host: a response is compressed when the client accepts
//! gzip, it is not already encoded, its content type is one of `content_types` and it is at
//! least `content_length` bytes.
//!
//! The host's compression is the better place for it: it streams (MOSN's filter holds the
//! whole response), it is native, and it already knows `Accept-Encoding`, `Vary` and
//! already-encoded bodies. So the core only checks the config, and `mosn-ext start` writes the
//! host's equivalent from it: nginx's `gzip` directives in the listener's `server`, Envoy's
//! compressor filter in the listener's chain ([`Gzip::settings`]). A hand-written host config
//! must carry that equivalent (see the README).

use super::registry::ParseContext;
use super::{ReceivePhase, StreamFilter};
use crate::config::reader::{index, Diagnostics, Obj};
use crate::config::RawFilterConfig;
use std::sync::Arc;

/// What the host is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gzip {
    /// 1..=9 (MOSN's default 6).
    pub level: u32,
    /// The smallest body compressed, in bytes (0: any).
    pub min_length: u64,
    /// Content types compressed (MOSN's default: text/html).
    pub content_types: Vec<String>,
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip { level: 6, min_length: 0, content_types: vec!["text/html".into()] }
    }
}

/// Reads `{gzip_level, content_length, content_types}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    read(config, d).map(|g| Arc::new(g) as Arc<dyn StreamFilter>)
}

fn read(config: Option<Obj<'_>>, d: &mut Diagnostics) -> Option<Gzip> {
    let mut g = Gzip::default();
    let Some(mut c) = config else { return Some(g) };
    let errors = d.error_count();
    // 0 (unset) is MOSN's default level.
    if let Some(l) = c.uint("gzip_level", 0, 9, d).filter(|l| *l > 0) {
        g.level = l as u32;
    }
    g.min_length = c.uint("content_length", 0, u64::from(u32::MAX), d).unwrap_or(0);
    let tpath = c.field_path("content_types");
    if let Some(types) = c.array("content_types", d) {
        let mut out = Vec::new();
        for (i, t) in types.iter().enumerate() {
            match t.as_str() {
                Some(s) if is_media_type(s) => out.push(s.to_ascii_lowercase()),
                _ => d.error(index(&tpath, i), format!("expected a media type such as \"text/plain\", found {t}")),
            }
        }
        if !out.is_empty() {
            g.content_types = out;
        }
    }
    c.finish(d);
    (d.error_count() == errors).then_some(g)
}

/// `type/subtype` of token characters (what both hosts accept in their configs).
fn is_media_type(s: &str) -> bool {
    let token = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    s.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

impl Gzip {
    /// The settings of a listener's `gzip` filter entry (already checked when it loaded).
    pub fn settings(raw: &RawFilterConfig) -> Option<Gzip> {
        if raw.type_name != "gzip" {
            return None;
        }
        let mut d = Diagnostics::default();
        let obj = raw.config.as_ref().and_then(|v| Obj::open(v, raw.path.clone(), crate::config::fields::object::GZIP, &mut d));
        read(obj, &mut d)
    }
}

impl StreamFilter for Gzip {
    fn name(&self) -> &'static str {
        "gzip"
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn reads_client_address(&self) -> bool {
        false
    }
    /// Nothing to do in the core: the host compresses.
    fn receive_phase(&self) -> Option<ReceivePhase> {
        None
    }
}
