//! MOSN's router: virtual hosts by `Host`, then the first matching route.
//!
//! Paths are matched after normalization ([`normalize_path`]): dot segments, repeated
//! slashes and escaped unreserved characters cannot dodge a route.
//!
//! Differences from MOSN, on purpose (MOSN quirks we accept in config but do not copy):
//! a domain without a port matches a `Host` with any port; `path` is compared
//! case-sensitively; `regex` must match the whole path. Header regexes stay unanchored.

mod path;

pub use path::normalize as normalize_path;

use crate::config::{RetryPolicyConfig, RouteActionConfig, RouterConfig};
use crate::filter::HeaderMatcher;
use crate::headers::{HeaderMap, SharedStr};
use crate::upstream::Cluster;
use std::sync::Arc;
use std::time::Duration;

/// A route's upstream action: the cluster(s), timeout and retry policy.
#[derive(Debug)]
pub struct Forward {
    /// `(cluster, weight)`; weighted random when more than one.
    pub clusters: Vec<(Arc<Cluster>, u32)>,
    total_weight: u64,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
}

/// When and how often to retry (from MOSN's `retry_policy`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// MOSN's `retry_on`: false retries connect failures only.
    pub retry_on: bool,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    /// Statuses that are retried; empty means 5xx when `retry_on`.
    pub status_codes: Vec<u16>,
}

impl RetryPolicy {
    fn new(c: &RetryPolicyConfig) -> RetryPolicy {
        RetryPolicy {
            retry_on: c.retry_on,
            num_retries: c.num_retries,
            per_try_timeout: c.retry_timeout,
            status_codes: c.status_codes.clone(),
        }
    }
}

impl Forward {
    /// Picks the cluster index (weighted random among several).
    pub fn pick(&self) -> usize {
        if self.clusters.len() == 1 {
            return 0;
        }
        let mut r = fastrand::u64(0..self.total_weight);
        for (i, (_, w)) in self.clusters.iter().enumerate() {
            if r < *w as u64 {
                return i;
            }
            r -= *w as u64;
        }
        self.clusters.len() - 1
    }
}

/// What a matching route does.
#[derive(Debug)]
pub enum RouteAction {
    Forward(Arc<Forward>),
    DirectResponse { status: u16, body: SharedStr },
}

enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    Regex(regex::Regex),
}

struct Route {
    path: PathMatch,
    headers: Vec<HeaderMatcher>,
    action: RouteAction,
}

enum Domain {
    Any,
    Exact { host: String, port: Option<String> },
    Suffix { suffix: String, port: Option<String> },
}

struct VirtualHost {
    domains: Vec<Domain>,
    routes: Vec<Route>,
}

/// One `routers[]` entry, ready to match.
pub struct Router {
    pub name: String,
    vhosts: Vec<VirtualHost>,
}

fn split_port(s: &str) -> (&str, Option<&str>) {
    // `[v6]:port`, `host:port`, `host`.
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

impl Router {
    pub fn new(cfg: &RouterConfig, cluster: impl Fn(&str) -> Arc<Cluster>) -> Router {
        let vhosts = cfg
            .virtual_hosts
            .iter()
            .map(|vh| VirtualHost {
                domains: vh
                    .domains
                    .iter()
                    .map(|d| {
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
                    })
                    .collect(),
                routes: vh
                    .routers
                    .iter()
                    .map(|r| Route {
                        path: if let Some(p) = &r.matcher.path {
                            PathMatch::Exact(p.clone())
                        } else if let Some(p) = &r.matcher.prefix {
                            PathMatch::Prefix(p.clone())
                        } else if let Some(re) = &r.matcher.regex {
                            PathMatch::Regex(regex::Regex::new(&format!("^(?:{re})$")).expect("validated regex"))
                        } else {
                            PathMatch::Any
                        },
                        headers: r.matcher.headers.iter().map(HeaderMatcher::new).collect(),
                        action: match &r.action {
                            RouteActionConfig::DirectResponse { status, body } => {
                                RouteAction::DirectResponse { status: *status, body: body.as_str().into() }
                            }
                            RouteActionConfig::Forward(f) => {
                                let clusters: Vec<_> = f.clusters.iter().map(|(n, w)| (cluster(n), *w)).collect();
                                let total_weight = clusters.iter().map(|(_, w)| *w as u64).sum::<u64>().max(1);
                                RouteAction::Forward(Arc::new(Forward {
                                    clusters,
                                    total_weight,
                                    timeout: f.timeout,
                                    retry: f.retry_policy.as_ref().map(RetryPolicy::new),
                                }))
                            }
                        },
                    })
                    .collect(),
            })
            .collect();
        Router { name: cfg.router_config_name.clone(), vhosts }
    }

    fn virtual_host(&self, authority: &[u8]) -> Option<&VirtualHost> {
        if self.vhosts.len() == 1 && matches!(self.vhosts[0].domains[..], [Domain::Any]) {
            return Some(&self.vhosts[0]);
        }
        let authority = std::str::from_utf8(authority).unwrap_or("");
        let (host, port) = split_port(authority);
        let host = host.to_ascii_lowercase();
        let port_ok = |want: &Option<String>| want.as_deref().is_none_or(|w| Some(w) == port);
        let mut best: Option<(usize, &VirtualHost)> = None; // (score, vhost)
        for vh in &self.vhosts {
            for d in &vh.domains {
                let score = match d {
                    Domain::Exact { host: h, port: p } if *h == host && port_ok(p) => 1_000_000 + usize::from(p.is_some()),
                    Domain::Suffix { suffix, port: p } if host.len() > suffix.len() && host.ends_with(suffix.as_str()) && port_ok(p) => {
                        1 + suffix.len() * 2 + usize::from(p.is_some())
                    }
                    Domain::Any => 0,
                    _ => continue,
                };
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, vh));
                }
            }
        }
        best.map(|(_, vh)| vh)
    }

    /// The action of the first route matching `headers`, or `None` (MOSN replies 404).
    pub fn route(&self, headers: &dyn HeaderMap) -> Option<&RouteAction> {
        let authority = headers.get(":authority").first().or_else(|| headers.get("host").first()).unwrap_or(b"");
        let vh = self.virtual_host(authority)?;
        let normalized = path::normalize(headers.get(":path").first().unwrap_or(b"/"));
        // A path that is not UTF-8 after decoding matches only routes without a path matcher.
        let path = std::str::from_utf8(&normalized).ok();
        vh.routes
            .iter()
            .find(|r| {
                let path_ok = match (&r.path, path) {
                    (PathMatch::Any, _) => true,
                    (_, None) => false,
                    (PathMatch::Prefix(p), Some(path)) => path.starts_with(p.as_str()),
                    (PathMatch::Exact(p), Some(path)) => path == p,
                    (PathMatch::Regex(re), Some(path)) => re.is_match(path),
                };
                path_ok && r.headers.iter().all(|m| m.matches(headers))
            })
            .map(|r| &r.action)
    }
}
