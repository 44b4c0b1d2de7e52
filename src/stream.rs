//! One request's life: filters, route, host choice, outcomes, response filters.
//!
//! The host drives a [`Stream`] through its phases and applies what it says:
//!
//! ```text
//! request_headers ─► [BufferBody ─► request_body(end)] ─► Continue | Wait | LocalReply
//!                         Wait ─► (wake fn called once, any thread) ─► resume
//! choose_host ─► connect ─► upstream_result ─► [retry? choose_host again]
//! response_headers ─► Continue | LocalReply          done (drop)
//! ```
//!
//! Header pointers the host passes are only borrowed for the call; everything the
//! stream keeps is owned (or shared with the config).

use crate::api::{flags, ClientAddr, Metadata};
use crate::filter::{FilterStatus, LocalReply, ReceiveContext, ReceivePhase, SendContext};
use crate::headers::SharedStr;
use crate::headers::{name_eq, HeaderMap, HeaderMutation, HeaderOp, Lookup, Mutations, Overlay, Prefetched};
use crate::listener::{Listener, GLOBAL_TIMEOUT, TRY_TIMEOUT};
use crate::router::header_edit::{self, Edit};
use crate::router::{path, Forward, Picked, RetryPolicy, RouteAction, RouteMatch};
use crate::upstream::lb::{self, Pick};
use crate::upstream::{Cluster, Criteria, Host, NoHostReason, TriedHosts};
use crate::variable::RequestVars;
use crate::wake::{WakeFn, WakeSource};
use std::sync::Arc;

pub use crate::api::{Action, NoHost, UpstreamOutcome};

/// The pseudo-header hosts forward as the upstream request target.
const PATH: SharedStr = SharedStr::from_static(":path");
/// The pseudo-header hosts forward as the upstream `Host`.
const AUTHORITY: SharedStr = SharedStr::from_static(":authority");

/// The host chosen for an attempt.
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'a> {
    pub cluster: &'a Cluster,
    pub index: usize,
    pub host: &'a Host,
    /// Where to connect (a STRICT_DNS host's address as resolved now).
    pub addr: std::net::SocketAddr,
    /// `addr` as `ip:port` text (lives as long as the config).
    pub address: &'a str,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Filters { phase: ReceivePhase, next: usize, resumed: bool },
    Waiting { phase: ReceivePhase, at: usize },
    Forwarding,
    Replied,
}

/// One request/response exchange.
pub struct Stream {
    listener: Arc<Listener>,
    /// When the stream started (MOSN's `request_time`).
    started: crate::metrics::clock::Stamp,
    stage: Stage,
    mutations: Mutations,
    /// Boxed on first use: most responses have none, and the stream stays small enough
    /// for the allocator's fast path.
    response_mutations: Option<Box<Mutations>>,
    metadata: Metadata,
    /// Subset criteria filters set (MOSN's `x-mosn-router-meta`).
    router_meta: Metadata,
    /// Copies of this request the `mirror` filter decided on.
    mirrors: Vec<crate::upstream::mirror::MirrorTarget>,
    reply: Option<LocalReply>,
    /// The route that matched in the listener's router (header edits, per-route filters).
    routed: Option<RouteMatch>,
    /// The cluster chosen for this request (the route forwards).
    picked: Option<Picked>,
    /// `picked`'s cluster, cached when the route picks it (finding it walks the router, and
    /// the stream needs it about ten times a request).
    cluster: Option<ConfigRef<Cluster>>,
    /// The matched route's forward action, cached when the route is matched (its retry
    /// policy and timeouts are read several times a request).
    forward: Option<ConfigRef<Forward>>,
    /// The route's response header edits, resolved at request time.
    response_edits: Vec<Edit>,
    tried: TriedHosts,
    attempts: u32,
    last_host: Option<usize>,
    /// The latest attempt is counted in its host's active requests until its outcome.
    in_flight: bool,
    /// The request counts against its cluster's `max_requests` until it ends.
    admitted: bool,
    /// The next (or current) attempt is a retry counted against `max_retries`.
    retry_admitted: bool,
    /// Why the latest host choice failed.
    no_host: Option<NoHost>,
    /// When the latest attempt started (ns, LB_PEAK_EWMA clusters only; 0: not measured).
    attempt_started_ns: u64,
    /// The consistent-hash key of this request (only for clusters that hash).
    hash: Option<u64>,
    /// `x-mosn-global-timeout` / `x-mosn-try-timeout` (ms), which override the route's.
    timeout_header: Option<std::time::Duration>,
    try_timeout_header: Option<std::time::Duration>,
    /// The client address as the host gave it (`ip` or `ip:port`), for `source_ip` hashing.
    downstream: Option<ClientAddr>,
    outcome: Option<UpstreamOutcome>,
    flags: u32,
    wake: WakeSource,
    /// The request body a filter replaced the buffered one with.
    new_body: Option<Vec<u8>>,
    /// The response's status while its body is buffered for the send filters.
    response_status: Option<u16>,
    /// The response body a send filter replaced the buffered one with.
    new_response_body: Option<Vec<u8>>,
    /// The answer's status was counted (`downstream` metrics), once per stream.
    counted: bool,
}

/// What the host has of a buffered request besides its headers.
#[derive(Clone, Copy, Default)]
pub struct Payload<'a> {
    /// The whole body (`None`: the request was not buffered).
    pub body: Option<&'a [u8]>,
    /// The trailers, if the request had any.
    pub trailers: Option<&'a dyn HeaderMap>,
}

/// Streams alive in this process (started and not dropped yet), in per-thread rows.
static LIVE_STREAMS: crate::upstream::rows::Striped = crate::upstream::rows::Striped::new(u64::MAX);

/// Streams alive in this process: back to zero once every request is done, also after
/// client aborts (a leak check for hosts and tests).
pub fn live_streams() -> usize {
    LIVE_STREAMS.sum() as usize
}

impl Stream {
    #[inline]
    pub(crate) fn new(listener: Arc<Listener>, wake: Option<WakeFn>) -> Stream {
        LIVE_STREAMS.add(1);
        listener.counters.start();
        Stream {
            listener,
            started: crate::metrics::clock::now(),
            stage: Stage::Start,
            mutations: Mutations::new(),
            response_mutations: None,
            metadata: Metadata::new(),
            router_meta: Metadata::new(),
            mirrors: Vec::new(),
            reply: None,
            routed: None,
            picked: None,
            cluster: None,
            forward: None,
            response_edits: Vec::new(),
            tried: TriedHosts::default(),
            attempts: 0,
            last_host: None,
            in_flight: false,
            admitted: false,
            retry_admitted: false,
            no_host: None,
            attempt_started_ns: 0,
            hash: None,
            timeout_header: None,
            try_timeout_header: None,
            downstream: None,
            outcome: None,
            flags: 0,
            wake: WakeSource::new(wake),
            new_body: None,
            response_status: None,
            new_response_body: None,
            counted: false,
        }
    }

    /// Sets the function that wakes this stream after [`Action::Wait`].
    pub fn set_wake_fn(&mut self, f: WakeFn) {
        self.wake.set_target(f);
    }

    /// The listener this stream runs on.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// The listener, borrowed apart from `self` so the filters and the router (config)
    /// can run while the stream's own fields change; cloning the `Arc` for that instead
    /// costs two atomic operations per phase.
    ///
    /// # Safety
    /// The reference must not outlive `self`. `self.listener` is set in [`Stream::new`] and
    /// never reassigned, so the `Arc` keeps the `Listener` alive and in place until the
    /// stream drops.
    #[inline]
    unsafe fn listener_apart<'a>(&self) -> &'a Listener {
        // SAFETY: the caller keeps the reference within the stream's life (above).
        unsafe { &*Arc::as_ptr(&self.listener) }
    }

    // === Request path ===

    /// Request headers arrived. `end_of_stream` is true when there is no body.
    pub fn request_headers(&mut self, headers: &dyn HeaderMap, end_of_stream: bool) -> Action {
        let a = self.start(headers, end_of_stream);
        self.count_local_reply(a)
    }

    fn start(&mut self, headers: &dyn HeaderMap, end_of_stream: bool) -> Action {
        if self.stage != Stage::Start {
            return self.current_action();
        }
        // What the core and the filters read from every request, in one pass over the
        // host's headers.
        // SAFETY: `listener` is used only within this call, which `self` outlives.
        let listener = unsafe { self.listener_apart() };
        let names = &listener.request_names;
        let mut found: smallvec::SmallVec<[Lookup<'_>; 8]> = smallvec::smallvec![Lookup::Missing; names.len()];
        headers.get_many(names, &mut found);
        let [path_header, authority, global_timeout, try_timeout] = [found[0], found[1], found[2], found[3]];
        let headers = &Prefetched { base: headers, names, found: &found };
        // Looked up once: checked here, routed on later (unless a filter changes it).
        let target = path_header.first().map(path::scan);
        if target.is_some_and(|t| !t.valid) {
            return self.reply_with(400, "invalid request target", "invalid_path");
        }
        // A Host with a comma is two Host headers Envoy joined (nginx answers those 400
        // itself; RFC 9112 §3.2: more than one Host is a 400) or a list: no host.
        // A plain loop: a Host is short, and `contains` sets up a word-at-a-time search (~40
        // instructions more per request).
        #[allow(clippy::manual_contains)]
        if authority.first().is_some_and(|a| a.iter().any(|b| *b == b',')) {
            return self.reply_with(400, "invalid host", "invalid_host");
        }
        // MOSN's timeout headers as the client sent them (`route` reads them again only if
        // a filter changed them).
        self.timeout_header = ms(global_timeout);
        self.try_timeout_header = ms(try_timeout);
        if !end_of_stream && self.listener.needs_body(headers) {
            return Action::BufferBody;
        }
        self.stage = Stage::Filters { phase: ReceivePhase::BeforeRoute, next: 0, resumed: false };
        self.run(headers, Payload::default(), target)
    }

    /// A local reply's status counts when the core decides it (a host may not show its own
    /// module's reply to the response hooks); `response_headers` then does not count again.
    fn count_local_reply(&mut self, a: Action) -> Action {
        if a == Action::LocalReply && !self.counted {
            if let Some(r) = &self.reply {
                self.listener.counters.answered(r.status);
                self.counted = true;
            }
        }
        a
    }

    /// The buffered request body (after [`Action::BufferBody`]). Only the call with
    /// `end_of_stream` runs the filters; earlier calls return `BufferBody` again.
    pub fn request_body(&mut self, headers: &dyn HeaderMap, body: &[u8], end_of_stream: bool) -> Action {
        if !end_of_stream {
            return if self.stage == Stage::Start { Action::BufferBody } else { self.current_action() };
        }
        self.request_end(headers, Payload { body: Some(body), trailers: None })
    }

    /// The request's trailers arrived after its buffered body: the request is complete.
    pub fn request_trailers(&mut self, headers: &dyn HeaderMap, body: &[u8], trailers: &dyn HeaderMap) -> Action {
        self.request_end(headers, Payload { body: Some(body), trailers: Some(trailers) })
    }

    fn request_end(&mut self, headers: &dyn HeaderMap, payload: Payload<'_>) -> Action {
        if self.stage != Stage::Start {
            return self.current_action();
        }
        self.stage = Stage::Filters { phase: ReceivePhase::BeforeRoute, next: 0, resumed: false };
        let a = self.run(headers, payload, None);
        self.count_local_reply(a)
    }

    /// Continues after the wake function was called. The host passes the request
    /// headers again (and the body if it buffered one).
    pub fn resume(&mut self, headers: &dyn HeaderMap, body: Option<&[u8]>) -> Action {
        self.resume_with(headers, Payload { body, trailers: None })
    }

    /// [`Stream::resume`] with the request's trailers too, when it had some.
    pub fn resume_with(&mut self, headers: &dyn HeaderMap, payload: Payload<'_>) -> Action {
        match self.stage {
            Stage::Waiting { phase, at } => {
                self.stage = Stage::Filters { phase, next: at, resumed: true };
                let a = self.run(headers, payload, None);
                self.count_local_reply(a)
            }
            _ => self.current_action(),
        }
    }

    /// The body a filter replaced the buffered request body with; the host sends it instead
    /// (with `Content-Length` set to its length) once the request goes upstream.
    pub fn replaced_body(&self) -> Option<&[u8]> {
        self.new_body.as_deref()
    }

    fn current_action(&self) -> Action {
        match self.stage {
            Stage::Start => Action::Continue,
            Stage::Waiting { .. } => Action::Wait,
            Stage::Replied => Action::LocalReply,
            Stage::Filters { .. } | Stage::Forwarding => Action::Continue,
        }
    }

    /// Runs the filters from the current stage; `target` is the host's `:path`, scanned, when
    /// the caller already looked it up.
    fn run(&mut self, headers: &dyn HeaderMap, payload: Payload<'_>, target: Option<path::Target<'_>>) -> Action {
        // SAFETY: `listener` is used only within this call, which `self` outlives.
        let listener = unsafe { self.listener_apart() };
        loop {
            let Stage::Filters { phase, next, resumed } = self.stage else { return self.current_action() };
            // Run this phase's filters from `next`.
            let mut i = next;
            let mut resumed = resumed;
            while i < listener.filters.len() {
                let mut f = &listener.filters[i];
                if f.receive_phase() != Some(phase) {
                    i += 1;
                    continue;
                }
                // A route's per_filter_config replaces the listener's filter of that type.
                if let (Some(m), Some(router)) = (self.routed, listener.router.as_deref()) {
                    if let Some(own) = router.per_filter(m, f.name()) {
                        f = own;
                    }
                }
                // SAFETY: `cluster` is used only within this call, which `self` outlives.
                let cluster = unsafe { self.cluster_apart() }.map(|c| &*c.name);
                let mirror_policy = match (self.routed, listener.router.as_deref()) {
                    (Some(m), Some(r)) => r.mirror(m),
                    _ => None,
                };
                let mut cx = ReceiveContext {
                    headers,
                    body: payload.body,
                    trailers: payload.trailers,
                    new_body: &mut self.new_body,
                    mutations: &mut self.mutations,
                    metadata: &mut self.metadata,
                    router_meta: &mut self.router_meta,
                    client: self.downstream.as_ref(),
                    mirror_policy,
                    mirrors: &mut self.mirrors,
                    reply: &mut self.reply,
                    cluster,
                    wake_source: &self.wake,
                    resumed,
                    flags: &mut self.flags,
                };
                resumed = false;
                match f.on_receive(&mut cx) {
                    FilterStatus::Continue => i += 1,
                    FilterStatus::Stop => break,
                    FilterStatus::Wait => {
                        if !self.wake.has_target() {
                            tracing::error!(filter = f.name(), "filter waits but the host gave no wake function; answering 500");
                            return self.reply_with(500, "internal error", "no_wake_fn");
                        }
                        self.stage = Stage::Waiting { phase, at: i };
                        return Action::Wait;
                    }
                    FilterStatus::LocalReply => {
                        if self.reply.is_none() {
                            return self.reply_with(500, "internal error", "filter_reply_missing");
                        }
                        self.stage = Stage::Replied;
                        return Action::LocalReply;
                    }
                }
            }
            match phase {
                ReceivePhase::BeforeRoute => {
                    if let Some(a) = self.route(headers, target) {
                        return a;
                    }
                    if !listener.after_route {
                        self.finalize_request(headers);
                        self.stage = Stage::Forwarding;
                        return Action::Continue;
                    }
                    self.stage = Stage::Filters { phase: ReceivePhase::AfterRoute, next: 0, resumed: false };
                }
                ReceivePhase::AfterRoute => {
                    self.finalize_request(headers);
                    self.stage = Stage::Forwarding;
                    return Action::Continue;
                }
            }
        }
    }

    /// Matches the route; returns an action only when the request ends here. A forwarded
    /// request gets the path that was matched, or the route's rewrite of it (see
    /// [`crate::router::path`]), and the route's Host rewrite.
    fn route(&mut self, headers: &dyn HeaderMap, target: Option<path::Target<'_>>) -> Option<Action> {
        // SAFETY: `listener` is used only within this call, which `self` outlives.
        let listener = unsafe { self.listener_apart() };
        let Some(router) = listener.router.as_deref() else {
            self.flags |= flags::NO_ROUTE_FOUND;
            return Some(self.reply_with(404, "no router for this listener", "no_router"));
        };
        let view = Overlay { base: headers, mutations: &self.mutations };
        let target = match target {
            Some(t) if !self.mutations.iter().any(|m| name_eq(&m.name, ":path")) => t,
            _ => path::scan(view.lookup(":path").first().unwrap_or(b"/")),
        };
        let (raw_path, rest) = (target.path, target.rest);
        // The common case, a canonical path, costs one pass and no allocation.
        let canonical = target.canonical;
        let normalized = if canonical { std::borrow::Cow::Borrowed(raw_path) } else { path::normalize(raw_path) };
        let vars = RequestVars { headers: &view, path: &normalized, listener: &self.listener.name, cluster: None };
        let Some(m) = router.route(&vars) else {
            self.flags |= flags::NO_ROUTE_FOUND;
            return Some(self.reply_with(404, "no route", "route_not_found"));
        };
        // The matched route, whatever it does (a direct response and a redirect too: logs and
        // `mosn-ext route-check` name it); only a forward gives the request a cluster.
        self.routed = Some(m);
        let fw = match router.action(m) {
            RouteAction::Forward(fw) => fw,
            RouteAction::DirectResponse { status, body } => {
                self.reply = Some(LocalReply::new(*status, body.clone(), "direct_response"));
                self.stage = Stage::Replied;
                return Some(Action::LocalReply);
            }
            RouteAction::Redirect(r) => {
                let host = view.lookup(":authority").first().or_else(|| view.lookup("host").first()).unwrap_or(b"");
                let location = r.location(host, raw_path, rest.split(|b| *b == b'#').next().unwrap_or(b""));
                let mut reply = LocalReply::new(r.status, "", "redirect");
                reply.headers.push(("location".into(), location.into()));
                self.reply = Some(reply);
                self.stage = Stage::Replied;
                return Some(Action::LocalReply);
            }
        };
        // The router is `listener`'s, which the stream holds (see `Stream::forward`).
        self.forward = Some(ConfigRef(std::ptr::NonNull::from(&**fw)));
        let Some(picked) = fw.pick(&view, &|n| router.cluster(n)) else {
            // cluster_header without the header, or naming no cluster: MOSN's "no cluster".
            self.flags |= flags::NO_ROUTE_FOUND;
            return Some(self.reply_with(404, "no cluster", "cluster_not_found"));
        };
        // The path and Host the upstream gets.
        let rewritten = fw.rewrite_path(&normalized);
        let new_path = if canonical && rewritten.is_none() && !target.fragment {
            None
        } else {
            let forwarded = rewritten.as_deref().unwrap_or(&normalized);
            let wire = path::encode(forwarded);
            let query = rest.split(|b| *b == b'#').next().unwrap_or(b"");
            let unchanged = wire.as_bytes() == raw_path && !target.fragment;
            (!unchanged).then(|| format!("{wire}{}", String::from_utf8_lossy(query)))
        };
        let original = rewritten.as_ref().map(|_| SharedStr::from(String::from_utf8_lossy(&normalized).as_ref()));
        let host = fw.rewrite_host(&view).map(|h| SharedStr::from(String::from_utf8_lossy(h).as_ref()));
        let picked_cluster = fw.cluster(&picked);
        self.hash = picked_cluster.is_some_and(|c| c.lb_type.hashes()).then(|| self.hash_key(fw, &view));
        // The cluster's own address: it stays in place when `picked` moves into the stream
        // below (an `Arc`'s contents, in the router or in `picked`).
        let cluster = picked_cluster.map(|c| ConfigRef(std::ptr::NonNull::from(&**c)));
        // MOSN: these request headers (ms) override the route's timeouts. `start` read the
        // client's; a filter may have changed them since.
        if self.mutations.iter().any(|m| name_eq(&m.name, GLOBAL_TIMEOUT) || name_eq(&m.name, TRY_TIMEOUT)) {
            self.timeout_header = ms(view.lookup(GLOBAL_TIMEOUT));
            self.try_timeout_header = ms(view.lookup(TRY_TIMEOUT));
        }
        if let Some(p) = new_path {
            self.mutations.push(HeaderMutation { op: HeaderOp::Set, name: PATH, value: p.into() });
        }
        if let Some(o) = original {
            self.mutations.push(HeaderMutation { op: HeaderOp::Set, name: "x-mosn-original-path".into(), value: o });
        }
        if let Some(h) = host {
            self.mutations.push(HeaderMutation { op: HeaderOp::Set, name: AUTHORITY, value: h });
        }
        self.picked = Some(picked);
        self.cluster = cluster;
        None
    }

    /// The route's `hash_policy` value (MOSN's default: the client address); a request
    /// without the value gets a random one.
    fn hash_key(&self, fw: &Forward, headers: &dyn HeaderMap) -> u64 {
        use crate::router::HashPolicy;
        use crate::upstream::hash;
        let key = match &fw.hash_policy {
            Some(HashPolicy::Header(h)) => headers.get(h).first().map(hash::bytes),
            Some(HashPolicy::Cookie(name)) => headers.get("cookie").first().and_then(|c| cookie_value(c, name.as_bytes())).map(hash::bytes),
            Some(HashPolicy::SourceIp) | None => {
                self.downstream.as_ref().and_then(ClientAddr::ip).map(|ip| hash::bytes(ip.to_string().as_bytes()))
            }
        };
        key.unwrap_or_else(|| fastrand::u64(..))
    }

    /// The client address (`ip` or `ip:port`, as the host has it), for `source_ip` hashing.
    pub fn set_downstream_address(&mut self, addr: &[u8]) {
        self.downstream = ClientAddr::new(addr);
    }

    /// The route's request header edits (route, virtual host, router), after the filters.
    fn finalize_request(&mut self, headers: &dyn HeaderMap) {
        // SAFETY: `listener` is used only within this call, which `self` outlives.
        let listener = unsafe { self.listener_apart() };
        let (Some(m), Some(router)) = (self.routed, listener.router.as_deref()) else { return };
        if !router.has_header_edits(m) {
            return;
        }
        let raw = Overlay { base: headers, mutations: &self.mutations }.lookup(":path").first().unwrap_or(b"/").to_vec();
        let normalized = path::normalize(path::split_query(&raw).0).into_owned();
        let cluster = self.cluster().map(|c| c.name.clone());
        let snapshot = self.mutations.clone();
        let view = Overlay { base: headers, mutations: &snapshot };
        let vars = RequestVars { headers: &view, path: &normalized, listener: &self.listener.name, cluster: cluster.as_deref() };
        let mut response = Vec::new();
        for edits in router.header_edits(m) {
            for e in edits.request(&vars) {
                header_edit::apply(&e, headers, &mut self.mutations);
            }
            response.extend(edits.response(&vars));
        }
        self.response_edits = response;
    }

    fn reply_with(&mut self, status: u16, body: &'static str, details: &'static str) -> Action {
        self.reply = Some(LocalReply::new(status, body, details));
        self.stage = Stage::Replied;
        Action::LocalReply
    }

    /// The copies of this request to send (the `mirror` filter), once it goes upstream.
    pub fn mirrors(&self) -> &[crate::upstream::mirror::MirrorTarget] {
        &self.mirrors
    }

    /// The header changes for the upstream request, in order.
    pub fn request_mutations(&self) -> &[HeaderMutation] {
        &self.mutations
    }

    /// The local reply, when the last action was [`Action::LocalReply`].
    pub fn local_reply(&self) -> Option<&LocalReply> {
        self.reply.as_ref()
    }

    /// A value recorded by a filter, e.g. `metadata("unit")`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata_by_bytes(key.as_bytes())
    }

    /// [`Stream::metadata`] by the key's bytes, as a host names it (no UTF-8 check: a
    /// key that is not UTF-8 is simply not there).
    pub fn metadata_by_bytes(&self, key: &[u8]) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k.as_bytes() == key).map(|(_, v)| &**v)
    }

    /// MOSN response flags set so far.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    // === Upstream ===

    /// The chosen cluster, once routed.
    #[inline]
    pub fn cluster(&self) -> Option<&Cluster> {
        // SAFETY: the reference does not outlive `&self`.
        unsafe { self.cluster_apart() }
    }

    /// [`Stream::cluster`] without borrowing the whole stream.
    ///
    /// SAFETY: the caller keeps the reference within the stream's life. The cluster lives in
    /// an `Arc` held by `self.listener`'s router (the listener is never replaced, its router
    /// never changed) or by `self.picked` (set once, with the cache, in `route`, never
    /// replaced or dropped before the stream), so it stays in place that long.
    #[inline]
    unsafe fn cluster_apart<'a>(&self) -> Option<&'a Cluster> {
        // SAFETY: see above.
        self.cluster.map(|c| unsafe { &*c.0.as_ptr() })
    }

    /// The matched route's forward action, once routed.
    #[inline]
    fn forward(&self) -> Option<&Forward> {
        // SAFETY: the action lives in `self.listener`'s router, which the stream holds (the
        // listener is never replaced, its router never changed), so it stays in place as long
        // as `self`; the reference does not outlive `&self`.
        self.forward.map(|f| unsafe { &*f.0.as_ptr() })
    }

    /// The subset criteria: the route's (or weighted cluster's) `metadata_match` with what
    /// filters set on top (they win a conflict).
    fn criteria(&self) -> Criteria {
        let from_route = match (self.forward(), self.picked.as_ref()) {
            (Some(fw), Some(p)) => fw.criteria(p).clone(),
            _ => Criteria::default(),
        };
        from_route.merged(&self.router_meta)
    }

    /// The matched route's JSON path and its virtual host's name, once routed.
    pub fn route_info(&self) -> Option<(&str, &str)> {
        let (r, m) = (self.listener.router.as_deref()?, self.routed?);
        Some((r.route_path(m), r.vhost_name(m)))
    }

    /// The route's retry policy, if any.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.forward().and_then(|fw| fw.retry.as_ref())
    }

    /// One attempt's timeout: request header `x-mosn-try-timeout` (ms), else the retry
    /// policy's `retry_timeout`; ignored when not below the whole request's timeout (MOSN).
    pub fn per_try_timeout(&self) -> Option<std::time::Duration> {
        let per_try = self.try_timeout_header.or_else(|| self.retry_policy()?.per_try_timeout)?;
        match self.timeout() {
            Some(global) if per_try >= global => None,
            _ => Some(per_try),
        }
    }

    /// The whole request's timeout: request header `x-mosn-global-timeout` (ms), else the
    /// route's `timeout`, if set.
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout_header.or_else(|| self.forward().and_then(|fw| fw.timeout))
    }

    /// Attempts allowed in total (1 + retries).
    pub fn max_attempts(&self) -> u32 {
        1 + self.retry_policy().map_or(0, |r| r.num_retries)
    }

    /// Picks the host for the next attempt; never one already tried in this request
    /// while another healthy host exists. The first attempt counts against the cluster's
    /// `max_requests`.
    pub fn choose_host(&mut self) -> Result<Chosen<'_>, NoHost> {
        // Only a request the core let through goes upstream: not one answered locally (a
        // fault abort after routing) nor one still in its filters (waiting, buffering).
        if self.stage != Stage::Forwarding {
            return Err(NoHost::NotRouted);
        }
        self.end_attempt();
        // SAFETY: `cluster` is used only within this call, which `self` outlives.
        let Some(cluster) = (unsafe { self.cluster_apart() }) else { return Err(NoHost::NotRouted) };
        if !self.admitted {
            if !cluster.start_request() {
                return Err(no_host(&mut self.flags, &mut self.no_host, NoHost::Overflow));
            }
            self.admitted = true;
        }
        let pick = Pick { hash: self.hash, attempt: self.attempts + 1 };
        let chosen = if cluster.has_subsets() {
            cluster.choose(&self.criteria(), &pick, &self.tried)
        } else {
            cluster.choose(Criteria::none(), &pick, &self.tried)
        };
        let index = match chosen {
            Ok(i) => i,
            Err(NoHostReason::NoHealthy) => return Err(no_host(&mut self.flags, &mut self.no_host, NoHost::NoHealthyHost)),
            Err(NoHostReason::Overflow) => return Err(no_host(&mut self.flags, &mut self.no_host, NoHost::Overflow)),
        };
        let host = &cluster.hosts[index];
        // The cluster only picks hosts with an address; a STRICT_DNS slot emptied since (a
        // refresh in between) is no host for this attempt.
        let Some((addr, address)) = host.current() else {
            host.state.attempt_ended();
            return Err(no_host(&mut self.flags, &mut self.no_host, NoHost::NoHealthyHost));
        };
        self.no_host = None;
        // Peak EWMA learns each host's latency from the attempts' durations.
        self.attempt_started_ns = if cluster.lb_type == crate::config::LbType::PeakEwma { lb::now_ns() } else { 0 };
        self.tried.insert(index);
        self.attempts += 1;
        self.last_host = Some(index);
        self.in_flight = true;
        Ok(Chosen { cluster, index, host, addr, address, attempt: self.attempts })
    }

    /// The host refused the attempt's host before sending anything (Envoy's retry predicate,
    /// an address its worker lacks): another host for the same attempt. The refused host is
    /// released and stays tried; the attempt count and any retry slot are unchanged.
    pub fn choose_another_host(&mut self) -> Result<Chosen<'_>, NoHost> {
        if self.in_flight {
            if let (Some(c), Some(i)) = (self.cluster(), self.last_host) {
                c.hosts[i].state.attempt_ended();
            }
            self.in_flight = false;
            // choose_host counts the attempt again.
            self.attempts = self.attempts.saturating_sub(1);
        }
        self.choose_host()
    }

    /// The latest attempt no longer counts as active on its host (nor as a retry).
    fn end_attempt(&mut self) {
        let in_flight = std::mem::take(&mut self.in_flight);
        // A retry slot is released when that retry's attempt ends (or it never started).
        let retry = self.retry_admitted && (in_flight || self.attempts == 0);
        if let Some(cluster) = self.cluster() {
            if in_flight {
                if let Some(i) = self.last_host {
                    cluster.hosts[i].state.attempt_ended();
                }
            }
            if retry {
                cluster.end_retry();
            }
        }
        if retry {
            self.retry_admitted = false;
        }
    }

    /// Attempts made so far (hosts chosen for this request).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The host of the latest attempt.
    pub fn upstream_host(&self) -> Option<&Host> {
        let cluster = self.cluster()?;
        self.last_host.map(|i| &cluster.hosts[i])
    }

    /// Reports how the latest attempt ended; returns true if the route's policy allows
    /// another attempt (the host then calls [`Stream::choose_host`] again).
    pub fn upstream_result(&mut self, outcome: UpstreamOutcome) -> bool {
        self.outcome = Some(outcome);
        // Only an attempt in flight is measured and judged (not a second report).
        let measured = self.in_flight;
        if let (Some(o), Some(c), Some(i)) = (self.listener.outlier.as_ref(), self.cluster(), self.last_host) {
            if measured {
                o.record(c, i, outcome, crate::upstream::outlier::now_ms());
            }
        }
        self.end_attempt();
        if let (Some(h), true) = (self.upstream_host(), measured && self.attempt_started_ns != 0) {
            let now = lb::now_ns();
            h.state.record_latency(now.saturating_sub(self.attempt_started_ns), now, lb::DECAY_NS);
        }
        if let Some(h) = self.upstream_host() {
            match outcome {
                UpstreamOutcome::Response(s) if s >= 500 => h.state.count_error_response(),
                UpstreamOutcome::Response(_) => h.state.count_response_success(),
                UpstreamOutcome::ConnectFailure => {
                    h.state.count_failure();
                    h.state.count_connect_failure();
                }
                UpstreamOutcome::Timeout => {
                    h.state.count_failure();
                    h.state.count_timeout();
                }
                _ => h.state.count_failure(),
            }
        }
        self.flags |= match outcome {
            UpstreamOutcome::ConnectFailure => flags::UPSTREAM_CONNECTION_FAILURE,
            UpstreamOutcome::Timeout => flags::UPSTREAM_REQUEST_TIMEOUT,
            UpstreamOutcome::Reset => flags::UPSTREAM_REMOTE_RESET,
            UpstreamOutcome::Overflow => flags::UPSTREAM_OVERFLOW,
            UpstreamOutcome::Response(_) => 0,
        };
        if !(self.attempts < self.max_attempts() && self.retriable(outcome)) {
            return false;
        }
        // Already granted (the host reported twice without a new attempt): no second slot.
        if self.retry_admitted {
            return true;
        }
        // MOSN's max_retries: retries in flight per cluster; a refused retry is an overflow
        // and the response stands.
        let Some(cluster) = self.cluster() else { return false };
        if !cluster.start_retry() {
            self.flags |= flags::UPSTREAM_OVERFLOW;
            return false;
        }
        self.retry_admitted = true;
        true
    }

    fn retriable(&self, outcome: UpstreamOutcome) -> bool {
        let Some(p) = self.retry_policy() else { return false };
        match outcome {
            UpstreamOutcome::ConnectFailure => true,
            UpstreamOutcome::Overflow => false,
            UpstreamOutcome::Timeout | UpstreamOutcome::Reset => p.retry_on,
            UpstreamOutcome::Response(s) => p.retry_on && if p.status_codes.is_empty() { s >= 500 } else { p.status_codes.contains(&s) },
        }
    }

    /// MOSN's status for a request whose last attempt failed: 502 for connect
    /// failures, resets and no healthy host; 504 for timeouts; 503 for overflow.
    pub fn failure_status(&self) -> Option<u16> {
        // The latest host choice failed (also on a retry): the host answers itself, and
        // MOSN's status for why goes out, whatever an earlier attempt got.
        match self.no_host {
            Some(NoHost::Overflow) => return Some(503),
            Some(_) => return Some(502),
            None => {}
        }
        match self.outcome? {
            UpstreamOutcome::Response(_) => None,
            UpstreamOutcome::ConnectFailure | UpstreamOutcome::Reset => Some(502),
            UpstreamOutcome::Timeout => Some(504),
            UpstreamOutcome::Overflow => Some(503),
        }
    }

    // === Response path ===

    /// True if [`Stream::response_headers`] may read the response's headers (the route's
    /// response header edits, send filters); false: an empty map will do.
    pub fn reads_response_headers(&self) -> bool {
        !self.response_edits.is_empty() || send_filters(&self.listener, self.routed).next().is_some()
    }

    /// Response headers (from the upstream, or the host's own error response). Runs
    /// the send filters; a host-generated failure response gets MOSN's status.
    pub fn response_headers(&mut self, status: u16, headers: &dyn HeaderMap, end_of_stream: bool) -> Action {
        // The answer goes out: a retry granted but not made is no longer in flight.
        if self.retry_admitted && !self.in_flight {
            if let Some(c) = self.cluster() {
                c.end_retry();
            }
            self.retry_admitted = false;
        }
        if let Some(m) = &mut self.response_mutations {
            m.clear();
        }
        let mut answered = status;
        if let Some(want) = self.failure_status() {
            if want != status {
                let set_status = HeaderMutation { op: HeaderOp::Set, name: ":status".into(), value: want.to_string().into() };
                self.response_mutations.get_or_insert_with(Box::default).push(set_status);
                answered = want;
            }
        }
        if !std::mem::replace(&mut self.counted, true) {
            self.listener.counters.answered(answered);
        }
        for e in &self.response_edits {
            header_edit::apply(e, headers, self.response_mutations.get_or_insert_with(Box::default));
        }
        if !end_of_stream && send_filters(&self.listener, self.routed).any(|f| f.needs_response_body(status, headers)) {
            self.response_status = Some(status);
            return Action::BufferBody;
        }
        self.run_send_filters(status, headers, None);
        Action::Continue
    }

    /// The buffered response body (after `response_headers` answered
    /// [`Action::BufferBody`]); the send filters run when `end_of_stream` is true, and their
    /// header changes join [`Stream::response_mutations`].
    pub fn response_body(&mut self, headers: &dyn HeaderMap, body: &[u8], end_of_stream: bool) -> Action {
        let Some(status) = self.response_status else { return Action::Continue };
        if !end_of_stream {
            return Action::BufferBody;
        }
        self.response_status = None;
        self.run_send_filters(status, headers, Some(body));
        Action::Continue
    }

    /// The body a send filter replaced the buffered response body with; the host sends it
    /// instead (with `Content-Length` set to its length).
    pub fn replaced_response_body(&self) -> Option<&[u8]> {
        self.new_response_body.as_deref()
    }

    fn run_send_filters(&mut self, status: u16, headers: &dyn HeaderMap, body: Option<&[u8]>) {
        // SAFETY: `listener` is used only within this call, which `self` outlives.
        let listener = unsafe { self.listener_apart() };
        for f in send_filters(listener, self.routed) {
            let mut cx = SendContext {
                headers,
                status,
                mutations: self.response_mutations.get_or_insert_with(Box::default),
                metadata: &self.metadata,
                body,
                new_body: &mut self.new_response_body,
            };
            if f.on_send(&mut cx) != FilterStatus::Continue {
                break;
            }
        }
    }

    /// The header changes for the response, in order.
    pub fn response_mutations(&self) -> &[HeaderMutation] {
        self.response_mutations.as_deref().map_or(&[], |m| m.as_slice())
    }
}

/// A part of the config a stream keeps for its life: its cluster (see
/// `Stream::cluster_apart`) and its route's forward action (`Stream::forward`).
struct ConfigRef<T>(std::ptr::NonNull<T>);

impl<T> Clone for ConfigRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ConfigRef<T> {}

// SAFETY: a `ConfigRef<T>` is only ever read as a `&T`, and `T` is `Sync` (`Cluster` and
// `Forward` are, checked below), so sending or sharing it is as sound as sending or sharing
// that reference.
unsafe impl<T: Sync> Send for ConfigRef<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Sync> Sync for ConfigRef<T> {}
const _: () = {
    const fn is_sync<T: Sync>() {}
    is_sync::<Cluster>();
    is_sync::<Forward>();
};

/// The send filters of a request: the listener's, each replaced (or turned off) by its
/// route's per_filter_config (a free function: the caller may hold other borrows).
fn send_filters(listener: &Listener, routed: Option<RouteMatch>) -> impl Iterator<Item = &Arc<dyn crate::filter::StreamFilter>> {
    let route = routed.zip(listener.router.as_deref());
    // A route replaces only a listener filter that sends.
    let filters: &[_] = if listener.sends { &listener.filters } else { &[] };
    filters.iter().filter(|f| f.sends()).filter_map(move |f| {
        let f = route.and_then(|(m, r)| r.per_filter(m, f.name())).unwrap_or(f);
        f.sends().then_some(f)
    })
}

/// A header's value as a positive number of milliseconds (MOSN's timeout headers); anything
/// else is no value.
fn ms(found: Lookup<'_>) -> Option<std::time::Duration> {
    let v = found.first()?;
    let ms: u64 = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

/// Records why no host was chosen (a free function: the caller holds other borrows).
fn no_host(flags: &mut u32, slot: &mut Option<NoHost>, why: NoHost) -> NoHost {
    *flags |= match why {
        NoHost::Overflow => flags::UPSTREAM_OVERFLOW,
        _ => flags::NO_HEALTHY_UPSTREAM,
    };
    *slot = Some(why);
    why
}

/// The value of cookie `name` in one `Cookie` header value.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

impl Drop for Stream {
    fn drop(&mut self) {
        LIVE_STREAMS.add(u64::MAX); // minus one
        self.listener.counters.timed(crate::metrics::clock::elapsed(self.started));
        // Done: no wake after this.
        self.wake.close();
        self.end_attempt();
        if self.retry_admitted {
            if let Some(c) = self.cluster() {
                c.end_retry();
            }
        }
        if self.admitted {
            if let Some(c) = self.cluster() {
                c.end_request();
            }
        }
    }
}
