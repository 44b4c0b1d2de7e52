//! The HTTP filter: Envoy's per-stream hooks driving a core [`Stream`].
//!
//! Threads: config hooks run on the main thread; everything else on the worker that owns
//! the stream, except the wake function, which the core's timer thread calls and which only
//! does `scheduler_commit` (thread-safe) so that Envoy runs `on_http_filter_scheduled` back
//! on the worker.
//!
//! Re-entrancy: `send_response` and `continue_decoding` make Envoy call other hooks of this
//! very stream (local reply, response headers, the cluster LB) before they return, so no
//! `RefCell` borrow of the stream state is held across those two calls.

// The exported hooks take Envoy's raw pointers by the ABI's contract (Envoy is their only
// caller); they are `extern "C"` entry points, not Rust API, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::abi::{self, body_status, header_type, headers_status, trailers_status, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer};
use crate::policy;
use crate::registry::{self, Phase, SharedState, StreamState};
use crate::{guard, log_error};
use mosn_extension::filter::LocalReply;
use mosn_extension::headers::{HeaderMap, HeaderOp, Lookup};
use mosn_extension::wake::WakeFn;
use mosn_extension::{Action, Engine, Stream, UpstreamOutcome};
use std::cell::Cell;
use std::ffi::c_void;
use std::sync::Arc;

/// The HTTP filter config: the engine and the MOSN listener whose filters and router run.
pub struct HttpConfig {
    engine: Arc<Engine>,
    listener: usize,
}

/// One stream's filter object (lives on its worker).
struct Filter {
    envoy: *mut c_void,
    id: u64,
    /// Created on the first request hook (`scheduler_new` needs the decoder callbacks,
    /// which Envoy sets only after `on_http_filter_new`).
    scheduler: Cell<*mut c_void>,
    registered: Cell<bool>,
    state: SharedState,
}

/// What the hook does after the core answered.
enum Next {
    Forward,
    Park,
    Buffer,
    Reply(LocalReply),
    Nothing,
}

// === impl EnvoyHeaders ===

/// Envoy's request or response headers seen through [`HeaderMap`] for one core call.
///
/// Values borrow Envoy's buffers, valid until the map is mutated or the hook returns; the
/// adapter mutates headers only after the core call that read them returned.
struct EnvoyHeaders {
    envoy: *mut c_void,
    kind: u32,
}

impl HeaderMap for EnvoyHeaders {
    fn get(&self, name: &str) -> Lookup<'_> {
        let mut out = EnvoyBuffer::empty();
        let mut count = 0usize;
        // SAFETY: `envoy` is this stream's filter pointer and we are in one of its hooks on
        // its worker; `out` and `count` are valid for writes; the key buffer lives for the call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(self.envoy, self.kind, ModuleBuffer::from(name), &mut out, 0, &mut count)
        };
        if !found {
            return Lookup::Missing;
        }
        // SAFETY: Envoy's value buffer stays valid until the map is mutated or the hook
        // returns; the lookup's lifetime is tied to `&self`, which lives inside the hook, and
        // no mutation happens while the core holds it (see the type's doc).
        let v = unsafe { out.as_slice() };
        if count > 1 {
            Lookup::Many(v)
        } else {
            Lookup::One(v)
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        // SAFETY: as in `get`: this stream's pointer, inside its hook.
        let n = unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.envoy, self.kind) };
        if n == 0 {
            return;
        }
        let empty = EnvoyHttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };
        let mut all = vec![empty; n];
        // SAFETY: `all` has room for the `n` headers Envoy just counted; same thread and hook,
        // so the map did not change in between.
        if !unsafe { abi::envoy_dynamic_module_callback_http_get_headers(self.envoy, self.kind, all.as_mut_ptr()) } {
            return;
        }
        for h in &all {
            // SAFETY: Envoy filled these from its live map (valid until mutation / hook end).
            let (k, v) = unsafe {
                (
                    EnvoyBuffer { ptr: h.key_ptr, length: h.key_length }.as_slice(),
                    EnvoyBuffer { ptr: h.value_ptr, length: h.value_length }.as_slice(),
                )
            };
            f(k, v);
        }
    }
}

// === impl Envoy calls ===

fn set_header(envoy: *mut c_void, kind: u32, name: &str, value: Option<&str>) {
    let v = value.map_or(ModuleBuffer::null(), ModuleBuffer::from);
    // SAFETY: called on the stream's worker inside one of its hooks; buffers live for the call.
    unsafe { abi::envoy_dynamic_module_callback_http_set_header(envoy, kind, ModuleBuffer::from(name), v) };
}

fn add_header(envoy: *mut c_void, kind: u32, name: &str, value: &str) {
    // SAFETY: as in `set_header`.
    unsafe { abi::envoy_dynamic_module_callback_http_add_header(envoy, kind, ModuleBuffer::from(name), ModuleBuffer::from(value)) };
}

fn set_metadata(envoy: *mut c_void, key: &str, value: &str) {
    // SAFETY: as in `set_header`; Envoy copies namespace, key and value.
    unsafe {
        abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
            envoy,
            ModuleBuffer::from(policy::METADATA_NAMESPACE),
            ModuleBuffer::from(key),
            ModuleBuffer::from(value),
        )
    };
}

/// Sends a local reply. Envoy runs this stream's local-reply and response hooks before it
/// returns: the caller must hold no borrow of the stream state.
fn send_reply(envoy: *mut c_void, r: &LocalReply) {
    let headers: Vec<abi::ModuleHttpHeader> = r
        .headers
        .iter()
        .map(|(k, v)| abi::ModuleHttpHeader { key_ptr: k.as_ptr(), key_length: k.len(), value_ptr: v.as_ptr(), value_length: v.len() })
        .collect();
    // SAFETY: on the stream's worker inside one of its hooks (or `on_http_filter_scheduled`);
    // `headers` and the strings it points into outlive the call; Envoy copies everything.
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            envoy,
            u32::from(r.status),
            headers.as_ptr(),
            headers.len(),
            ModuleBuffer::from(&*r.body),
            ModuleBuffer::from(r.details),
        )
    };
}

fn internal_error(details: &'static str) -> LocalReply {
    LocalReply { status: 500, headers: Vec::new(), body: "internal error".into(), details }
}

/// Applies the core's request mutations and hands the route's decision to Envoy's router.
fn forward(envoy: *mut c_void, stream: &Stream) {
    for m in stream.request_mutations() {
        match m.op {
            HeaderOp::Set => set_header(envoy, header_type::REQUEST, &m.name, Some(&m.value)),
            HeaderOp::Add => add_header(envoy, header_type::REQUEST, &m.name, &m.value),
            HeaderOp::Remove => set_header(envoy, header_type::REQUEST, &m.name, None),
        }
    }
    // Always overwritten (or removed), so a client can not pick the Envoy cluster.
    let cluster = stream.cluster().map(|c| c.name.clone());
    set_header(envoy, header_type::REQUEST, policy::CLUSTER_HEADER, cluster.as_deref());
    for (name, value) in policy::route_policy_headers(stream.retry_policy(), stream.timeout()) {
        set_header(envoy, header_type::REQUEST, name, value.as_deref());
    }
    // The cluster is in Envoy's own %UPSTREAM_CLUSTER%; only the unit needs metadata.
    if let Some(unit) = stream.metadata("unit") {
        set_metadata(envoy, "unit", unit);
    }
    // SAFETY: this stream's pointer, on its worker, inside one of its hooks.
    unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(envoy) };
}

// === impl Filter ===

impl Filter {
    /// Creates the scheduler and wake function, and registers the stream for the cluster LB.
    /// Runs at the first request hook, where Envoy has set the filter's callbacks.
    fn attach(&self, st: &mut StreamState) {
        if self.scheduler.get().is_null() {
            // SAFETY: called on the stream's worker inside its request-headers hook, after
            // Envoy set the decoder callbacks that `scheduler_new` uses.
            let sched = unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.envoy) };
            self.scheduler.set(sched);
            if !sched.is_null() {
                if let Some(stream) = st.stream.as_mut() {
                    let sched_addr = sched as usize;
                    stream.set_wake_fn(WakeFn::Rust(Arc::new(move || {
                        // SAFETY: `scheduler_commit` is thread-safe. The scheduler is deleted in
                        // `destroy` only after the stream was dropped, and dropping the stream
                        // closes its wake cell under the lock this call runs under, so no
                        // commit can reach a deleted scheduler.
                        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(sched_addr as *mut c_void, 1) }
                    })));
                }
            }
        }
        if !self.registered.get() {
            self.registered.set(true);
            registry::insert(self.id, self.state.clone());
            let id = self.id.to_string();
            // SAFETY: this stream's pointer inside its hook; Envoy copies key and value.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                    self.envoy,
                    ModuleBuffer::from(policy::STREAM_ID_KEY),
                    ModuleBuffer::from(id.as_str()),
                )
            };
            if !ok {
                tracing::warn!("could not set filter state {}; the cluster LB will not see this stream", policy::STREAM_ID_KEY);
            }
        }
    }

    /// Runs one core call with the request headers (and the buffered body) and records what
    /// it decided. Applies the mutations on `Continue`. Holds the state borrow only inside.
    fn drive(&self, call: impl FnOnce(&mut Stream, &EnvoyHeaders, Option<&[u8]>) -> Action) -> Next {
        let Ok(mut guard) = self.state.try_borrow_mut() else {
            tracing::error!("stream state busy in a request hook; answering 500");
            return Next::Reply(internal_error("mosn_state_busy"));
        };
        let st = &mut *guard;
        let Some(stream) = st.stream.as_mut() else { return Next::Nothing };
        let headers = EnvoyHeaders { envoy: self.envoy, kind: header_type::REQUEST };
        let action = call(stream, &headers, st.body.as_deref());
        match action {
            Action::Continue => {
                forward(self.envoy, stream);
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
                if let Some(unit) = stream.metadata("unit") {
                    set_metadata(self.envoy, "unit", unit);
                }
                st.phase = Phase::Replied;
                st.local_reply = true;
                st.own_reply = true;
                Next::Reply(reply)
            }
        }
    }

    /// The whole request body Envoy buffered so far, plus the chunk of this hook when it is
    /// not the buffered one (`with_received` only inside the body hook).
    fn collect_body(&self, with_received: bool) -> Vec<u8> {
        let mut body = Vec::new();
        let mut read = |kind: u32| {
            // SAFETY: this stream's pointer inside its body hook.
            let n = unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.envoy, kind) };
            if n == 0 {
                return;
            }
            let mut chunks = vec![EnvoyBuffer::empty(); n];
            // SAFETY: room for the `n` chunks Envoy just counted, same hook.
            if unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks(self.envoy, kind, chunks.as_mut_ptr()) } {
                for c in &chunks {
                    // SAFETY: Envoy's slices stay valid until the body changes or the hook returns.
                    body.extend_from_slice(unsafe { c.as_slice() });
                }
            }
        };
        read(abi::body_type::BUFFERED_REQUEST);
        // SAFETY: this stream's pointer inside its hook.
        if with_received && !unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.envoy) } {
            read(abi::body_type::RECEIVED_REQUEST);
        }
        body
    }

    /// The body is complete: hand it to the core.
    fn finish_body(&self, body: Vec<u8>) -> Next {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.body = Some(body);
        }
        self.drive(|s, h, b| s.request_body(h, b.unwrap_or(&[]), true))
    }

    /// Drops the core stream (closing its waker) and unregisters it. Idempotent.
    fn done(&self) {
        registry::remove(self.id);
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.stream = None;
            st.body = None;
        } else {
            // Only possible if a hook panicked while borrowing; the borrow is gone by now
            // in every other case. Dropping the `Rc` below still drops the stream.
            tracing::warn!("stream state busy at stream end");
        }
    }

    fn fail_closed(&self) {
        send_reply(self.envoy, &internal_error("mosn_panic"));
    }
}

/// # Safety
/// `ptr` must be a filter pointer this module returned from `on_http_filter_new` that Envoy
/// has not destroyed yet.
unsafe fn filter<'a>(ptr: *const c_void) -> Option<&'a Filter> {
    // SAFETY: by the function contract the pointer is a live `Box<Filter>` (or NULL).
    unsafe { ptr.cast::<Filter>().as_ref() }
}

// === Exported hooks: config ===

/// Builds the filter config from `{"config_path": ..., "listener": ...}`. NULL rejects it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard("http_filter_config_new", std::ptr::null, log_error, || {
        // SAFETY: Envoy passes the filter_config bytes, valid for this call.
        let bytes = unsafe { config.as_slice() };
        let Some((cfg, engine)) = crate::engines::load(bytes, "listener", "http filter") else {
            return std::ptr::null();
        };
        let Some(listener) = engine.listener_index(cfg.name.as_deref()) else {
            log_error(&format!(
                "mosn: config error: listener \"{}\" is not in {}",
                cfg.name.as_deref().unwrap_or(""),
                cfg.config_path.display()
            ));
            return std::ptr::null();
        };
        Box::into_raw(Box::new(HttpConfig { engine, listener })).cast_const().cast()
    })
}

/// Frees the filter config.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard(
        "http_filter_config_destroy",
        || (),
        log_error,
        || {
            if !config.is_null() {
                // SAFETY: `config` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
                drop(unsafe { Box::from_raw(config.cast::<HttpConfig>().cast_mut()) });
            }
        },
    )
}

// === Exported hooks: stream lifetime ===

/// A new stream on a worker: starts the core stream. NULL would make Envoy close it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: *const c_void, filter_envoy: *mut c_void) -> *const c_void {
    guard("http_filter_new", std::ptr::null, log_error, || {
        // SAFETY: `config` is the live `HttpConfig` from `config_new` (Envoy keeps the config
        // alive while streams use it); shared read-only across workers (`Engine` is `Sync`).
        let Some(cfg) = (unsafe { config.cast::<HttpConfig>().as_ref() }) else { return std::ptr::null() };
        let Some(stream) = cfg.engine.new_stream(cfg.listener, None) else { return std::ptr::null() };
        let f = Filter {
            envoy: filter_envoy,
            id: registry::next_id(),
            scheduler: Cell::new(std::ptr::null_mut()),
            registered: Cell::new(false),
            state: StreamState::new(stream),
        };
        Box::into_raw(Box::new(f)).cast_const().cast()
    })
}

/// The stream is complete (access logs are written): the core stream ends here.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_filter_envoy: *mut c_void, filter_module: *const c_void) {
    guard(
        "http_filter_stream_complete",
        || (),
        log_error,
        || {
            // SAFETY: Envoy passes our live filter pointer.
            if let Some(f) = unsafe { filter(filter_module) } {
                f.done();
            }
        },
    )
}

/// Frees the filter: ends the core stream first (no wake after), then deletes the scheduler.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *const c_void) {
    guard(
        "http_filter_destroy",
        || (),
        log_error,
        || {
            if filter_module.is_null() {
                return;
            }
            // SAFETY: the pointer came from `Box::into_raw` in `filter_new`; Envoy destroys it once.
            let f = unsafe { Box::from_raw(filter_module.cast::<Filter>().cast_mut()) };
            f.done();
            let sched = f.scheduler.get();
            drop(f);
            if !sched.is_null() {
                // SAFETY: created by `scheduler_new` for this stream; the stream (and with it the
                // only wake function using it) is gone, so nothing commits to it any more.
                unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(sched) };
            }
        },
    )
}

// === Exported hooks: request path ===

/// Request headers: run the core's filters and router.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy passes our live filter pointer.
    let Some(f) = (unsafe { filter(filter_module) }) else { return headers_status::CONTINUE };
    guard(
        "http_filter_request_headers",
        || {
            f.fail_closed();
            headers_status::STOP_ITERATION
        },
        log_error,
        || {
            {
                let Ok(mut st) = f.state.try_borrow_mut() else { return headers_status::CONTINUE };
                if st.phase != Phase::Start {
                    return headers_status::CONTINUE;
                }
                f.attach(&mut st);
                st.more_body = !end_of_stream;
            }
            match f.drive(|s, h, _| s.request_headers(h, end_of_stream)) {
                Next::Forward | Next::Nothing => headers_status::CONTINUE,
                Next::Park if !end_of_stream => headers_status::STOP_ALL_ITERATION_AND_BUFFER,
                Next::Park | Next::Buffer => headers_status::STOP_ITERATION,
                Next::Reply(r) => {
                    send_reply(f.envoy, &r);
                    headers_status::STOP_ITERATION
                }
            }
        },
    )
}

/// Request body: buffered for the core when it asked; held while the stream waits.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy passes our live filter pointer.
    let Some(f) = (unsafe { filter(filter_module) }) else { return body_status::CONTINUE };
    guard(
        "http_filter_request_body",
        || {
            f.fail_closed();
            body_status::STOP_ITERATION_NO_BUFFER
        },
        log_error,
        || {
            let phase = f.state.try_borrow().map(|s| s.phase).unwrap_or(Phase::Forwarded);
            match phase {
                Phase::Buffering if !end_of_stream => body_status::STOP_ITERATION_AND_BUFFER,
                Phase::Buffering => match f.finish_body(f.collect_body(true)) {
                    Next::Forward | Next::Nothing => body_status::CONTINUE,
                    Next::Park => body_status::STOP_ITERATION_AND_BUFFER,
                    Next::Buffer => {
                        send_reply(f.envoy, &internal_error("mosn_body_incomplete"));
                        body_status::STOP_ITERATION_NO_BUFFER
                    }
                    Next::Reply(r) => {
                        send_reply(f.envoy, &r);
                        body_status::STOP_ITERATION_NO_BUFFER
                    }
                },
                Phase::Waiting => body_status::STOP_ITERATION_AND_BUFFER,
                Phase::Start | Phase::Forwarded | Phase::Replied => body_status::CONTINUE,
            }
        },
    )
}

/// Request trailers end a body the core is waiting for.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_filter_envoy: *mut c_void, filter_module: *const c_void) -> u32 {
    // SAFETY: Envoy passes our live filter pointer.
    let Some(f) = (unsafe { filter(filter_module) }) else { return trailers_status::CONTINUE };
    guard(
        "http_filter_request_trailers",
        || {
            f.fail_closed();
            trailers_status::STOP_ITERATION
        },
        log_error,
        || {
            let phase = f.state.try_borrow().map(|s| s.phase).unwrap_or(Phase::Forwarded);
            match phase {
                Phase::Buffering => match f.finish_body(f.collect_body(false)) {
                    Next::Forward | Next::Nothing => trailers_status::CONTINUE,
                    Next::Park => trailers_status::STOP_ITERATION,
                    Next::Buffer => {
                        send_reply(f.envoy, &internal_error("mosn_body_incomplete"));
                        trailers_status::STOP_ITERATION
                    }
                    Next::Reply(r) => {
                        send_reply(f.envoy, &r);
                        trailers_status::STOP_ITERATION
                    }
                },
                Phase::Waiting => trailers_status::STOP_ITERATION,
                _ => trailers_status::CONTINUE,
            }
        },
    )
}

/// Back on the worker after the core's wake: resume the core, then let the request go on.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(filter_envoy: *mut c_void, filter_module: *const c_void, _event_id: u64) {
    // SAFETY: Envoy passes our live filter pointer (a commit after destroy is dropped by Envoy).
    let Some(f) = (unsafe { filter(filter_module) }) else { return };
    guard(
        "http_filter_scheduled",
        || f.fail_closed(),
        log_error,
        || {
            if f.state.try_borrow().map(|s| s.phase).ok() != Some(Phase::Waiting) {
                return;
            }
            match f.drive(|s, h, b| s.resume(h, b)) {
                // SAFETY: this stream's pointer, on its worker, in its scheduled hook; no state
                // borrow is held (the router may call the cluster LB before this returns).
                Next::Forward => unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(filter_envoy) },
                Next::Park | Next::Nothing => {}
                Next::Buffer => send_reply(f.envoy, &internal_error("mosn_unexpected_buffer")),
                Next::Reply(r) => send_reply(f.envoy, &r),
            }
        },
    )
}

/// Envoy (or this module) answers locally: tell the core how the upstream attempt ended.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _status: u32,
    details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    guard(
        "http_filter_local_reply",
        || abi::LOCAL_REPLY_CONTINUE,
        log_error,
        || {
            // SAFETY: Envoy passes our live filter pointer.
            let Some(f) = (unsafe { filter(filter_module) }) else { return abi::LOCAL_REPLY_CONTINUE };
            let Ok(mut guard) = f.state.try_borrow_mut() else { return abi::LOCAL_REPLY_CONTINUE };
            let st = &mut *guard;
            st.local_reply = true;
            if st.own_reply {
                return abi::LOCAL_REPLY_CONTINUE;
            }
            // SAFETY: Envoy's details buffer is valid for this call.
            let details = String::from_utf8_lossy(unsafe { details.as_slice() });
            let Some(stream) = st.stream.as_mut() else { return abi::LOCAL_REPLY_CONTINUE };
            if let Some(outcome) = policy::outcome_from_details(&details) {
                if st.chosen && stream.upstream_host().is_some() {
                    stream.upstream_result(outcome);
                    st.outcome_reported = true;
                }
            }
            abi::LOCAL_REPLY_CONTINUE
        },
    )
}

// === Exported hooks: response path ===

/// Response headers (upstream or local): report the outcome, run the core's send filters,
/// apply their changes (a `:status` change turns Envoy's 503 into MOSN's 502).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    guard(
        "http_filter_response_headers",
        || headers_status::CONTINUE,
        log_error,
        || {
            // SAFETY: Envoy passes our live filter pointer.
            let Some(f) = (unsafe { filter(filter_module) }) else { return headers_status::CONTINUE };
            let Ok(mut guard) = f.state.try_borrow_mut() else { return headers_status::CONTINUE };
            let st = &mut *guard;
            let Some(stream) = st.stream.as_mut() else { return headers_status::CONTINUE };
            let mutations = {
                let headers = EnvoyHeaders { envoy: filter_envoy, kind: header_type::RESPONSE };
                let status = headers
                    .get(":status")
                    .first()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u16>().ok())
                    .unwrap_or(0);
                if !st.local_reply && st.chosen && stream.upstream_host().is_some() {
                    stream.upstream_result(UpstreamOutcome::Response(status));
                    st.outcome_reported = true;
                }
                stream.response_headers(status, &headers, end_of_stream);
                stream.response_mutations().to_vec()
            };
            for m in &mutations {
                match m.op {
                    HeaderOp::Set => set_header(filter_envoy, header_type::RESPONSE, &m.name, Some(&m.value)),
                    HeaderOp::Add => add_header(filter_envoy, header_type::RESPONSE, &m.name, &m.value),
                    HeaderOp::Remove => set_header(filter_envoy, header_type::RESPONSE, &m.name, None),
                }
            }
            headers_status::CONTINUE
        },
    )
}

/// Response body: passed through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    body_status::CONTINUE
}

/// Response trailers: passed through.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_filter_envoy: *mut c_void, _filter_module: *const c_void) -> u32 {
    trailers_status::CONTINUE
}

// === Exported hooks: required by Envoy, unused ===

/// Unused (no HTTP callouts).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

/// Unused (no HTTP streams).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// Unused (no HTTP streams).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// Unused (no HTTP streams).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

/// Unused (no HTTP streams).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream: u64,
) {
}

/// Unused (no HTTP streams).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

/// Unused (no flow control of our own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// Unused (no flow control of our own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}
