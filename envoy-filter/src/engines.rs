//! The process-wide config registry: one [`Engine`] per MOSN config path.
//!
//! The HTTP filter config and every cluster config name the same `mosn.json`; they must
//! share one engine so that the cluster a stream was routed to (`Arc<Cluster>`) is the very
//! object the Envoy cluster extension load-balances. Envoy creates configs on the main
//! thread only, so a plain mutex is enough (it is never taken on the request path).
//!
//! An engine stays cached for the life of the process: a changed file at the same path
//! needs an Envoy restart (as a rebuilt `.so` does).

use crate::log_error;
use crate::policy::AdapterConfig;
use mosn_extension::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

static ENGINES: Mutex<BTreeMap<PathBuf, Arc<Engine>>> = Mutex::new(BTreeMap::new());

/// The engine for `path`, loading and validating the file the first time.
///
/// On failure returns one line per config error, e.g.
/// `cluster_manager.clusters[0].hosts[0].address: "127.0.0.1" has no port`; nothing is
/// cached, so a later config naming the same path reports the errors again.
pub fn engine_for(path: &Path) -> Result<Arc<Engine>, Vec<String>> {
    // A poisoned lock only means a panic elsewhere while holding it; the map is still valid.
    let mut map = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    // One engine per file, however the configs spell its path (relative, `//`, symlink):
    // the LB relies on the stream's cluster being the very object it balances.
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let path = canonical.as_path();
    if let Some(e) = map.get(path) {
        return Ok(e.clone());
    }
    match Engine::from_file(path) {
        Ok(engine) => {
            map.insert(path.to_path_buf(), engine.clone());
            Ok(engine)
        }
        Err(errors) => Err(errors.0.iter().map(|e| e.to_string()).collect()),
    }
}

/// Parses an Envoy `filter_config`/`cluster_config` (`name_key` is `"listener"` or
/// `"cluster"`) and returns it with its engine. On failure every error is logged to
/// Envoy's log (`what` names the config in the message) and `None` is returned, which
/// makes Envoy refuse the config.
pub fn load(bytes: &[u8], name_key: &str, what: &str) -> Option<(AdapterConfig, Arc<Engine>)> {
    let cfg = match AdapterConfig::parse(bytes, name_key) {
        Ok(c) => c,
        Err(e) => {
            log_error(&format!("mosn: config error: {what}: {e}"));
            return None;
        }
    };
    match engine_for(&cfg.config_path) {
        Ok(engine) => Some((cfg, engine)),
        Err(errors) => {
            for e in &errors {
                log_error(&format!("mosn: config error: {e}"));
            }
            log_error(&format!("mosn: {} rejected ({} errors)", cfg.config_path.display(), errors.len()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("mosn-envoy-test-{}-{name}.json", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = r#"{
      "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
          "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "s1"}}]}]}],
        "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true, "filter_chains": [{"filters": [{"type": "proxy",
          "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "s1", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
        "hosts": [{"address": "127.0.0.1:2"}]}]}
    }"#;

    #[test]
    fn one_engine_per_path() {
        let p = write("good", GOOD);
        let a = engine_for(&p).unwrap();
        let b = engine_for(&p).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.cluster("s1").is_some());
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn one_engine_however_the_path_is_spelled() {
        let p = write("spelled", GOOD);
        let dir = p.parent().unwrap();
        let other = dir.join(".").join(p.file_name().unwrap());
        let a = engine_for(&p).unwrap();
        let b = engine_for(&other).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn errors_name_the_json_path() {
        let p = write("bad", &GOOD.replace("127.0.0.1:2", "127.0.0.1"));
        let Err(errs) = engine_for(&p) else { panic!("bad config accepted") };
        assert!(errs.iter().any(|e| e.contains("cluster_manager.clusters[0].hosts[0].address")), "{errs:?}");
        std::fs::remove_file(p).ok();
    }
}
