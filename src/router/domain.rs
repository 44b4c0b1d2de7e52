//! Virtual host choice by `Host` (MOSN's `routers_impl.go` `findVirtualHost`).
//!
//! A domain is `host`, `host:port`, `host:*`, `*.suffix[:port]` or `*` / `*:*` (the default).
//! The priority is MOSN's: exact host and port; exact host with port `*`; the longest
//! wildcard suffix with the exact port; the longest wildcard suffix with port `*`; the
//! default. Matching is case-insensitive. MOSN's port rules apply: a domain without a port
//! matches only a `Host` without one (write `host:*` for any port), there is no implicit
//! 80/443. When the default is the router's only domain, `Host` is not looked at; otherwise a
//! request without `Host` (or with one that is not `host[:port]`) finds no virtual host: 404.
//!
//! Lookup costs a few hash lookups whatever the number of virtual hosts: exact domains are
//! one map, wildcard suffixes a map per suffix length, tried from the longest length.

use crate::config::reader::{index, Diagnostics};
use crate::config::VirtualHostConfig;
use std::collections::HashMap;

/// The port part of a domain or `Host`: none, a literal port, or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port<'a> {
    None,
    Literal(&'a str),
    Any,
}

/// The virtual hosts registered for one host (or suffix), by port.
#[derive(Debug, Default)]
struct Ports {
    none: Option<usize>,
    any: Option<usize>,
    literal: HashMap<String, usize>,
}

impl Ports {
    /// Registers `vhost` for `port`; false if that port was taken.
    fn insert(&mut self, port: Port<'_>, vhost: usize) -> bool {
        let slot = match port {
            Port::None => &mut self.none,
            Port::Any => &mut self.any,
            Port::Literal(p) => return self.literal.insert(p.to_string(), vhost).is_none(),
        };
        slot.replace(vhost).is_none()
    }

    /// The virtual host for exactly `port` (a `Host`'s port: none or literal).
    fn exact(&self, port: Port<'_>) -> Option<usize> {
        match port {
            Port::None => self.none,
            Port::Literal(p) => self.literal.get(p).copied(),
            Port::Any => None,
        }
    }
}

/// The domains of every virtual host of a router, indexed for lookup by `Host`.
#[derive(Debug, Default)]
pub struct Domains {
    /// Exact hosts.
    exact: HashMap<String, Ports>,
    /// Wildcard suffixes (`*.a.com` → `.a.com`).
    wildcard: HashMap<String, Ports>,
    /// The distinct suffix lengths in `wildcard`, longest first.
    wildcard_lengths: Vec<usize>,
    default: Option<usize>,
}

/// Go's `net.SplitHostPort` as MOSN uses it: `host`, `host:port`, `[v6]`, `[v6]:port`.
/// `None` for a malformed value (an unbalanced bracket, an unbracketed `a:b:c`).
fn split(s: &str) -> Option<(&str, Port<'_>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            _ => (h, Some(after.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            None => (s, None),
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            Some(_) => return None,
        }
    };
    let port = match port {
        None => Port::None,
        Some("*") => Port::Any,
        Some(p) => Port::Literal(p),
    };
    Some((host, port))
}

// === impl Domains ===

impl Domains {
    /// Indexes the domains of `vhosts`; a malformed or duplicate domain is an error at its
    /// JSON path (MOSN logs these and then answers every request with 404; here the config
    /// is refused).
    pub(crate) fn new(vhosts: &[VirtualHostConfig], d: &mut Diagnostics) -> Domains {
        let mut ds = Domains::default();
        for (i, vh) in vhosts.iter().enumerate() {
            for (j, domain) in vh.domains.iter().enumerate() {
                if let Err(e) = ds.add(domain, i) {
                    d.error(index(&format!("{}.domains", vh.path), j), e);
                }
            }
        }
        let mut lengths: Vec<usize> = ds.wildcard.keys().map(String::len).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        ds.wildcard_lengths = lengths;
        ds
    }

    fn add(&mut self, domain: &str, vhost: usize) -> Result<(), String> {
        let domain = domain.to_ascii_lowercase();
        let Some((host, port)) = split(&domain) else { return Err(format!("\"{domain}\" is not host or host:port")) };
        let lead_only = || format!("\"{domain}\": a wildcard may only lead the host (\"*.example.com\")");
        let ports = if host == "*" && matches!(port, Port::None | Port::Any) {
            if self.default.replace(vhost).is_some() {
                return Err("a second default virtual host (\"*\"): there can be only one".into());
            }
            return Ok(());
        } else if let Some(suffix) = host.strip_prefix('*') {
            if suffix.contains('*') {
                return Err(lead_only());
            }
            self.wildcard.entry(suffix.to_string()).or_default()
        } else if host.is_empty() || host.contains('*') {
            return Err(lead_only());
        } else {
            self.exact.entry(host.to_string()).or_default()
        };
        if ports.insert(port, vhost) {
            Ok(())
        } else {
            Err(format!("\"{domain}\" is listed twice"))
        }
    }

    /// The index of the virtual host serving `authority` (the `Host`), if any.
    pub fn find(&self, authority: Option<&[u8]>) -> Option<usize> {
        self.find_with(|| authority)
    }

    /// [`Domains::find`], looking the `Host` up only when the domains need it (not for a
    /// router with only the default virtual host).
    pub fn find_with<'a>(&self, authority: impl FnOnce() -> Option<&'a [u8]>) -> Option<usize> {
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return self.default;
        }
        let authority = std::str::from_utf8(authority()?).ok().filter(|a| !a.is_empty())?;
        let lower;
        let authority = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = authority.to_ascii_lowercase();
            lower.as_str()
        } else {
            authority
        };
        let (host, port) = split(authority)?;
        if port == Port::Any {
            return None; // `Host: a.com:*` is not a Host
        }
        let exact = self.exact.get(host);
        exact
            .and_then(|p| p.exact(port))
            .or_else(|| exact.and_then(|p| p.any))
            .or_else(|| self.find_wildcard(host, |p| p.exact(port)))
            .or_else(|| self.find_wildcard(host, |p| p.any))
            .or(self.default)
    }

    /// The longest wildcard suffix of `host` for which `pick` finds a virtual host. The
    /// suffix must be strictly shorter than the host (`*.a.com` does not serve `a.com`).
    fn find_wildcard(&self, host: &str, pick: impl Fn(&Ports) -> Option<usize>) -> Option<usize> {
        self.wildcard_lengths
            .iter()
            .filter(|&&len| len < host.len())
            .find_map(|&len| host.get(host.len() - len..).and_then(|sfx| self.wildcard.get(sfx)).and_then(&pick))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(vhosts: &[&[&str]]) -> Result<Domains, Vec<String>> {
        let cfgs: Vec<VirtualHostConfig> = vhosts
            .iter()
            .enumerate()
            .map(|(i, ds)| VirtualHostConfig {
                path: format!("vh[{i}]"),
                name: String::new(),
                domains: ds.iter().map(|d| d.to_string()).collect(),
                routers: vec![],
                headers: Default::default(),
            })
            .collect();
        let mut d = Diagnostics::default();
        let ds = Domains::new(&cfgs, &mut d);
        if d.errors.is_empty() {
            Ok(ds)
        } else {
            Err(d.errors.iter().map(|e| e.to_string()).collect())
        }
    }

    #[test]
    fn mosn_priority_and_port_rules() {
        let ds =
            domains(&[&["a.com"], &["a.com:8080"], &["a.com:*"], &["*.a.com:8080"], &["*.a.com:*"], &["*.b.a.com"], &["*"], &["*a.org"]])
                .unwrap();
        let f = |h: &str| ds.find(Some(h.as_bytes()));
        assert_eq!(f("a.com"), Some(0), "exact host, no port");
        assert_eq!(f("A.COM"), Some(0), "case-insensitive");
        assert_eq!(f("a.com:8080"), Some(1), "exact host and port");
        assert_eq!(f("a.com:9090"), Some(2), "exact host, port *");
        assert_eq!(f("x.a.com:8080"), Some(3), "wildcard with the exact port");
        assert_eq!(f("x.a.com:9090"), Some(4), "wildcard with port *");
        assert_eq!(f("x.b.a.com"), Some(5), "the longest suffix wins");
        assert_eq!(f("x.b.a.com:1"), Some(4), "a longer suffix without the port loses to a * port");
        assert_eq!(f("x.a.com"), Some(4), "no port: only * ports and port-less domains");
        assert_eq!(f("ba.org"), Some(7), "*a.org is any host ending in a.org");
        assert_eq!(f("a.org"), Some(6), "the suffix must be shorter than the host");
        assert_eq!(f("other"), Some(6), "the default");
        assert_eq!(ds.find(None), None, "no Host with several virtual hosts: 404 (MOSN)");
        assert_eq!(f(""), None);
        assert_eq!(f("a:b:c"), None, "malformed Host: no default either (MOSN)");
        assert_eq!(f("[::1]:80"), Some(6));
    }

    /// MOSN's own tables (`routers_impl_test.go`: port match, longest wildcard suffix).
    #[test]
    fn mosn_port_and_suffix_tables() {
        let ds = domains(&[
            &["www.test.com"],
            &["www.test.com:8080"],
            &["www.test.com:*"],
            &["*.test.com:30888"],
            &["*.com:30888"],
            &["*.com:*", "*.com"],
            &["*:*"],
            &["*:80"],
        ])
        .unwrap();
        for (host, want) in [
            ("www.test.com", 0),
            ("www.test.com:8080", 1),
            ("www.test.com:80", 2),
            ("www.test.com:30888", 2),
            ("hello.test.com:30888", 3),
            ("hello.com:30888", 4),
            ("hello.com:30777", 5),
            ("hello.cn:30777", 6),
            ("hello.cn", 6),
            ("hello.cn:80", 7),
        ] {
            assert_eq!(ds.find(Some(host.as_bytes())), Some(want), "{host}");
        }
        let ds = domains(&[&["f-bar.baz.com"], &["*.baz.com"], &["*-bar.baz.com"], &["*.foo.com"]]).unwrap();
        for (host, want) in [("f-bar.baz.com", 0), ("foo-bar.baz.com", 2), ("foo.baz.com", 1), ("foo.foo.com", 3)] {
            assert_eq!(ds.find(Some(host.as_bytes())), Some(want), "{host}");
        }
    }

    #[test]
    fn only_a_default_ignores_host() {
        let ds = domains(&[&["*"]]).unwrap();
        assert_eq!(ds.find(None), Some(0));
        assert_eq!(ds.find(Some(b"a:b:c")), Some(0));
        let ds = domains(&[&["a.com"]]).unwrap();
        assert_eq!(ds.find(Some(b"b.com")), None, "no default: 404");
        assert_eq!(ds.find(Some(b"a.com:80")), None, "a.com does not match a.com:80 (MOSN)");
    }

    #[test]
    fn bad_and_duplicate_domains_are_refused() {
        let err = |v: &[&[&str]]| domains(v).err().unwrap().join("; ");
        assert!(err(&[&["*"], &["*:*"]]).contains("vh[1].domains[0]: a second default"));
        assert!(err(&[&["a.com"], &["A.com"]]).contains("vh[1].domains[0]: \"a.com\" is listed twice"));
        assert!(err(&[&["*.a.com", "*.a.com"]]).contains("listed twice"));
        assert!(err(&[&["a.*.com"]]).contains("a wildcard may only lead"));
        assert!(err(&[&["[::1"]]).contains("not host or host:port"));
        // a.com and a.com:* are different domains.
        assert!(domains(&[&["a.com"], &["a.com:*"]]).is_ok());
    }
}
