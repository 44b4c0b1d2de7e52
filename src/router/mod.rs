//! MOSN's router: virtual hosts by `Host`, then the first matching route.
//!
//! - [`domain`]: which virtual host serves a `Host`;
//! - [`matcher`]: whether a route matches (path, variables, headers);
//! - [`action`]: what a matching route does (forward with rewrites, direct response,
//!   redirect);
//! - [`header_edit`]: header edits of a route, a virtual host, a router;
//! - [`path`]: the path routes match and the path the upstream gets.
//!
//! Paths are matched after decoding and normalization, as MOSN does: dot segments, repeated
//! slashes and escapes cannot dodge a route.

pub mod action;
pub mod domain;
pub mod header_edit;
pub mod matcher;
pub mod path;
mod table;

pub use action::{Forward, HashPolicy, Picked, Redirect, RetryPolicy, RouteAction};

use crate::config::reader::Diagnostics;
use crate::config::{MosnConfig, RouteActionConfig, RouteConfig, RouterConfig};
use crate::filter::registry::{self, ParseContext};
use crate::filter::StreamFilter;
use crate::upstream::mirror::MirrorPolicy;
use crate::upstream::Cluster;
use crate::variable::RequestVars;
use domain::Domains;
use header_edit::HeaderEdits;
use matcher::RouteMatcher;
use std::collections::HashMap;
use std::sync::Arc;

/// One route, ready to match.
struct Route {
    /// JSON path of the route (`servers[0].routers[0].virtual_hosts[1].routers[2]`).
    path: String,
    action: RouteAction,
    edits: Option<HeaderEdits>,
    /// `per_filter_config`: filters that replace the listener's filter of the same type.
    per_filter: Vec<Arc<dyn StreamFilter>>,
    /// `request_mirror_policies`.
    mirror: Option<MirrorPolicy>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route").field("path", &self.path).field("action", &self.action).finish()
    }
}

#[derive(Debug)]
struct VirtualHost {
    name: String,
    routes: Vec<Route>,
    /// `routes[i]`'s matcher is `matchers[i]`.
    matchers: Vec<RouteMatcher>,
    table: table::RouteTable,
    edits: Option<HeaderEdits>,
}

/// Which route of which virtual host matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMatch {
    pub vhost: usize,
    pub route: usize,
}

/// One `routers[]` entry, ready to match.
pub struct Router {
    pub name: String,
    domains: Domains,
    vhosts: Vec<VirtualHost>,
    edits: Option<HeaderEdits>,
    /// Every cluster by name (for `cluster_header`).
    clusters: HashMap<String, Arc<Cluster>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("name", &self.name).field("vhosts", &self.vhosts.len()).finish()
    }
}

/// The filters a route's `per_filter_config` builds; only filters that read a route's config
/// (MOSN: `fault`) take one. `{"disable": true}` turns any filter off for the route.
fn per_filter(r: &RouteConfig, cfg: &MosnConfig, d: &mut Diagnostics) -> Vec<Arc<dyn StreamFilter>> {
    let cx = ParseContext { config: cfg, words: None };
    let mut out = Vec::new();
    for (ty, value, path) in &r.per_filter_config {
        if let Some(disable) = registry::disable_entry(ty, value, path, d) {
            out.extend(disable);
            continue;
        }
        if !registry::PER_ROUTE.contains(&ty.as_str()) {
            d.error(path.clone(), format!("filter \"{ty}\" takes no per-route config (these do: {})", registry::PER_ROUTE.join(", ")));
            continue;
        }
        let raw = crate::config::RawFilterConfig { path: path.clone(), type_name: ty.clone(), config: Some(value.clone()) };
        if let Some(f) = registry::build_config(&raw, path.clone(), &cx, d) {
            out.push(f);
        }
    }
    out
}

impl Router {
    /// Builds the router; errors (a regex that does not compile, a bad domain, a bad
    /// per-route filter config) go to `d` with their JSON paths and yield `None`.
    pub(crate) fn new(cfg: &RouterConfig, config: &MosnConfig, clusters: &[Arc<Cluster>], d: &mut Diagnostics) -> Option<Router> {
        let errors = d.error_count();
        let by_name: HashMap<String, Arc<Cluster>> = clusters.iter().map(|c| (c.name.to_string(), c.clone())).collect();
        let find = |n: &str| by_name.get(n).cloned();
        let mut vhosts = Vec::with_capacity(cfg.virtual_hosts.len());
        for vh in &cfg.virtual_hosts {
            let mut routes = Vec::with_capacity(vh.routers.len());
            let mut matchers = Vec::with_capacity(vh.routers.len());
            for r in &vh.routers {
                let Some(matcher) = RouteMatcher::new(&r.matcher, d) else { continue };
                let (action, edits) = match &r.action {
                    RouteActionConfig::DirectResponse { status, body } => {
                        (Some(RouteAction::DirectResponse { status: *status, body: body.as_str().into() }), None)
                    }
                    RouteActionConfig::Redirect(rc) => (Some(RouteAction::Redirect(Redirect::new(rc))), None),
                    RouteActionConfig::Forward(f) => {
                        let fw = Forward::new(f, matcher.matched_prefix(), &find, d).map(|fw| RouteAction::Forward(Arc::new(fw)));
                        (fw, HeaderEdits::new(&f.headers))
                    }
                };
                let per_filter = per_filter(r, config, d);
                if let Some(action) = action {
                    let mirror = r.mirror.as_ref().and_then(|m| Some(MirrorPolicy { cluster: find(&m.cluster)?, percent: m.percent }));
                    routes.push(Route { path: r.path.clone(), action, edits, per_filter, mirror });
                    matchers.push(matcher);
                }
            }
            let table = table::RouteTable::new(&matchers.iter().collect::<Vec<_>>());
            vhosts.push(VirtualHost { name: vh.name.clone(), routes, matchers, table, edits: HeaderEdits::new(&vh.headers) });
        }
        let domains = Domains::new(&cfg.virtual_hosts, d);
        if d.error_count() != errors {
            return None;
        }
        Some(Router { name: cfg.router_config_name.clone(), domains, vhosts, edits: HeaderEdits::new(&cfg.headers), clusters: by_name })
    }

    /// The first route matching the request, or `None` (MOSN replies 404). `vars.path` is
    /// the decoded, normalized path ([`path::normalize`]).
    pub fn route(&self, vars: &RequestVars<'_>) -> Option<RouteMatch> {
        let headers = vars.headers;
        let vhost = self.domains.find_with(|| headers.get(":authority").first().or_else(|| headers.get("host").first()))?;
        let vh = &self.vhosts[vhost];
        let route = vh.table.find(&vh.matchers, vars)?;
        Some(RouteMatch { vhost, route })
    }

    fn route_at(&self, m: RouteMatch) -> &Route {
        &self.vhosts[m.vhost].routes[m.route]
    }

    /// What the matched route does.
    pub fn action(&self, m: RouteMatch) -> &RouteAction {
        &self.route_at(m).action
    }

    /// The matched route's JSON path (for logs and `mosn-ext route-check`).
    pub fn route_path(&self, m: RouteMatch) -> &str {
        &self.route_at(m).path
    }

    /// The matched virtual host's `name`.
    pub fn vhost_name(&self, m: RouteMatch) -> &str {
        &self.vhosts[m.vhost].name
    }

    /// The header edits that apply, in MOSN's order: route, virtual host, router.
    pub fn header_edits(&self, m: RouteMatch) -> impl Iterator<Item = &HeaderEdits> {
        [self.route_at(m).edits.as_ref(), self.vhosts[m.vhost].edits.as_ref(), self.edits.as_ref()].into_iter().flatten()
    }

    /// True when some header edit applies (a cheap check before building variables).
    pub fn has_header_edits(&self, m: RouteMatch) -> bool {
        self.header_edits(m).next().is_some()
    }

    /// The route's replacement for the listener's filter named `name`, if any.
    /// The route's `request_mirror_policies`.
    pub fn mirror(&self, m: RouteMatch) -> Option<&MirrorPolicy> {
        self.route_at(m).mirror.as_ref()
    }

    /// Every route's `per_filter_config` filters.
    pub fn per_route_filters(&self) -> impl Iterator<Item = &Arc<dyn StreamFilter>> {
        self.vhosts.iter().flat_map(|v| v.routes.iter()).flat_map(|r| r.per_filter.iter())
    }

    pub fn per_filter(&self, m: RouteMatch, name: &str) -> Option<&Arc<dyn StreamFilter>> {
        self.route_at(m).per_filter.iter().find(|f| f.name() == name)
    }

    /// The forward action of the matched route, if it forwards.
    pub fn forward(&self, m: RouteMatch) -> Option<&Forward> {
        match self.action(m) {
            RouteAction::Forward(fw) => Some(fw),
            _ => None,
        }
    }

    /// The cluster named `name` (for `cluster_header`).
    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.get(name).cloned()
    }
}
