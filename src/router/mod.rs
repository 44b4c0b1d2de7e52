//! MOSN's router: virtual hosts by `Host`, then the first matching route.
//!
//! - [`domain`]: which virtual host serves a `Host`;
//! - [`matcher`]: whether a route matches (path and headers);
//! - [`action`]: what a matching route does (forward, direct response).
//!
//! Paths are matched after normalization ([`normalize_path`]): dot segments, repeated
//! slashes and escaped unreserved characters cannot dodge a route.

pub mod action;
pub mod domain;
pub mod matcher;
mod path;

pub use action::{Forward, RetryPolicy, RouteAction};
pub use path::normalize as normalize_path;

use crate::config::reader::Diagnostics;
use crate::config::{RouteActionConfig, RouterConfig};
use crate::headers::HeaderMap;
use crate::upstream::Cluster;
use domain::Domains;
use matcher::RouteMatcher;
use std::sync::Arc;

#[derive(Debug)]
struct Route {
    matcher: RouteMatcher,
    action: RouteAction,
}

#[derive(Debug)]
struct VirtualHost {
    routes: Vec<Route>,
}

/// One `routers[]` entry, ready to match.
#[derive(Debug)]
pub struct Router {
    pub name: String,
    domains: Domains,
    vhosts: Vec<VirtualHost>,
}

impl Router {
    /// Builds the router; errors (e.g. a regex that does not compile) go to `d` with their
    /// JSON paths and yield `None`. `cluster` resolves cluster names.
    pub(crate) fn new(cfg: &RouterConfig, cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>, d: &mut Diagnostics) -> Option<Router> {
        let errors = d.error_count();
        let mut vhosts = Vec::with_capacity(cfg.virtual_hosts.len());
        for vh in &cfg.virtual_hosts {
            let mut routes = Vec::with_capacity(vh.routers.len());
            for r in &vh.routers {
                let matcher = RouteMatcher::new(&r.matcher, d);
                let action = match &r.action {
                    RouteActionConfig::DirectResponse { status, body } => {
                        Some(RouteAction::DirectResponse { status: *status, body: body.as_str().into() })
                    }
                    RouteActionConfig::Forward(f) => match Forward::new(f, cluster) {
                        Some(fw) => Some(RouteAction::Forward(Arc::new(fw))),
                        None => {
                            d.error(format!("{}.route", r.path), "names a cluster that does not exist");
                            None
                        }
                    },
                };
                if let (Some(matcher), Some(action)) = (matcher, action) {
                    routes.push(Route { matcher, action });
                }
            }
            vhosts.push(VirtualHost { routes });
        }
        if d.error_count() != errors {
            return None;
        }
        Some(Router { name: cfg.router_config_name.clone(), domains: Domains::new(&cfg.virtual_hosts), vhosts })
    }

    /// The action of the first route matching `headers`, or `None` (MOSN replies 404).
    pub fn route(&self, headers: &dyn HeaderMap) -> Option<&RouteAction> {
        let authority = headers.get(":authority").first().or_else(|| headers.get("host").first()).unwrap_or(b"");
        let vh = &self.vhosts[self.domains.find(authority)?];
        let normalized = path::normalize(headers.get(":path").first().unwrap_or(b"/"));
        // A path that is not UTF-8 after decoding matches only routes without a path test.
        let path = std::str::from_utf8(&normalized).ok();
        vh.routes.iter().find(|r| r.matcher.matches(path, headers)).map(|r| &r.action)
    }
}
