//! Configs as `mosn-ext check` and the hosts load them (`Engine::load`): MOSN configs that
//! MOSN runs are accepted with MOSN's meaning; everything else is refused naming the exact
//! JSON path of the offending field.

use mosn_extension::headers::{Header, Headers};
use mosn_extension::{Action, Engine};
use serde_json::{json, Value};

/// A valid base config; each case patches one field of it.
fn base() -> Value {
    json!({
      "servers": [{
        "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
          {"match": {"prefix": "/", "headers": [{"name": "x-mosn-on-envoy-unit", "value": "s1"}]}, "route": {"cluster_name": "s1"}},
          {"match": {"prefix": "/"}, "route": {"cluster_name": "s2", "timeout": "3s", "retry_policy": {"retry_on": true, "num_retries": 2}}}
        ]}]}],
        "listeners": [{"name": "l", "address": "127.0.0.1:2990", "bind_port": true,
          "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
          "stream_filters": [
            {"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}},
            {"type": "fault", "config": {"delay": {"fixed_delay": "1s", "percentage": 10}}}
          ]}]
      }],
      "cluster_manager": {"clusters": [
        {"name": "s1", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": "127.0.0.1:3450", "weight": 2, "metadata": {"filter_metadata": {"mosn.lb": {"unit": "s1"}}}}]},
        {"name": "s2", "hosts": [{"address": "127.0.0.1:3452"}]}
      ]}
    })
}

/// Sets the field at a JSON pointer, adding it to its parent object (or array) if absent.
fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let parent = v.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match parent {
        Value::Object(m) => {
            m.insert(key.to_string(), new);
        }
        Value::Array(a) => {
            let i = key.parse::<usize>().expect("index");
            if i == a.len() {
                a.push(new);
            } else {
                a[i] = new;
            }
        }
        other => panic!("{pointer}: parent is {other}"),
    }
}

fn load(v: &Value) -> Result<Engine, mosn_extension::config::ConfigErrors> {
    Engine::load(&v.to_string())
}

const L: &str = "/servers/0/listeners/0";
const LP: &str = "servers[0].listeners[0]";
const R: &str = "/servers/0/routers/0/virtual_hosts/0/routers";
const RP: &str = "servers[0].routers[0].virtual_hosts[0].routers";
const C: &str = "/cluster_manager/clusters";
const CP: &str = "cluster_manager.clusters";

#[test]
fn the_base_config_is_valid() {
    let e = load(&base()).expect("valid");
    assert_eq!(e.config.listeners[0].router_config_name.as_deref(), Some("r"));
    assert_eq!(e.config.clusters[0].hosts[0].weight, 2);
    assert_eq!(e.config.clusters[0].hosts[0].metadata, vec![("unit".to_string(), "s1".to_string())]);
    assert!(e.notes.is_empty(), "{:?}", e.notes);
}

/// `(JSON pointer, new value, JSON path of the error, text in the message)`.
type Case = (String, Value, String, &'static str);

fn refused() -> Vec<Case> {
    let c = |p: &str, v: Value, path: &str, why: &'static str| (p.to_string(), v, path.to_string(), why);
    vec![
        c(&format!("{C}/1/hosts/0/address"), json!("127.0.0.1"), &format!("{CP}[1].hosts[0].address"), "\"127.0.0.1\" has no port"),
        c(&format!("{C}/1/hosts/0/address"), json!("localhost:80"), &format!("{CP}[1].hosts[0].address"), "is not an IP address"),
        c(&format!("{C}/1/hosts/0/address"), json!("127.0.0.1:0"), &format!("{CP}[1].hosts[0].address"), "port 0"),
        c(&format!("{C}/0/hosts/0/weight"), json!("2"), &format!("{CP}[0].hosts[0].weight"), "expected an integer"),
        c(&format!("{C}/0/lb_type"), json!("LB_ROUNDROBINN"), &format!("{CP}[0].lb_type"), "did you mean \"LB_ROUNDROBIN\""),
        c(
            &format!("{L}/stream_filters/0"),
            json!({"type": "gzip", "config": {"gzip_level": 10}}),
            "servers[0].listeners[0].stream_filters[0].config.gzip_level",
            "out of range",
        ),
        c(
            &format!("{L}/stream_filters/0"),
            json!({"type": "gzip", "config": {"content_types": ["text plain"]}}),
            "servers[0].listeners[0].stream_filters[0].config.content_types[0]",
            "expected a media type",
        ),
        c(&format!("{C}/0/lb_type"), json!("LB_ORIGINAL_DST"), &format!("{CP}[0].lb_type"), "not supported yet"),
        c(
            &format!("{C}/0/lbconfig"),
            json!({"choice_count": 2, "server_error_bias": 1.5}),
            &format!("{CP}[0].lbconfig.server_error_bias"),
            "not supported yet",
        ),
        c(
            &format!("{C}/0/lbconfig"),
            json!({"active_request_bias": -1}),
            &format!("{CP}[0].lbconfig.active_request_bias"),
            "expected a number",
        ),
        c(&format!("{C}/0/type"), json!("ORIGINAL_DST"), &format!("{CP}[0].type"), "not supported yet"),
        c(&format!("{C}/1/name"), json!("s1"), &format!("{CP}[1].name"), "defined twice"),
        c(
            &format!("{C}/0/hosts/0/metadata/filter_metadata/mosn.lb/unit"),
            json!(1),
            &format!("{CP}[0].hosts[0].metadata.filter_metadata.mosn.lb.unit"),
            "expected a string",
        ),
        c(&format!("{C}/0/lb_typ"), json!("LB_RANDOM"), &format!("{CP}[0].lb_typ"), "unknown field \"lb_typ\" (did you mean \"lb_type\"?)"),
        // Fields MOSN has that are not implemented yet: refused, never ignored.
        c(&format!("{C}/0/tls_context"), json!({"status": true}), &format!("{CP}[0].tls_context"), "needs server_name"),
        c(
            &format!("{C}/0/tls_context"),
            json!({"status": true, "insecure_skip": true, "alpn": "h2"}),
            &format!("{CP}[0].tls_context.alpn"),
            "not supported yet",
        ),
        c(
            &format!("{C}/0/tls_context"),
            json!({"status": true, "insecure_skip": true, "verify_client": true}),
            &format!("{CP}[0].tls_context.verify_client"),
            "a server's",
        ),
        c(&format!("{C}/0/circuit_breakers"), json!({"max_requests": 10}), &format!("{CP}[0].circuit_breakers"), "expected an array"),
        c(
            &format!("{C}/0/circuit_breakers"),
            json!([{"max_request": 10}]),
            &format!("{CP}[0].circuit_breakers[0].max_request"),
            "did you mean \"max_requests\"",
        ),
        c(
            &format!("{C}/0/circuit_breakers"),
            json!([{"max_requests": -1}]),
            &format!("{CP}[0].circuit_breakers[0].max_requests"),
            "expected an integer",
        ),
        c(
            &format!("{C}/0/health_check"),
            json!({"service_name": "s1", "protocol": "Http1", "check_config": {"http_check_config": {"scheme": "https"}}}),
            &format!("{CP}[0].health_check.check_config.http_check_config.scheme"),
            "only http",
        ),
        c(
            &format!("{C}/0/health_check"),
            json!({"service_name": "s1", "check_config": {"http_check_config": {"codes": [{"start": 200}]}}}),
            &format!("{CP}[0].health_check.check_config.http_check_config.codes[0]"),
            "expected {\"start\"",
        ),
        c(
            &format!("{C}/0/health_check"),
            json!({"service_name": "s1", "interval": "5"}),
            &format!("{CP}[0].health_check.interval"),
            "not a duration",
        ),
        c(
            &format!("{C}/0/health_check"),
            json!({"service_name": "s1", "common_callbacks": ["x"]}),
            &format!("{CP}[0].health_check.common_callbacks"),
            "not supported yet",
        ),
        c(
            &format!("{C}/0/lb_subset_config"),
            json!({"fall_back_policy": 3, "subset_selectors": [["unit"]]}),
            &format!("{CP}[0].lb_subset_config.fall_back_policy"),
            "expected 0 (NO_FALLBACK)",
        ),
        c(
            &format!("{C}/0/lb_subset_config"),
            json!({"fall_back_policy": 2, "subset_selectors": [["unit"]]}),
            &format!("{CP}[0].lb_subset_config.fall_back_policy"),
            "needs a default_subset",
        ),
        c(
            &format!("{C}/0/lb_subset_config"),
            json!({"subset_selectors": ["unit"]}),
            &format!("{CP}[0].lb_subset_config.subset_selectors[0]"),
            "expected a non-empty array",
        ),
        c(
            &format!("{R}/1/route/metadata_match"),
            json!({"filter_metadata": {"mosn.lb": {"a": "b"}}}),
            &format!("{RP}[1].route.cluster_name"),
            "has no lb_subset_config",
        ),
        c(
            &format!("{R}/1/route/metadata_match"),
            json!({"filter_metadata": {"envoy.lb": {"a": "b"}}}),
            &format!("{RP}[1].route.metadata_match.filter_metadata.envoy.lb"),
            "only the \"mosn.lb\" namespace",
        ),
        c(
            &format!("{R}/1/route/hash_policy"),
            json!([{"header": {"key": "uid"}, "source_ip": {}}]),
            &format!("{RP}[1].route.hash_policy[0]"),
            "exactly one of",
        ),
        c(
            &format!("{R}/1/route/hash_policy"),
            json!([{"cookie": {}}]),
            &format!("{RP}[1].route.hash_policy[0].cookie.name"),
            "is required",
        ),
        c(&format!("{R}/1/redirect"), json!({"path_redirect": "/x"}), &format!("{RP}[1]"), "takes one action"),
        c(
            &format!("{R}/1"),
            json!({"match": {"prefix": "/"}, "redirect": {"response_code": 300}}),
            &format!("{RP}[1].redirect.response_code"),
            "not a redirect code",
        ),
        c(
            &format!("{R}/1"),
            json!({"match": {"prefix": "/"}, "redirect": {"scheme_redirect": "1http"}}),
            &format!("{RP}[1].redirect.scheme_redirect"),
            "not a URI scheme",
        ),
        c(
            &format!("{R}/1"),
            json!({"match": {"prefix": "/"}, "redirect": {"path_redirect": "x"}}),
            &format!("{RP}[1].redirect.path_redirect"),
            "must start with /",
        ),
        c(
            &format!("{R}/1/match"),
            json!({"variables": [{"name": "x-mosn-nope", "value": "b"}]}),
            &format!("{RP}[1].match.variables[0].name"),
            "not a MOSN HTTP variable",
        ),
        c(
            &format!("{R}/1/match"),
            json!({"variables": [{"name": "x-mosn-method", "regex": "(["}]}),
            &format!("{RP}[1].match.variables[0].regex"),
            "invalid regex",
        ),
        c(
            &format!("{R}/1/match"),
            json!({"variables": [{"name": "x-mosn-method", "value": "GET", "model": "xor"}]}),
            &format!("{RP}[1].match.variables[0].model"),
            "not a model",
        ),
        c(
            &format!("{R}/1/match"),
            json!({"prefix": "/", "variables": [{"name": "x-mosn-method", "value": "GET"}]}),
            &format!("{RP}[1].match"),
            "set only one of prefix, path, regex, variables",
        ),
        c(
            &format!("{R}/1/per_filter_config"),
            json!({"metadata": {}}),
            &format!("{RP}[1].per_filter_config.metadata"),
            "takes no per-route config",
        ),
        c(
            &format!("{R}/1/per_filter_config"),
            json!({"fault": {"abort": {"status": 1, "percentage": 1}}}),
            &format!("{RP}[1].per_filter_config.fault.abort.status"),
            "not a final HTTP status",
        ),
        c(
            &format!("{R}/1/route/regex_rewrite"),
            json!({"pattern": {"regex": "(["}, "substitution": "x"}),
            &format!("{RP}[1].route.regex_rewrite.pattern.regex"),
            "invalid regex",
        ),
        c(
            &format!("{R}/1/route/request_headers_to_add"),
            json!([{"header": {"key": "a b", "value": "v"}}]),
            &format!("{RP}[1].route.request_headers_to_add[0].header.key"),
            "not a valid header name",
        ),
        c(
            &format!("{R}/1/route/response_headers_to_remove"),
            json!([3]),
            &format!("{RP}[1].route.response_headers_to_remove[0]"),
            "not a header name",
        ),
        c(
            "/servers/0/routers/0/virtual_hosts/1",
            json!({"name": "w", "domains": ["*"], "routers": []}),
            "servers[0].routers[0].virtual_hosts[1].domains[0]",
            "a second default virtual host",
        ),
        c(
            "/servers/0/routers/0/virtual_hosts/1",
            json!({"name": "w", "domains": ["a.com", "A.com"], "routers": []}),
            "servers[0].routers[0].virtual_hosts[1].domains[1]",
            "listed twice",
        ),
        // Listeners.
        c(&format!("{L}/stream_filters/0/type"), json!("metadat"), &format!("{LP}.stream_filters[0].type"), "unknown filter \"metadat\""),
        c(
            &format!("{L}/stream_filters/0/type"),
            json!("transcoder"),
            &format!("{LP}.stream_filters[0].type"),
            "filter \"transcoder\" is not supported yet",
        ),
        c(
            &format!("{L}/stream_filters/0/config/metadataers/0/meta_data_key"),
            json!("UNITS"),
            &format!("{LP}.stream_filters[0].config.metadataers[0].meta_data_key"),
            "unknown metadata driver \"UNITS\"",
        ),
        c(
            &format!("{L}/stream_filters/0/config/metadataers/0/config/unit_key"),
            json!("u id"),
            &format!("{LP}.stream_filters[0].config.metadataers[0].config.unit_key"),
            "not a valid header name",
        ),
        c(
            &format!("{L}/stream_filters/0/config/metadataers/0/config/unit_kye"),
            json!("x"),
            &format!("{LP}.stream_filters[0].config.metadataers[0].config.unit_kye"),
            "did you mean \"unit_key\"",
        ),
        c(
            &format!("{L}/stream_filters/0/config/case_sensitive"),
            json!("yes"),
            &format!("{LP}.stream_filters[0].config.case_sensitive"),
            "expected true or false",
        ),
        c(
            &format!("{L}/stream_filters/1/config/delay/fixed_delay"),
            json!("1 sec"),
            &format!("{LP}.stream_filters[1].config.delay.fixed_delay"),
            "is not a duration",
        ),
        c(
            &format!("{L}/stream_filters/1/config/abort"),
            json!({"status": 99, "percentage": 10}),
            &format!("{LP}.stream_filters[1].config.abort.status"),
            "not a final HTTP status",
        ),
        c(
            &format!("{L}/stream_filters/1/config/upstream_cluster"),
            json!("nope"),
            &format!("{LP}.stream_filters[1].config.upstream_cluster"),
            "cluster \"nope\" does not exist",
        ),
        c(&format!("{L}/address"), json!("2990"), &format!("{LP}.address"), "not an ip:port"),
        c(&format!("{L}/bind_port"), json!(false), &format!("{LP}.bind_port"), "must be true"),
        c(&format!("{L}/network"), json!("udp"), &format!("{LP}.network"), "not supported yet"),
        c(
            &format!("{L}/filter_chains/0/tls_context"),
            json!({"status": true, "cert_chain": "x"}),
            &format!("{LP}.filter_chains[0].tls_context.cert_chain"),
            "neither PEM text",
        ),
        c(&format!("{L}/filter_chains/1"), json!({"filters": []}), &format!("{LP}.filter_chains"), "exactly one"),
        c(
            &format!("{L}/filter_chains/0/filters/0/type"),
            json!("tcp_proxy"),
            &format!("{LP}.filter_chains[0].filters[0].type"),
            "network filter \"tcp_proxy\" is not supported",
        ),
        c(
            &format!("{L}/filter_chains/0/filters/0/config/downstream_protocol"),
            json!("Http3"),
            &format!("{LP}.filter_chains[0].filters[0].config.downstream_protocol"),
            "not supported yet",
        ),
        c(
            &format!("{L}/filter_chains/0/filters/0/config/downstream_protocol"),
            json!(""),
            &format!("{LP}.filter_chains[0].filters[0].config.downstream_protocol"),
            "is required",
        ),
        c(
            &format!("{L}/filter_chains/0/filters/0/config/router_config_name"),
            json!("rr"),
            &format!("{LP}.filter_chains[0].filters[0].config.router_config_name"),
            "router \"rr\" does not exist",
        ),
        c("/servers/1", json!({}), "servers", "exactly one"),
        // Routes.
        c(&format!("{R}/0/route/cluster_name"), json!("s9"), &format!("{RP}[0].route.cluster_name"), "cluster \"s9\" does not exist"),
        c(&format!("{R}/1/route/timeout"), json!(3), &format!("{RP}[1].route.timeout"), "expected a string"),
        c(
            &format!("{R}/1/route/retry_policy/retry_on"),
            json!("true"),
            &format!("{RP}[1].route.retry_policy.retry_on"),
            "expected true or false",
        ),
        c(
            &format!("{R}/1/route/retry_policy/num_retries"),
            json!(-1),
            &format!("{RP}[1].route.retry_policy.num_retries"),
            "expected an integer",
        ),
        c(&format!("{R}/1/route/upstream_protocol"), json!("Http2"), &format!("{RP}[1].route.upstream_protocol"), "not supported yet"),
        c(&format!("{R}/1/match/regex"), json!("(["), &format!("{RP}[1].match"), "set only one of prefix, path, regex"),
        c(&format!("{R}/1/match"), json!({"regex": "(["}), &format!("{RP}[1].match.regex"), "invalid regex"),
        c(&format!("{R}/1/match"), json!({"prefix": "/a", "path": "/b"}), &format!("{RP}[1].match"), "has prefix and path"),
        c(&format!("{R}/1/match"), json!({"path": ""}), &format!("{RP}[1].match.path"), "must not be empty"),
        c(
            &format!("{R}/0/match/headers/0"),
            json!({"name": "x", "value": "([", "regex": true}),
            &format!("{RP}[0].match.headers[0].value"),
            "invalid regex",
        ),
        c(&format!("{R}/1/route"), json!({}), &format!("{RP}[1].route.cluster_name"), "is required"),
        c(
            &format!("{R}/1/route"),
            json!({"weighted_clusters": [{"cluster": {"name": "s1", "weight": 0}}]}),
            &format!("{RP}[1].route.weighted_clusters"),
            "all weights are 0",
        ),
        c(
            &format!("{R}/1/route"),
            json!({"weighted_clusters": [{"cluster": {"name": "zz", "weight": 1}}]}),
            &format!("{RP}[1].route.weighted_clusters[0].cluster.name"),
            "cluster \"zz\" does not exist",
        ),
        c(
            &format!("{R}/1"),
            json!({"match": {"prefix": "/"}}),
            &format!("{RP}[1]"),
            "needs \"route\", \"direct_response\" or \"redirect\"",
        ),
        c(
            &format!("{R}/1"),
            json!({"match": {"prefix": "/"}, "direct_response": {"status": 700}}),
            &format!("{RP}[1].direct_response.status"),
            "out of range",
        ),
        c(
            "/servers/0/routers/0/virtual_hosts/0/domains",
            json!([""]),
            "servers[0].routers[0].virtual_hosts[0].domains[0]",
            "non-empty string",
        ),
        c(
            "/servers/0/routers/0/virtual_hosts/0/domains",
            json!([]),
            "servers[0].routers[0].virtual_hosts[0].domains",
            "at least one domain",
        ),
        c("/servers", json!({}), "servers", "expected an array"),
        c("/cluster_manager", json!([]), "cluster_manager", "expected an object"),
        c("/dynamic_resources", json!({"lds_config": {}}), "dynamic_resources", "not supported yet"),
        // A route turns a filter off with {"disable": true} and nothing else; only a filter
        // that runs once the route is known (metadata runs before routing).
        c(
            &format!("{R}/1/per_filter_config"),
            json!({"metadata": {"disable": true}}),
            &format!("{RP}[1].per_filter_config.metadata"),
            "runs before routing",
        ),
        c(
            &format!("{R}/1/per_filter_config"),
            json!({"fault": {"disable": false}}),
            &format!("{RP}[1].per_filter_config.fault.disable"),
            "expected true",
        ),
        c(
            &format!("{R}/1/per_filter_config"),
            json!({"fault": {"disable": true, "delay": {}}}),
            &format!("{RP}[1].per_filter_config.fault"),
            "no other field",
        ),
        c(
            &format!("{R}/1/per_filter_config"),
            json!({"faults": {"disable": true}}),
            &format!("{RP}[1].per_filter_config.faults"),
            "did you mean \"fault\"",
        ),
        c(
            &format!("{L}/stream_filters/1"),
            json!({"type": "body_rewrite", "config": {"request_rules": [{"from": ""}]}}),
            "servers[0].listeners[0].stream_filters[1].config.request_rules[0].from",
            "must not be empty",
        ),
        c(
            &format!("{L}/stream_filters/0/config/metadataers/0/config/body_key"),
            json!(""),
            "servers[0].listeners[0].stream_filters[0].config.metadataers[0].config.body_key",
            "empty key",
        ),
    ]
}

#[test]
fn bad_configs_name_the_field() {
    for (pointer, value, path, reason) in refused() {
        let mut v = base();
        set(&mut v, &pointer, value.clone());
        let errs = load(&v).err().unwrap_or_else(|| panic!("{pointer} = {value}: accepted, expected an error at {path}"));
        assert!(
            errs.0.iter().any(|e| e.path == path && e.message.contains(reason)),
            "{pointer} = {value}: want `{path}: …{reason}…`, got: {errs}"
        );
    }
}

/// Configs MOSN runs, accepted with MOSN's meaning (the second value: a note path, if any).
#[test]
fn configs_mosn_runs_are_accepted() {
    let ok: Vec<(String, Value, Option<&str>)> = vec![
        // A listener without a name is named by its address.
        (format!("{L}/name"), Value::Null, None),
        (format!("{L}/name"), json!(""), None),
        // A cluster with no hosts (its requests get 502, no healthy upstream).
        (format!("{C}/1/hosts"), json!([]), None),
        (format!("{C}/1/hosts"), Value::Null, None),
        // A route turns the fault filter off.
        (format!("{R}/1/per_filter_config"), json!({"fault": {"disable": true}}), None),
        // The fault filter as MOSN's own tests write it.
        (format!("{L}/stream_filters/1/config"), json!({}), None),
        (format!("{L}/stream_filters/1/config"), Value::Null, None),
        (
            format!("{L}/stream_filters/1/config"),
            json!({"abort": {"status": 0, "percentage": 0}, "delay": {"fixed_delay": "0s", "percentage": 100}}),
            None,
        ),
        // Host weights are clamped into 1..=128, as MOSN does.
        (format!("{C}/0/hosts/0/weight"), json!(0), None),
        (format!("{C}/0/hosts/0/weight"), json!(1000), None),
        // Blocks that ask for nothing.
        (format!("{C}/0/tls_context"), json!({"status": false, "server_name": "x"}), None),
        (format!("{C}/0/circuit_breakers"), json!([]), None),
        (format!("{C}/0/circuit_breakers"), json!([{"max_connections": 0, "max_requests": 0}]), None),
        (
            format!("{C}/0/circuit_breakers"),
            json!([{"max_connections": 10, "max_pending_requests": 5, "max_requests": 100, "max_retries": 3}]),
            Some("cluster_manager.clusters[0].circuit_breakers[0].max_pending_requests"),
        ),
        (format!("{C}/0/health_check"), json!({"interval": "5s"}), Some("cluster_manager.clusters[0].health_check")),
        (
            format!("{C}/0/health_check"),
            json!({"protocol": "Http1", "service_name": "s1", "interval": "5s", "unhealthy_threshold": 2,
                   "check_config": {"http_check_config": {"path": "/", "method": "GET", "codes": [{"start": 200, "end": 299}]}}}),
            None,
        ),
        (format!("{C}/0/lb_type"), json!("LB_MAGLEV"), None),
        (format!("{C}/0/lbconfig"), json!({"choice_count": 3, "active_request_bias": 0.5}), None),
        (format!("{C}/0/lb_subset_config"), json!({"fall_back_policy": 1, "subset_selectors": [["unit"]]}), None),
        (format!("{C}/0/lb_subset_config"), json!({"fall_back_policy": 1}), Some("cluster_manager.clusters[0].lb_subset_config")),
        (format!("{C}/0/idle_timeout"), json!("90s"), None),
        (format!("{R}/1/route/prefix_rewrite"), json!(""), None),
        (format!("{R}/1/route/request_headers_to_add"), json!([]), None),
        (format!("{R}/1/route/hash_policy"), json!([{"header": {"key": "uid"}}]), None),
        (
            format!("{R}/1/route/hash_policy"),
            json!([{"source_ip": {}}, {"cookie": {"name": "sid"}}]),
            Some("servers[0].routers[0].virtual_hosts[0].routers[1].route.hash_policy[1]"),
        ),
        (format!("{L}/filter_chains/0/tls_context"), json!({"status": false}), None),
        // Regexes compile exactly as written (an inline comment cannot break anything).
        (format!("{R}/1/match"), json!({"regex": "(?x)/admin#"}), None),
        // Fields that change nothing here are noted, not refused.
        // MOSN's admin API and prometheus sink are served (no note).
        ("/admin".to_string(), json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}}), None),
        (
            "/metrics".to_string(),
            json!({"shm_zone": "", "sinks": [{"type": "prometheus", "config": {"port": 34903}}]}),
            Some("metrics.shm_zone"),
        ),
        ("/servers/0/default_log_path".to_string(), json!("stdout"), Some("servers[0].default_log_path")),
        (format!("{C}/0/max_request_per_conn"), json!(100), Some("cluster_manager.clusters[0].max_request_per_conn")),
        // MOSN: a weighted list wins over cluster_name.
        (
            format!("{R}/1/route/weighted_clusters"),
            json!([{"cluster": {"name": "s1", "weight": 1}}]),
            Some("servers[0].routers[0].virtual_hosts[0].routers[1].route.cluster_name"),
        ),
    ];
    for (pointer, value, note) in ok {
        let mut v = base();
        if value.is_null() {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
        } else {
            set(&mut v, &pointer, value.clone());
        }
        let e = load(&v).unwrap_or_else(|errs| panic!("{pointer} = {value}: refused: {errs}"));
        if let Some(note) = note {
            assert!(e.notes.iter().any(|(p, _)| p == note), "{pointer} = {value}: no note at {note}: {:?}", e.notes);
        }
    }
}

#[test]
fn a_listener_without_a_name_is_named_by_its_address() {
    let mut v = base();
    v["servers"][0]["listeners"][0].as_object_mut().unwrap().remove("name");
    let e = load(&v).unwrap();
    assert_eq!(e.listeners[0].name, "127.0.0.1:2990");
    assert_eq!(e.listener_index(Some("127.0.0.1:2990")), Some(0));
}

#[test]
fn invalid_json_reports_line_and_column() {
    let errs = Engine::load("{\n  \"servers\": [,]\n}").err().unwrap();
    assert!(errs.0[0].message.contains("line 2"), "{errs}");
}

#[test]
fn unit_key_defaults_to_userid() {
    let mut v = base();
    v["servers"][0]["listeners"][0]["stream_filters"][0]["config"]["metadataers"][0]["config"] = json!({});
    v["servers"][0]["listeners"][0]["stream_filters"].as_array_mut().unwrap().truncate(1); // no random fault delay
    let e = std::sync::Arc::new(load(&v).unwrap());
    let mut s = e.new_stream(0, None).unwrap();
    let hs = [Header { name: b":path", value: b"/" }, Header { name: b"userid", value: b"2" }];
    assert_eq!(s.request_headers(&Headers(&hs), true), Action::Continue);
    assert_eq!(s.metadata("unit"), Some("s1"));
}

#[test]
fn the_readme_lists_every_field_as_the_table_says() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let begin = "<!-- config-fields:begin (generated: mosn-ext fields --markdown) -->\n";
    let end = "<!-- config-fields:end -->";
    let (Some(b), Some(e)) = (readme.find(begin), readme.find(end)) else {
        panic!("README.md lacks the {begin:?} … {end:?} block");
    };
    let have = &readme[b + begin.len()..e];
    let want = mosn_extension::config::fields::markdown();
    assert!(have == want, "README.md's field reference differs from the field table: run `make readme-fields`");
}
