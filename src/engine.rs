//! A loaded config: listeners with their filter chains and routers, and the clusters.
//!
//! An [`Engine`] is immutable once built and shared (`Arc`) by every stream started
//! on it; a reload builds a new one while in-flight streams keep theirs.

use crate::config::{ConfigErrors, MosnConfig};
use crate::filter::StreamFilter;
use crate::router::Router;
use crate::stream::Stream;
use crate::upstream::{Cluster, Layout, StateBlock};
use crate::wake::WakeFn;
use std::net::SocketAddr;
use std::sync::Arc;

/// A listener: where the host listens, its filters and its router.
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// `address` as `ip:port` text (handed to hosts).
    pub address_text: String,
    pub(crate) filters: Vec<Arc<dyn StreamFilter>>,
    pub(crate) needs_body: bool,
    pub router: Option<Arc<Router>>,
}

/// A validated, built config snapshot.
pub struct Engine {
    pub config: MosnConfig,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Arc<Cluster>>,
    /// The upstream state words (see [`StateBlock`]).
    pub state: Arc<StateBlock>,
}

impl Engine {
    /// Parses, validates and builds MOSN JSON text. Unused fields are logged once here.
    pub fn from_json(text: &str) -> Result<Arc<Engine>, ConfigErrors> {
        let config = MosnConfig::from_json(text)?;
        Ok(Arc::new(Engine::build(config)))
    }

    /// [`Engine::from_json`] on a file.
    pub fn from_file(path: &std::path::Path) -> Result<Arc<Engine>, ConfigErrors> {
        let config = MosnConfig::from_file(path)?;
        Ok(Arc::new(Engine::build(config)))
    }

    /// Builds the runtime objects from a validated config.
    pub fn build(config: MosnConfig) -> Engine {
        for f in &config.unused_fields {
            tracing::info!("config field {f} is not used by mosn-extension; ignored");
        }
        let words = config.clusters.iter().map(|c| Cluster::state_words(c.hosts.len())).sum();
        let state = Arc::new(StateBlock::new(words));
        let mut layout = Layout::default();
        let clusters: Vec<Arc<Cluster>> = config.clusters.iter().map(|c| Arc::new(Cluster::new(c, &state, &mut layout))).collect();
        let find = |name: &str| clusters.iter().find(|c| &*c.name == name).cloned().expect("validated cluster reference");
        let routers: Vec<Arc<Router>> = config.routers.iter().map(|r| Arc::new(Router::new(r, find))).collect();
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                let filters: Vec<Arc<dyn StreamFilter>> = l.stream_filters.iter().map(crate::filter::build).collect();
                let needs_body = filters.iter().any(|f| f.needs_body());
                if l.router_config_name.is_none() {
                    tracing::warn!(listener = %l.name, "listener has no proxy router_config_name; its requests get 404");
                }
                Listener {
                    name: l.name.clone(),
                    address: l.address,
                    address_text: l.address.to_string(),
                    filters,
                    needs_body,
                    router: l.router_config_name.as_ref().and_then(|n| routers.iter().find(|r| &r.name == n).cloned()),
                }
            })
            .collect();
        Engine { config, listeners, clusters, state }
    }

    /// The index of a listener by name; `None` or empty picks the first listener.
    pub fn listener_index(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None | Some("") => (!self.listeners.is_empty()).then_some(0),
            Some(n) => self.listeners.iter().position(|l| l.name == n),
        }
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.iter().find(|c| &*c.name == name)
    }

    /// Starts a stream on a listener (see [`Engine::listener_index`]).
    pub fn new_stream(self: &Arc<Self>, listener: usize, wake: Option<WakeFn>) -> Stream {
        assert!(listener < self.listeners.len(), "listener index out of range");
        Stream::new(self.clone(), listener, wake)
    }
}
