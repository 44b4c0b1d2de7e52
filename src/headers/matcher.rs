//! MOSN's header matcher: `{name, value, regex}`.

use super::{HeaderMap, SharedStr};

/// Tests one request header: it must be present and equal `value`, or, with `regex`, match
/// `value` as an unanchored regular expression (MOSN's `regex: true`). The name `method`
/// stands for the request method, as in MOSN.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    name: SharedStr,
    value: SharedStr,
    regex: Option<regex::bytes::Regex>,
}

impl HeaderMatcher {
    /// Builds a matcher; the error is the regex compiler's message (the caller adds the
    /// JSON path).
    pub fn new(name: &str, value: &str, regex: bool) -> Result<HeaderMatcher, String> {
        let name = name.to_ascii_lowercase();
        let name: SharedStr = if name == "method" { ":method".into() } else { name.into() };
        let regex = if regex { Some(regex::bytes::Regex::new(value).map_err(|e| format!("invalid regex: {e}"))?) } else { None };
        Ok(HeaderMatcher { name, value: value.into(), regex })
    }

    /// The header name looked up (lower case; `:method` for `method`).
    pub fn name(&self) -> &SharedStr {
        &self.name
    }

    /// The exact value this matcher wants, unless it is a regex.
    pub fn exact_value(&self) -> Option<&str> {
        self.regex.is_none().then_some(&*self.value)
    }

    /// True when the header is present and matches. With several values, the first counts.
    pub fn matches(&self, headers: &dyn HeaderMap) -> bool {
        match headers.get(&self.name).first() {
            None => false,
            Some(v) => match &self.regex {
                Some(re) => re.is_match(v),
                None => v == self.value.as_bytes(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{Header, Headers};

    #[test]
    fn exact_regex_and_method() {
        let hs = [Header { name: b"x-a", value: b"abc" }, Header { name: b":method", value: b"POST" }];
        let hs = Headers(&hs);
        assert!(HeaderMatcher::new("X-A", "abc", false).unwrap().matches(&hs));
        assert!(!HeaderMatcher::new("x-a", "ab", false).unwrap().matches(&hs));
        assert!(HeaderMatcher::new("x-a", "b", true).unwrap().matches(&hs), "regex is unanchored");
        assert!(HeaderMatcher::new("method", "POST", false).unwrap().matches(&hs));
        assert!(!HeaderMatcher::new("x-missing", "", false).unwrap().matches(&hs));
        assert!(HeaderMatcher::new("x-a", "(", true).unwrap_err().contains("invalid regex"));
    }
}
