//! MOSN's `metadata` filter and its driver registry.
//!
//! Each driver computes one value from the request (the `UNIT` driver: uid → site) and
//! the filter writes it as request header `x-mosn-on-envoy-<key>` for routes to match.
//!
//! Deliberate difference from MOSN: a client-supplied `x-mosn-on-envoy-<key>` header is
//! removed before the drivers run, so a client can never steer routing by forging it.

use super::{FilterStatus, ReceiveContext, StreamFilter};
use crate::config::{DriverConfig, MetadataConfig};
use crate::headers::{Lookup, SharedStr};

/// A metadata driver (MOSN's `metadata.Driver`).
pub trait Driver: Send + Sync {
    /// The value for this request, or `None` (no header is set; the routes decide).
    fn build(&self, cx: &ReceiveContext<'_>) -> Option<SharedStr>;
}

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

impl MetadataFilter {
    pub fn new(cfg: &MetadataConfig) -> MetadataFilter {
        let entries = cfg
            .metadataers
            .iter()
            .map(|m| {
                let key = if cfg.case_sensitive { m.meta_data_key.clone() } else { m.meta_data_key.to_ascii_lowercase() };
                // Header names on the wire are case-insensitive; hosts store them lower case.
                let header: SharedStr = format!("x-mosn-on-envoy-{}", key.to_ascii_lowercase()).into();
                let driver: Box<dyn Driver> = match &m.driver {
                    DriverConfig::Unit { unit_key } => Box::new(UnitDriver::new(unit_key)),
                };
                Entry { header, metadata_key: m.meta_data_key.to_ascii_lowercase().into(), driver }
            })
            .collect();
        MetadataFilter { disable: cfg.disable, case_sensitive: cfg.case_sensitive, entries }
    }
}

impl StreamFilter for MetadataFilter {
    fn name(&self) -> &'static str {
        "metadata"
    }

    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if self.disable {
            return FilterStatus::Continue;
        }
        for e in &self.entries {
            if cx.header(&e.header) != Lookup::Missing {
                tracing::debug!(header = &*e.header, "removing client-supplied metadata header");
                cx.remove_header(e.header.clone());
            }
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

/// The `UNIT` driver: the integer in header `unit_key` (default `userid`) selects a
/// site: 1–100 → `s1`, 101–200 → `s2`, any other integer → `s3`.
///
/// A missing, empty, non-integer or out-of-range (i64) value yields nothing, as in
/// MOSN. Two headers with the key are ambiguous and also yield nothing. Optional
/// whitespace around the value is not part of it (RFC 9110), so `" 2"` is 2.
pub struct UnitDriver {
    unit_key: String,
    sites: [SharedStr; 3],
}

impl UnitDriver {
    pub fn new(unit_key: &str) -> UnitDriver {
        UnitDriver { unit_key: unit_key.to_ascii_lowercase(), sites: ["s1".into(), "s2".into(), "s3".into()] }
    }

    /// The site index for a raw header value, if it is an integer.
    pub fn site_of(value: &[u8]) -> Option<usize> {
        let v = std::str::from_utf8(value).ok()?.trim_matches(|c| c == ' ' || c == '\t');
        let uid: i64 = v.parse().ok()?;
        Some(match uid {
            1..=100 => 0,
            101..=200 => 1,
            _ => 2,
        })
    }
}

impl Driver for UnitDriver {
    fn build(&self, cx: &ReceiveContext<'_>) -> Option<SharedStr> {
        match cx.header(&self.unit_key) {
            Lookup::One(v) => UnitDriver::site_of(v).map(|i| self.sites[i].clone()),
            Lookup::Many(_) => {
                tracing::debug!(key = %self.unit_key, "several unit headers; ignoring them");
                None
            }
            Lookup::Missing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UnitDriver;

    #[test]
    fn unit_boundaries_and_edge_cases() {
        let site = |s: &str| UnitDriver::site_of(s.as_bytes());
        assert_eq!(site("1"), Some(0));
        assert_eq!(site("2"), Some(0));
        assert_eq!(site("100"), Some(0));
        assert_eq!(site("101"), Some(1));
        assert_eq!(site("200"), Some(1));
        assert_eq!(site("201"), Some(2));
        assert_eq!(site("0"), Some(2));
        assert_eq!(site("-1"), Some(2));
        assert_eq!(site("9223372036854775807"), Some(2));
        assert_eq!(site("+5"), Some(0));
        assert_eq!(site(" 2"), Some(0));
        assert_eq!(site("2\t"), Some(0));
        assert_eq!(site("9223372036854775808"), None, "overflow is not an integer");
        assert_eq!(site("99999999999999999999999"), None);
        assert_eq!(site(""), None);
        assert_eq!(site("   "), None);
        assert_eq!(site("abc"), None);
        assert_eq!(site("1.5"), None);
        assert_eq!(site("2 3"), None);
        assert_eq!(site("0x10"), None);
        assert_eq!(UnitDriver::site_of(&[0xff, b'1']), None);
    }
}
