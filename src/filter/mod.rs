//! Stream filters: MOSN's receive (request) and send (response) filter chain.
//!
//! Filters are built once per config and shared by every stream (`Send + Sync`, `&self`):
//! a request pays no allocation for its chain. Per-request data lives in the stream and
//! is reached through [`ReceiveContext`] / [`SendContext`].
//!
//! Phases and statuses follow MOSN: receive filters run `BeforeRoute`, then the router
//! matches, then `AfterRoute` filters run; send filters run `BeforeSend` on the response.
//!
//! Each filter type is one file that reads its own `config` and builds the filter; the
//! [`registry`] lists them by MOSN type name.

pub mod body_rewrite;
pub mod fault;
pub mod fault_tolerance;
pub mod flow_control;
pub mod gzip;
pub mod header_to_metadata;
pub mod ip_access;
pub mod metadata;
pub mod mirror;
pub mod payload_limit;
pub mod registry;

pub use crate::api::LocalReply;

use crate::api::Metadata;
use crate::headers::{HeaderMap, HeaderMutation, HeaderOp, Lookup, Mutations, Overlay, SharedStr};
use crate::wake::{WakeSource, Waker};

/// When a receive filter runs (MOSN's `api.ReceiverFilterPhase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceivePhase {
    BeforeRoute,
    AfterRoute,
}

/// What a filter tells the chain (MOSN's `api.StreamFilterStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterStatus {
    /// Run the next filter.
    Continue,
    /// Skip the remaining filters of this phase; the stream goes on to the next phase.
    Stop,
    /// Park the stream. The filter has handed [`ReceiveContext::waker`] to whoever
    /// resumes it; on resume the same filter runs again with `resumed() == true`.
    Wait,
    /// Answer locally; the filter has called [`ReceiveContext::local_reply`].
    LocalReply,
}

/// A stream filter.
pub trait StreamFilter: Send + Sync {
    /// The filter type name as written in `stream_filters[].type`.
    fn name(&self) -> &'static str;
    /// The receive phase, or `None` for a send-only filter.
    fn receive_phase(&self) -> Option<ReceivePhase> {
        Some(ReceivePhase::BeforeRoute)
    }
    /// True if the filter must see the whole request body (the host buffers it first).
    fn needs_body(&self) -> bool {
        false
    }
    /// True if this request's body must be buffered for the filter (default: [`needs_body`]);
    /// e.g. only a body of unknown length.
    ///
    /// [`needs_body`]: StreamFilter::needs_body
    fn needs_body_for(&self, _headers: &dyn HeaderMap) -> bool {
        self.needs_body()
    }
    /// Request headers this filter reads from every request before routing; the stream
    /// reads them from the host in one pass with its own (see [`crate::headers::Prefetched`]).
    fn request_header_names(&self, _names: &mut Vec<crate::headers::SharedStr>) {}
    /// True if some request may need its body buffered for this filter (the listener then
    /// asks [`StreamFilter::needs_body_for`] per request).
    fn may_need_body(&self) -> bool {
        self.needs_body()
    }
    /// False if the filter never returns [`FilterStatus::Wait`]. A host need not prepare to
    /// resume the streams of a listener whose filters all say so (on Envoy: no scheduler per
    /// stream). The default is true, so a filter that does not say never waits for nothing.
    fn may_wait(&self) -> bool {
        true
    }
    /// False if the filter never reads the client's address
    /// ([`ReceiveContext::client_ip`]). A host need not fetch it for a listener whose filters
    /// all say so, and whose clusters never hash on it. The default is true, as for
    /// [`StreamFilter::may_wait`].
    fn reads_client_address(&self) -> bool {
        true
    }
    fn on_receive(&self, _cx: &mut ReceiveContext<'_>) -> FilterStatus {
        FilterStatus::Continue
    }
    /// True if the filter runs on responses.
    fn sends(&self) -> bool {
        false
    }
    /// True if [`StreamFilter::on_send`] must see this response's whole body (the host
    /// holds the response headers and buffers the body first); asked only for a response
    /// that has a body.
    fn needs_response_body(&self, _status: u16, _headers: &dyn HeaderMap) -> bool {
        false
    }
    fn on_send(&self, _cx: &mut SendContext<'_>) -> FilterStatus {
        FilterStatus::Continue
    }
    /// Passive health settings the stream reports every attempt's outcome to
    /// (`fault_tolerance`).
    fn outlier(&self) -> Option<&crate::upstream::outlier::OutlierConfig> {
        None
    }
    /// The `per_filter_config` entry's JSON path when this stands for a filter a route
    /// turned off (see [`registry::disable_entry`]).
    fn disabled_at(&self) -> Option<&str> {
        None
    }
}

/// The per-stream state filters may read and change on the request path.
pub struct ReceiveContext<'a> {
    pub(crate) headers: &'a dyn HeaderMap,
    pub(crate) body: Option<&'a [u8]>,
    pub(crate) trailers: Option<&'a dyn HeaderMap>,
    /// The body a filter replaced the request's with (the host sends it instead).
    pub(crate) new_body: &'a mut Option<Vec<u8>>,
    pub(crate) mutations: &'a mut Mutations,
    pub(crate) metadata: &'a mut Metadata,
    pub(crate) router_meta: &'a mut Metadata,
    pub(crate) client: Option<&'a crate::api::ClientAddr>,
    /// The route's `request_mirror_policies` (after routing), and the copies decided so far.
    pub(crate) mirror_policy: Option<&'a crate::upstream::mirror::MirrorPolicy>,
    pub(crate) mirrors: &'a mut Vec<crate::upstream::mirror::MirrorTarget>,
    pub(crate) reply: &'a mut Option<LocalReply>,
    pub(crate) cluster: Option<&'a str>,
    pub(crate) wake_source: &'a WakeSource,
    pub(crate) resumed: bool,
    pub(crate) flags: &'a mut u32,
}

impl<'a> ReceiveContext<'a> {
    /// A request header as the router will see it (the host's value with earlier
    /// filters' changes applied).
    pub fn header(&self, name: &str) -> Lookup<'_> {
        Overlay { base: self.headers, mutations: self.mutations }.lookup(name)
    }
    /// The request headers as the router will see them (for matchers).
    pub fn headers(&self) -> Overlay<'_> {
        Overlay { base: self.headers, mutations: self.mutations }
    }
    /// The whole request body, when a filter asked for it and the host buffered it (with an
    /// earlier filter's replacement, if one replaced it).
    pub fn body(&self) -> Option<&[u8]> {
        self.new_body.as_deref().or(self.body)
    }
    /// Replaces the request body the upstream gets (the host fixes `Content-Length`). Only a
    /// buffered body can be replaced: returns false (and changes nothing) when the request
    /// was not buffered, i.e. no filter's [`StreamFilter::needs_body_for`] asked for it.
    pub fn set_body(&mut self, body: Vec<u8>) -> bool {
        replace_body(self.body, self.new_body, body)
    }
    /// The request trailers, when the body was buffered and the request had trailers (HTTP/1.1
    /// chunked or HTTP/2; nginx 1.22 drops request trailers, so there they are never seen).
    pub fn trailers(&self) -> Option<&dyn HeaderMap> {
        self.trailers
    }
    pub fn set_header(&mut self, name: SharedStr, value: SharedStr) {
        self.mutations.push(HeaderMutation { op: HeaderOp::Set, name, value });
    }
    pub fn add_header(&mut self, name: SharedStr, value: SharedStr) {
        self.mutations.push(HeaderMutation { op: HeaderOp::Add, name, value });
    }
    pub fn remove_header(&mut self, name: SharedStr) {
        self.mutations.push(HeaderMutation { op: HeaderOp::Remove, name, value: crate::headers::empty() });
    }
    /// Records a value for logs and hosts (`$mosn_unit` is metadata key `unit`).
    #[inline]
    pub fn set_metadata(&mut self, key: SharedStr, value: SharedStr) {
        self.metadata.retain(|(k, _)| *k != key);
        self.metadata.push((key, value));
    }
    /// Adds a subset criterion (MOSN's `x-mosn-router-meta`): the request goes to the
    /// cluster's hosts whose `mosn.lb` metadata has `key: value`. It wins over the route's
    /// `metadata_match` for the same key.
    pub fn set_router_meta(&mut self, key: SharedStr, value: SharedStr) {
        self.router_meta.retain(|(k, _)| *k != key);
        self.router_meta.push((key, value));
    }
    /// The client's IP, as the host gave it (Envoy's `source.address`, nginx's
    /// `$remote_addr`); `None` if the host gave none.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.client.and_then(crate::api::ClientAddr::ip)
    }
    /// The cluster the router chose (`AfterRoute` filters only).
    pub fn cluster(&self) -> Option<&str> {
        self.cluster
    }
    /// Answers locally; return [`FilterStatus::LocalReply`] after this.
    pub fn local_reply(&mut self, reply: LocalReply) {
        *self.reply = Some(reply);
    }
    /// Sets a MOSN response flag bit (see [`crate::api::flags`]).
    pub fn set_flag(&mut self, flag: u32) {
        *self.flags |= flag;
    }
    /// A handle that resumes this stream once, from any thread. Return
    /// [`FilterStatus::Wait`] after handing it out.
    pub fn waker(&mut self) -> Waker {
        self.wake_source.arm()
    }
    /// True when the stream resumed into this filter after it returned `Wait`.
    pub fn resumed(&self) -> bool {
        self.resumed
    }
}

/// The per-stream state filters may read and change on the response path.
pub struct SendContext<'a> {
    pub(crate) headers: &'a dyn HeaderMap,
    pub(crate) status: u16,
    pub(crate) mutations: &'a mut Mutations,
    pub(crate) metadata: &'a Metadata,
    /// The whole response body, when a send filter asked for it.
    pub(crate) body: Option<&'a [u8]>,
    /// The body a filter replaced the response's with.
    pub(crate) new_body: &'a mut Option<Vec<u8>>,
}

impl SendContext<'_> {
    pub fn header(&self, name: &str) -> Lookup<'_> {
        Overlay { base: self.headers, mutations: self.mutations }.lookup(name)
    }
    pub fn status(&self) -> u16 {
        self.status
    }
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
    }
    /// The whole response body, when a send filter asked for it (with an earlier filter's
    /// replacement, if one replaced it).
    pub fn body(&self) -> Option<&[u8]> {
        self.new_body.as_deref().or(self.body)
    }
    /// Replaces the response body the client gets (the host fixes `Content-Length`). Only a
    /// buffered body can be replaced: false (nothing changes) when none was buffered.
    pub fn set_body(&mut self, body: Vec<u8>) -> bool {
        replace_body(self.body, self.new_body, body)
    }
    pub fn set_header(&mut self, name: SharedStr, value: SharedStr) {
        self.mutations.push(HeaderMutation { op: HeaderOp::Set, name, value });
    }
    pub fn add_header(&mut self, name: SharedStr, value: SharedStr) {
        self.mutations.push(HeaderMutation { op: HeaderOp::Add, name, value });
    }
    pub fn remove_header(&mut self, name: SharedStr) {
        self.mutations.push(HeaderMutation { op: HeaderOp::Remove, name, value: crate::headers::empty() });
    }
}

/// A filter's new body, kept only where the host buffered the body (it can send no other).
fn replace_body(buffered: Option<&[u8]>, slot: &mut Option<Vec<u8>>, body: Vec<u8>) -> bool {
    if buffered.is_none() {
        return false;
    }
    *slot = Some(body);
    true
}
