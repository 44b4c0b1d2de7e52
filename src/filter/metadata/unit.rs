//! The `UNIT` driver: the integer in header `unit_key` (default `userid`) selects a site:
//! 1–100 → `s1`, 101–200 → `s2`, any other integer → `s3`.

use super::{Driver, ReceiveContext};
use crate::config::reader::{Diagnostics, Obj};
use crate::headers::{Lookup, SharedStr};

/// MOSN's default `unit_key`.
const DEFAULT_UNIT_KEY: &str = "userid";

/// Reads `{unit_key}`.
pub(super) fn parse(config: Option<Obj<'_>>, d: &mut Diagnostics) -> Option<Box<dyn Driver>> {
    let mut unit_key = DEFAULT_UNIT_KEY.to_string();
    if let Some(mut c) = config {
        let k = c.string("unit_key", d).filter(|k| !k.is_empty()).unwrap_or(DEFAULT_UNIT_KEY);
        if !crate::headers::valid_name(k) {
            d.error(c.field_path("unit_key"), format!("\"{k}\" is not a valid header name"));
        }
        unit_key = k.to_string();
        c.finish(d);
    }
    Some(Box::new(UnitDriver::new(&unit_key)))
}

/// A missing, empty, non-integer or out-of-range (i64) value yields nothing, as in MOSN.
/// Two headers with the key are ambiguous and also yield nothing. Optional whitespace
/// around the value is not part of it (RFC 9110), so `" 2"` is 2.
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
