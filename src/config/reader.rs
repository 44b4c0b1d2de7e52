//! A small JSON reader that remembers where it is.
//!
//! MOSN configs are large, so parsing goes through [`Obj`]: every error carries the JSON path
//! (`cluster_manager.clusters[1].hosts[0].address`), and every object is read against its
//! entry in the field table ([`super::fields`]). When an object is finished, each key the
//! code did not read is judged by that table: a field MOSN has and this library does not
//! implement yet is an error ("not supported yet"), a field that changes nothing here is a
//! note, a field MOSN does not have is an error (with a did-you-mean). Nothing is accepted
//! and silently ignored.

use serde_json::{Map, Value};
use std::time::Duration;

use super::fields::{self, Support};
use super::ConfigError;

/// Errors and notes collected while reading one config.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<ConfigError>,
    /// Fields that change nothing here, with the reason: `(path, why)`.
    pub notes: Vec<(String, &'static str)>,
}

impl Diagnostics {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }
    pub fn note(&mut self, path: String, why: &'static str) {
        self.notes.push((path, why));
    }
    /// The number of errors so far (to tell whether a part added any).
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }
}

/// One JSON object being read: its path, its schema (an object name of the field table)
/// and the keys read so far.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    schema: &'static str,
    read: Vec<&'a str>,
}

/// `base.key`, or `key` at the top level.
pub fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[i]`.
pub fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// What a JSON value is, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    /// Opens `v` as an object of `schema`; records an error and returns `None` otherwise.
    pub fn open(v: &'a Value, path: String, schema: &'static str, d: &mut Diagnostics) -> Option<Obj<'a>> {
        debug_assert!(fields::has_object(schema), "schema {schema:?} is not in the field table");
        match v {
            Value::Object(map) => Some(Obj { map, path, schema, read: Vec::new() }),
            other => {
                d.error(path, format!("expected an object, found {}", kind(other)));
                None
            }
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn field_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of `key` (null counts as absent), marking it as read.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(key)?;
        self.read.push(k.as_str());
        if v.is_null() {
            None
        } else {
            Some(v)
        }
    }

    /// True when `key` is present and not null (does not mark it read).
    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s.as_str()),
            other => {
                d.error(self.field_path(key), format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    /// A string that must be present and not empty.
    pub fn required_string(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<&'a str> {
        if !self.has(key) {
            d.error(self.field_path(key), "is required");
            self.get(key);
            return None;
        }
        let s = self.string(key, d)?;
        if s.is_empty() {
            d.error(self.field_path(key), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn boolean(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                d.error(self.field_path(key), format!("expected true or false, found {}", kind(other)));
                None
            }
        }
    }

    /// An unsigned integer within `min..=max`.
    pub fn uint(&mut self, key: &'static str, min: u64, max: u64, d: &mut Diagnostics) -> Option<u64> {
        let v = self.get(key)?;
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                d.error(self.field_path(key), format!("{n} is out of range {min}..={max}"));
                None
            }
            None => {
                let found = if v.is_number() { format!("{v}") } else { kind(v).to_string() };
                d.error(self.field_path(key), format!("expected an integer in {min}..={max}, found {found}"));
                None
            }
        }
    }

    pub fn array(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<&'a Vec<Value>> {
        match self.get(key)? {
            Value::Array(a) => Some(a),
            other => {
                d.error(self.field_path(key), format!("expected an array, found {}", kind(other)));
                None
            }
        }
    }

    /// The object at `key`, read as `schema`.
    pub fn object(&mut self, key: &'static str, schema: &'static str, d: &mut Diagnostics) -> Option<Obj<'a>> {
        let path = self.field_path(key);
        let v = self.get(key)?;
        Obj::open(v, path, schema, d)
    }

    /// The objects of the array at `key`, each read as `schema`, with their paths.
    pub fn objects(&mut self, key: &'static str, schema: &'static str, d: &mut Diagnostics) -> Vec<Obj<'a>> {
        let base = self.field_path(key);
        let Some(arr) = self.array(key, d) else { return Vec::new() };
        arr.iter().enumerate().filter_map(|(i, v)| Obj::open(v, index(&base, i), schema, d)).collect()
    }

    /// A Go-style duration string (`"3s"`, `"400ms"`, `"1m30s"`), as MOSN writes them.
    pub fn duration(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Duration> {
        let path = self.field_path(key);
        let s = self.string(key, d)?;
        match parse_go_duration(s) {
            Ok(v) => Some(v),
            Err(e) => {
                d.error(path, format!("\"{s}\" is not a duration ({e}); write e.g. \"3s\" or \"500ms\""));
                None
            }
        }
    }

    /// A flat `{"k": "v"}` object of strings, sorted by key.
    pub fn string_map(&mut self, key: &'static str, d: &mut Diagnostics) -> Vec<(String, String)> {
        let path = self.field_path(key);
        let Some(v) = self.get(key) else { return Vec::new() };
        let Value::Object(map) = v else {
            d.error(path, format!("expected an object of strings, found {}", kind(v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k.clone(), s.clone())),
                other => d.error(join(&path, k), format!("expected a string, found {}", kind(other))),
            }
        }
        out.sort();
        out
    }

    /// The raw JSON at `key` (for a part another module reads, e.g. a filter's `config`).
    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key)
    }

    /// Judges every key that was not read, by the field table (see the module doc).
    pub fn finish(self, d: &mut Diagnostics) {
        for (k, v) in self.map {
            if self.read.contains(&k.as_str()) {
                continue;
            }
            let path = join(&self.path, k);
            match fields::lookup(self.schema, k) {
                Some(Support::Yes) => {} // skipped after an earlier error in this object
                // Set to its empty value (null, false, 0, "", [], {}) it asks for nothing.
                Some(Support::Refused(why)) if !is_empty(v) => d.error(path, format!("is not supported yet ({why})")),
                Some(Support::Refused(_)) => {}
                Some(Support::Ignored(why)) => d.note(path, why),
                None => d.error(path, unknown("field", k, &fields::names(self.schema))),
            }
        }
    }
}

/// True for a JSON value that asks for nothing: null, false, 0, "", [] or {} (Go's zero
/// values, which MOSN treats as "not set").
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// `unknown filter "metadat" (did you mean "metadata"?)`, or the list of known names.
pub fn unknown(what: &str, got: &str, known: &[&str]) -> String {
    let close = known.iter().find(|k| edit_distance(&k.to_ascii_lowercase(), &got.to_ascii_lowercase()) <= 2);
    match close {
        Some(k) => format!("unknown {what} \"{got}\" (did you mean \"{k}\"?)"),
        None if known.len() <= 12 => format!("unknown {what} \"{got}\" (known: {})", known.join(", ")),
        None => format!("unknown {what} \"{got}\""),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses Go's `time.ParseDuration` syntax: a sequence of decimal numbers with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`. A bare `0` is allowed.
pub fn parse_go_duration(s: &str) -> Result<Duration, &'static str> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty");
    }
    if s.starts_with('-') {
        return Err("negative");
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or("missing unit")?;
        if num_end == 0 {
            return Err("expected a number");
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| "bad number")?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err("unknown unit"),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err("too large");
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_go_duration("400ms"), Ok(Duration::from_millis(400)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("3").is_err());
        assert!(parse_go_duration("3x").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn did_you_mean() {
        assert!(unknown("field", "lb_typ", &["lb_type", "name"]).contains("did you mean \"lb_type\""));
        assert!(unknown("field", "zzz", &["a", "b"]).contains("known: a, b"));
    }
}
