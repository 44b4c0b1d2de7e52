//! `servers[].listeners[]`: address, the `proxy` network filter, the stream filters.

use super::fields::object;
use super::reader::{Diagnostics, Obj};
use super::{parse_address, DownstreamProtocol, ListenerConfig, RawFilterConfig};

/// The only network filter: MOSN's HTTP proxy, whose config names the router.
const PROXY: &str = "proxy";

/// Protocols the hosts speak on both sides for now.
const HTTP1: &[&str] = &["Http1", "HTTP1", "http1"];
/// MOSN's names for HTTP/2 and for "either".
const HTTP2: &[&str] = &["Http2", "HTTP2", "http2"];
const AUTO: &[&str] = &["Auto", "AUTO", "auto"];

pub(super) fn parse(mut l: Obj<'_>, d: &mut Diagnostics) -> Option<ListenerConfig> {
    let address_text = l.required_string("address", d);
    let address = address_text.and_then(|a| parse_address(a, &l.field_path("address"), d));
    // MOSN names a listener without a name by its address.
    let name = match l.string("name", d) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => address_text.unwrap_or_default().to_string(),
    };
    // MOSN binds a listener only with `bind_port: true` (false or absent: a virtual
    // listener for original-destination redirects).
    if l.boolean("bind_port", d) != Some(true) {
        d.error(l.field_path("bind_port"), "must be true: a listener MOSN does not bind (a virtual listener) is not supported yet");
    }
    if let Some(n) = l.string("network", d) {
        if !n.is_empty() && !n.eq_ignore_ascii_case("tcp") {
            d.error(l.field_path("network"), format!("\"{n}\" is not supported yet (tcp is)"));
        }
    }
    if let Some(o) = l.string("use_original_dst", d) {
        if !o.is_empty() {
            d.error(l.field_path("use_original_dst"), format!("\"{o}\" (original destination) is not supported yet"));
        }
    }
    if l.boolean("inspector", d) == Some(true) {
        d.error(l.field_path("inspector"), "true (TLS inspection) is not supported yet");
    }
    // The listener's access log (MOSN's `log_path`); "stdout"/"stderr" as in MOSN.
    let log_path = l.string("log_path", d).filter(|p| !p.is_empty()).map(|p| match p {
        "stdout" => "/dev/stdout".to_string(),
        "stderr" => "/dev/stderr".to_string(),
        other => other.to_string(),
    });
    if let Some(p) = &log_path {
        if !p.starts_with('/') {
            d.error(l.field_path("log_path"), format!("\"{p}\" is not an absolute path (nor stdout/stderr)"));
        }
    }
    let chains_path = l.field_path("filter_chains");
    let chains = l.objects("filter_chains", object::FILTER_CHAIN, d);
    if chains.len() != 1 {
        d.error(chains_path, format!("has {} filter chains; MOSN needs exactly one", chains.len()));
    }
    let mut router_config_name = None;
    let mut router_config_path = String::new();
    let mut tls = None;
    let mut protocol = DownstreamProtocol::Http1;
    for mut chain in chains {
        if chain.has("tls_context") && chain.has("tls_context_set") {
            d.error(chain.path().to_string(), "has tls_context and tls_context_set: MOSN takes only one");
        }
        tls = super::tls::parse(&mut chain, "tls_context", super::tls::Side::Downstream, d);
        let set_path = chain.field_path("tls_context_set");
        if let Some(set) = chain.array("tls_context_set", d) {
            for (i, t) in set.iter().enumerate() {
                tls_value_off(t, &format!("{set_path}[{i}]"), d);
            }
        }
        for mut f in chain.objects("filters", object::NETWORK_FILTER, d) {
            match f.required_string("type", d) {
                Some(PROXY) => {
                    if let Some(mut pc) = f.object("config", object::PROXY, d) {
                        router_config_path = pc.field_path("router_config_name");
                        router_config_name = pc.string("router_config_name", d).filter(|s| !s.is_empty()).map(str::to_string);
                        match pc.string("downstream_protocol", d) {
                            None | Some("") => d.error(pc.field_path("downstream_protocol"), "is required (Http1, Http2, Auto)"),
                            Some(p) if HTTP2.contains(&p) => protocol = DownstreamProtocol::Http2,
                            Some(p) if AUTO.contains(&p) => protocol = DownstreamProtocol::Auto,
                            Some(p) if HTTP1.contains(&p) => {}
                            Some(p) => d.error(
                                pc.field_path("downstream_protocol"),
                                format!("\"{p}\" is not supported yet (Http1, Http2, Auto are)"),
                            ),
                        }
                        pc.finish(d);
                    }
                }
                Some(other) => {
                    f.raw("config");
                    d.error(f.field_path("type"), format!("network filter \"{other}\" is not supported (\"proxy\" is)"));
                }
                None => {}
            }
            f.finish(d);
        }
        chain.finish(d);
    }
    let mut stream_filters = Vec::new();
    for mut f in l.objects("stream_filters", object::STREAM_FILTER, d) {
        let type_name = f.required_string("type", d).map(str::to_string);
        let config = f.raw("config").cloned();
        let path = f.path().to_string();
        f.finish(d);
        if let Some(type_name) = type_name {
            stream_filters.push(RawFilterConfig { path, type_name, config });
        }
    }
    let path = l.path().to_string();
    l.finish(d);
    // Kept after other errors (not after a bad address) so its filters are checked too.
    Some(ListenerConfig { path, name, address: address?, stream_filters, router_config_name, router_config_path, log_path, tls, protocol })
}

/// Refuses a protocol other than HTTP/1.1 (the one both hosts speak so far).
pub(super) fn http1_only(p: &str, path: &str, d: &mut Diagnostics) {
    if !HTTP1.contains(&p) {
        d.error(path, format!("\"{p}\" is not supported yet (Http1 is)"));
    }
}

/// A `tls_context` is accepted only with TLS off (`status` false or absent): MOSN configs
/// carry `{"status": false}` blocks. TLS itself is not supported yet.
pub(super) fn tls_off(o: &mut Obj<'_>, key: &'static str, d: &mut Diagnostics) {
    let path = o.field_path(key);
    if let Some(v) = o.raw(key) {
        tls_value_off(v, &path, d);
    }
}

/// One TLS config value at `path`: refused unless TLS is off.
fn tls_value_off(v: &serde_json::Value, path: &str, d: &mut Diagnostics) {
    match v.get("status") {
        Some(serde_json::Value::Bool(true)) => d.error(format!("{path}.status"), "true: TLS is not supported yet"),
        Some(serde_json::Value::Bool(false)) | None => {}
        Some(other) => d.error(format!("{path}.status"), format!("expected true or false, found {other}")),
    }
}
