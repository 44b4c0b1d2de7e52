//! `config_mutate`: structure-aware config fuzzing. A seed config (valid MOSN JSON) is
//! parsed and mutated as JSON, driven by the input: a field deleted, replaced (other types,
//! big and negative numbers, odd strings, another part of the config), duplicated, added
//! (any field name the field table knows) or changed in type. Then it is loaded exactly as
//! the hosts load it. It must never panic; a config that loads must route a few requests
//! (filters, router, host choice, retries, response) and generate both hosts' configs
//! without panicking.

use arbitrary::{Result, Unstructured};
use mosn_extension::config::fields::FIELDS;
use mosn_extension::hostgen::{self, HostOptions};
use mosn_extension::{Engine, UpstreamOutcome};
use serde_json::{json, Value};

/// One step from a node to a child.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(Step::Key(k.clone()));
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(Step::Index(i));
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, s| match (s, v) {
        (Step::Key(k), Value::Object(m)) => m.get_mut(k),
        (Step::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    })
}

const STRINGS: &[&str] = &[
    "",
    " ",
    "x",
    "*",
    "*:*",
    "*.",
    "a.*",
    "/",
    "//",
    "/..",
    "../",
    ".",
    "%",
    "%2F",
    "%zz",
    "\0",
    "\u{7f}",
    "é",
    "\u{202e}",
    "0",
    "-1",
    "1e400",
    "0s",
    "1s",
    "-1s",
    "1.5ms",
    "999999999h",
    "1ns",
    "0.0000001s",
    "9223372036854775807ns",
    "127.0.0.1:0",
    "127.0.0.1:65535",
    "[::1]:1",
    "[::1",
    "host:80",
    "a:b:c",
    "LB_MAGLEV",
    "LB_ORIGINAL_DST",
    "LB_PEAK_EWMA",
    "Http1",
    "Http2",
    "proxy",
    "fault",
    "mirror",
    "gzip",
    "metadata",
    "allow",
    "deny",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/33",
    "(",
    "[",
    "^$",
    ".*",
    "a{99999}",
    "(a*)*b",
    "$1",
    "${9}",
    "%x-mosn-host%",
    "%",
    "%%",
    "%unknown%",
    "text/html",
    "UNIT",
    "ZONE",
    "IDC",
    "PATH",
    "ARG",
    "URI",
    "true",
    "null",
    "{}",
    "[]",
];

fn interesting(u: &mut Unstructured<'_>, whole: &Value) -> Result<Value> {
    Ok(match u.int_in_range(0..=17u8)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<u64>()?),
        3 => json!(u.arbitrary::<i64>()?),
        4 => json!(*u.choose(&[0u64, 1, 2, 100, 128, 255, 256, 599, 600, 65535, 65536, u32::MAX as u64, u32::MAX as u64 + 1, u64::MAX])?),
        5 => json!(*u.choose(&[-1i64, i64::MIN, -0])?),
        6 => json!(*u.choose(&[0.5f64, -0.5, 1e300, -1e300, 1e-300, 100.0000001, 2.5])?),
        7..=9 => json!(*u.choose(STRINGS)?),
        10 => json!(u.arbitrary::<String>()?),
        11 => json!("a".repeat(u.int_in_range(1..=5000)?)),
        12 => json!([]),
        13 => json!({}),
        14 => json!([u.choose(STRINGS)?]),
        // Another part of the config (types and shapes that fit somewhere else).
        _ => {
            let mut ps = Vec::new();
            paths(whole, &mut Vec::new(), &mut ps);
            let p = u.choose(&ps)?.clone();
            at(&mut whole.clone(), &p).cloned().unwrap_or(Value::Null)
        }
    })
}

fn mutate(u: &mut Unstructured<'_>, v: &mut Value) -> Result<()> {
    let mut ps = Vec::new();
    paths(v, &mut Vec::new(), &mut ps);
    let path = u.choose(&ps)?.clone();
    let kind = u.int_in_range(0..=5u8)?;
    let snapshot = if kind == 1 { Some(v.clone()) } else { None };
    let (parent, last) = match path.split_last() {
        Some((l, p)) => (p.to_vec(), Some(l.clone())),
        None => (Vec::new(), None),
    };
    match kind {
        // Delete.
        0 => match (at(v, &parent), last) {
            (Some(Value::Object(m)), Some(Step::Key(k))) => {
                m.remove(&k);
            }
            (Some(Value::Array(a)), Some(Step::Index(i))) if i < a.len() => {
                a.remove(i);
            }
            _ => {}
        },
        // Replace.
        1 => {
            let new = interesting(u, snapshot.as_ref().unwrap_or(v))?;
            if let Some(n) = at(v, &path) {
                *n = new;
            }
        }
        // Duplicate (an array element, or an object field under another known name).
        2 => {
            let Some(node) = at(v, &path).cloned() else { return Ok(()) };
            match (at(v, &parent), last) {
                (Some(Value::Array(a)), Some(Step::Index(i))) => a.insert(i.min(a.len()), node),
                (Some(Value::Object(m)), Some(Step::Key(_))) => {
                    m.insert(u.choose(FIELDS)?.name.to_string(), node);
                }
                _ => {}
            }
        }
        // Add a known field with an odd value.
        3 => {
            let name = u.choose(FIELDS)?.name.to_string();
            let new = interesting(u, &v.clone())?;
            if let Some(Value::Object(m)) = at(v, &path) {
                m.insert(name, new);
            }
        }
        // Change the type, keeping the content.
        4 => {
            let Some(n) = at(v, &path) else { return Ok(()) };
            *n = match n.take() {
                Value::Number(x) => Value::String(x.to_string()),
                Value::String(s) => {
                    s.parse::<f64>().ok().and_then(|f| serde_json::Number::from_f64(f).map(Value::Number)).unwrap_or(json!([s]))
                }
                Value::Bool(b) => json!(u8::from(b)),
                Value::Array(a) => a.into_iter().next().unwrap_or(Value::Null),
                Value::Object(m) => Value::Array(m.into_iter().map(|(_, v)| v).collect()),
                Value::Null => json!(""),
            };
        }
        // Rename a field (a near miss of a known name, or another known name).
        _ => {
            if let (Some(Value::Object(m)), Some(Step::Key(k))) = (at(v, &parent), last) {
                if let Some(val) = m.remove(&k) {
                    let new = match u.int_in_range(0..=2u8)? {
                        0 => format!("{k}s"),
                        1 => k.to_uppercase(),
                        _ => u.choose(FIELDS)?.name.to_string(),
                    };
                    m.insert(new, val);
                }
            }
        }
    }
    Ok(())
}

const PATHS: &[&[u8]] = &[
    b"/",
    b"/v1/x",
    b"/items/42",
    b"/Exact",
    b"/old/x?y=1#f",
    b"/var",
    b"/w",
    b"/limited",
    b"/a/../v1/%2e%2e/x",
    b"//w//x",
    b"/%",
    b"*",
    b"",
    b"/a b",
];
const HOSTS: &[&[u8]] = &[b"api.example.com", b"api.example.com:8080", b"x.api.example.com:1", b"other", b"", b"a:b:c", b"[::1]:80"];
const NAMES: &[&[u8]] = &[
    b"uid",
    b"x-user",
    b"x-unit",
    b"x-fault",
    b"x-teapot",
    b"x-cluster",
    b"service",
    b"x-v",
    b"x-host",
    b"x-real-ip",
    b"cookie",
    b"x-mosn-global-timeout",
    b"x-mosn-try-timeout",
    b"x-mosn-on-envoy-unit",
    b"content-length",
    b"host",
    b":method",
];
const VALUES: &[&[u8]] = &[
    b"1",
    b"200",
    b"abort",
    b"delay",
    b"yes",
    b"rr",
    b"maglev",
    b"nope",
    b"10.1.2.3",
    b"::1",
    b"sid=7",
    b"0",
    b"18446744073709551616",
    b"POST",
    b"u1",
    b"",
];

fn request<'a>(u: &mut Unstructured<'a>) -> Result<super::Request<'a>> {
    let mut headers = vec![(&b":method"[..], *u.choose(&[&b"GET"[..], b"POST", b"PUT"])?), (b":path", *u.choose(PATHS)?)];
    let host = *u.choose(HOSTS)?;
    if !host.is_empty() {
        headers.push((b":authority", host));
    }
    for _ in 0..u.int_in_range(0..=4)? {
        headers.push((*u.choose(NAMES)?, *u.choose(VALUES)?));
    }
    let mut outcomes = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        outcomes.push(match u.int_in_range(0..=4u8)? {
            0 => UpstreamOutcome::Response(*u.choose(&[200u16, 404, 500, 503, 504])?),
            1 => UpstreamOutcome::ConnectFailure,
            2 => UpstreamOutcome::Timeout,
            3 => UpstreamOutcome::Reset,
            _ => UpstreamOutcome::Overflow,
        });
    }
    Ok(super::Request {
        headers,
        body: u.choose(&[&b""[..], b"small", b"a body larger than sixteen bytes"])?,
        end_of_stream: u.arbitrary()?,
        outcomes,
        downstream: u.choose(&[&b"10.0.0.1:5"[..], b"192.168.1.1", b"[::1]:80", b"junk", b""])?,
    })
}

pub fn run(data: &[u8]) {
    let _ = try_run(data);
}

fn try_run(data: &[u8]) -> Result<()> {
    static PARSED: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    let seeds = PARSED.get_or_init(|| super::SEEDS.iter().map(|s| serde_json::from_str(s).expect("seed is JSON")).collect());
    let mut u = Unstructured::new(data);
    let mut cfg = u.choose(seeds)?.clone();
    for _ in 0..u.int_in_range(0..=6)? {
        mutate(&mut u, &mut cfg)?;
    }
    let text = cfg.to_string();
    if super::resolves_names(text.as_bytes()) {
        return Ok(());
    }
    let engine = match Engine::load(&text) {
        Ok(e) => e,
        Err(errs) => {
            assert!(!errs.0.is_empty(), "a refused config names at least one error");
            return Ok(());
        }
    };
    let opts = HostOptions {
        config_path: "/etc/mosn/mosn.json".into(),
        work_dir: "/tmp/mosn-fuzz".into(),
        module_dir: "/opt/mosn".into(),
        concurrency: 2,
        admin_port: 0,
    };
    let _ = hostgen::envoy::generate(&engine.config, &opts);
    let _ = hostgen::nginx::generate(&engine.config, &opts, false);
    for _ in 0..u.int_in_range(1..=4)? {
        let r = request(&mut u)?;
        let listener = u.choose_index(engine.listeners.len().max(1))?;
        super::drive(&engine, listener, &r);
    }
    // Every request ended: nothing is left counted against the circuit breakers.
    for c in &engine.clusters {
        let st = c.stats();
        assert_eq!((st.rq_active, st.retry_active), (0, 0), "cluster {} keeps requests or retries active", c.name);
        for h in c.hosts.iter() {
            assert_eq!(h.state.active(), 0, "a host of {} keeps an attempt active", c.name);
        }
    }
    Ok(())
}
