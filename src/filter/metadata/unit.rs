//! The `UNIT` driver: the integer in header `unit_key` (default `userid`) selects a site:
//! 1–100 → `s1`, 101–200 → `s2`, any other integer → `s3`.
//!
//! Beyond MOSN's header, two more places a client may carry the uid (this library's
//! additions; MOSN's drivers get body and trailers too, but its UNIT driver reads only the
//! header): `body_key`, a top-level key of a JSON object body or a field of a form body,
//! and `trailers: true`, request trailer `unit_key`. The header wins; a request that has it
//! is never buffered. One without it and with a body is buffered whole first (the host's
//! limit applies: nginx's `client_max_body_size`, Envoy's buffer limit, each a 413).

use super::{Driver, ReceiveContext};
use crate::config::reader::{Diagnostics, Obj};
use crate::headers::{HeaderMap, Lookup, SharedStr};

/// MOSN's default `unit_key`.
const DEFAULT_UNIT_KEY: &str = "userid";

/// Reads `{unit_key, body_key, trailers}`.
pub(super) fn parse(config: Option<Obj<'_>>, d: &mut Diagnostics) -> Option<Box<dyn Driver>> {
    let mut driver = UnitDriver::new(DEFAULT_UNIT_KEY);
    if let Some(mut c) = config {
        let k = c.string("unit_key", d).filter(|k| !k.is_empty()).unwrap_or(DEFAULT_UNIT_KEY);
        if !crate::headers::valid_name(k) {
            d.error(c.field_path("unit_key"), format!("\"{k}\" is not a valid header name"));
        }
        driver = UnitDriver::new(k);
        let body_path = c.field_path("body_key");
        driver.body_key = c.string("body_key", d).map(str::to_string);
        if driver.body_key.as_deref() == Some("") {
            d.error(body_path, "an empty key names nothing in a body".to_string());
        }
        driver.trailers = c.boolean("trailers", d).unwrap_or(false);
        c.finish(d);
    }
    Some(Box::new(driver))
}

/// A missing, empty, non-integer or out-of-range (i64) value yields nothing, as in MOSN.
/// Two headers with the key are ambiguous and also yield nothing. Optional whitespace
/// around the value is not part of it (RFC 9110), so `" 2"` is 2.
pub struct UnitDriver {
    /// Shared with the listener's prefetched names, so the lookup finds it by address.
    unit_key: SharedStr,
    /// A JSON object key or form field holding the uid when the header is absent.
    body_key: Option<String>,
    /// Trailer `unit_key` holds the uid when the header is absent.
    trailers: bool,
    sites: [SharedStr; 3],
}

impl UnitDriver {
    pub fn new(unit_key: &str) -> UnitDriver {
        UnitDriver {
            unit_key: unit_key.to_ascii_lowercase().into(),
            body_key: None,
            trailers: false,
            sites: [SharedStr::from_static("s1"), SharedStr::from_static("s2"), SharedStr::from_static("s3")],
        }
    }

    /// The site index for a raw header value, if it is an integer.
    pub fn site_of(value: &[u8]) -> Option<usize> {
        // The usual value, up to 18 plain digits, always fits an i64: one pass, no trimming.
        let plain = || {
            if value.is_empty() || value.len() > 18 {
                return None;
            }
            value.iter().try_fold(0i64, |n, d| {
                let digit = d.wrapping_sub(b'0');
                (digit <= 9).then(|| n * 10 + i64::from(digit))
            })
        };
        let uid = match plain() {
            Some(n) => n,
            None => parse_i64(value)?,
        };
        Some(match uid {
            1..=100 => 0,
            101..=200 => 1,
            _ => 2,
        })
    }
}

/// `value` without surrounding spaces and tabs as an `i64`, as `str::parse` reads it (an
/// optional sign, then only digits; out of range is no number), from the bytes directly:
/// the UNIT driver reads it from every request.
fn parse_i64(value: &[u8]) -> Option<i64> {
    let start = value.iter().position(|b| *b != b' ' && *b != b'\t')?;
    let end = value.iter().rposition(|b| *b != b' ' && *b != b'\t')? + 1;
    let v = &value[start..end];
    let (negative, digits) = match v.first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let n = crate::headers::parse_digits(digits)?;
    if negative {
        // Down to i64::MIN, whose magnitude is one more than i64::MAX.
        (n <= i64::MAX as u64 + 1).then(|| (n as i64).wrapping_neg())
    } else {
        i64::try_from(n).ok()
    }
}

impl Driver for UnitDriver {
    fn may_need_body(&self) -> bool {
        self.body_key.is_some() || self.trailers
    }

    fn request_header_names(&self, names: &mut Vec<SharedStr>) {
        names.push(self.unit_key.clone());
    }

    fn needs_body_for(&self, headers: &dyn HeaderMap) -> bool {
        self.may_need_body() && headers.get(&self.unit_key) == Lookup::Missing
    }

    fn build(&self, cx: &ReceiveContext<'_>) -> Option<SharedStr> {
        let site = match cx.header(&self.unit_key) {
            Lookup::One(v) => UnitDriver::site_of(v),
            Lookup::Many(_) => {
                tracing::debug!(key = %self.unit_key, "several unit headers; ignoring them");
                None
            }
            Lookup::Missing => self.site_in_trailers(cx).or_else(|| self.site_in_body(cx)),
        };
        site.map(|i| self.sites[i].clone())
    }
}

impl UnitDriver {
    fn site_in_trailers(&self, cx: &ReceiveContext<'_>) -> Option<usize> {
        if !self.trailers {
            return None;
        }
        match cx.trailers()?.get(&self.unit_key) {
            Lookup::One(v) => UnitDriver::site_of(v),
            _ => None,
        }
    }

    fn site_in_body(&self, cx: &ReceiveContext<'_>) -> Option<usize> {
        let key = self.body_key.as_deref()?;
        let body = cx.body()?;
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first == b'{' {
            json_integer_field(body, key).and_then(|v| UnitDriver::site_of(v.as_bytes()))
        } else {
            form_field(body, key).and_then(UnitDriver::site_of)
        }
    }
}

/// The value of top-level `key` in a JSON object, as text, if it is an integer or a string;
/// reads the body once without building it (a 1 MiB body costs no allocation per value).
fn json_integer_field(body: &[u8], key: &str) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Find<'k>(&'k str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if k == self.0 && found.is_none() {
                    found = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::Number(n) if n.is_i64() => Some(n.to_string()),
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    };
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = de.deserialize_map(Find(key)).ok()?;
    de.end().ok()?;
    found
}

/// The value of field `key` in an `application/x-www-form-urlencoded` body (the first one;
/// a uid needs no percent-decoding, so an encoded value is no integer).
fn form_field<'b>(body: &'b [u8], key: &str) -> Option<&'b [u8]> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        (&pair[..eq] == key.as_bytes()).then(|| &pair[eq + 1..])
    })
}

#[cfg(test)]
mod tests {
    use super::{form_field, json_integer_field, parse_i64, UnitDriver};

    #[test]
    fn uid_in_a_json_or_form_body() {
        let big = format!("{{\"pad\": \"{}\", \"list\": [1, {{\"uid\": 7}}], \"uid\": 150}}", "x".repeat(1 << 20));
        assert_eq!(json_integer_field(big.as_bytes(), "uid").as_deref(), Some("150"), "top level only, after 1 MiB");
        assert_eq!(json_integer_field(br#"{"uid": "42"}"#, "uid").as_deref(), Some("42"));
        assert_eq!(json_integer_field(br#"{"uid": 1.5}"#, "uid"), None);
        assert_eq!(json_integer_field(br#"{"uid": 2"#, "uid"), None, "truncated JSON is no value");
        assert_eq!(json_integer_field(br#"{"uid": 2} x"#, "uid"), None, "trailing garbage is no JSON");
        assert_eq!(json_integer_field(br#"[{"uid": 2}]"#, "uid"), None);
        assert_eq!(json_integer_field(br#"{"uid": 3, "uid": 4}"#, "uid").as_deref(), Some("3"));
        assert_eq!(json_integer_field(br#"{"u\u0069d": 5}"#, "uid").as_deref(), Some("5"), "escaped keys compare decoded");
        assert_eq!(form_field(b"a=1&uid=201&uid=3", "uid"), Some(&b"201"[..]));
        assert_eq!(form_field(b"auid=1", "uid"), None);
    }

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
        // The plain-digits shortcut (up to 18 digits) and the full parser agree.
        let by_parser = |v: &str| {
            parse_i64(v.as_bytes()).map(|n| match n {
                1..=100 => 0,
                101..=200 => 1,
                _ => 2,
            })
        };
        for v in ["999999999999999999", "000000000000000101", "0000000000000000150", "000000000000000000", "1000000000000000000"] {
            assert_eq!(site(v), by_parser(v), "{v}");
        }
    }

    /// The byte parser reads every value as `str::parse::<i64>` after trimming spaces and
    /// tabs does (what MOSN's driver does).
    #[test]
    fn parse_i64_agrees_with_str_parse() {
        let reference = |v: &[u8]| std::str::from_utf8(v).ok()?.trim_matches(|c| c == ' ' || c == '\t').parse::<i64>().ok();
        let mut cases: Vec<Vec<u8>> = [
            "",
            " ",
            "\t",
            "+",
            "-",
            "+-1",
            "--1",
            "-0",
            "+0",
            "007",
            "1 ",
            " \t-12\t ",
            "1_000",
            "١",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "99999999999999999999999",
            " +42",
            "4 2",
            "\n1",
            "1\n",
            "0x1",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(vec![0xff, b'1']);
        // Pseudo-random bytes from a small alphabet.
        let alphabet = b" \t+-0123456789x";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            cases.push((0..len).map(|i| alphabet[((seed >> (i % 8 * 8)) as usize + i) % alphabet.len()]).collect());
        }
        for c in cases {
            assert_eq!(parse_i64(&c), reference(&c), "{:?}", String::from_utf8_lossy(&c));
        }
    }
}
