//! The HTTP filter's logic: one core [`Stream`] per Envoy stream, driven through an
//! [`HttpHost`].
//!
//! `http.rs` turns each Envoy hook into one call here (with the real host); the tests call
//! the same functions with the fake host of `testing.rs`. The entry points take
//! `Option<&HttpFilter>` because Envoy calls the hooks with a NULL filter when
//! `on_http_filter_new` returned NULL.
//!
//! Request path (the state machine of [`Phase`]):
//!
//! ```text
//! headers ─► core ─► Continue   ─► apply mutations, x-envoy-*, the cluster (specifier.rs), copies (mirror.rs) ─► Continue
//!                 ├► Wait       ─► Stop(All) … wake ─► scheduler commit ─► scheduled ─► resume ─► continue_decoding
//!                 ├► BufferBody ─► Stop … body (end) / trailers ─► core(body) ─► as above
//!                 └► LocalReply ─► send_local_reply ─► Stop
//! ```
//!
//! Fail closed: every request hook either forwards what the core decided or stops the
//! request. Where the core can not decide (NULL filter, stream state busy, core stream
//! gone, a hook in an unexpected phase, a panic) the request is answered with a 500 local
//! reply, once: a second reply is never sent while one is answering the request.
//!
//! Re-entrancy: `send_local_reply` and `continue_decoding` make Envoy run other hooks of the
//! same stream (local reply, response headers, the cluster LB) before they return, so no
//! `RefCell` borrow of the stream state is held across those two calls.

use crate::engines::ConfigSlot;
use crate::guard::{self, Panicked};
use crate::host::{BodyStatus, HeaderKind, HeadersStatus, HttpHost, Scheduler, TrailersStatus};
use crate::mirror::{self, MirrorSender};
use crate::policy::{self, LogFilterState};
use crate::registry::{self, Phase, StreamCell, StreamState};
use crate::specifier;
use mosn_extension::filter::LocalReply;
use mosn_extension::headers::{self, HeaderMap, HeaderMutation, HeaderOp, Lookup};
use mosn_extension::hostgen::envoy::NO_HOST;
use mosn_extension::stream::Payload;
use mosn_extension::wake::WakeFn;
use mosn_extension::{Action, Engine, Stream, UpstreamOutcome};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

/// The HTTP filter config: the MOSN config (its slot: a reload swaps the engine) and the
/// MOSN listener whose filters and router run, and the request copies on their way to the
/// main thread (`mirror.rs`).
pub struct HttpConfig {
    slot: Option<Arc<ConfigSlot>>,
    /// The listener's name (a reload may move its index).
    name: Option<String>,
    /// The engine, the listener's index in it and the slot generation they are of.
    view: RwLock<View>,
    mirror: Arc<MirrorSender>,
    /// The filter state written for access logs.
    log: LogFilterState,
    /// Envoy's clusters were generated from this config file and it was never reloaded
    /// (checked per stream with the view's generation): each static host the core chooses
    /// is a host of its Envoy cluster, so a request that can not be retried may be handed
    /// its host directly ([`HttpFilter::hand_over`]).
    pins_hosts: bool,
    /// The config's `router_follows`: a host handed directly goes to the cluster LB
    /// through [`crate::pin`], not as Envoy's override host.
    pins_through_lb: bool,
}

/// What a stream starts on.
#[derive(Clone)]
struct View {
    generation: u64,
    engine: Arc<Engine>,
    listener: usize,
    /// MOSN clusters a reload added (served by Envoy cluster `mosn_added_clusters`).
    added: Option<Arc<std::collections::HashSet<String>>>,
}

/// One stream's filter object (lives on its worker). Envoy's filter pointer is its `Rc`
/// ([`HttpFilter::into_raw`]): the filter, its cell and the core stream are one allocation
/// per stream. The registry holds a second `Rc` while the stream is published.
pub struct HttpFilter(Rc<FilterState>);

/// What an [`HttpFilter`] holds (its methods reach these through `Deref`).
pub struct FilterState {
    id: u64,
    /// Created at the first request hook (`scheduler_new` needs the decoder callbacks,
    /// which Envoy sets only after `on_http_filter_new`); deleted in [`HttpFilter::destroy`].
    scheduler: RefCell<Option<Arc<dyn Scheduler>>>,
    attached: Cell<bool>,
    cell: StreamCell,
    /// The config's copy queue: a released request's copies go there (and live on without
    /// the stream).
    mirror: Arc<MirrorSender>,
    /// MOSN clusters a reload added, as of the stream's start (see [`View`]).
    added: Option<Arc<std::collections::HashSet<String>>>,
    /// The filter state written for access logs (the config's).
    log: LogFilterState,
    /// The first attempt's host may be handed to Envoy directly (see [`HttpConfig`]).
    pins_hosts: bool,
    /// ... through the LB ([`crate::pin`]); `pinned`: a choice of this stream may wait there.
    pins_through_lb: bool,
    pinned: Cell<bool>,
    /// The stream is in the registry and its id in filter state `mosn.stream_id`.
    published: Cell<bool>,
}

/// What a request hook does after the core answered.
#[derive(Debug)]
enum Next {
    Forward,
    Park,
    Buffer,
    Reply(LocalReply),
}

/// A 500 for a request the core could not judge; `details` names why (access logs).
pub fn internal_error(details: &'static str) -> LocalReply {
    LocalReply::new(500, "internal error", details)
}

// === impl HttpConfig ===

impl HttpConfig {
    /// A config for `listener` of `engine`, which never reloads (tests).
    pub fn new(engine: Arc<Engine>, listener: usize) -> HttpConfig {
        let view = View { generation: 0, engine, listener, added: None };
        HttpConfig {
            slot: None,
            name: None,
            view: RwLock::new(view),
            mirror: Arc::new(MirrorSender::new()),
            log: LogFilterState::ALL,
            pins_hosts: false,
            pins_through_lb: false,
        }
    }

    /// As [`HttpConfig::new`], for Envoy clusters generated from the same engine (tests of
    /// [`HttpFilter::hand_over`]).
    pub fn pinning_hosts(engine: Arc<Engine>, listener: usize) -> HttpConfig {
        HttpConfig { pins_hosts: true, ..HttpConfig::new(engine, listener) }
    }

    /// As [`HttpConfig::pinning_hosts`], with `router_follows` (the hosts go to the LB
    /// through [`crate::pin`]).
    pub fn pinning_hosts_through_lb(engine: Arc<Engine>, listener: usize) -> HttpConfig {
        HttpConfig { pins_through_lb: true, ..HttpConfig::pinning_hosts(engine, listener) }
    }

    /// The request copies waiting for the main thread.
    pub fn mirror(&self) -> &MirrorSender {
        &self.mirror
    }

    /// `on_http_filter_config_new`: `{"config_path": ..., "listener": ...}`. Errors are logged
    /// one per line; `None` makes Envoy reject the config.
    pub fn load(bytes: &[u8]) -> Option<HttpConfig> {
        let (cfg, slot) = crate::engines::load(bytes, "listener", "http filter")?;
        let current = slot.current();
        let Some(listener) = current.engine.listener_index(cfg.name.as_deref()) else {
            crate::log_error(&format!("mosn: config error: listener \"{}\" is not in {}", cfg.name.as_deref().unwrap_or(""), cfg.source));
            return None;
        };
        let view = View { generation: slot.generation(), engine: current.engine, listener, added: current.added };
        let pins_hosts = slot.is_file();
        Some(HttpConfig {
            slot: Some(slot),
            name: cfg.name,
            view: RwLock::new(view),
            mirror: Arc::new(MirrorSender::new()),
            log: cfg.log,
            pins_hosts,
            pins_through_lb: cfg.router_follows,
        })
    }

    /// Renews the cached view after a reload.
    fn refresh(&self, slot: &ConfigSlot) {
        let current = slot.current();
        // A reload never removes a listener Envoy serves (refused), so the name resolves.
        let listener = current.engine.listener_index(self.name.as_deref()).unwrap_or(usize::MAX);
        let v = View { generation: slot.generation(), engine: current.engine, listener, added: current.added };
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// `on_http_filter_new`: a filter with a fresh core stream, on the current engine (one
    /// atomic load and the view's read lock when no reload happened).
    pub fn new_filter(&self) -> Option<HttpFilter> {
        let generation = self.slot.as_ref().map_or(0, |s| s.generation());
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        if view.generation == generation {
            return self.filter_on(&view);
        }
        drop(view);
        if let Some(slot) = &self.slot {
            self.refresh(slot);
        }
        self.filter_on(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn filter_on(&self, view: &View) -> Option<HttpFilter> {
        let stream = view.engine.new_stream(view.listener, None)?;
        Some(HttpFilter(Rc::new(FilterState {
            id: registry::next_id(),
            scheduler: RefCell::new(None),
            attached: Cell::new(false),
            cell: StreamCell::new(stream),
            mirror: self.mirror.clone(),
            added: view.added.clone(),
            log: self.log,
            pins_hosts: self.pins_hosts && view.generation == 0,
            pins_through_lb: self.pins_through_lb,
            pinned: Cell::new(false),
            published: Cell::new(false),
        })))
    }
}

// === Entry points (one per hook) ===

/// Request headers: run the core's filters and router.
pub fn request_headers(f: Option<&HttpFilter>, host: &mut dyn HttpHost, end_of_stream: bool) -> HeadersStatus {
    let Some(f) = f else {
        // `on_http_filter_new` failed: without a core stream there is no verdict, and a
        // client-sent x-mosn-cluster would reach the router untouched.
        crate::log_error("mosn: request without a filter object (filter_new failed); answering 500");
        host.send_local_reply(&internal_error("mosn_filter_missing"));
        return HeadersStatus::StopIteration;
    };
    f.request_side("http_filter_request_headers", host, HeadersStatus::StopIteration, |f, host| f.on_request_headers(host, end_of_stream))
}

/// Request body: buffered for the core when it asked; held while the stream waits.
pub fn request_body(f: Option<&HttpFilter>, host: &mut dyn HttpHost, end_of_stream: bool) -> BodyStatus {
    // NULL filter: the headers hook of this stream already answered 500.
    let Some(f) = f else { return BodyStatus::StopIterationNoBuffer };
    f.request_side("http_filter_request_body", host, BodyStatus::StopIterationNoBuffer, |f, host| f.on_request_body(host, end_of_stream))
}

/// Request trailers end a body the core is waiting for.
pub fn request_trailers(f: Option<&HttpFilter>, host: &mut dyn HttpHost) -> TrailersStatus {
    let Some(f) = f else { return TrailersStatus::StopIteration };
    f.request_side("http_filter_request_trailers", host, TrailersStatus::StopIteration, |f, host| f.on_request_trailers(host))
}

/// Back on the worker after the core's wake: resume the core, then let the request go on.
pub fn scheduled(f: Option<&HttpFilter>, host: &mut dyn HttpHost, _event_id: u64) {
    let Some(f) = f else { return };
    f.request_side("http_filter_scheduled", host, (), |f, host| f.on_scheduled(host))
}

/// Envoy (or this module) answers locally: tell the core how the upstream attempt ended.
/// Envoy's reply always goes out (the hook's answer is `Continue`).
pub fn local_reply(f: Option<&HttpFilter>, details: &[u8]) {
    let Some(f) = f else { return };
    // Envoy answers: the router will not ask the LB for this request's host (poisoned too).
    f.unpin();
    f.cell.set_local_reply();
    if f.cell.is_poisoned() {
        return;
    }
    if guard::catch("http_filter_local_reply", || f.on_local_reply(details)).is_err() {
        f.cell.poison();
    }
}

/// Response headers (upstream or local): report the outcome, run the core's send filters,
/// apply their changes (a `:status` change turns Envoy's 503 into MOSN's 502). Always
/// `Continue`: the response side never holds a response back (see `guard.rs`).
pub fn response_headers(f: Option<&HttpFilter>, host: &mut dyn HttpHost, end_of_stream: bool) -> HeadersStatus {
    let Some(f) = f else { return HeadersStatus::Continue };
    // The router asked the LB, or answered without asking (poisoned too).
    f.unpin();
    if f.cell.is_poisoned() {
        tracing::debug!("stream poisoned: response passed through unchanged");
        return HeadersStatus::Continue;
    }
    let h = &mut *host;
    match guard::catch("http_filter_response_headers", || f.on_response_headers(h, end_of_stream)) {
        Ok(true) => HeadersStatus::StopIteration,
        Ok(false) => HeadersStatus::Continue,
        Err(_) => {
            // The core's changes are applied only after its call returned: a panic in the core
            // leaves the response as it was.
            f.cell.poison();
            HeadersStatus::Continue
        }
    }
}

/// Response body: buffered while a send filter waits for all of it, then run through them.
/// A failure passes the response on as it is (its headers were held, not changed).
pub fn response_body(f: Option<&HttpFilter>, host: &mut dyn HttpHost, end_of_stream: bool) -> BodyStatus {
    let Some(f) = f else { return BodyStatus::Continue };
    if f.cell.is_poisoned() || !f.response_buffering() {
        return BodyStatus::Continue;
    }
    if !end_of_stream {
        return BodyStatus::StopIterationAndBuffer;
    }
    let h = &mut *host;
    if guard::catch("http_filter_response_body", || f.on_response_end(h, true)).is_err() {
        f.cell.poison();
    }
    BodyStatus::Continue
}

/// Response trailers end a buffered response body.
pub fn response_trailers(f: Option<&HttpFilter>, host: &mut dyn HttpHost) -> TrailersStatus {
    let Some(f) = f else { return TrailersStatus::Continue };
    if f.cell.is_poisoned() || !f.response_buffering() {
        return TrailersStatus::Continue;
    }
    let h = &mut *host;
    if guard::catch("http_filter_response_trailers", || f.on_response_end(h, false)).is_err() {
        f.cell.poison();
    }
    TrailersStatus::Continue
}

/// The stream is complete (access logs are written): the core stream ends here.
pub fn stream_complete(f: Option<&HttpFilter>, host: &mut dyn HttpHost) {
    if let Some(f) = f {
        // MOSN's response flags in the access log, in the notation nginx's $mosn_flags uses.
        let flags = f.cell.state.try_borrow().ok().and_then(|st| st.stream.as_ref().map(Stream::flags)).unwrap_or(0);
        if flags != 0 {
            host.set_dynamic_metadata(policy::METADATA_NAMESPACE, "flags", &format!("0x{flags:x}"));
        }
        guard::or("http_filter_stream_complete", || (), || f.done());
    }
    // For the access log (`live_streams=`): the library's other streams still alive in this
    // process; 0 once every request ended, also the ones whose clients went away.
    // Filter state, not dynamic metadata: a third of the cost per request.
    if f.is_none_or(|f| f.log.live_streams) {
        host.set_filter_state(policy::LIVE_STREAMS_KEY, policy::decimal(mosn_extension::stream::live_streams() as u64, &mut [0; 20]));
    }
}

// === impl FilterState ===

impl FilterState {
    /// The stream's cell (the LB and the upstream filter; tests: flags and phase).
    pub fn cell(&self) -> &StreamCell {
        &self.cell
    }

    /// Clears this stream's choice if the LB did not take it (the router answered before
    /// it asked, e.g.): it must not outlive the stream, nor reach another request.
    fn unpin(&self) {
        if self.pinned.replace(false) {
            crate::pin::unpin(self.id);
        }
    }
}

impl Drop for FilterState {
    /// `pin`'s contract whatever the order of Envoy's hooks: no choice outlives its stream.
    fn drop(&mut self) {
        self.unpin();
    }
}

impl std::ops::Deref for HttpFilter {
    type Target = FilterState;
    fn deref(&self) -> &FilterState {
        &self.0
    }
}

// === impl HttpFilter ===

impl HttpFilter {
    /// The request's unit for access logs (`mosn.unit`; the cluster is in Envoy's own
    /// %UPSTREAM_CLUSTER%), unless the config's `log_filter_state` leaves it out.
    fn log_unit(&self, host: &mut dyn HttpHost, stream: &Stream) {
        if self.log.unit {
            if let Some(unit) = stream.metadata("unit") {
                host.set_filter_state(policy::UNIT_KEY, unit);
            }
        }
    }

    /// The id under which the cluster LB finds this stream (filter state `mosn.stream_id`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Envoy's filter pointer for this filter: the `Rc`, given up to Envoy until
    /// [`HttpFilter::from_raw`] takes it back.
    pub fn into_raw(self) -> *const FilterState {
        Rc::into_raw(self.0)
    }

    /// Takes back the `Rc` [`HttpFilter::into_raw`] gave up.
    ///
    /// # Safety
    /// `ptr` came from [`HttpFilter::into_raw`] and is taken back once. To lend the filter
    /// instead (a hook), wrap the result in `ManuallyDrop`.
    pub unsafe fn from_raw(ptr: *const FilterState) -> HttpFilter {
        // SAFETY: the caller's contract: `ptr` is an `Rc<FilterState>` given up once.
        HttpFilter(unsafe { Rc::from_raw(ptr) })
    }

    /// `on_http_filter_destroy`: ends the core stream (no wake after that), then deletes the
    /// scheduler, whose only committer was the stream's wake function.
    pub fn destroy(self) {
        let sched = self.scheduler.borrow_mut().take();
        guard::or("http_filter_destroy", || (), || self.done());
        // The last `Rc` (`done` took the registry's): dropping it drops the core stream if
        // `done` could not.
        drop(self);
        if let Some(s) = sched {
            s.delete();
        }
    }

    /// Runs a request-side hook under the panic policy of `guard.rs`: a poisoned stream
    /// skips the core; a panic poisons it and answers 500 once.
    fn request_side<R: Copy>(
        &self,
        hook: &'static str,
        host: &mut dyn HttpHost,
        stopped: R,
        run: impl FnOnce(&Self, &mut dyn HttpHost) -> R,
    ) -> R {
        if self.cell.is_poisoned() {
            tracing::debug!(hook, "stream poisoned: the core is not called again");
            return stopped;
        }
        let h = &mut *host;
        match guard::catch(hook, move || run(self, h)) {
            Ok(r) => r,
            Err(Panicked) => {
                self.cell.poison();
                self.reply(host, &internal_error("mosn_panic"));
                stopped
            }
        }
    }

    fn on_request_headers(&self, host: &mut dyn HttpHost, end_of_stream: bool) -> HeadersStatus {
        let phase = match self.cell.state.try_borrow_mut() {
            Ok(mut st) => {
                if st.phase == Phase::Start {
                    self.attach(host, &mut st);
                    st.more_body = !end_of_stream;
                    // The client address, for `source_ip` hashing (LB_MAGLEV's default key).
                    // Kept as text; the core parses it only if something asks for the IP, and
                    // anything that is not an `ip` / `ip:port` is then no IP (it can never
                    // steer a hash): no parse per request here. Fetched only where something
                    // reads it.
                    if let Some(stream) = st.stream.as_mut().filter(|s| s.listener().reads_client_address()) {
                        if let Some(addr) = host.source_address() {
                            stream.set_downstream_address(addr);
                        }
                    }
                }
                st.phase
            }
            Err(_) => {
                tracing::error!("stream state busy in the request-headers hook; answering 500");
                self.reply(host, &internal_error("mosn_state_busy"));
                return HeadersStatus::StopIteration;
            }
        };
        match phase {
            Phase::Start => {}
            Phase::Replied => return HeadersStatus::StopIteration,
            other => {
                tracing::error!(phase = ?other, "request headers arrived twice; answering 500");
                self.reply(host, &internal_error("mosn_unexpected_headers"));
                return HeadersStatus::StopIteration;
            }
        }
        match self.drive(host, |s, h, _| s.request_headers(h, end_of_stream)) {
            Next::Forward => HeadersStatus::Continue,
            // A body follows: Envoy buffers it while the request is parked.
            Next::Park if !end_of_stream => HeadersStatus::StopAllIterationAndBuffer,
            Next::Park | Next::Buffer => HeadersStatus::StopIteration,
            Next::Reply(r) => {
                self.reply(host, &r);
                HeadersStatus::StopIteration
            }
        }
    }

    fn on_request_body(&self, host: &mut dyn HttpHost, end_of_stream: bool) -> BodyStatus {
        if self.cell.local_reply() {
            return BodyStatus::StopIterationNoBuffer;
        }
        let Some(phase) = self.phase() else {
            tracing::error!("stream state busy in the request-body hook; answering 500");
            self.reply(host, &internal_error("mosn_state_busy"));
            return BodyStatus::StopIterationNoBuffer;
        };
        match phase {
            Phase::Buffering if !end_of_stream => {
                tracing::debug!(limit = host.buffer_limit(), "buffering the request body for the core");
                BodyStatus::StopIterationAndBuffer
            }
            Phase::Buffering => match self.finish_body(host, true) {
                Next::Forward => BodyStatus::Continue,
                Next::Park => BodyStatus::StopIterationAndBuffer,
                Next::Buffer => {
                    self.reply(host, &internal_error("mosn_body_incomplete"));
                    BodyStatus::StopIterationNoBuffer
                }
                Next::Reply(r) => {
                    self.reply(host, &r);
                    BodyStatus::StopIterationNoBuffer
                }
            },
            Phase::Waiting => BodyStatus::StopIterationAndBuffer,
            Phase::Forwarded => BodyStatus::Continue,
            Phase::Replied => BodyStatus::StopIterationNoBuffer,
            // A Continue here would release headers the core never judged.
            Phase::Start => {
                tracing::error!("request body before the headers were judged; answering 500");
                self.reply(host, &internal_error("mosn_no_verdict"));
                BodyStatus::StopIterationNoBuffer
            }
        }
    }

    fn on_request_trailers(&self, host: &mut dyn HttpHost) -> TrailersStatus {
        if self.cell.local_reply() {
            return TrailersStatus::StopIteration;
        }
        let Some(phase) = self.phase() else {
            tracing::error!("stream state busy in the request-trailers hook; answering 500");
            self.reply(host, &internal_error("mosn_state_busy"));
            return TrailersStatus::StopIteration;
        };
        match phase {
            // Trailers end the body: all of it is buffered by now.
            Phase::Buffering => match self.finish_body(host, false) {
                Next::Forward => TrailersStatus::Continue,
                Next::Park => TrailersStatus::StopIteration,
                Next::Buffer => {
                    self.reply(host, &internal_error("mosn_body_incomplete"));
                    TrailersStatus::StopIteration
                }
                Next::Reply(r) => {
                    self.reply(host, &r);
                    TrailersStatus::StopIteration
                }
            },
            Phase::Waiting | Phase::Replied => TrailersStatus::StopIteration,
            Phase::Forwarded => TrailersStatus::Continue,
            Phase::Start => {
                tracing::error!("request trailers before the headers were judged; answering 500");
                self.reply(host, &internal_error("mosn_no_verdict"));
                TrailersStatus::StopIteration
            }
        }
    }

    fn on_scheduled(&self, host: &mut dyn HttpHost) {
        if self.cell.local_reply() {
            return; // a reply answers the request: resuming would forward it
        }
        let Some(phase) = self.phase() else {
            // Parked with no way to resume: answer instead of leaving it hanging.
            tracing::error!("stream state busy in the scheduled hook; answering 500");
            self.reply(host, &internal_error("mosn_state_busy"));
            return;
        };
        if phase != Phase::Waiting {
            tracing::debug!(?phase, "stale scheduler event ignored");
            return;
        }
        match self.drive(host, |s, h, p| s.resume_with(h, p)) {
            // No state borrow is held: the router may call the cluster LB in there.
            Next::Forward => host.continue_decoding(),
            Next::Park => {}
            Next::Buffer => self.reply(host, &internal_error("mosn_unexpected_buffer")),
            Next::Reply(r) => self.reply(host, &r),
        }
    }

    fn on_local_reply(&self, details: &[u8]) {
        if self.cell.own_reply() {
            return;
        }
        let Ok(mut guard) = self.cell.state.try_borrow_mut() else {
            tracing::debug!("stream state busy in the local-reply hook; outcome not reported");
            return;
        };
        let st = &mut *guard;
        let Some(stream) = st.stream.as_mut() else { return };
        let details = String::from_utf8_lossy(details);
        if let Some(outcome) = policy::outcome_from_details(&details) {
            if st.chosen && !st.outcome_reported && stream.upstream_host().is_some() {
                stream.upstream_result(outcome);
                st.outcome_reported = true;
            }
        }
    }

    /// True if the core asked for the response body (the headers wait for it).
    fn on_response_headers(&self, host: &mut dyn HttpHost, end_of_stream: bool) -> bool {
        let Ok(mut guard) = self.cell.state.try_borrow_mut() else {
            tracing::warn!("stream state busy in the response-headers hook; response passed through");
            return false;
        };
        let st = &mut *guard;
        let Some(stream) = st.stream.as_mut() else { return false };
        // The headers are copied only when something reads them: the core's response side
        // (edits, send filters), or the retry mark, which only a route with a retry policy
        // can carry (the upstream filter strips a backend's). Otherwise the status Envoy
        // recorded is all the core needs.
        let recorded = host.response_code().filter(|_| !stream.reads_response_headers() && stream.retry_policy().is_none());
        let (action, retry_mark) = {
            let headers = if recorded.is_some() { None } else { Some(HostHeaders::read(&*host, HeaderKind::Response)) };
            let status = recorded.unwrap_or_else(|| {
                let h = headers.as_ref().and_then(|h| h.get(":status").first());
                h.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<u16>().ok()).unwrap_or(0)
            });
            // A local reply's status is not an upstream answer (its outcome came from the
            // local-reply hook); the upstream filter may have reported this attempt already.
            if !self.cell.local_reply() && st.chosen && !st.outcome_reported && stream.upstream_host().is_some() {
                stream.upstream_result(UpstreamOutcome::Response(status));
                st.outcome_reported = true;
            }
            // A reply of Envoy's or ours is never held for its body (as on nginx).
            let eos = end_of_stream || self.cell.local_reply();
            match &headers {
                Some(h) => (stream.response_headers(status, h, eos), h.has(crate::upstream::RETRY_HEADER)),
                None => (stream.response_headers(status, &headers::Headers(&[]), eos), false),
            }
        };
        // The upstream filter's retry mark on a response Envoy did not retry (retries ran
        // out) is not the client's business.
        if retry_mark {
            host.remove_header(HeaderKind::Response, crate::upstream::RETRY_HEADER);
        }
        if action == Action::BufferBody {
            // The changes go out with the body's verdict (response_body).
            st.response_buffering = true;
            return true;
        }
        apply_mutations(host, HeaderKind::Response, stream.response_mutations());
        false
    }

    /// The whole response body is in (the last body hook, or the trailers hook): the send
    /// filters run on it; their header changes and new body are applied.
    fn on_response_end(&self, host: &mut dyn HttpHost, with_received: bool) {
        let Ok(mut guard) = self.cell.state.try_borrow_mut() else {
            tracing::warn!("stream state busy at the response body; response passed through");
            return;
        };
        let st = &mut *guard;
        st.response_buffering = false;
        let Some(stream) = st.stream.as_mut() else { return };
        let body = host.whole_body(true, with_received);
        stream.response_body(&HostHeaders::read(&*host, HeaderKind::Response), &body, true);
        apply_mutations(host, HeaderKind::Response, stream.response_mutations());
        if let Some(new) = stream.replaced_response_body() {
            host.replace_response_body(new);
            host.remove_header(HeaderKind::Response, "transfer-encoding");
            host.set_header(HeaderKind::Response, "content-length", &new.len().to_string());
        }
    }

    fn response_buffering(&self) -> bool {
        self.cell.state.try_borrow().is_ok_and(|s| s.response_buffering)
    }

    /// Creates the scheduler and wake function (only on a listener whose filters may make a
    /// stream wait), and registers the stream for the cluster LB. Runs at the first request
    /// hook, where Envoy has set the filter's callbacks.
    fn attach(&self, host: &mut dyn HttpHost, st: &mut StreamState) {
        if self.attached.replace(true) {
            return;
        }
        let may_wait = st.stream.as_ref().is_some_and(|s| s.listener().may_wait());
        if let Some(sched) = if may_wait { host.scheduler_new() } else { None } {
            if let Some(stream) = st.stream.as_mut() {
                let commit = sched.clone();
                // The stream's wake cell guarantees one call per wait and none after the
                // stream is dropped, which `destroy` does before deleting the scheduler.
                stream.set_wake_fn(WakeFn::Rust(Arc::new(move || commit.commit(1))));
            }
            *self.scheduler.borrow_mut() = Some(sched);
        }
    }

    /// Hands the released request's host choice to Envoy's router. A request the core can
    /// not retry, to a cluster of static hosts, gets the core's choice for its only attempt
    /// now: left for the cluster's LB in [`crate::pin`] when the router follows (the
    /// config's `router_follows`; the LB hands it to the router, with no filter state and
    /// no registry), else as Envoy's override host (strict: the router takes that host from
    /// the cluster without asking the LB; Envoy parses the address, ~1.5k instructions
    /// more). Every other request is published for the LB ([`HttpFilter::publish`]), which
    /// asks the stream at each attempt (`lb.rs`); so is one the core has no host for, and
    /// the LB gives Envoy that answer, as for any other request.
    fn hand_over(&self, host: &mut dyn HttpHost, st: &mut StreamState) -> Result<(), LocalReply> {
        let pinned = |s: &&mut Stream| s.max_attempts() == 1 && s.cluster().is_some_and(|c| c.dns.is_none());
        if let Some(stream) = st.stream.as_mut().filter(|s| self.pins_hosts && pinned(s)) {
            st.chosen = true;
            match stream.choose_host() {
                Ok(chosen) => {
                    st.outcome_reported = false;
                    if self.pins_through_lb {
                        // The last thing before the request goes on: the router asks the LB
                        // next, and nothing else may run before (see `pin.rs`).
                        // SAFETY: `done` and `Drop` unpin before the stream (which keeps
                        // `chosen.cluster` alive) is dropped.
                        unsafe { crate::pin::pin(self.id, chosen.cluster, chosen.index) };
                        self.pinned.set(true);
                        return Ok(());
                    }
                    if !host.set_upstream_override_host(chosen.address) {
                        tracing::error!(host = chosen.address, "Envoy refused the override host; answering 500");
                        return Err(internal_error("mosn_override_host_refused"));
                    }
                    return Ok(());
                }
                Err(why) => {
                    // No attempt is in flight: Envoy's reply reports none.
                    st.outcome_reported = true;
                    st.no_host = Some(why);
                }
            }
        }
        // Never a choice another stream left: this request's host comes from the LB.
        crate::pin::clear();
        self.publish(host);
        Ok(())
    }

    /// Registers the stream and writes its id into filter state `mosn.stream_id`, where the
    /// cluster LB and the upstream filter find it.
    fn publish(&self, host: &mut dyn HttpHost) {
        if self.published.replace(true) {
            return;
        }
        registry::insert(self.id, self.0.clone());
        if !host.set_filter_state(policy::STREAM_ID_KEY, policy::decimal(self.id, &mut [0; 20])) {
            tracing::warn!("could not set filter state {}; the cluster LB will not see this stream", policy::STREAM_ID_KEY);
        }
    }

    /// The phase, or `None` if the state is busy.
    fn phase(&self) -> Option<Phase> {
        self.cell.state.try_borrow().map(|s| s.phase).ok()
    }

    /// Runs one core call with the request headers (and the buffered body) and records what
    /// it decided; applies the mutations on `Continue`. Holds the state borrow only inside.
    fn drive(&self, host: &mut dyn HttpHost, call: impl FnOnce(&mut Stream, &dyn HeaderMap, Payload<'_>) -> Action) -> Next {
        let Ok(mut guard) = self.cell.state.try_borrow_mut() else {
            tracing::error!("stream state busy in a request hook; answering 500");
            return Next::Reply(internal_error("mosn_state_busy"));
        };
        let st = &mut *guard;
        let Some(stream) = st.stream.as_mut() else {
            tracing::error!("core stream gone in a request hook; answering 500");
            return Next::Reply(internal_error("mosn_stream_gone"));
        };
        // The request headers, read once for the core's lookups and for which of the headers
        // the adapter guards the request carries; dropped before anything changes the map.
        let headers = HostHeaders::read(&*host, HeaderKind::Request);
        let trailers = st.trailers.then(|| HostHeaders::read(&*host, HeaderKind::RequestTrailers));
        let payload = Payload { body: st.body.as_deref(), trailers: trailers.as_ref().map(|t| t as &dyn HeaderMap) };
        let action = call(stream, &headers, payload);
        let present = headers.guarded();
        let fresh = fresh_sets(&headers, stream.request_mutations());
        drop(headers);
        drop(trailers);
        match action {
            Action::Continue => {
                // Before the cluster is named (apply_request's last step).
                self.log_unit(host, stream);
                if !apply_request(host, stream, present, fresh, self.added.as_deref()) {
                    // A route that is not this module's cluster specifier would send the
                    // request to a cluster the core did not choose.
                    crate::log_error(
                        "mosn: the request's Envoy route does not name its cluster through the mosn cluster specifier \
                         (inline_cluster_specifier_plugin, see the README); answering 500",
                    );
                    st.phase = Phase::Replied;
                    return Next::Reply(internal_error("mosn_route_without_specifier"));
                }
                // The copies leave with the request, as it goes upstream; nothing of them
                // stays with this stream (`mirror.rs`). Making them only reads the request, and
                // a failure there (logged by the guard) never fails the request itself.
                let (h, s, body, more) = (&*host, &*stream, st.body.as_deref(), st.more_body);
                let _ = guard::catch("mirror_copies", || self.mirror.push(mirror::copies(h, s, body, more)));
                if let Err(reply) = self.hand_over(host, st) {
                    st.phase = Phase::Replied;
                    return Next::Reply(reply);
                }
                st.phase = Phase::Forwarded;
                Next::Forward
            }
            Action::Wait => {
                st.phase = Phase::Waiting;
                Next::Park
            }
            Action::BufferBody => {
                st.phase = Phase::Buffering;
                Next::Buffer
            }
            Action::LocalReply => {
                let reply = stream.local_reply().cloned().unwrap_or_else(|| internal_error("mosn_reply_missing"));
                self.log_unit(host, stream);
                st.phase = Phase::Replied;
                Next::Reply(reply)
            }
        }
    }

    /// The body is complete: hand it to the core.
    fn finish_body(&self, host: &mut dyn HttpHost, with_received: bool) -> Next {
        // In the last body hook the current chunk may not be in the buffer yet.
        let body = host.whole_body(false, with_received);
        match self.cell.state.try_borrow_mut() {
            Ok(mut st) => {
                st.body = Some(body);
                // Called from the trailers hook (no current chunk): the request has trailers.
                st.trailers = !with_received;
            }
            Err(_) => return Next::Reply(internal_error("mosn_state_busy")),
        }
        self.drive(host, |s, h, p| match p.trailers {
            Some(t) => s.request_trailers(h, p.body.unwrap_or(&[]), t),
            None => s.request_body(h, p.body.unwrap_or(&[]), true),
        })
    }

    /// Sends a local reply unless one already answers the request (a second reply on a
    /// stream Envoy is already answering would reset it).
    fn reply(&self, host: &mut dyn HttpHost, r: &LocalReply) {
        if self.cell.local_reply() {
            tracing::debug!(details = r.details, "a local reply already answers this request");
            return;
        }
        self.cell.set_own_reply();
        host.send_local_reply(r);
    }

    /// Drops the core stream (closing its waker) and unregisters it. Idempotent.
    fn done(&self) {
        self.unpin();
        if self.published.get() {
            registry::remove(self.id);
        }
        match self.cell.state.try_borrow_mut() {
            Ok(mut st) => {
                st.stream = None;
                st.body = None;
            }
            // Only if a hook is still running below us; dropping the last `Rc` in `destroy`
            // drops the stream anyway.
            Err(_) => tracing::warn!("stream state busy at stream end"),
        }
    }
}

// === Header application ===

/// The request headers the adapter sets or removes after the core's mutations, so that
/// neither a client nor a filter hands them to Envoy's router: the mirror key and the route
/// policy's `x-envoy-*` headers.
pub(crate) const GUARDED: [&str; 9] = [
    mirror::MIRROR_HOST_KEY,
    policy::MAX_RETRIES,
    policy::RETRY_ON,
    policy::RETRIABLE_HEADER_NAMES,
    policy::RETRIABLE_STATUS_CODES,
    policy::RQ_TIMEOUT,
    policy::PER_TRY_TIMEOUT,
    policy::RETRY_GRPC_ON,
    policy::HEDGE_ON_PER_TRY_TIMEOUT,
];

/// [`GUARDED`]'s policy headers ([`policy::route_policy_headers`], in order) end here; the
/// rest steer Envoy's retries in ways no MOSN route does, and are only removed.
const POLICY_END: usize = 7;

/// Which [`GUARDED`] headers a request had when the core saw it (bit i: `GUARDED[i]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Present(u16);

/// Bit `n` set: some [`GUARDED`] name is `n` bytes long (all are shorter than 64).
const GUARDED_LENGTHS: u64 = {
    let mut bits = 0u64;
    let mut i = 0;
    while i < GUARDED.len() {
        assert!(GUARDED[i].len() < 64);
        bits |= 1 << GUARDED[i].len();
        i += 1;
    }
    bits
};

/// `name`'s index in [`GUARDED`] (any case).
#[inline]
pub(crate) fn guarded_index(name: &[u8]) -> Option<usize> {
    // Most names are none of them: rejected by their length, inline (every request header
    // is asked), before the search.
    if name.len() >= 64 || GUARDED_LENGTHS & (1 << name.len()) == 0 {
        return None;
    }
    guarded_search(name)
}

fn guarded_search(name: &[u8]) -> Option<usize> {
    GUARDED.iter().position(|g| name.eq_ignore_ascii_case(g.as_bytes()))
}

/// Applies the core's request mutations and hands the route's decision to Envoy's router:
/// the route's retry policy and timeouts as `x-envoy-*` (removed when the route has none),
/// filter state `mosn.unit`, and last the cluster, through the route's cluster specifier
/// (`specifier.rs`). False if the route did not take the cluster (it is not the specifier).
///
/// A removal is made only for a header that can be there: one the request had when the core
/// saw it (`present`) or one the core's mutations name; a header that can not be there is
/// added instead of set. Removing a header that is not there changes nothing, and on Envoy
/// each removal is a call into the host (and a set is a removal and an add).
///
/// `added`: the MOSN clusters a reload added; Envoy's cluster for them is
/// `mosn_added_clusters`.
pub fn apply_request(host: &mut dyn HttpHost, stream: &Stream, present: Present, fresh: u64, added: Option<&HashSet<String>>) -> bool {
    let mutations = stream.request_mutations();
    for (i, m) in mutations.iter().enumerate() {
        match m.op {
            HeaderOp::Set if i < 64 && fresh & (1 << i) != 0 => host.add_header(HeaderKind::Request, &m.name, &m.value),
            _ => apply_mutation(host, HeaderKind::Request, m),
        }
    }
    // GUARDED[i] can be there: the request had it or a mutation names it.
    let named = mutations.iter().filter_map(|m| guarded_index(m.name.as_bytes())).fold(present.0, |bits, i| bits | 1 << i);
    let maybe_there = |i: usize| named & (1 << i) != 0;
    // The key that steers a request copy to its host (`mirror.rs`): no client can send this
    // pseudo-header, and the LB ignores it on a request with a stream; removed all the same
    // (after the core's mutations), so that only this module's copies ever carry it.
    if maybe_there(0) {
        host.remove_header(HeaderKind::Request, mirror::MIRROR_HOST_KEY);
    }
    // Set where the header can be there; else added (on Envoy a set is a removal and an add).
    let put = |host: &mut dyn HttpHost, i: usize, name: &str, value: Option<&str>| match value {
        Some(v) if maybe_there(i) => host.set_header(HeaderKind::Request, name, v),
        Some(v) => host.add_header(HeaderKind::Request, name, v),
        None if maybe_there(i) => host.remove_header(HeaderKind::Request, name),
        None => {}
    };
    // The policy's headers are GUARDED[1..POLICY_END], in order (a test checks). A route
    // without a retry policy or timeout, on a request without such headers, has none to
    // set and none to remove.
    let (retry, timeout) = (stream.retry_policy(), stream.timeout());
    if retry.is_some() || timeout.is_some() || (1..POLICY_END).any(maybe_there) {
        for (i, (name, value)) in policy::route_policy_headers(retry, stream.per_try_timeout(), timeout).iter().enumerate() {
            put(host, i + 1, name, value.as_deref());
        }
    }
    // Retries are the core's: a client's other retry headers go too (a retry of a request
    // whose host was handed over would reach an LB that has no stream for it).
    for (i, name) in GUARDED.iter().enumerate().skip(POLICY_END) {
        put(host, i, name, None);
    }
    // A filter's new body goes in place of the buffered one, framed by its length.
    if let Some(body) = stream.replaced_body() {
        host.replace_request_body(body);
        host.remove_header(HeaderKind::Request, "transfer-encoding");
        host.set_header(HeaderKind::Request, "content-length", &body.len().to_string());
    }
    // Last: Envoy reads the cluster's settings when the specifier names it.
    let cluster = stream.cluster().map_or(specifier::NO_DECISION, |c| crate::engines::envoy_cluster(added, &c.name));
    host.route_to_cluster(cluster)
}

/// Applies header mutations in order.
pub fn apply_mutations(host: &mut dyn HttpHost, kind: HeaderKind, mutations: &[HeaderMutation]) {
    for m in mutations {
        apply_mutation(host, kind, m);
    }
}

fn apply_mutation(host: &mut dyn HttpHost, kind: HeaderKind, m: &HeaderMutation) {
    match m.op {
        HeaderOp::Set => host.set_header(kind, &m.name, &m.value),
        HeaderOp::Add => host.add_header(kind, &m.name, &m.value),
        HeaderOp::Remove => host.remove_header(kind, &m.name),
    }
}

/// The core's `Set` mutations (of the first 64) that can be adds: no header of that name in
/// `headers` and none named by an earlier mutation, so nothing is there to replace (bit i:
/// mutation i). A set is a removal and an add on Envoy; an empty value, which a set would
/// turn into a removal, leaves the header absent either way.
fn fresh_sets(headers: &HostHeaders<'_>, mutations: &[HeaderMutation]) -> u64 {
    let mut bits = 0u64;
    for (i, m) in mutations.iter().enumerate().take(64) {
        if m.op == HeaderOp::Set && !headers.has(&m.name) && !mutations[..i].iter().any(|p| p.name.eq_ignore_ascii_case(&m.name)) {
            bits |= 1 << i;
        }
    }
    bits
}

// === impl HostHeaders ===

/// A header map of the host, read once ([`HttpHost::read_headers`]) for one core call: the
/// core's lookups are then searches in this list instead of one host call each. It borrows
/// the host, so it can not outlive a mutation.
struct HostHeaders<'a> {
    all: crate::host::HeaderList<'a>,
    kind: HeaderKind,
}

impl<'a> HostHeaders<'a> {
    #[inline(always)]
    fn read(host: &'a dyn HttpHost, kind: HeaderKind) -> HostHeaders<'a> {
        let mut h = HostHeaders { all: crate::host::HeaderList::new(), kind };
        host.read_headers(kind, &mut h.all);
        h
    }

    /// True if a header is named `name` (lower case; any case in the map).
    fn has(&self, name: &str) -> bool {
        self.all.iter().any(|h| headers::eq_lower(h.name, name.as_bytes()))
    }

    /// Which [`GUARDED`] headers are here.
    fn guarded(&self) -> Present {
        let mut bits = 0u16;
        for h in &self.all {
            if let Some(i) = guarded_index(h.name) {
                bits |= 1 << i;
            }
        }
        Present(bits)
    }
}

impl HostHeaders<'_> {
    /// The Host Envoy invents for an HTTP/1.0 request without one is no Host for the core.
    fn no_invented_host<'s>(&self, name: &str, found: Lookup<'s>) -> Lookup<'s> {
        if self.kind == HeaderKind::Request && found.first() == Some(NO_HOST.as_bytes()) && (name == ":authority" || name == "host") {
            return Lookup::Missing;
        }
        found
    }
}

impl HeaderMap for HostHeaders<'_> {
    fn get(&self, name: &str) -> Lookup<'_> {
        self.no_invented_host(name, headers::lookup(self.all.iter().copied(), name))
    }
    fn get_many<'s>(&'s self, names: &mosn_extension::headers::NameSet, out: &mut [Lookup<'s>]) {
        headers::lookup_many(self.all.iter().copied(), names, out);
        if self.kind == HeaderKind::Request {
            for i in [names.position(":authority"), names.position("host")].into_iter().flatten() {
                out[i] = self.no_invented_host(names.name(i), out[i]);
            }
        }
    }
    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for h in &self.all {
            f(h.name, h.value)
        }
    }
}
