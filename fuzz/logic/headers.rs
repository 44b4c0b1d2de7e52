//! `headers`: the header overlay (`Overlay`: the host's headers with the stream's
//! mutations on top) and the header matcher against a model: a `Vec` of `(name, value)`
//! pairs the mutations are applied to in order (Set: every value replaced by one, Add:
//! one more, Remove: none left), names compared case-insensitively.
//!
//! Properties: for every name, the overlay's lookup (missing / one / many, and the first
//! value) is the model's; the overlay's `for_each` yields the model's headers (as a
//! multiset); a `HeaderMatcher` matches exactly when the model's first value equals (or
//! contains a match of) its value.

use arbitrary::{Arbitrary, Result, Unstructured};
use mosn_extension::headers::{Header, HeaderMap, HeaderMatcher, HeaderMutation, HeaderOp, Headers, Lookup, Overlay};

/// Base names as a host may spell them (any case); mutation names are lower case.
const NAMES: &[&str] = &["a", "b", "x-a", ":path", ":authority", "host", "uid", "cookie", "set-cookie", "x-mosn-cluster"];
const VALUES: &[&str] = &["", "1", "2", "v", "a,b", " x ", "GET", "\u{e9}", "/p?q"];

fn name(u: &mut Unstructured<'_>, any_case: bool) -> Result<String> {
    let n = u.choose(NAMES)?.to_string();
    Ok(if any_case && u.arbitrary()? { n.to_ascii_uppercase() } else { n })
}

fn value(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(1, 4)? { String::arbitrary(u)? } else { u.choose(VALUES)?.to_string() })
}

fn model_lookup<'a>(model: &'a [(String, String)], name: &str) -> Lookup<'a> {
    let mut it = model.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes());
    match (it.next(), it.next()) {
        (None, _) => Lookup::Missing,
        (Some(v), None) => Lookup::One(v),
        (Some(v), Some(_)) => Lookup::Many(v),
    }
}

pub fn run(data: &[u8]) {
    let _ = try_run(data);
}

fn try_run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let mut base = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        base.push((name(&mut u, true)?, value(&mut u)?));
    }
    let mut muts = Vec::new();
    for _ in 0..u.int_in_range(0..=8)? {
        let op = *u.choose(&[HeaderOp::Set, HeaderOp::Add, HeaderOp::Remove])?;
        let value = if op == HeaderOp::Remove { String::new() } else { value(&mut u)? };
        muts.push(HeaderMutation { op, name: name(&mut u, false)?.into(), value: value.into() });
    }
    let mut model = base.clone();
    for m in &muts {
        match m.op {
            HeaderOp::Set => {
                model.retain(|(n, _)| !n.eq_ignore_ascii_case(&m.name));
                model.push((m.name.to_string(), m.value.to_string()));
            }
            HeaderOp::Add => model.push((m.name.to_string(), m.value.to_string())),
            HeaderOp::Remove => model.retain(|(n, _)| !n.eq_ignore_ascii_case(&m.name)),
        }
    }
    let hs: Vec<Header<'_>> = base.iter().map(|(n, v)| Header { name: n.as_bytes(), value: v.as_bytes() }).collect();
    let base_map = Headers(&hs);
    let overlay = Overlay { base: &base_map, mutations: &muts };
    for n in NAMES {
        assert_eq!(overlay.lookup(n), model_lookup(&model, n), "lookup {n:?}: base {base:?}, mutations {muts:?}");
        assert_eq!(overlay.get(n), overlay.lookup(n));
    }
    let mut seen = Vec::new();
    overlay.for_each(&mut |n, v| seen.push((String::from_utf8_lossy(n).to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned())));
    let mut want: Vec<(String, String)> = model.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "for_each: base {base:?}, mutations {muts:?}");
    // The matcher sees the overlay as the model says.
    let (mname, mvalue, regex) = (name(&mut u, true)?, value(&mut u)?, u.arbitrary::<bool>()?);
    if let Ok(m) = HeaderMatcher::new(&mname, &mvalue, regex) {
        let lname = mname.to_ascii_lowercase();
        let first = model_lookup(&model, &lname).first();
        let want = match first {
            None => false,
            Some(v) if regex => regex::bytes::Regex::new(&mvalue).is_ok_and(|re| re.is_match(v)),
            Some(v) => v == mvalue.as_bytes(),
        };
        assert_eq!(m.matches(&overlay), want, "matcher {mname:?}={mvalue:?} (regex {regex}) on {model:?}");
    } else {
        assert!(regex, "only a regex can fail to build");
    }
    Ok(())
}
