//! MOSN's `metadata` filter and its driver registry.
//!
//! Each driver computes one value from the request (the `UNIT` driver: uid → site) and the
//! filter writes it as request header `x-mosn-on-envoy-<key>` for routes to match, and as
//! stream metadata `<key>` for logs (`$mosn_unit`, `%DYNAMIC_METADATA(mosn:unit)%`).
//!
//! Adding a driver: one file in this folder with a type implementing [`Driver`] and a
//! `parse` function, and one line in [`DRIVERS`] (see `zone.rs`).
//!
//! Deliberate difference from MOSN: a client-supplied `x-mosn-on-envoy-<key>` header is
//! removed before the drivers run, also when the filter is `disable`d, so a client can
//! never steer routing by forging it.

mod idc;
mod unit;
mod zone;

pub use unit::UnitDriver;
pub use zone::ZoneDriver;

use super::registry::ParseContext;
use super::{FilterStatus, ReceiveContext, StreamFilter};
use crate::config::fields::object;
use crate::config::reader::{unknown, Diagnostics, Obj};
use crate::headers::{Lookup, SharedStr};
use std::collections::HashSet;
use std::sync::Arc;

/// A metadata driver (MOSN's `metadata.Driver`).
pub trait Driver: Send + Sync {
    /// The value for this request, or `None` (no header is set; the routes decide).
    fn build(&self, cx: &ReceiveContext<'_>) -> Option<SharedStr>;
    /// Request headers [`Driver::build`] reads from every request.
    fn request_header_names(&self, _names: &mut Vec<SharedStr>) {}
    /// True if some request's value may come from its body or trailers.
    fn may_need_body(&self) -> bool {
        false
    }
    /// True if this request's body (and trailers) must be buffered before [`Driver::build`].
    fn needs_body_for(&self, _headers: &dyn crate::headers::HeaderMap) -> bool {
        false
    }
}

/// Reads a driver's `config` (`None` when absent) and builds it.
pub type DriverParseFn = fn(config: Option<Obj<'_>>, d: &mut Diagnostics) -> Option<Box<dyn Driver>>;

/// One driver type.
pub struct DriverType {
    /// The `meta_data_key`, as MOSN spells it.
    pub key: &'static str,
    /// The request header the value goes to (`x-mosn-on-envoy-<key>`, lower case).
    pub header: &'static str,
    /// The stream metadata key the value goes to (`<key>`, lower case).
    pub metadata_key: &'static str,
    /// The driver `config` object's name in the field table.
    pub object: &'static str,
    pub parse: DriverParseFn,
}

/// Every metadata driver this library implements.
pub static DRIVERS: &[DriverType] = &[
    DriverType { key: "UNIT", header: "x-mosn-on-envoy-unit", metadata_key: "unit", object: object::UNIT_DRIVER, parse: unit::parse },
    DriverType { key: "ZONE", header: "x-mosn-on-envoy-zone", metadata_key: "zone", object: object::ZONE_DRIVER, parse: zone::parse },
    DriverType { key: "IDC", header: "x-mosn-on-envoy-idc", metadata_key: "idc", object: object::IDC_DRIVER, parse: idc::parse },
];

struct Entry {
    header: SharedStr,
    metadata_key: SharedStr,
    driver: Box<dyn Driver>,
}

/// The `metadata` stream filter (receive, `BeforeRoute`).
pub struct MetadataFilter {
    disable: bool,
    case_sensitive: bool,
    entries: Vec<Entry>,
}

// === impl parse ===

/// Reads `{disable, case_sensitive, metadataers: [{meta_data_key, config}]}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else {
        return Some(Arc::new(MetadataFilter { disable: false, case_sensitive: false, entries: Vec::new() }));
    };
    let errors = d.error_count();
    let disable = c.boolean("disable", d).unwrap_or(false);
    let case_sensitive = c.boolean("case_sensitive", d).unwrap_or(false);
    let mut entries = Vec::new();
    let mut seen = HashSet::new();
    for mut m in c.objects("metadataers", object::METADATAER, d) {
        let key_path = m.field_path("meta_data_key");
        let key = m.required_string("meta_data_key", d);
        let ty = key.and_then(|k| DRIVERS.iter().find(|t| t.key == k));
        match (key, ty) {
            (Some(k), Some(ty)) => {
                if !seen.insert(k) {
                    d.error(key_path, format!("driver \"{k}\" is listed twice"));
                }
                let cfg_path = m.field_path("config");
                let cfg = m.raw("config").and_then(|v| Obj::open(v, cfg_path, ty.object, d));
                if let Some(driver) = (ty.parse)(cfg, d) {
                    entries.push(Entry::new(ty, driver));
                }
            }
            (Some(k), None) => {
                m.raw("config");
                let known: Vec<&str> = DRIVERS.iter().map(|t| t.key).collect();
                d.error(key_path, unknown("metadata driver", k, &known));
            }
            (None, _) => {
                m.raw("config");
            }
        }
        m.finish(d);
    }
    c.finish(d);
    if d.error_count() != errors {
        return None;
    }
    Some(Arc::new(MetadataFilter { disable, case_sensitive, entries }))
}

impl Entry {
    /// Literals, shared without reference counts: recording them costs a stream nothing.
    fn new(ty: &DriverType, driver: Box<dyn Driver>) -> Entry {
        Entry { header: SharedStr::from_static(ty.header), metadata_key: SharedStr::from_static(ty.metadata_key), driver }
    }
}

// === impl MetadataFilter ===

impl StreamFilter for MetadataFilter {
    fn name(&self) -> &'static str {
        "metadata"
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn reads_client_address(&self) -> bool {
        false
    }

    fn may_need_body(&self) -> bool {
        !self.disable && self.entries.iter().any(|e| e.driver.may_need_body())
    }

    fn needs_body_for(&self, headers: &dyn crate::headers::HeaderMap) -> bool {
        !self.disable && self.entries.iter().any(|e| e.driver.needs_body_for(headers))
    }

    fn request_header_names(&self, names: &mut Vec<SharedStr>) {
        for e in &self.entries {
            names.push(e.header.clone());
            if !self.disable {
                e.driver.request_header_names(names);
            }
        }
    }

    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        // Stripping forged headers does not depend on `disable`: routes trust these headers.
        for e in &self.entries {
            if cx.header(&e.header) != Lookup::Missing {
                tracing::debug!(header = &*e.header, "removing client-supplied metadata header");
                cx.remove_header(e.header.clone());
            }
        }
        if self.disable {
            return FilterStatus::Continue;
        }
        for e in &self.entries {
            if let Some(v) = e.driver.build(cx) {
                let v = if self.case_sensitive || !v.bytes().any(|b| b.is_ascii_uppercase()) {
                    v
                } else {
                    SharedStr::from(v.to_ascii_lowercase())
                };
                cx.set_header(e.header.clone(), v.clone());
                cx.set_metadata(e.metadata_key.clone(), v);
            }
        }
        FilterStatus::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::DRIVERS;

    /// The literal names are MOSN's `x-mosn-on-envoy-<key>` and `<key>`, lower case.
    #[test]
    fn driver_names_follow_the_key() {
        for t in DRIVERS {
            let key = t.key.to_ascii_lowercase();
            assert_eq!(t.header, format!("x-mosn-on-envoy-{key}"));
            assert_eq!(t.metadata_key, key);
        }
    }
}
