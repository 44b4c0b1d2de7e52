//! What a matching route does: forward to a cluster (with rewrites, timeout and retry
//! policy), answer directly, or redirect.

use crate::config::reader::Diagnostics;
use crate::config::{ForwardConfig, HashPolicyConfig, RedirectConfig, RetryPolicyConfig};
use crate::headers::{HeaderMap, SharedStr};
use crate::upstream::{Cluster, Criteria};
use std::sync::Arc;
use std::time::Duration;

/// What a matching route does.
#[derive(Debug)]
pub enum RouteAction {
    Forward(Arc<Forward>),
    DirectResponse { status: u16, body: SharedStr },
    Redirect(Redirect),
}

/// Where a forwarded request's cluster comes from.
#[derive(Debug)]
pub enum Clusters {
    /// `cluster_name`, or `weighted_clusters` picked at random by weight, each with its
    /// subset criteria (its own `metadata_match`, else the route's).
    Weighted { clusters: Vec<(Arc<Cluster>, u32, Criteria)>, total_weight: u64 },
    /// `cluster_header`: the request header's value names the cluster.
    Header(SharedStr),
}

/// The cluster a request was given: an index into the route's weighted list (no reference
/// count touched on the request path), or the cluster a `cluster_header` named.
#[derive(Debug, Clone)]
pub enum Picked {
    Weighted(usize),
    Named(Arc<Cluster>),
}

/// How the path is rewritten before it goes upstream.
#[derive(Debug)]
pub enum PathRewrite {
    /// `prefix_rewrite`: `matched` (the route's prefix or path) is replaced.
    Prefix { matched: String, with: String },
    /// `regex_rewrite`: every match of the regex is replaced by the substitution.
    Regex { regex: regex::bytes::Regex, with: String },
}

/// The Host the upstream gets.
#[derive(Debug)]
pub enum HostRewrite {
    /// `host_rewrite`.
    Literal(SharedStr),
    /// `auto_host_rewrite_header`: that request header's value (if present).
    Header(SharedStr),
}

/// A route's upstream action.
#[derive(Debug)]
pub struct Forward {
    pub clusters: Clusters,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub path_rewrite: Option<PathRewrite>,
    pub host_rewrite: Option<HostRewrite>,
    /// The route's `metadata_match` (for `cluster_header` clusters).
    pub criteria: Criteria,
    /// What the consistent hash of a request is computed from.
    pub hash_policy: Option<HashPolicy>,
}

/// `hash_policy[0]`.
#[derive(Debug)]
pub enum HashPolicy {
    /// This request header's value.
    Header(SharedStr),
    /// This cookie's value.
    Cookie(String),
    /// The client address.
    SourceIp,
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

/// `redirect`: the answer's status and the parts of `Location` it sets.
#[derive(Debug)]
pub struct Redirect {
    pub status: u16,
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
}

// === impl RetryPolicy ===

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

// === impl Forward ===

impl Forward {
    /// Builds the action; `cluster` resolves a (validated) cluster name; `matched` is the
    /// route's prefix or path (what `prefix_rewrite` replaces). Errors go to `d`.
    pub(crate) fn new(
        f: &ForwardConfig,
        matched: Option<&str>,
        cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>,
        d: &mut Diagnostics,
    ) -> Option<Forward> {
        let clusters = match &f.cluster_header {
            Some(h) if f.clusters.is_empty() => Clusters::Header(h.as_str().into()),
            _ => {
                let clusters = f
                    .clusters
                    .iter()
                    .map(|w| {
                        let own = if w.metadata_match.is_empty() { &f.metadata_match } else { &w.metadata_match };
                        cluster(&w.name).map(|c| (c, w.weight, Criteria::new(own)))
                    })
                    .collect::<Option<Vec<_>>>()?;
                let total_weight = clusters.iter().map(|(_, w, _)| u64::from(*w)).sum::<u64>().max(1);
                Clusters::Weighted { clusters, total_weight }
            }
        };
        // MOSN: prefix_rewrite wins over regex_rewrite.
        let path_rewrite = match (&f.prefix_rewrite, &f.regex_rewrite) {
            (Some(with), _) => Some(PathRewrite::Prefix { matched: matched.unwrap_or("").to_string(), with: with.clone() }),
            (None, Some((re, with, path))) => match regex::bytes::Regex::new(re) {
                Ok(regex) => Some(PathRewrite::Regex { regex, with: with.clone() }),
                Err(e) => {
                    d.error(path.clone(), format!("invalid regex: {e}"));
                    return None;
                }
            },
            (None, None) => None,
        };
        let host_rewrite = match (&f.host_rewrite, &f.host_rewrite_header) {
            (Some(h), _) => Some(HostRewrite::Literal(h.as_str().into())),
            (None, Some(h)) => Some(HostRewrite::Header(h.as_str().into())),
            (None, None) => None,
        };
        let hash_policy = f.hash_policy.as_ref().map(|h| match h {
            HashPolicyConfig::Header(n) => HashPolicy::Header(n.as_str().into()),
            HashPolicyConfig::Cookie(n) => HashPolicy::Cookie(n.clone()),
            HashPolicyConfig::SourceIp => HashPolicy::SourceIp,
        });
        Some(Forward {
            clusters,
            timeout: f.timeout,
            retry: f.retry_policy.as_ref().map(RetryPolicy::new),
            path_rewrite,
            host_rewrite,
            criteria: Criteria::new(&f.metadata_match),
            hash_policy,
        })
    }

    /// The cluster for this request: weighted random among several; from the header for
    /// `cluster_header` (`None` when the header is missing or names no cluster).
    pub fn pick(&self, headers: &dyn HeaderMap, by_name: &dyn Fn(&str) -> Option<Arc<Cluster>>) -> Option<Picked> {
        match &self.clusters {
            Clusters::Weighted { clusters, total_weight } => {
                if clusters.len() == 1 {
                    return Some(Picked::Weighted(0));
                }
                let mut r = fastrand::u64(0..*total_weight);
                for (i, (_, w, _)) in clusters.iter().enumerate() {
                    if r < u64::from(*w) {
                        return Some(Picked::Weighted(i));
                    }
                    r -= u64::from(*w);
                }
                Some(Picked::Weighted(clusters.len() - 1))
            }
            Clusters::Header(h) => headers.get(h).first().and_then(|v| std::str::from_utf8(v).ok()).and_then(by_name).map(Picked::Named),
        }
    }

    /// The cluster a [`Picked`] stands for.
    pub fn cluster<'a>(&'a self, picked: &'a Picked) -> Option<&'a Arc<Cluster>> {
        match (picked, &self.clusters) {
            (Picked::Weighted(i), Clusters::Weighted { clusters, .. }) => clusters.get(*i).map(|(c, _, _)| c),
            (Picked::Named(c), _) => Some(c),
            _ => None,
        }
    }

    /// The subset criteria of a [`Picked`] cluster (`metadata_match`).
    pub fn criteria<'a>(&'a self, picked: &'a Picked) -> &'a Criteria {
        match (picked, &self.clusters) {
            (Picked::Weighted(i), Clusters::Weighted { clusters, .. }) => clusters.get(*i).map_or(&self.criteria, |(_, _, m)| m),
            _ => &self.criteria,
        }
    }

    /// The rewritten (decoded) path, or `None` when the route does not rewrite it (MOSN's
    /// `finalizePathHeader`).
    pub fn rewrite_path(&self, path: &[u8]) -> Option<Vec<u8>> {
        match self.path_rewrite.as_ref()? {
            PathRewrite::Prefix { matched, with } => {
                let rest = path.strip_prefix(matched.as_bytes())?;
                let mut out = with.as_bytes().to_vec();
                out.extend_from_slice(rest);
                Some(out)
            }
            PathRewrite::Regex { regex, with } => {
                let out = regex.replace_all(path, with.as_bytes());
                (out.as_ref() != path).then(|| out.into_owned())
            }
        }
    }

    /// The Host the upstream gets, when the route rewrites it.
    pub fn rewrite_host<'a>(&'a self, headers: &'a dyn HeaderMap) -> Option<&'a [u8]> {
        match self.host_rewrite.as_ref()? {
            HostRewrite::Literal(h) => Some(h.as_bytes()),
            HostRewrite::Header(name) => headers.get(name).first(),
        }
    }
}

// === impl Redirect ===

impl Redirect {
    pub(crate) fn new(c: &RedirectConfig) -> Redirect {
        Redirect { status: c.response_code, scheme: c.scheme.clone(), host: c.host.clone(), path: c.path.clone() }
    }

    /// The `Location` for a request with this `Host`, raw path and query (MOSN: each part
    /// from the config or else the request, the query kept; when the scheme changes, the
    /// default port of the other scheme is dropped).
    pub fn location(&self, host: &[u8], path: &[u8], query: &[u8]) -> String {
        let scheme = self.scheme.as_deref().unwrap_or("http");
        let mut host = self.host.clone().unwrap_or_else(|| String::from_utf8_lossy(host).into_owned());
        if self.scheme.is_some() {
            let drop = if scheme == "https" {
                ":80"
            } else if scheme == "http" {
                ":443"
            } else {
                ""
            };
            if !drop.is_empty() && host.ends_with(drop) {
                host.truncate(host.len() - drop.len());
            }
        }
        let path = self.path.clone().unwrap_or_else(|| String::from_utf8_lossy(path).into_owned());
        let query = String::from_utf8_lossy(query);
        format!("{scheme}://{host}{path}{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(scheme: Option<&str>, host: Option<&str>, path: Option<&str>) -> Redirect {
        Redirect { status: 301, scheme: scheme.map(Into::into), host: host.map(Into::into), path: path.map(Into::into) }
    }

    #[test]
    fn locations() {
        assert_eq!(redirect(None, None, None).location(b"a.com", b"/x", b"?q=1"), "http://a.com/x?q=1");
        assert_eq!(redirect(Some("https"), None, None).location(b"a.com:80", b"/x", b""), "https://a.com/x");
        assert_eq!(redirect(Some("http"), Some("b.com:443"), Some("/y")).location(b"a.com", b"/x", b"?z"), "http://b.com/y?z");
        assert_eq!(redirect(None, Some("b.com"), None).location(b"a.com:80", b"/x", b""), "http://b.com/x");
    }
}
