//! Host configuration generated from `mosn.json` (`mosn-ext start --host ...`).
//!
//! The operator writes one MOSN config; the host's config (envoy.yaml, nginx.conf) is
//! derived from it, so the two never disagree: each MOSN listener becomes a host
//! listener running that listener's stream filters and router in the library, each
//! MOSN cluster a host upstream whose host choice is the library's.

pub mod envoy;
pub mod nginx;

use std::path::PathBuf;

/// Inputs common to every host generator.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Absolute path of `mosn.json` (the library reads it at host start and reload).
    pub config_path: PathBuf,
    /// Directory for the generated config, logs and temp files.
    pub work_dir: PathBuf,
    /// Directory holding `libmosn_envoy.so` / `ngx_http_mosn_module.so` + `mosn_extension.so`.
    pub module_dir: PathBuf,
    /// Worker threads (Envoy) or processes (Nginx).
    pub concurrency: u32,
    /// Envoy admin port (0 = any free port).
    pub admin_port: u16,
}

/// The access log line format, identical on both hosts, one line per request:
/// `mosn_access method=GET path=/ status=200 cluster=s1 upstream_host=127.0.0.1:3450 unit=s1 flags=- attempts=1 details=via_upstream`.
pub const ACCESS_LOG_FIELDS: &[&str] = &["method", "path", "status", "cluster", "upstream_host", "unit", "flags", "attempts", "details"];

/// A string quoted for YAML / nginx.conf (JSON string syntax is valid in both).
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}
