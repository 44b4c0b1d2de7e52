//! Virtual host choice by `Host` (MOSN's `findVirtualHost`).

use crate::config::VirtualHostConfig;

/// One `domains[]` entry.
#[derive(Debug)]
enum Domain {
    Any,
    Exact { host: String, port: Option<String> },
    Suffix { suffix: String, port: Option<String> },
}

/// The domains of every virtual host of a router, to pick one by `Host`.
#[derive(Debug)]
pub struct Domains {
    /// Per virtual host, in config order.
    vhosts: Vec<Vec<Domain>>,
}

/// `[v6]:port`, `host:port` or `host`.
pub(crate) fn split_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, Some(p));
        }
        return (rest.trim_end_matches(']'), None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

fn domain(d: &str) -> Domain {
    let (h, p) = split_port(d);
    let port = p.filter(|p| *p != "*").map(str::to_string);
    if h == "*" {
        if port.is_none() {
            Domain::Any
        } else {
            Domain::Suffix { suffix: String::new(), port }
        }
    } else if let Some(sfx) = h.strip_prefix('*') {
        Domain::Suffix { suffix: sfx.to_string(), port }
    } else {
        Domain::Exact { host: h.to_string(), port }
    }
}

impl Domains {
    pub(crate) fn new(vhosts: &[VirtualHostConfig]) -> Domains {
        Domains { vhosts: vhosts.iter().map(|vh| vh.domains.iter().map(|d| domain(d)).collect()).collect() }
    }

    /// The index of the virtual host serving `authority` (`Host`), if any.
    pub fn find(&self, authority: &[u8]) -> Option<usize> {
        if self.vhosts.len() == 1 && matches!(self.vhosts[0][..], [Domain::Any]) {
            return Some(0);
        }
        let authority = std::str::from_utf8(authority).unwrap_or("");
        let (host, port) = split_port(authority);
        let host = host.to_ascii_lowercase();
        let port_ok = |want: &Option<String>| want.as_deref().is_none_or(|w| Some(w) == port);
        let mut best: Option<(usize, usize)> = None; // (score, vhost)
        for (i, domains) in self.vhosts.iter().enumerate() {
            for d in domains {
                let score = match d {
                    Domain::Exact { host: h, port: p } if *h == host && port_ok(p) => 1_000_000 + usize::from(p.is_some()),
                    Domain::Suffix { suffix, port: p } if host.len() > suffix.len() && host.ends_with(suffix.as_str()) && port_ok(p) => {
                        1 + suffix.len() * 2 + usize::from(p.is_some())
                    }
                    Domain::Any => 0,
                    _ => continue,
                };
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }
}
