//! A listener at run time: its stream filter chain and its router.

use crate::filter::StreamFilter;
use crate::router::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// A MOSN listener: where the host listens, the filters every request runs, the router.
/// Built once per config and shared by all streams on it.
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// `address` as `ip:port` text (handed to hosts).
    pub address_text: String,
    pub(crate) filters: Vec<Arc<dyn StreamFilter>>,
    /// True if a filter reads the request body (the host buffers it first).
    pub(crate) needs_body: bool,
    pub router: Option<Arc<Router>>,
    /// Passive health settings (a `fault_tolerance` filter), fed every attempt's outcome.
    pub(crate) outlier: Option<crate::upstream::outlier::OutlierConfig>,
}

impl Listener {
    /// Adds `f` at position `at` of the chain (tests: e.g. a filter that panics on purpose).
    #[doc(hidden)]
    pub fn insert_filter(&mut self, at: usize, f: Arc<dyn StreamFilter>) {
        self.needs_body |= f.needs_body();
        self.filters.insert(at.min(self.filters.len()), f);
    }
}
