//! MOSN's `tls_context` (a listener's filter chain, a cluster): TLS done by the host.
//!
//! The library never touches TLS bytes: the host terminates the listener's TLS (Envoy's
//! `DownstreamTlsContext`, nginx's `listen ... ssl`) and speaks TLS to a cluster's hosts
//! (Envoy's `UpstreamTlsContext`, nginx's `proxy_pass https://`), configured from these
//! fields by `mosn-ext start`.

use super::fields::object;
use super::reader::{Diagnostics, Obj};

/// A certificate or key: MOSN takes either the PEM text itself or a file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    /// An absolute path to a PEM file.
    File(String),
    /// The PEM text.
    Inline(String),
}

/// A TLS protocol version (`min_version`, `max_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

/// Which side a `tls_context` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A listener's: the host is the TLS server.
    Downstream,
    /// A cluster's: the host is the TLS client.
    Upstream,
}

/// A `tls_context` with `status: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// JSON path of the `tls_context`.
    pub path: String,
    /// The certificate chain: the server's (listener; required) or the client's (cluster).
    pub cert_chain: Option<Pem>,
    /// Its private key.
    pub private_key: Option<Pem>,
    /// CA certificates: to verify clients (listener, with `verify_client`) or the upstream
    /// (cluster; without it the system's CAs).
    pub ca_cert: Option<Pem>,
    /// Listener: a client must present a certificate the CA signed.
    pub verify_client: bool,
    /// Cluster: the SNI sent and the name the upstream certificate must carry.
    pub server_name: Option<String>,
    /// Cluster: do not verify the upstream's certificate.
    pub insecure_skip: bool,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// OpenSSL cipher names (TLS 1.2 and below), in order.
    pub cipher_suites: Vec<String>,
}

/// The system's CA bundle (Debian), for a cluster that verifies with no `ca_cert`.
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Reads `key` of `o` (a listener's filter chain or a cluster): `None` when absent or with
/// TLS off (`status` false or absent: MOSN configs carry `{"status": false}` blocks).
pub(super) fn parse(o: &mut Obj<'_>, key: &'static str, side: Side, d: &mut Diagnostics) -> Option<TlsConfig> {
    let mut t = o.object(key, object::TLS_CONTEXT, d)?;
    let on = t.boolean("status", d) == Some(true);
    let pem = |t: &mut Obj<'_>, k: &'static str, d: &mut Diagnostics| {
        let v = t.string(k, d).filter(|s| !s.is_empty())?;
        if v.trim_start().starts_with("-----BEGIN") {
            Some(Pem::Inline(v.to_string()))
        } else if v.starts_with('/') {
            Some(Pem::File(v.to_string()))
        } else {
            d.error(t.field_path(k), format!("\"{v}\" is neither PEM text (-----BEGIN ...) nor an absolute path"));
            None
        }
    };
    let version = |t: &mut Obj<'_>, k: &'static str, d: &mut Diagnostics| match t.string(k, d) {
        None | Some("") | Some("TLS_AUTO") => None,
        Some("TLS1_0") => Some(TlsVersion::V1_0),
        Some("TLS1_1") => Some(TlsVersion::V1_1),
        Some("TLS1_2") => Some(TlsVersion::V1_2),
        Some("TLS1_3") => Some(TlsVersion::V1_3),
        Some(other) => {
            d.error(t.field_path(k), format!("unknown TLS version \"{other}\" (TLS_AUTO, TLS1_0, TLS1_1, TLS1_2, TLS1_3)"));
            None
        }
    };
    let cfg = TlsConfig {
        path: t.path().to_string(),
        cert_chain: pem(&mut t, "cert_chain", d),
        private_key: pem(&mut t, "private_key", d),
        ca_cert: pem(&mut t, "ca_cert", d),
        verify_client: t.boolean("verify_client", d) == Some(true),
        server_name: t.string("server_name", d).filter(|s| !s.is_empty()).map(str::to_string),
        insecure_skip: t.boolean("insecure_skip", d) == Some(true),
        min_version: version(&mut t, "min_version", d),
        max_version: version(&mut t, "max_version", d),
        cipher_suites: t
            .string("cipher_suites", d)
            .map(|s| s.split([':', ',']).map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
    };
    // The fields not read here are judged by the field table (refused when set).
    let path = t.path().to_string();
    t.finish(d);
    if !on {
        return None;
    }
    match side {
        Side::Downstream => {
            if cfg.cert_chain.is_none() || cfg.private_key.is_none() {
                d.error(path.clone(), "TLS on a listener needs cert_chain and private_key");
            }
            if cfg.verify_client && cfg.ca_cert.is_none() {
                d.error(format!("{path}.verify_client"), "true needs ca_cert (the CA that signs client certificates)");
            }
            if cfg.server_name.is_some() || cfg.insecure_skip {
                d.error(path.clone(), "server_name and insecure_skip are a client's (a cluster's tls_context)");
            }
        }
        Side::Upstream => {
            if cfg.cert_chain.is_some() != cfg.private_key.is_some() {
                d.error(path.clone(), "a client certificate needs both cert_chain and private_key");
            }
            if cfg.verify_client {
                d.error(format!("{path}.verify_client"), "is a server's (a listener's tls_context)");
            }
            // As MOSN's Go TLS: a verified upstream is verified by name.
            if cfg.server_name.is_none() && !cfg.insecure_skip {
                d.error(path.clone(), "needs server_name (the name the upstream certificate must carry) or insecure_skip");
            }
        }
    }
    if let (Some(a), Some(b)) = (cfg.min_version, cfg.max_version) {
        if a > b {
            d.error(format!("{path}.min_version"), "is above max_version");
        }
    }
    Some(cfg)
}

// === impl TlsVersion ===

impl TlsVersion {
    /// Envoy's `tls_minimum_protocol_version` / `tls_maximum_protocol_version` value.
    pub fn envoy(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "TLSv1_0",
            TlsVersion::V1_1 => "TLSv1_1",
            TlsVersion::V1_2 => "TLSv1_2",
            TlsVersion::V1_3 => "TLSv1_3",
        }
    }

    /// nginx's `ssl_protocols` word.
    pub fn nginx(self) -> &'static str {
        match self {
            TlsVersion::V1_0 => "TLSv1",
            TlsVersion::V1_1 => "TLSv1.1",
            TlsVersion::V1_2 => "TLSv1.2",
            TlsVersion::V1_3 => "TLSv1.3",
        }
    }

    /// Every version from `min` to `max` (defaults: TLS 1.2 to 1.3, as Envoy's).
    pub fn range(min: Option<TlsVersion>, max: Option<TlsVersion>) -> Vec<TlsVersion> {
        let all = [TlsVersion::V1_0, TlsVersion::V1_1, TlsVersion::V1_2, TlsVersion::V1_3];
        let (lo, hi) = (min.unwrap_or(TlsVersion::V1_2), max.unwrap_or(TlsVersion::V1_3));
        all.into_iter().filter(|v| *v >= lo && *v <= hi).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_json(v: serde_json::Value, side: Side) -> (Option<TlsConfig>, Vec<String>) {
        let outer = serde_json::json!({ "tls_context": v });
        let mut d = Diagnostics::default();
        let mut o = Obj::open(&outer, "c".into(), object::CLUSTER, &mut d).unwrap();
        let t = parse(&mut o, "tls_context", side, &mut d);
        (t, d.errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn status_false_is_off_and_its_fields_are_still_checked() {
        let (t, e) = parse_json(serde_json::json!({"status": false, "cert_chain": "/x"}), Side::Upstream);
        assert_eq!((t, e.len()), (None, 0));
        let (_, e) = parse_json(serde_json::json!({"status": false, "alpn": "h2"}), Side::Upstream);
        assert!(e.iter().any(|e| e.contains("c.tls_context.alpn")), "{e:?}");
    }

    #[test]
    fn a_listener_needs_its_certificate_and_a_ca_to_verify_clients() {
        let (t, e) = parse_json(
            serde_json::json!({"status": true, "cert_chain": "/c.pem", "private_key": "-----BEGIN KEY-----\nx"}),
            Side::Downstream,
        );
        assert!(e.is_empty(), "{e:?}");
        let t = t.unwrap();
        assert_eq!(t.cert_chain, Some(Pem::File("/c.pem".into())));
        assert!(matches!(t.private_key, Some(Pem::Inline(_))));
        let (_, e) = parse_json(serde_json::json!({"status": true, "cert_chain": "/c.pem", "verify_client": true}), Side::Downstream);
        assert!(e.iter().any(|e| e.contains("cert_chain and private_key")) && e.iter().any(|e| e.contains("verify_client")), "{e:?}");
        let (_, e) = parse_json(serde_json::json!({"status": true, "cert_chain": "c.pem", "private_key": "/k"}), Side::Downstream);
        assert!(e.iter().any(|e| e.contains("c.tls_context.cert_chain") && e.contains("absolute")), "{e:?}");
    }

    #[test]
    fn versions_and_ciphers() {
        let (t, e) = parse_json(
            serde_json::json!({"status": true, "server_name": "b.test", "min_version": "TLS1_2", "max_version": "TLS1_2",
                               "cipher_suites": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"}),
            Side::Upstream,
        );
        assert!(e.is_empty(), "{e:?}");
        let t = t.unwrap();
        assert_eq!(TlsVersion::range(t.min_version, t.max_version), vec![TlsVersion::V1_2]);
        assert_eq!(t.cipher_suites.len(), 2);
        let (_, e) = parse_json(serde_json::json!({"status": true, "min_version": "TLS1_3", "max_version": "TLS1_2"}), Side::Upstream);
        assert!(e.iter().any(|e| e.contains("min_version")), "{e:?}");
    }
}
