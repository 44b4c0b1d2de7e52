//! Bad configs, each refused with the exact JSON path of the offending field.

use super::*;

/// A valid base config; each case patches one field of it.
fn base() -> serde_json::Value {
    serde_json::json!({
      "servers": [{
        "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
          {"match": {"prefix": "/", "headers": [{"name": "x-mosn-on-envoy-unit", "value": "s1"}]}, "route": {"cluster_name": "s1"}},
          {"match": {"prefix": "/"}, "route": {"cluster_name": "s2", "timeout": "3s", "retry_policy": {"retry_on": true, "num_retries": 2}}}
        ]}]}],
        "listeners": [{"name": "l", "address": "127.0.0.1:2990",
          "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r"}}]}],
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

/// Sets the field at a JSON pointer, adding it to its parent object if absent.
fn set(v: &mut serde_json::Value, pointer: &str, new: serde_json::Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let parent = v.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match parent {
        serde_json::Value::Object(m) => {
            m.insert(key.to_string(), new);
        }
        serde_json::Value::Array(a) => a[key.parse::<usize>().expect("index")] = new,
        other => panic!("{pointer}: parent is {other}"),
    }
}

#[test]
fn the_base_config_is_valid() {
    let cfg = MosnConfig::from_json(&base().to_string()).expect("valid");
    assert_eq!(cfg.listeners[0].router_config_name.as_deref(), Some("r"));
    assert_eq!(cfg.clusters[0].hosts[0].weight, 2);
    assert_eq!(cfg.clusters[0].hosts[0].metadata, vec![("unit".to_string(), "s1".to_string())]);
}

#[test]
fn bad_configs_name_the_field() {
    use serde_json::json;
    let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        (
            "/cluster_manager/clusters/1/hosts/0/address",
            json!("127.0.0.1"),
            "cluster_manager.clusters[1].hosts[0].address",
            "\"127.0.0.1\" has no port",
        ),
        (
            "/cluster_manager/clusters/1/hosts/0/address",
            json!("localhost:80"),
            "cluster_manager.clusters[1].hosts[0].address",
            "is not an IP address",
        ),
        ("/cluster_manager/clusters/1/hosts/0/address", json!("127.0.0.1:0"), "cluster_manager.clusters[1].hosts[0].address", "port 0"),
        ("/cluster_manager/clusters/0/hosts/0/weight", json!(0), "cluster_manager.clusters[0].hosts[0].weight", "out of range 1..=128"),
        ("/cluster_manager/clusters/0/hosts/0/weight", json!("2"), "cluster_manager.clusters[0].hosts[0].weight", "expected an integer"),
        (
            "/cluster_manager/clusters/0/lb_type",
            json!("LB_ROUNDROBINN"),
            "cluster_manager.clusters[0].lb_type",
            "did you mean \"LB_ROUNDROBIN\"",
        ),
        ("/cluster_manager/clusters/0/lb_type", json!("LB_MAGLEV"), "cluster_manager.clusters[0].lb_type", "not supported yet"),
        ("/cluster_manager/clusters/0/type", json!("STRICT_DNS"), "cluster_manager.clusters[0].type", "not supported yet"),
        ("/cluster_manager/clusters/0/hosts", json!([]), "cluster_manager.clusters[0].hosts", "is empty"),
        ("/cluster_manager/clusters/1/name", json!("s1"), "cluster_manager.clusters[1].name", "defined twice"),
        (
            "/cluster_manager/clusters/0/hosts/0/metadata/filter_metadata/mosn.lb/unit",
            json!(1),
            "cluster_manager.clusters[0].hosts[0].metadata.filter_metadata.mosn.lb.unit",
            "expected a string",
        ),
        (
            "/servers/0/listeners/0/stream_filters/0/type",
            json!("metadat"),
            "servers[0].listeners[0].stream_filters[0].type",
            "unknown filter \"metadat\"",
        ),
        (
            "/servers/0/listeners/0/stream_filters/0/config/metadataers/0/meta_data_key",
            json!("UNITS"),
            "servers[0].listeners[0].stream_filters[0].config.metadataers[0].meta_data_key",
            "unknown metadata driver \"UNITS\"",
        ),
        (
            "/servers/0/listeners/0/stream_filters/0/config/metadataers/0/config/unit_key",
            json!("u id"),
            "servers[0].listeners[0].stream_filters[0].config.metadataers[0].config.unit_key",
            "not a valid header name",
        ),
        (
            "/servers/0/listeners/0/stream_filters/0/config/case_sensitive",
            json!("yes"),
            "servers[0].listeners[0].stream_filters[0].config.case_sensitive",
            "expected true or false",
        ),
        (
            "/servers/0/listeners/0/stream_filters/1/config/delay/fixed_delay",
            json!("1 sec"),
            "servers[0].listeners[0].stream_filters[1].config.delay.fixed_delay",
            "is not a duration",
        ),
        (
            "/servers/0/listeners/0/stream_filters/1/config/delay/percentage",
            json!(101),
            "servers[0].listeners[0].stream_filters[1].config.delay.percentage",
            "out of range",
        ),
        (
            "/servers/0/listeners/0/stream_filters/1/config",
            json!({}),
            "servers[0].listeners[0].stream_filters[1].config",
            "needs \"delay\" or \"abort\"",
        ),
        (
            "/servers/0/listeners/0/stream_filters/1/config/abort",
            json!({"status": 99}),
            "servers[0].listeners[0].stream_filters[1].config.abort.status",
            "out of range 200..=599",
        ),
        (
            "/servers/0/listeners/0/stream_filters/1/config/upstream_cluster",
            json!("nope"),
            "servers[0].listeners[0].stream_filters[1].config.upstream_cluster",
            "cluster \"nope\" does not exist",
        ),
        ("/servers/0/listeners/0/address", json!("2990"), "servers[0].listeners[0].address", "not an ip:port"),
        ("/servers/0/listeners/0/name", json!(""), "servers[0].listeners[0].name", "must not be empty"),
        (
            "/servers/0/listeners/0/filter_chains/0/filters/0/config/router_config_name",
            json!("rr"),
            "servers[0].listeners[0].filter_chains[0].filters[0].config.router_config_name",
            "router \"rr\" does not exist",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/0/route/cluster_name",
            json!("s9"),
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name",
            "cluster \"s9\" does not exist",
        ),
        ("/servers/0/routers/0/virtual_hosts/0/routers/0/match/headers/0/regex", json!(true), "", "__valid__"),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/0/match/headers/0/value",
            json!(null),
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name",
            "__valid__",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route/timeout",
            json!(3),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.timeout",
            "expected a string",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route/retry_policy/retry_on",
            json!("true"),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.retry_policy.retry_on",
            "expected true or false",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route/retry_policy/num_retries",
            json!(-1),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.retry_policy.num_retries",
            "expected an integer",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/match/regex",
            json!("(["),
            "servers[0].routers[0].virtual_hosts[0].routers[1].match.regex",
            "invalid regex",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route",
            json!({"cluster_name": "s1", "metadata_match": {}}),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.metadata_match",
            "not supported yet",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route",
            json!({}),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.cluster_name",
            "is required",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route",
            json!({"weighted_clusters": [{"cluster": {"name": "s1", "weight": 0}}]}),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.weighted_clusters",
            "all weights are 0",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1/route",
            json!({"weighted_clusters": [{"cluster": {"name": "zz"}}]}),
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.weighted_clusters[0].cluster.name",
            "cluster \"zz\" does not exist",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1",
            json!({"match": {"prefix": "/"}}),
            "servers[0].routers[0].virtual_hosts[0].routers[1]",
            "needs \"route\" or \"direct_response\"",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/routers/1",
            json!({"match": {"prefix": "/"}, "direct_response": {"status": 700}}),
            "servers[0].routers[0].virtual_hosts[0].routers[1].direct_response.status",
            "out of range",
        ),
        (
            "/servers/0/routers/0/virtual_hosts/0/domains",
            json!([""]),
            "servers[0].routers[0].virtual_hosts[0].domains[0]",
            "non-empty string",
        ),
        ("/servers", json!({}), "servers", "expected an array"),
        ("/cluster_manager", json!([]), "cluster_manager", "expected an object"),
    ];
    for (pointer, value, path, reason) in cases {
        let mut v = base();
        set(&mut v, pointer, value.clone());
        let result = MosnConfig::from_json(&v.to_string());
        if reason == "__valid__" {
            assert!(result.is_ok(), "{pointer} = {value}: expected valid, got {result:?}");
            continue;
        }
        let errs = result.err().unwrap_or_else(|| panic!("{pointer} = {value}: accepted, expected an error at {path}"));
        assert!(
            errs.0.iter().any(|e| e.path == path && e.message.contains(reason)),
            "{pointer} = {value}: want `{path}: …{reason}…`, got: {errs}"
        );
    }
}

#[test]
fn regex_header_match_with_bad_pattern() {
    let mut v = base();
    set(
        &mut v,
        "/servers/0/routers/0/virtual_hosts/0/routers/0/match/headers/0",
        serde_json::json!({"name": "x", "value": "([", "regex": true}),
    );
    let errs = MosnConfig::from_json(&v.to_string()).unwrap_err();
    assert_eq!(errs.0[0].path, "servers[0].routers[0].virtual_hosts[0].routers[0].match.headers[0].value");
}

#[test]
fn invalid_json_reports_line_and_column() {
    let errs = MosnConfig::from_json("{\n  \"servers\": [,]\n}").unwrap_err();
    assert!(errs.0[0].message.contains("line 2"), "{errs}");
}

#[test]
fn unknown_fields_are_reported_not_misread() {
    let mut v = base();
    v["admin"] = serde_json::json!({"address": {}});
    v["servers"][0]["listeners"][0]["stream_filters"][0]["config"]["metadataers"][0]["config"]["unit_kye"] = serde_json::json!("x");
    let cfg = MosnConfig::from_json(&v.to_string()).expect("unknown fields are accepted");
    assert!(cfg.unused_fields.contains(&"admin".to_string()));
    assert!(cfg.unused_fields.contains(&"servers[0].listeners[0].stream_filters[0].config.metadataers[0].config.unit_kye".to_string()));
    // Known MOSN fields we do not use are not reported as unknown.
    assert!(!cfg.unused_fields.iter().any(|f| f.ends_with("downstream_protocol")));
}

#[test]
fn unit_key_defaults_to_userid() {
    let mut v = base();
    v["servers"][0]["listeners"][0]["stream_filters"][0]["config"]["metadataers"][0]["config"] = serde_json::json!({});
    let cfg = MosnConfig::from_json(&v.to_string()).unwrap();
    match &cfg.listeners[0].stream_filters[0].filter {
        FilterConfig::Metadata(m) => match &m.metadataers[0].driver {
            DriverConfig::Unit { unit_key } => assert_eq!(unit_key, "userid"),
        },
        other => panic!("{other:?}"),
    }
}
