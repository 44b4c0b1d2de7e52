//! The `IDC` driver: the data center (IDC) this proxy runs in, from the environment.
//!
//! MOSN's driver returns the first non-empty variable among `idc_env_name_list`, exactly as
//! `ZONE` does with its own list; the environment is read once, when the config loads.

use super::zone::{env_names, ZoneDriver};
use super::Driver;
use crate::config::reader::{Diagnostics, Obj};

/// Reads `{idc_env_name_list: ["NAME", ...]}`.
pub(super) fn parse(config: Option<Obj<'_>>, d: &mut Diagnostics) -> Option<Box<dyn Driver>> {
    let names = match config {
        Some(mut c) => {
            let list_path = c.field_path("idc_env_name_list");
            let names = env_names(c.array("idc_env_name_list", d), &list_path, d);
            c.finish(d);
            names
        }
        None => Vec::new(),
    };
    // The same lookup as ZONE's: the first variable set.
    Some(Box::new(ZoneDriver::from_env(&names)))
}
