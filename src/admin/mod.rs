//! MOSN's admin API (`admin.address`), served by the host on its own port (an Envoy listener
//! whose only filter is the module, an nginx `server` with `mosn_admin`): the same answers on
//! both, computed here.
//!
//! - `GET /api/v1/config_dump` the loaded MOSN JSON (`?allclusters`, `?allrouters`,
//!   `?alllisteners`: one part of it);
//! - `GET /api/v1/stats` the counters as JSON (`downstream` by listener, `upstream` by
//!   cluster, with each host's counters and health);
//! - `GET /api/v1/get_loglevel`, `POST /api/v1/update_loglevel` `{"log_level": "DEBUG"}`
//!   (the library's level in the process that answers);
//! - `GET /api/v1/states` (`{"state": "Running"}`), `GET /api/v1/version`.

use crate::engine::Engine;
use serde_json::{json, Value};

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response { status, body: format!("{v}\n") }
    }
    fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &json!({ "error": msg }))
    }
}

const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// A host's reload of the config: `Ok(true)` swapped in a changed config, `Ok(false)`
/// found it unchanged, `Err` refused it (one line per error, with its JSON path).
pub type Reload<'a> = &'a dyn Fn() -> Result<bool, Vec<String>>;

/// The answer to `method` `target` (path and query) with request `body`.
pub fn serve(engine: &Engine, method: &str, target: &str, body: &[u8]) -> Response {
    serve_with_reload(engine, method, target, body, None)
}

/// [`serve`], plus `POST /api/v1/reload` where the host can reload in place (Envoy); on a
/// host that reloads by itself (`nginx -s reload`) that path says so.
pub fn serve_with_reload(engine: &Engine, method: &str, target: &str, body: &[u8], reload: Option<Reload<'_>>) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let get = method == "GET" || method == "HEAD";
    match (path, get) {
        ("/api/v1/reload", false) if method == "POST" || method == "PUT" => match reload {
            None => Response::error(501, "this host reloads the config itself (nginx: nginx -s reload)"),
            Some(f) => match f() {
                Ok(changed) => Response::json(200, &json!({ "reloaded": changed })),
                Err(errors) => {
                    Response::json(400, &json!({ "error": "reload refused; the running config keeps serving", "errors": errors }))
                }
            },
        },
        ("/api/v1/config_dump", true) => config_dump(engine, query),
        ("/api/v1/stats", true) => Response::json(200, &stats(engine)),
        ("/api/v1/get_loglevel", true) => {
            let level = LEVELS[(crate::logging::level() as usize).min(4)];
            Response::json(200, &json!({ "log_level": level }))
        }
        ("/api/v1/update_loglevel", false) if method == "POST" || method == "PUT" => update_loglevel(body),
        ("/api/v1/states", true) => Response::json(200, &json!({ "state": "Running" })),
        ("/api/v1/version", true) => Response::json(200, &json!({ "version": env!("CARGO_PKG_VERSION") })),
        ("/api/v1/config_dump" | "/api/v1/stats" | "/api/v1/get_loglevel" | "/api/v1/states" | "/api/v1/version", false)
        | ("/api/v1/update_loglevel" | "/api/v1/reload", true) => Response::error(405, "method not allowed"),
        _ => Response::error(404, "no such admin path"),
    }
}

fn config_dump(engine: &Engine, query: &str) -> Response {
    let raw = &engine.config.raw;
    let servers = |key: &str| -> Value {
        let all: Vec<Value> =
            raw["servers"].as_array().into_iter().flatten().flat_map(|s| s[key].as_array().cloned().unwrap_or_default()).collect();
        Value::Array(all)
    };
    let v = match query.split('&').next().unwrap_or("") {
        "" => json!({ "mosn_config": raw }),
        "allclusters" => json!({ "clusters": raw["cluster_manager"]["clusters"] }),
        "allrouters" => json!({ "routers": servers("routers") }),
        "alllisteners" => json!({ "listeners": servers("listeners") }),
        other => return Response::error(400, &format!("unknown config_dump query \"{other}\" (allclusters, allrouters, alllisteners)")),
    };
    Response::json(200, &v)
}

fn stats(engine: &Engine) -> Value {
    let mut downstream = serde_json::Map::new();
    for l in &engine.listeners {
        let s = l.counters.stats();
        let mut m = json!({
            "request_total": s.request_total,
            "request_active": s.request_active,
            "request_failed": s.request_failed,
            "request_other_code": s.other_code,
        });
        for (code, n) in &s.codes {
            m[format!("request_{code}_total")] = json!(n);
        }
        downstream.insert(l.name.clone(), m);
    }
    let mut upstream = serde_json::Map::new();
    for c in &engine.clusters {
        let s = c.stats();
        // As the metrics: a STRICT_DNS slot without an address is no host.
        let hosts: Vec<Value> = c
            .hosts
            .iter()
            .filter_map(|h| {
                let (_, address) = h.current()?;
                Some(json!({
                    "address": address,
                    "healthy": h.is_healthy(),
                    "request_total": h.state.requests(),
                    "request_active": h.state.active(),
                    "response_failed": h.state.response_failed(),
                    "ejections": h.state.ejections(),
                }))
            })
            .collect();
        upstream.insert(
            c.name.to_string(),
            json!({
                "request_total": s.rq_total,
                "request_active": s.rq_active,
                "request_retry": s.retry_total,
                "request_retry_overflow": s.retry_overflow,
                "request_pending_overflow": s.rq_overflow,
                "hosts": hosts,
            }),
        );
    }
    json!({ "downstream": downstream, "upstream": upstream })
}

fn update_loglevel(body: &[u8]) -> Response {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Response::error(400, &format!("the body is not JSON ({e}); want {{\"log_level\": \"DEBUG\"}}")),
    };
    let Some(want) = v.get("log_level").and_then(Value::as_str) else {
        return Response::error(400, "want {\"log_level\": \"TRACE|DEBUG|INFO|WARN|ERROR\"}");
    };
    let Some(i) = LEVELS.iter().position(|l| l.eq_ignore_ascii_case(want)) else {
        return Response::error(400, &format!("unknown log level \"{want}\" (TRACE, DEBUG, INFO, WARN, ERROR)"));
    };
    crate::logging::set_level(i as u32);
    tracing::info!(level = LEVELS[i], "log level changed through the admin API");
    Response::json(200, &json!({ "log_level": LEVELS[i] }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_answer_like_mosn() {
        let text = include_str!("../../examples/unit-routing/mosn.json");
        let e = Engine::load(text).unwrap();
        let r = serve(&e, "GET", "/api/v1/config_dump?allclusters", b"");
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["clusters"].as_array().is_some_and(|c| !c.is_empty()), "{v}");
        assert_eq!(serve(&e, "GET", "/api/v1/config_dump?nope", b"").status, 400);
        assert_eq!(serve(&e, "GET", "/api/v1/update_loglevel", b"").status, 405);
        assert_eq!(serve(&e, "GET", "/nope", b"").status, 404);
        // Reload: the host's own (nginx: 501), or its answer (Envoy).
        assert_eq!(serve(&e, "POST", "/api/v1/reload", b"").status, 501);
        assert_eq!(serve(&e, "GET", "/api/v1/reload", b"").status, 405);
        let refused = || Err(vec!["cluster_manager.clusters[0].hosts[0].address: no port".to_string()]);
        let r = serve_with_reload(&e, "POST", "/api/v1/reload", b"", Some(&refused));
        assert!(r.status == 400 && r.body.contains("cluster_manager.clusters[0].hosts[0].address"), "{}", r.body);
        let done = || Ok(true);
        assert_eq!(serve_with_reload(&e, "POST", "/api/v1/reload", b"", Some(&done)).body.trim(), r#"{"reloaded":true}"#);
        assert_eq!(serve(&e, "POST", "/api/v1/update_loglevel", b"{\"log_level\": \"LOUD\"}").status, 400);
        let stats: Value = serde_json::from_str(&serve(&e, "GET", "/api/v1/stats", b"").body).unwrap();
        assert!(stats["upstream"].as_object().is_some_and(|u| !u.is_empty()), "{stats}");
    }
}
