//! The stream filter types, by MOSN type name (`stream_filters[].type`).
//!
//! Adding a filter: one file in `src/filter/` with a `parse` function (its `config` → the
//! filter), and one line in [`FILTERS`].

use super::StreamFilter;
use crate::config::fields::object;
use crate::config::reader::{unknown, Diagnostics, Obj};
use crate::config::{MosnConfig, RawFilterConfig};
use std::sync::Arc;

/// What a filter's parser may consult besides its own config.
pub struct ParseContext<'a> {
    /// The whole config (e.g. to check that a named cluster exists).
    pub config: &'a MosnConfig,
    /// Shared state words (counters every worker sees), for the listeners' filters; `None`
    /// where a filter is built without them (a route's `per_filter_config`).
    pub words: Option<&'a crate::upstream::state::WordAllocator<'a>>,
}

/// Reads a filter's `config` (`None` when absent) and builds the filter; errors go to `d`
/// with their JSON paths.
pub type ParseFn = fn(config: Option<Obj<'_>>, cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>>;

/// One stream filter type.
pub struct FilterType {
    /// The `type` value, as MOSN spells it.
    pub name: &'static str,
    /// The `config` object's name in the field table.
    pub object: &'static str,
    pub parse: ParseFn,
}

/// Every stream filter type this library implements.
pub static FILTERS: &[FilterType] = &[
    FilterType { name: "metadata", object: object::METADATA, parse: super::metadata::parse },
    FilterType { name: "fault", object: object::FAULT, parse: super::fault::parse },
    FilterType { name: "fault_tolerance", object: object::FAULT_TOLERANCE, parse: super::fault_tolerance::parse },
    FilterType { name: "gzip", object: object::GZIP, parse: super::gzip::parse },
    FilterType { name: "mirror", object: object::MIRROR, parse: super::mirror::parse },
    FilterType { name: "flowControlFilter", object: object::FLOW_CONTROL, parse: super::flow_control::parse },
    FilterType { name: "payload_limit", object: object::PAYLOAD_LIMIT, parse: super::payload_limit::parse },
    FilterType { name: "ip_access", object: object::IP_ACCESS, parse: super::ip_access::parse },
    FilterType { name: "header_to_metadata", object: object::HEADER_TO_METADATA, parse: super::header_to_metadata::parse },
    FilterType { name: "body_rewrite", object: object::BODY_REWRITE, parse: super::body_rewrite::parse },
];

/// MOSN's other stream filters: refused as "not supported yet" rather than unknown.
const MOSN_FILTERS: &[&str] = &["gzip", "mirror", "dsl", "transcoder", "grpc_metric", "dubbo_stream", "seata", "proxywasm", "echo"];

/// Filter types that take a route's `per_filter_config` (MOSN: the filters that implement
/// `ReadPerRouteConfig`).
pub const PER_ROUTE: &[&str] = &["fault", "payload_limit", "body_rewrite"];

/// A route's `per_filter_config` entry `{"disable": true}` (any filter type, also one
/// that takes no per-route config): `Some` with the filter that stands in for the
/// listener's on that route, doing nothing (`None` in it after an error); `None` when the
/// entry is an ordinary per-route config.
pub fn disable_entry(ty: &str, value: &serde_json::Value, path: &str, d: &mut Diagnostics) -> Option<Option<Arc<dyn StreamFilter>>> {
    let serde_json::Value::Object(m) = value else { return None };
    let flag = m.get("disable")?;
    if m.len() != 1 {
        d.error(path.to_string(), "\"disable\" turns the filter off for this route and takes no other field".to_string());
        return Some(None);
    }
    if flag != &serde_json::Value::Bool(true) {
        d.error(format!("{path}.disable"), format!("expected true (leave the entry out to keep the filter), found {flag}"));
        return Some(None);
    }
    let Some(t) = FILTERS.iter().find(|f| f.name == ty) else {
        let known: Vec<&str> = FILTERS.iter().map(|f| f.name).collect();
        d.error(path.to_string(), unknown("filter", ty, &known));
        return Some(None);
    };
    Some(Some(Arc::new(Disabled { name: t.name, path: path.to_string() })))
}

/// A filter a route turned off (`per_filter_config: {"<type>": {"disable": true}}`): it
/// runs in the listener filter's place on that route and does nothing.
pub struct Disabled {
    name: &'static str,
    /// The entry's JSON path (for the listener's check that the filter runs after routing).
    path: String,
}

impl StreamFilter for Disabled {
    fn name(&self) -> &'static str {
        self.name
    }
    fn receive_phase(&self) -> Option<super::ReceivePhase> {
        None
    }
    fn disabled_at(&self) -> Option<&str> {
        Some(&self.path)
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn reads_client_address(&self) -> bool {
        false
    }
}

/// Builds the filter of one `stream_filters[]` entry.
pub fn build(raw: &RawFilterConfig, cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    build_config(raw, format!("{}.config", raw.path), cx, d)
}

/// Builds a filter of type `raw.type_name` from `raw.config`, whose JSON path is `config_path`.
pub fn build_config(
    raw: &RawFilterConfig,
    config_path: String,
    cx: &ParseContext<'_>,
    d: &mut Diagnostics,
) -> Option<Arc<dyn StreamFilter>> {
    let type_path = format!("{}.type", raw.path);
    let Some(ty) = FILTERS.iter().find(|f| f.name == raw.type_name) else {
        if MOSN_FILTERS.contains(&raw.type_name.as_str()) {
            d.error(type_path, format!("filter \"{}\" is not supported yet", raw.type_name));
        } else {
            let known: Vec<&str> = FILTERS.iter().map(|f| f.name).chain(MOSN_FILTERS.iter().copied()).collect();
            d.error(type_path, unknown("filter", &raw.type_name, &known));
        }
        return None;
    };
    let config = raw.config.as_ref().and_then(|v| Obj::open(v, config_path, ty.object, d));
    if raw.config.is_some() && config.is_none() {
        return None;
    }
    (ty.parse)(config, cx, d)
}
