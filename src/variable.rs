//! MOSN's request variables, for route `variables[]` matchers and `%name%` header values.
//!
//! The names are MOSN's (`pkg/types/variable.go`, `pkg/stream/http/var.go`): `x-mosn-host`,
//! `x-mosn-method`, `x-mosn-path` (decoded, normalized), `x-mosn-path-original`,
//! `x-mosn-querystring`, their `Http1_request_*` forms, and the prefixes
//! `Http1_request_header_<name>` (also `request_header_<name>`), `Http1_request_arg_<name>`
//! and `Http1_cookie_<name>`; plus `listener_name` and `upstream_cluster`. A variable is
//! resolved from the request as the router sees it; an unset one is `None`.

use crate::headers::{HeaderMap, SharedStr};
use std::borrow::Cow;

/// One variable, parsed once at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    Method,
    Host,
    /// The decoded, normalized path.
    Path,
    /// The path as the client sent it (before the query).
    PathOriginal,
    /// The query string, without `?`.
    QueryString,
    /// The request target as sent (path and query).
    Uri,
    Scheme,
    /// A request header (lower-cased name).
    Header(SharedStr),
    /// A query argument.
    Arg(SharedStr),
    /// A cookie.
    Cookie(SharedStr),
    ListenerName,
    UpstreamCluster,
}

/// What a variable is read from: one request, as the router sees it.
pub struct RequestVars<'a> {
    pub headers: &'a dyn HeaderMap,
    /// The decoded, normalized path.
    pub path: &'a [u8],
    pub listener: &'a str,
    pub cluster: Option<&'a str>,
}

impl Variable {
    /// The variable named `name`, or `None` if MOSN has no such HTTP variable.
    pub fn parse(name: &str) -> Option<Variable> {
        let lower_suffix = |s: &str| -> Option<SharedStr> { (!s.is_empty()).then(|| SharedStr::from(s.to_ascii_lowercase())) };
        for p in ["Http1_request_header_", "request_header_"] {
            if let Some(h) = name.strip_prefix(p) {
                return lower_suffix(h).map(Variable::Header);
            }
        }
        if let Some(a) = name.strip_prefix("Http1_request_arg_") {
            return (!a.is_empty()).then(|| Variable::Arg(a.into()));
        }
        if let Some(c) = name.strip_prefix("Http1_cookie_") {
            return (!c.is_empty()).then(|| Variable::Cookie(c.into()));
        }
        Some(match name {
            "x-mosn-method" | "Http1_request_method" => Variable::Method,
            "x-mosn-host" | "authority" => Variable::Host,
            "x-mosn-path" | "Http1_request_path" => Variable::Path,
            "x-mosn-path-original" | "Http1_request_path_original" => Variable::PathOriginal,
            "x-mosn-querystring" | "Http1_request_arg" => Variable::QueryString,
            "Http1_request_uri" => Variable::Uri,
            "x-mosn-scheme" | "Http1_request_scheme" => Variable::Scheme,
            "listener_name" => Variable::ListenerName,
            "upstream_cluster" => Variable::UpstreamCluster,
            _ => return None,
        })
    }

    /// The variable's value for this request, or `None` when it is not set.
    pub fn get<'a>(&self, cx: &RequestVars<'a>) -> Option<Cow<'a, [u8]>> {
        let target = || cx.headers.get(":path").first().unwrap_or(b"/");
        let query = || {
            let t = target();
            t.iter().position(|b| *b == b'?').map(|i| &t[i + 1..])
        };
        match self {
            Variable::Method => cx.headers.get(":method").first().map(Cow::Borrowed),
            Variable::Host => cx.headers.get(":authority").first().or_else(|| cx.headers.get("host").first()).map(Cow::Borrowed),
            Variable::Path => Some(Cow::Borrowed(cx.path)),
            Variable::PathOriginal => {
                let t = target();
                Some(Cow::Borrowed(&t[..t.iter().position(|b| *b == b'?' || *b == b'#').unwrap_or(t.len())]))
            }
            Variable::QueryString => query().filter(|q| !q.is_empty()).map(Cow::Borrowed),
            Variable::Uri => Some(Cow::Borrowed(target())),
            Variable::Scheme => Some(Cow::Borrowed(b"http")),
            Variable::Header(h) => cx.headers.get(h).first().map(Cow::Borrowed),
            Variable::Arg(a) => query().and_then(|q| arg(q, a)),
            Variable::Cookie(c) => cookie(cx.headers, c).map(Cow::Borrowed),
            Variable::ListenerName => Some(Cow::Owned(cx.listener.as_bytes().to_vec())),
            Variable::UpstreamCluster => cx.cluster.map(|c| Cow::Owned(c.as_bytes().to_vec())),
        }
    }
}

/// The value of query argument `name` (percent-decoded, `+` as space), the first one.
fn arg<'a>(query: &'a [u8], name: &str) -> Option<Cow<'a, [u8]>> {
    query.split(|b| *b == b'&').find_map(|kv| {
        let (k, v) = match kv.iter().position(|b| *b == b'=') {
            Some(i) => (&kv[..i], &kv[i + 1..]),
            None => (kv, &b""[..]),
        };
        (unescape(k).as_ref() == name.as_bytes()).then(|| unescape(v))
    })
}

fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.iter().any(|b| *b == b'%' || *b == b'+') {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// The value of cookie `name` in the `cookie` header(s).
fn cookie<'a>(headers: &'a dyn HeaderMap, name: &str) -> Option<&'a [u8]> {
    let v = headers.get("cookie").first()?;
    v.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let i = pair.iter().position(|b| *b == b'=')?;
        (pair[..i].trim_ascii() == name.as_bytes()).then(|| pair[i + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{Header, Headers};

    #[test]
    fn mosn_names_resolve() {
        let hs = [
            Header { name: b":method", value: b"POST" },
            Header { name: b":path", value: b"/a/%2e/b?x=1&y=a%20b&z" },
            Header { name: b"host", value: b"svc:8080" },
            Header { name: b"x-user", value: b"u1" },
            Header { name: b"cookie", value: b"a=1; sid=abc ; c=3" },
        ];
        let cx = RequestVars { headers: &Headers(&hs), path: b"/a/b", listener: "l", cluster: Some("c") };
        let get = |n: &str| Variable::parse(n).and_then(|v| v.get(&cx)).map(|v| String::from_utf8_lossy(&v).into_owned());
        assert_eq!(get("x-mosn-method").as_deref(), Some("POST"));
        assert_eq!(get("x-mosn-host").as_deref(), Some("svc:8080"));
        assert_eq!(get("x-mosn-path").as_deref(), Some("/a/b"));
        assert_eq!(get("x-mosn-path-original").as_deref(), Some("/a/%2e/b"));
        assert_eq!(get("x-mosn-querystring").as_deref(), Some("x=1&y=a%20b&z"));
        assert_eq!(get("Http1_request_uri").as_deref(), Some("/a/%2e/b?x=1&y=a%20b&z"));
        assert_eq!(get("Http1_request_header_X-User").as_deref(), Some("u1"));
        assert_eq!(get("request_header_x-user").as_deref(), Some("u1"));
        assert_eq!(get("Http1_request_arg_y").as_deref(), Some("a b"));
        assert_eq!(get("Http1_request_arg_z").as_deref(), Some(""));
        assert_eq!(get("Http1_request_arg_w"), None);
        assert_eq!(get("Http1_cookie_sid").as_deref(), Some("abc"));
        assert_eq!(get("upstream_cluster").as_deref(), Some("c"));
        assert_eq!(get("Http1_request_header_x-none"), None);
        assert!(Variable::parse("no_such_variable").is_none());
        assert!(Variable::parse("Http1_request_header_").is_none());
    }
}
