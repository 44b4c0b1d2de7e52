//! The `ZONE` driver: the zone this proxy runs in, from the environment.
//!
//! MOSN's driver returns the first non-empty variable among `zone_env_name_list`. The
//! environment does not change while the host runs, so it is read once, when the config
//! loads (nginx clears its workers' environment; its master, which loads the config, still
//! has it).
//!
//! This file is also the example of adding a driver (README, "Adding a metadata driver"):
//! a type implementing [`Driver`], a `parse` function, and one line in `DRIVERS`.

use super::{Driver, ReceiveContext};
use crate::config::reader::{index, Diagnostics, Obj};
use crate::headers::SharedStr;

/// Reads `{zone_env_name_list: ["NAME", ...]}`.
pub(super) fn parse(config: Option<Obj<'_>>, d: &mut Diagnostics) -> Option<Box<dyn Driver>> {
    let names = match config {
        Some(mut c) => {
            let list_path = c.field_path("zone_env_name_list");
            let names = env_names(c.array("zone_env_name_list", d), &list_path, d);
            c.finish(d);
            names
        }
        None => Vec::new(),
    };
    Some(Box::new(ZoneDriver::from_env(&names)))
}

/// The strings of a JSON array, each an error if it is not one.
pub(super) fn env_names(arr: Option<&Vec<serde_json::Value>>, path: &str, d: &mut Diagnostics) -> Vec<String> {
    let mut out = Vec::new();
    for (i, v) in arr.into_iter().flatten().enumerate() {
        match v.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            _ => d.error(index(path, i), "expected a non-empty string (an environment variable name)"),
        }
    }
    out
}

/// Yields the zone found in the environment at load, or nothing.
pub struct ZoneDriver {
    zone: Option<SharedStr>,
}

impl ZoneDriver {
    /// The first of `names` that is set to a non-empty value in this process's environment.
    pub fn from_env(names: &[String]) -> ZoneDriver {
        let zone = names.iter().filter_map(|n| std::env::var(n).ok()).find(|v| !v.is_empty()).map(SharedStr::from);
        ZoneDriver { zone }
    }
}

impl Driver for ZoneDriver {
    fn build(&self, _cx: &ReceiveContext<'_>) -> Option<SharedStr> {
        self.zone.clone()
    }
}
