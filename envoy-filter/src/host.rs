//! The Envoy calls the adapter makes, as small traits.
//!
//! The adapter's logic ([`crate::http_logic`], [`crate::lb`]) talks to Envoy only through
//! these traits, so it runs in `cargo test` against the recording fakes of
//! [`crate::testing`]; `crate::envoy_host` implements them over the real ABI (`abi.rs`,
//! left out of test builds).
//!
//! - [`HttpHost`]: one HTTP stream, inside one of its hooks (the `filter_envoy` pointer);
//! - [`Scheduler`]: a stream's or a cluster's scheduler (commit from any thread, delete on
//!   the thread that owns it);
//! - [`ConfigHost`]: an HTTP filter config on the main thread (`filter_config_envoy`);
//! - [`ClusterHost`]: a cluster on the main thread (`cluster_envoy`);
//! - [`LbHost`]: a worker's load balancer plus the context of one `choose_host` call.
//!
//! Mutating calls take `&mut self`: Envoy's header buffers stay valid only until the map is
//! changed, so a [`Lookup`] borrowed from `&self` can not outlive a mutation.

use mosn_extension::filter::LocalReply;
use mosn_extension::headers::{Header, Lookup};
use std::sync::Arc;

// === Vocabulary ===

/// Which header map of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderKind {
    Request,
    /// The request's trailers (read-only here; present once the trailers hook ran).
    RequestTrailers,
    Response,
}

/// Which body buffer (Envoy's `http_body_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// The request chunk of the current body hook.
    Received,
    /// What Envoy buffered of the request so far (after `StopIterationAndBuffer`).
    Buffered,
    /// The response chunk of the current body hook.
    ResponseReceived,
    /// What Envoy buffered of the response so far.
    ResponseBuffered,
}

/// What a headers hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersStatus {
    Continue,
    StopIteration,
    /// Hold headers and buffer the body until `continue_decoding`.
    StopAllIterationAndBuffer,
}

/// What a body hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    Continue,
    StopIterationAndBuffer,
    StopIterationNoBuffer,
}

/// What a trailers hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailersStatus {
    Continue,
    StopIteration,
}

/// An Envoy host object (`HostDescription*`), opaque to the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostHandle(pub usize);

/// One host for [`ClusterHost::add_hosts`].
#[derive(Debug, Clone, Copy)]
pub struct HostSpec<'a> {
    /// `ip:port`.
    pub address: &'a str,
    /// 1..=128.
    pub weight: u32,
    /// `(key, value)` pairs; every host of one call has the same number.
    pub metadata: &'a [(String, String)],
}

// === HTTP filter ===

/// How many headers a [`HeaderList`] holds without allocating (a typical request has under
/// ten).
pub const HEADER_LIST_INLINE: usize = 16;

/// A header map read in one pass: up to [`HEADER_LIST_INLINE`] headers on the stack, no
/// allocation.
pub type HeaderList<'a> = smallvec::SmallVec<[Header<'a>; HEADER_LIST_INLINE]>;

/// One HTTP stream as its filter sees it, inside one of its hooks, on its worker.
pub trait HttpHost {
    /// A header by lower-case name (first value, and whether there are more).
    fn header(&self, kind: HeaderKind, name: &str) -> Lookup<'_>;
    /// Every header, in order.
    fn for_each_header(&self, kind: HeaderKind, f: &mut dyn FnMut(&[u8], &[u8]));
    /// Every header, in order, read in one pass into `out` (on Envoy: one call for the count,
    /// one for the headers, instead of one call per [`HttpHost::header`] lookup). The slices
    /// borrow the map until it changes. `out` is the caller's, so the list is filled where it
    /// lives instead of moved there.
    fn read_headers<'s>(&'s self, kind: HeaderKind, out: &mut HeaderList<'s>);
    /// Replaces every value of `name` with `value`.
    fn set_header(&mut self, kind: HeaderKind, name: &str, value: &str);
    /// Appends one value.
    fn add_header(&mut self, kind: HeaderKind, name: &str, value: &str);
    /// Removes every value.
    fn remove_header(&mut self, kind: HeaderKind, name: &str);
    /// Answers locally. Envoy runs this stream's local-reply and response hooks before it
    /// returns, so the caller must hold no borrow of the stream state.
    fn send_local_reply(&mut self, reply: &LocalReply);
    /// Makes the route name `cluster` (Envoy asks the route's cluster specifier again,
    /// `specifier.rs`); false if the route did not ask (it is not that specifier).
    fn route_to_cluster(&mut self, cluster: &str) -> bool;
    /// A string in the stream's dynamic metadata (access logs).
    fn set_dynamic_metadata(&mut self, namespace: &str, key: &str, value: &str);
    /// Bytes in the stream's filter state (read back by the cluster LB); false if refused.
    fn set_filter_state(&mut self, key: &str, value: &str) -> bool;
    /// Makes the router's first attempt go to the cluster's host at `address` (`ip:port`),
    /// strictly (no host if the cluster has none there), without asking the cluster's LB;
    /// false if refused.
    fn set_upstream_override_host(&mut self, address: &str) -> bool;
    /// Bytes of the stream's filter state (an upstream filter sees the downstream stream's).
    fn filter_state(&self, key: &str) -> Option<&[u8]>;
    /// The stream's scheduler (`None` if Envoy gives none).
    fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>>;
    /// Resumes a request stopped by an earlier hook. Envoy may run the router, the cluster
    /// LB and response hooks before it returns (hold no borrow of the stream state).
    fn continue_decoding(&mut self);
    /// Appends the body chunks of `kind` (request or response) to `out`.
    fn request_body(&self, kind: BodyKind, out: &mut Vec<u8>);
    /// True if the current request body hook's chunk is already part of the buffered body.
    fn received_body_is_buffered(&self) -> bool;
    /// The same for the response.
    fn received_response_body_is_buffered(&self) -> bool;
    /// Makes `body` the whole request body Envoy forwards: drains what Envoy buffered and
    /// the current body hook's chunk, and adds `body` in their place.
    fn replace_request_body(&mut self, body: &[u8]);
    /// The same for the response body Envoy sends the client.
    fn replace_response_body(&mut self, body: &[u8]);
    /// The whole body so far of the request (`response`: of the response): what Envoy
    /// buffered, then, with `with_received` (in a body hook), the current chunk when it is
    /// not the buffer itself.
    fn whole_body(&self, response: bool, with_received: bool) -> Vec<u8> {
        let (buffered, received, in_buffer) = if response {
            (BodyKind::ResponseBuffered, BodyKind::ResponseReceived, with_received && self.received_response_body_is_buffered())
        } else {
            (BodyKind::Buffered, BodyKind::Received, with_received && self.received_body_is_buffered())
        };
        let mut body = Vec::new();
        self.request_body(buffered, &mut body);
        if with_received && !in_buffer {
            self.request_body(received, &mut body);
        }
        body
    }
    /// The stream's buffer limit in bytes (a larger buffered body gets Envoy's 413).
    fn buffer_limit(&self) -> u64;
    /// The client's address as Envoy reports it (`ip:port`), if it has one.
    fn source_address(&self) -> Option<&[u8]>;
    /// The response's status as the stream records it, if it does yet (read without a copy
    /// of the response's headers).
    fn response_code(&self) -> Option<u16>;
}

/// A scheduler: `commit` makes Envoy call `on_http_filter_scheduled` on a stream's worker
/// (a stream's scheduler) or `on_cluster_scheduled` on the main thread (a cluster's).
pub trait Scheduler: Send + Sync {
    /// Any thread.
    fn commit(&self, event_id: u64);
    /// The owning thread only (the stream's worker, or main for a cluster), once, after the
    /// last `commit` can have started: the stream's core stream, which owns the only wake
    /// function that commits, is dropped first; a cluster's [`crate::lb::HostFeed`]
    /// deletes it under the lock its commits take.
    fn delete(&self);
}

// === HTTP filter config ===

/// Why Envoy refused to start an HTTP callout (`envoy_dynamic_module_type_http_callout_init_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalloutRefused {
    /// No `:path`, `:method` or Host.
    MissingRequiredHeaders,
    /// No Envoy cluster of that name (on this thread).
    ClusterNotFound,
    /// Envoy's async client made no request.
    CannotCreateRequest,
    /// Any other code.
    Other(u32),
}

/// One HTTP filter config (`filter_config_envoy`) on the main thread, inside one of its
/// hooks (`on_http_filter_config_scheduled`).
pub trait ConfigHost {
    /// Sends one request to Envoy cluster `cluster` (headers including `:method`, `:path`
    /// and `:authority`, the whole body), answered to `on_http_filter_config_http_callout_done`
    /// under the returned id, or at the latest after `timeout_ms`. The request belongs to
    /// the config, not to a stream: no stream's end cancels it.
    fn http_callout(&mut self, cluster: &str, headers: &[(&[u8], &[u8])], body: &[u8], timeout_ms: u64) -> Result<u64, CalloutRefused>;
}

// === Cluster and load balancer ===

/// One Envoy cluster, on the main thread.
pub trait ClusterHost {
    /// Adds hosts at priority 0 (all or nothing); their Envoy handles in the same order,
    /// `None` for an address Envoy added no host of its own for (newer Envoys skip an
    /// address the cluster already has). `metadata_filter` is the metadata namespace of
    /// every `(key, value)` pair.
    fn add_hosts(&mut self, hosts: &[HostSpec<'_>], metadata_filter: &str) -> Option<Vec<Option<HostHandle>>>;
    /// Removes hosts `add_hosts` returned (and not removed since); how many Envoy removed.
    /// Workers see the removal when they apply the update Envoy posts them.
    fn remove_hosts(&mut self, hosts: &[HostHandle]) -> usize;
    /// Ends warming; Envoy waits for it before serving the cluster.
    fn pre_init_complete(&mut self);
    /// True when Envoy runs as `envoy --mode validate` (which runs cluster init too).
    fn is_validation_mode(&self) -> bool;
    /// The cluster's scheduler (`None` if Envoy gives none).
    fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>>;
    /// Sets the host's health in Envoy's view (healthy, or unhealthy: an EDS health flag);
    /// false if Envoy refused (not the main thread, unknown host). `host` must still be in
    /// the cluster (a handle `add_hosts` returned and `remove_hosts` was not given).
    fn update_host_health(&mut self, host: HostHandle, healthy: bool) -> bool;
}

/// A worker's load balancer, during one `choose_host` call (priority 0 only: MOSN hosts
/// are all added there).
pub trait LbHost {
    /// Envoy's healthy hosts.
    fn healthy_host_count(&self) -> usize;
    fn healthy_host(&self, index: usize) -> Option<HostHandle>;
    /// The host at `address` (`ip:port`) in this worker's view of the cluster (any health),
    /// if the worker has it: a host the main thread just added shows only after the worker
    /// applied Envoy's posted update, one just removed until then.
    fn find_host_by_address(&self, address: &str) -> Option<HostHandle>;
    /// False when Envoy passed no context (health checks, some async paths); the context
    /// methods then answer `None` / `false`.
    fn has_context(&self) -> bool;
    /// The request's filter state bytes under `key`.
    fn filter_state(&self, key: &str) -> Option<&[u8]>;
    /// The first value of request header `name` (lower case) of the request being balanced:
    /// for an HTTP callout, the callout's own headers.
    fn downstream_header(&self, name: &str) -> Option<&[u8]>;
    /// Envoy's retry host predicates (e.g. `previous_hosts`) reject healthy host `index`.
    fn should_select_another_host(&self, index: usize) -> bool;
    /// Ends this host selection without a host, with `details` in Envoy's 503 reply and
    /// access log (`%RESPONSE_CODE_DETAILS%`) instead of `no_healthy_upstream`. False when
    /// it can not (no context): then the caller answers "no host" as usual.
    fn end_without_host(&self, details: &'static str) -> bool;
}
