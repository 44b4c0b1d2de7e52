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

/// The access log line format, the same fields in the same notation on both hosts, one line
/// per request: `mosn_access method=GET path=/ status=200 cluster=s1
/// upstream_host=127.0.0.1:3450 unit=s1 flags=- attempts=1 details=via_upstream duration_ms=3
/// live_streams=0` (`flags`: MOSN's response flag bits, `0x80`; then Envoy adds its own
/// `envoy_flags`, nginx the worker's `pid`).
pub const ACCESS_LOG_FIELDS: &[&str] =
    &["method", "path", "status", "cluster", "upstream_host", "unit", "flags", "attempts", "details", "duration_ms", "live_streams"];

/// A string quoted for YAML / nginx.conf (JSON string syntax is valid in both).
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_access_logs_carry_every_field_and_the_listeners_log_path() {
        for f in ACCESS_LOG_FIELDS {
            assert!(envoy::ACCESS_LOG_FORMAT.contains(&format!(" {f}=")), "envoy lacks {f}");
            assert!(nginx::LOG_FORMAT.contains(&format!(" {f}=")), "nginx lacks {f}");
        }
        let text = r#"{"servers": [{"default_log_level": "DEBUG", "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]}],
          "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true, "log_path": "/var/log/mosn/l.log",
            "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}]}"#;
        let mut d = crate::config::reader::Diagnostics::default();
        let cfg = crate::config::MosnConfig::parse(text, &mut d);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(cfg.log_level, Some(1));
        assert!(envoy::generate(&cfg, &opts()).contains("path: \"/var/log/mosn/l.log\""));
        assert!(nginx::generate(&cfg, &opts(), false).contains("access_log \"/var/log/mosn/l.log\" mosn;"));
    }
    use crate::config::{reader::Diagnostics, MosnConfig};

    const CONFIG: &str = r#"{"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
        "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]}],
      "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "a", "hosts": [{"address": "127.0.0.1:2"}]},
                                       {"name": "b", "connect_timeout": "300ms", "hosts": [{"address": "127.0.0.1:3"}]}]}}"#;

    fn opts() -> HostOptions {
        HostOptions { config_path: "/m.json".into(), work_dir: "/w".into(), module_dir: "/o".into(), concurrency: 2, admin_port: 0 }
    }

    #[test]
    fn both_hosts_get_mosns_connect_timeout_and_no_host_limits() {
        let mut d = Diagnostics::default();
        let cfg = MosnConfig::parse(CONFIG, &mut d);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let envoy = envoy::generate(&cfg, &opts());
        // MOSN's default 10 s, and a cluster's own value.
        assert!(envoy.contains("connect_timeout: 10.000s") && envoy.contains("connect_timeout: 0.300s"), "{envoy}");
        // Envoy's default circuit breakers (3 concurrent retries) must not decide.
        assert_eq!(envoy.matches("max_retries: 1000000000").count(), 3, "two clusters and the one for added clusters");
        // No route retries on status here: no per-attempt upstream filter (only the cluster
        // for clusters a reload adds has it, for any route).
        let added = envoy.find(&format!("- name: \"{}\"", envoy::ADDED_CLUSTERS)).unwrap();
        assert!(!envoy[..added].contains("mosn_attempt"));
        let nginx = nginx::generate(&cfg, &opts(), false);
        assert!(nginx.contains("proxy_connect_timeout 10s;"), "{nginx}");
        assert!(nginx.contains("proxy_set_header Host $http_host;"), "the Host keeps its port");
    }

    #[test]
    fn the_upstream_filter_goes_where_a_status_can_be_retried() {
        let with_retry = CONFIG.replace(r#""cluster_name": "a"}"#, r#""cluster_name": "a", "retry_policy": {"retry_on": true}}"#);
        let mut d = Diagnostics::default();
        let cfg = MosnConfig::parse(&with_retry, &mut d);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let envoy = envoy::generate(&cfg, &opts());
        let a = envoy.find("- name: \"a\"").unwrap();
        let b = envoy.find("- name: \"b\"").unwrap();
        assert_eq!(envoy[a..b].matches("mosn_attempt").count(), 2, "cluster a has the filter");
        let added = envoy.find(&format!("- name: \"{}\"", envoy::ADDED_CLUSTERS)).unwrap();
        assert!(!envoy[b..added].contains("mosn_attempt"), "cluster b has not");
    }
}
