//! A small JSON reader that remembers where it is.
//!
//! MOSN configs are large and mostly fields we don't use, so parsing goes through
//! [`Obj`]: every field read is marked, every error carries the JSON path
//! (`cluster_manager.clusters[1].hosts[0].address`), and the fields nobody read are
//! reported once as "not used" instead of being silently dropped.

use serde_json::{Map, Value};
use std::time::Duration;

use super::{ConfigError, Diagnostics};

/// One JSON object being read, with its path and the keys read so far.
pub(crate) struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    read: Vec<&'a str>,
}

/// `base.key`, or `key` at the top level.
pub(crate) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

fn kind(v: &Value) -> &'static str {
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
    /// Opens `v` as an object; records an error and returns `None` otherwise.
    pub fn open(v: &'a Value, path: String, d: &mut Diagnostics) -> Option<Obj<'a>> {
        match v {
            Value::Object(map) => Some(Obj { map, path, read: Vec::new() }),
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

    pub fn required_string(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<&'a str> {
        if !self.has(key) {
            d.error(self.field_path(key), "is required".to_string());
            self.get(key);
            return None;
        }
        let s = self.string(key, d)?;
        if s.is_empty() {
            d.error(self.field_path(key), "must not be empty".to_string());
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

    pub fn object(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Obj<'a>> {
        let path = self.field_path(key);
        let v = self.get(key)?;
        Obj::open(v, path, d)
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

    /// A flat `{"k": "v"}` object of strings.
    pub fn string_map(&mut self, key: &'static str, d: &mut Diagnostics) -> Vec<(String, String)> {
        let Some(mut o) = self.object(key, d) else { return Vec::new() };
        let mut out = Vec::new();
        let keys: Vec<&'a String> = o.map.keys().collect();
        for k in keys {
            let path = o.field_path(k);
            o.read.push(k.as_str());
            match &o.map[k.as_str()] {
                Value::String(s) => out.push((k.clone(), s.clone())),
                other => d.error(path, format!("expected a string, found {}", kind(other))),
            }
        }
        out
    }

    /// Marks `key` as known to MOSN but not used here (logged at debug, not as unknown).
    pub fn ignore(&mut self, keys: &[&'static str]) {
        for k in keys {
            if let Some((k, _)) = self.map.get_key_value(*k) {
                self.read.push(k.as_str());
            }
        }
    }

    /// Records every key that was never read.
    pub fn finish(self, d: &mut Diagnostics) {
        for k in self.map.keys() {
            if !self.read.contains(&k.as_str()) {
                d.unused(join(&self.path, k));
            }
        }
    }
}

/// Iterates the objects of an array field, with their paths.
pub(crate) fn objects<'a>(arr: Option<&'a Vec<Value>>, base: &str, d: &mut Diagnostics) -> Vec<Obj<'a>> {
    let Some(arr) = arr else { return Vec::new() };
    arr.iter().enumerate().filter_map(|(i, v)| Obj::open(v, index(base, i), d)).collect()
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

impl From<(String, String)> for ConfigError {
    fn from((path, message): (String, String)) -> Self {
        ConfigError { path, message }
    }
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
}
