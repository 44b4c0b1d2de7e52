//! A listener at run time: its stream filter chain and its router.

use crate::filter::StreamFilter;
use crate::headers::{NameSet, SharedStr};
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
    /// The filters (the listener's, and routes' `per_filter_config` replacements of them)
    /// that may need a request's body buffered; empty: no request is buffered.
    pub(crate) body_filters: Vec<Arc<dyn StreamFilter>>,
    pub router: Option<Arc<Router>>,
    /// Some filter (the listener's, or a route's replacement of one) may return `Wait`.
    pub(crate) may_wait: bool,
    /// Passive health settings (a `fault_tolerance` filter), fed every attempt's outcome.
    pub(crate) outlier: Option<crate::upstream::outlier::OutlierConfig>,
    /// MOSN's `downstream` metrics of this listener.
    pub counters: crate::metrics::ListenerCounters,
    /// Request headers read from every request in the stream's first pass over the host's
    /// map: the core's four ([`CORE_REQUEST_NAMES`], first, in that order), then the
    /// filters'.
    pub(crate) request_names: NameSet,
    /// Some filter of the chain runs on responses ([`StreamFilter::sends`]); without one a
    /// response needs no filter walk.
    pub(crate) sends: bool,
    /// Some filter of the chain runs after routing: without one a routed request is
    /// forwarded without a second walk.
    pub(crate) after_route: bool,
    /// Some filter (or a route's replacement of one) reads the client's address, or some
    /// cluster hashes on it: hosts hand it to each stream ([`Stream::set_downstream_address`]).
    ///
    /// [`Stream::set_downstream_address`]: crate::Stream::set_downstream_address
    pub(crate) reads_client_address: bool,
}

/// The request headers the core reads from every request: `:path`, `:authority`, and MOSN's
/// timeout headers.
pub(crate) const CORE_REQUEST_NAMES: [SharedStr; 4] = [
    SharedStr::from_static(":path"),
    SharedStr::from_static(":authority"),
    SharedStr::from_static(GLOBAL_TIMEOUT),
    SharedStr::from_static(TRY_TIMEOUT),
];

/// MOSN's request headers overriding the route's timeout and per-try timeout (ms).
pub(crate) const GLOBAL_TIMEOUT: &str = "x-mosn-global-timeout";
pub(crate) const TRY_TIMEOUT: &str = "x-mosn-try-timeout";

/// [`CORE_REQUEST_NAMES`] and the request headers `filters` read from every request.
pub(crate) fn request_names(filters: &[Arc<dyn StreamFilter>]) -> NameSet {
    let mut names = Vec::new();
    for f in filters.iter().filter(|f| f.receive_phase() == Some(crate::filter::ReceivePhase::BeforeRoute)) {
        f.request_header_names(&mut names);
    }
    NameSet::new(CORE_REQUEST_NAMES.into_iter().chain(names))
}

/// True if one of `filters` runs after routing.
pub(crate) fn runs_after_route(filters: &[Arc<dyn StreamFilter>]) -> bool {
    filters.iter().any(|f| f.receive_phase() == Some(crate::filter::ReceivePhase::AfterRoute))
}

impl Listener {
    /// True if this request's body must be buffered before the filters run.
    #[inline]
    pub(crate) fn needs_body(&self, headers: &dyn crate::headers::HeaderMap) -> bool {
        self.body_filters.iter().any(|f| f.needs_body_for(headers))
    }

    /// False when no filter of this listener (nor a route's replacement of one) can make a
    /// stream wait: its streams never need a wake function (see [`StreamFilter::may_wait`]).
    #[inline]
    pub fn may_wait(&self) -> bool {
        self.may_wait
    }

    /// False when nothing on this listener reads the client's address: hosts that must
    /// fetch it (Envoy) skip that.
    #[inline]
    pub fn reads_client_address(&self) -> bool {
        self.reads_client_address
    }

    /// Adds `f` at position `at` of the chain (tests: e.g. a filter that panics on purpose).
    #[doc(hidden)]
    pub fn insert_filter(&mut self, at: usize, f: Arc<dyn StreamFilter>) {
        if f.may_need_body() {
            self.body_filters.push(f.clone());
        }
        self.may_wait |= f.may_wait();
        self.reads_client_address |= f.reads_client_address();
        self.filters.insert(at.min(self.filters.len()), f);
        self.request_names = request_names(&self.filters);
        self.sends = self.filters.iter().any(|f| f.sends());
        self.after_route = runs_after_route(&self.filters);
    }
}
