//! Route matching: the normalized path (prefix / exact / regex), MOSN variables and request
//! headers.
//!
//! MOSN's semantics (`pkg/router`): `prefix` is case-sensitive, `path` is compared
//! case-insensitively, `regex` is an unanchored search; all header tests must hold. A route
//! with none of prefix/path/regex/variables is MOSN's header-only ("rpc") rule; its legacy
//! form, a single `service` header with value `.*`, matches any non-empty value.
//! `variables` are combined left to right by their `model` (MOSN's `variable_rule.go`).

use crate::config::reader::Diagnostics;
use crate::config::{PathMatchConfig, RouteMatchConfig, VariableMatcherConfig};
use crate::headers::{HeaderMatcher, SharedStr};
use crate::variable::{RequestVars, Variable};

/// How a route tests the path.
#[derive(Debug)]
enum PathMatch {
    Any,
    Prefix(String),
    /// MOSN compares `path` case-insensitively.
    Exact(String),
    Regex(regex::bytes::Regex),
}

#[derive(Debug)]
enum VarTest {
    Value(Vec<u8>),
    Regex(regex::bytes::Regex),
    /// Neither value nor regex: never true (MOSN).
    Nothing,
}

#[derive(Debug)]
struct VariableItem {
    variable: Variable,
    test: VarTest,
    or: bool,
}

/// A route's `match`: the path test, the variable tests and the header tests.
#[derive(Debug)]
pub struct RouteMatcher {
    path: PathMatch,
    variables: Vec<VariableItem>,
    headers: Vec<HeaderMatcher>,
    /// MOSN's legacy RPC rule: one `service` header whose value `.*` means "any value".
    any_service: bool,
}

fn variable_item(v: &VariableMatcherConfig, d: &mut Diagnostics) -> Option<VariableItem> {
    let Some(variable) = Variable::parse(&v.name) else {
        d.error(format!("{}.name", v.path), format!("\"{}\" is not a MOSN HTTP variable", v.name));
        return None;
    };
    // MOSN: a regex replaces the value when both are set.
    let test = match (&v.regex, &v.value) {
        (Some(re), _) => match regex::bytes::Regex::new(re) {
            Ok(r) => VarTest::Regex(r),
            Err(e) => {
                d.error(format!("{}.regex", v.path), format!("invalid regex: {e}"));
                return None;
            }
        },
        (None, Some(val)) => VarTest::Value(val.as_bytes().to_vec()),
        (None, None) => VarTest::Nothing,
    };
    Some(VariableItem { variable, test, or: v.or })
}

impl RouteMatcher {
    /// Compiles the matcher; what does not compile is an error at its JSON path.
    pub(crate) fn new(c: &RouteMatchConfig, d: &mut Diagnostics) -> Option<RouteMatcher> {
        let errors = d.error_count();
        let path = match &c.path {
            PathMatchConfig::Any => PathMatch::Any,
            PathMatchConfig::Prefix(p) => PathMatch::Prefix(p.clone()),
            PathMatchConfig::Path(p) => PathMatch::Exact(p.clone()),
            // MOSN's semantics: an unanchored search (Go's MatchString), compiled exactly
            // as written, so what `mosn-ext check` accepts is what runs.
            PathMatchConfig::Regex(re, json_path) => match regex::bytes::Regex::new(re) {
                Ok(r) => PathMatch::Regex(r),
                Err(e) => {
                    d.error(json_path.clone(), format!("invalid regex: {e}"));
                    PathMatch::Any
                }
            },
        };
        let variables = c.variables.iter().filter_map(|v| variable_item(v, d)).collect();
        let mut headers = Vec::with_capacity(c.headers.len());
        for h in &c.headers {
            match HeaderMatcher::new(&h.name, &h.value, h.regex) {
                Ok(m) => headers.push(m),
                Err(e) => d.error(format!("{}.value", h.path), e),
            }
        }
        let any_service = matches!(path, PathMatch::Any)
            && c.variables.is_empty()
            && matches!(&c.headers[..], [h] if h.name.eq_ignore_ascii_case("service") && h.value == ".*" && !h.regex);
        (d.error_count() == errors).then_some(RouteMatcher { path, variables, headers, any_service })
    }

    /// True when the route matches. `vars.path` is the decoded, normalized path.
    pub fn matches(&self, vars: &RequestVars<'_>) -> bool {
        let path = vars.path;
        let path_ok = match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
            PathMatch::Exact(p) => path.eq_ignore_ascii_case(p.as_bytes()),
            PathMatch::Regex(re) => re.is_match(path),
        };
        if !path_ok || !self.variables_match(vars) {
            return false;
        }
        if self.any_service {
            return vars.headers.get("service").first().is_some_and(|v| !v.is_empty());
        }
        self.headers.iter().all(|m| m.matches(vars.headers))
    }

    /// MOSN's walk: each item's result is ANDed with the running one after an `and` item,
    /// replaces it after an `or` item; a true result at an `or` item ends the walk.
    fn variables_match(&self, vars: &RequestVars<'_>) -> bool {
        let mut result = true;
        let mut last_or = false;
        for v in &self.variables {
            let actual = v.variable.get(vars);
            let actual: &[u8] = actual.as_deref().unwrap_or(b"");
            let cur = match &v.test {
                VarTest::Value(want) => actual == want.as_slice(),
                VarTest::Regex(re) => re.is_match(actual),
                VarTest::Nothing => false,
            };
            result = if last_or { cur } else { result && cur };
            if result && v.or {
                break;
            }
            last_or = v.or;
        }
        result
    }

    /// The prefix of a route that tests nothing else (no headers, no variables): such routes
    /// can be looked up by an index instead of one by one.
    pub fn pure_prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) if self.headers.is_empty() && self.variables.is_empty() => Some(p),
            _ => None,
        }
    }

    /// `(header name, value)` of a route that tests only that header for an exact value
    /// (any path, or prefix `/`): such routes can be looked up by the header's value.
    pub fn pure_header(&self) -> Option<(&SharedStr, &str)> {
        let any_path = matches!(&self.path, PathMatch::Any) || matches!(&self.path, PathMatch::Prefix(p) if p == "/");
        match &self.headers[..] {
            [h] if any_path && self.variables.is_empty() && !self.any_service => Some((h.name(), h.exact_value()?)),
            _ => None,
        }
    }

    /// The matched prefix or path (what `prefix_rewrite` replaces), if the route has one.
    pub fn matched_prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) | PathMatch::Exact(p) => Some(p),
            _ => None,
        }
    }
}
