//! `mosn-ext route-check`: a route table tested before it is deployed (like Envoy's
//! `router_check_tool`).
//!
//! A cases file is a JSON array of cases (or `{"cases": [...]}`):
//!
//! ```json
//! [{"name": "uid 2 goes to s1",
//!   "listener": "serverListener",
//!   "request": {"method": "GET", "path": "/x?q=1", "host": "a.example", "headers": {"uid": "2"}},
//!   "expect": {"virtual_host": "sites", "route": "servers[0].routers[0].virtual_hosts[0].routers[6]",
//!              "cluster": "s1", "path": "/x?q=1", "host": "a.example",
//!              "headers": {"x-mosn-on-envoy-unit": "s1"}, "removed": ["x-old"],
//!              "status": 301, "location": "https://a.example/x", "body": "..."}}]
//! ```
//!
//! Every field of `expect` is optional; each one given is compared. `status` is the local
//! reply's status (a direct response, a redirect, 404 for no route, a filter's answer);
//! `path` and `host` are what the upstream gets; `headers` are request headers the request
//! ends up with (`null` for "absent"). The request runs through the listener's stream
//! filters and router exactly as on a host; a filter delay is skipped.

use crate::api::Action;
use crate::engine::Engine;
use crate::headers::{Header, HeaderMap, Headers, Overlay};
use serde_json::{Map, Value};

/// One mismatch (or an error in the cases file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The case's name (or its index).
    pub case: String,
    pub what: String,
}

/// The outcome of a cases file.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub mismatches: Vec<Mismatch>,
}

/// What one request got.
#[derive(Debug, Default)]
struct Outcome {
    virtual_host: Option<String>,
    route: Option<String>,
    cluster: Option<String>,
    status: Option<u16>,
    location: Option<String>,
    body: Option<String>,
    path: Option<String>,
    host: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

/// Runs every case of `cases` (the file's JSON text) against `engine`.
pub fn run(engine: &Engine, cases: &str) -> Result<Report, String> {
    let v: Value = serde_json::from_str(cases).map_err(|e| format!("cases are not JSON: {e}"))?;
    let list = match &v {
        Value::Array(a) => a,
        Value::Object(o) => o.get("cases").and_then(Value::as_array).ok_or("expected an array of cases or {\"cases\": [...]}")?,
        _ => return Err("expected an array of cases or {\"cases\": [...]}".into()),
    };
    let mut report = Report::default();
    for (i, c) in list.iter().enumerate() {
        let name = c.get("name").and_then(Value::as_str).map_or_else(|| format!("cases[{i}]"), str::to_string);
        let before = report.mismatches.len();
        match check(engine, c) {
            Ok(ms) => report.mismatches.extend(ms.into_iter().map(|what| Mismatch { case: name.clone(), what })),
            Err(what) => report.mismatches.push(Mismatch { case: name.clone(), what }),
        }
        if report.mismatches.len() == before {
            report.passed += 1;
        } else {
            report.failed += 1;
        }
    }
    Ok(report)
}

fn check(engine: &Engine, c: &Value) -> Result<Vec<String>, String> {
    let c = c.as_object().ok_or("a case must be an object")?;
    let req = c.get("request").and_then(Value::as_object).ok_or("needs \"request\": {method, path, host, headers}")?;
    let expect = c.get("expect").and_then(Value::as_object).ok_or("needs \"expect\": {...}")?;
    let listener = c.get("listener").and_then(Value::as_str);
    let idx = engine.listener_index(listener).ok_or_else(|| format!("no listener {listener:?}"))?;
    let got = simulate(engine, idx, req)?;
    Ok(compare(expect, &got))
}

fn string_field(o: &Map<String, Value>, k: &str, default: &str) -> Result<String, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("request.{k} must be a string, not {other}")),
    }
}

/// Runs the request through the listener's filters and router.
fn simulate(engine: &Engine, listener: usize, req: &Map<String, Value>) -> Result<Outcome, String> {
    let method = string_field(req, "method", "GET")?;
    let path = string_field(req, "path", "/")?;
    let host = string_field(req, "host", "")?;
    let mut owned: Vec<(String, String)> = vec![(":method".into(), method), (":path".into(), path)];
    if !host.is_empty() {
        owned.push((":authority".into(), host));
    }
    if let Some(hs) = req.get("headers") {
        let hs = hs.as_object().ok_or("request.headers must be an object of strings")?;
        for (k, v) in hs {
            let v = v.as_str().ok_or_else(|| format!("request.headers.{k} must be a string"))?;
            owned.push((k.to_ascii_lowercase(), v.to_string()));
        }
    }
    let headers: Vec<Header<'_>> = owned.iter().map(|(n, v)| Header { name: n.as_bytes(), value: v.as_bytes() }).collect();
    let base = Headers(&headers);
    let mut s = engine.new_stream(listener, None).ok_or("no such listener")?;
    let mut action = s.request_headers(&base, true);
    // A filter that waits (a fault delay) is resumed at once: the route is what matters.
    for _ in 0..16 {
        if action != Action::Wait {
            break;
        }
        action = s.resume(&base, None);
    }
    let mut out = Outcome::default();
    if let Some((route, vhost)) = s.route_info() {
        out.route = Some(route.to_string());
        out.virtual_host = Some(vhost.to_string());
    }
    match action {
        Action::LocalReply => {
            let r = s.local_reply().ok_or("local reply without a reply")?;
            out.status = Some(r.status);
            out.body = Some(r.body.to_string());
            out.location = r.headers.iter().find(|(n, _)| &**n == "location").map(|(_, v)| v.to_string());
        }
        Action::Continue => {
            out.cluster = s.cluster().map(|c| c.name.to_string());
            let view = Overlay { base: &base, mutations: s.request_mutations() };
            let text = |n: &str| view.get(n).first().map(|v| String::from_utf8_lossy(v).into_owned());
            out.path = text(":path");
            out.host = text(":authority");
            let mut names: Vec<String> = s.request_mutations().iter().map(|m| m.name.to_string()).collect();
            names.sort();
            names.dedup();
            out.headers = names.into_iter().map(|n| (n.clone(), text(&n))).collect();
            out.headers.extend(owned.iter().map(|(n, _)| (n.clone(), text(n))));
        }
        other => return Err(format!("the request did not finish: {other:?}")),
    }
    Ok(out)
}

fn compare(expect: &Map<String, Value>, got: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |field: &str, want: Option<String>, have: &Option<String>| {
        if want.as_ref() != have.as_ref() {
            out.push(format!("{field}: want {}, got {}", show(&want), show(have)));
        }
    };
    let s = |k: &str| expect.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
    for (k, have) in [
        ("virtual_host", &got.virtual_host),
        ("route", &got.route),
        ("cluster", &got.cluster),
        ("path", &got.path),
        ("host", &got.host),
        ("location", &got.location),
        ("body", &got.body),
    ] {
        if expect.contains_key(k) {
            cmp(k, s(k), have);
        }
    }
    if expect.contains_key("status") {
        cmp("status", s("status"), &got.status.map(|c| c.to_string()));
    }
    if let Some(Value::Object(hs)) = expect.get("headers") {
        for (k, v) in hs {
            let have = got.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.clone());
            cmp(&format!("headers.{k}"), v.as_str().map(str::to_string), &have);
        }
    }
    if let Some(Value::Array(rm)) = expect.get("removed") {
        for k in rm.iter().filter_map(Value::as_str) {
            let have = got.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.clone());
            cmp(&format!("removed.{k}"), None, &have);
        }
    }
    out
}

fn show(v: &Option<String>) -> String {
    v.as_ref().map_or_else(|| "(none)".to_string(), |s| format!("{s:?}"))
}
