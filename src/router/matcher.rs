//! Route matching: the normalized path (prefix / exact / regex) and request headers.
//!
//! MOSN's semantics (`pkg/router`): `prefix` is case-sensitive, `path` is compared
//! case-insensitively, `regex` is an unanchored search; all header tests must hold.

use crate::config::reader::Diagnostics;
use crate::config::{PathMatchConfig, RouteMatchConfig};
use crate::headers::{HeaderMap, HeaderMatcher};

/// How a route tests the path.
#[derive(Debug)]
enum PathMatch {
    Any,
    Prefix(String),
    /// MOSN compares `path` case-insensitively.
    Exact(String),
    Regex(regex::Regex),
}

/// A route's `match`: the path test and the header tests, all of which must hold.
#[derive(Debug)]
pub struct RouteMatcher {
    path: PathMatch,
    headers: Vec<HeaderMatcher>,
}

impl RouteMatcher {
    /// Compiles the matcher; a regex that does not compile is an error at its JSON path.
    pub(crate) fn new(c: &RouteMatchConfig, d: &mut Diagnostics) -> Option<RouteMatcher> {
        let path = match &c.path {
            PathMatchConfig::Any => PathMatch::Any,
            PathMatchConfig::Prefix(p) => PathMatch::Prefix(p.clone()),
            PathMatchConfig::Path(p) => PathMatch::Exact(p.clone()),
            // MOSN's semantics: an unanchored search (Go's MatchString), compiled exactly
            // as written, so what `mosn-ext check` accepts is what runs.
            PathMatchConfig::Regex(re, json_path) => match regex::Regex::new(re) {
                Ok(r) => PathMatch::Regex(r),
                Err(e) => {
                    d.error(json_path.clone(), format!("invalid regex: {e}"));
                    return None;
                }
            },
        };
        let mut headers = Vec::with_capacity(c.headers.len());
        for h in &c.headers {
            match HeaderMatcher::new(&h.name, &h.value, h.regex) {
                Ok(m) => headers.push(m),
                Err(e) => d.error(format!("{}.value", h.path), e),
            }
        }
        (headers.len() == c.headers.len()).then_some(RouteMatcher { path, headers })
    }

    /// True when the route matches. `path` is the normalized path, `None` when it is not
    /// UTF-8 (then only routes without a path test match).
    pub fn matches(&self, path: Option<&str>, headers: &dyn HeaderMap) -> bool {
        let path_ok = match (&self.path, path) {
            (PathMatch::Any, _) => true,
            (_, None) => false,
            (PathMatch::Prefix(p), Some(path)) => path.starts_with(p.as_str()),
            (PathMatch::Exact(p), Some(path)) => path.eq_ignore_ascii_case(p),
            (PathMatch::Regex(re), Some(path)) => re.is_match(path),
        };
        path_ok && self.headers.iter().all(|m| m.matches(headers))
    }
}
