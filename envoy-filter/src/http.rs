//! The HTTP filter's exported hooks (`DynamicModuleFilter`): pointer checks, the panic guard,
//! one call into [`crate::http_logic`] with the real host, the status as Envoy's number.
//!
//! Threads: config hooks run on the main thread; everything else on the worker that owns
//! the stream, except the wake function, which the core's timer thread calls and which only
//! does `scheduler_commit` (thread-safe) so that Envoy runs `on_http_filter_scheduled` back
//! on the worker.
//!
//! Each hook is wrapped once more in [`guard::or`] around the logic's own per-stream policy:
//! the fallback only matters if a fail path itself panicked.

// The exported hooks take Envoy's raw pointers by the ABI's contract (Envoy is their only
// caller); they are `extern "C"` entry points, not Rust API, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::abi::{self, body_status, headers_status, trailers_status, EnvoyBuffer, EnvoyHttpHeader};
use crate::envoy_host::{EnvoyHttp, EnvoyHttpConfig};
use crate::guard;
use crate::host::{BodyStatus, HeadersStatus, TrailersStatus};
use crate::http_logic::{self, HttpConfig, HttpFilter};
use crate::{endpoint, mirror, upstream};
use std::ffi::c_void;
use std::mem::ManuallyDrop;

/// What `on_http_filter_config_new` builds: the filter of a MOSN listener (downstream), or
/// the per-attempt filter of a cluster (`{"upstream": true}`, see `upstream.rs`).
enum FilterConfig {
    Listener(HttpConfig),
    Upstream,
    /// `{"noop": true}`: does nothing on every hook (the benchmark's floor of Envoy's
    /// dynamic-module machinery, `benches/peers/envoy-noopmodule.yaml`).
    Noop,
    /// MOSN's prometheus sink or admin API (`{"metrics": true}`, `{"admin": true}`: see
    /// `endpoint.rs`).
    Endpoint(endpoint::Endpoint, std::sync::Arc<crate::engines::ConfigSlot>),
}

/// One stream's filter object, as Envoy's filter pointer carries it: a listener's filter is
/// its [`HttpFilter`]'s `Rc` (one allocation per stream, see [`HttpFilter::into_raw`]), any
/// other kind a boxed [`Other`] with the pointer's low bit set ([`OTHER_TAG`]).
enum Filter<'a> {
    Listener(ManuallyDrop<HttpFilter>),
    Other(&'a Other),
}

/// The filters that are not a listener's.
enum Other {
    Upstream,
    Noop,
    Endpoint(endpoint::Endpoint, std::sync::Arc<mosn_extension::Engine>),
}

/// Set in the pointer of a boxed [`Other`]; a listener filter's `Rc` never has it (both
/// allocations are aligned to more than one byte).
const OTHER_TAG: usize = 1;
const _: () = assert!(std::mem::align_of::<Other>() > OTHER_TAG && std::mem::align_of::<http_logic::FilterState>() > OTHER_TAG);

impl FilterConfig {
    fn load(bytes: &[u8]) -> Option<FilterConfig> {
        if upstream::is_upstream_config(bytes) {
            return Some(FilterConfig::Upstream);
        }
        if serde_json::from_slice::<serde_json::Value>(bytes).ok() == Some(serde_json::json!({"noop": true})) {
            return Some(FilterConfig::Noop);
        }
        if let Some(e) = endpoint::endpoint_of(bytes) {
            return endpoint::load(bytes, e).map(|slot| FilterConfig::Endpoint(e, slot));
        }
        HttpConfig::load(bytes).map(FilterConfig::Listener)
    }
}

fn headers(s: HeadersStatus) -> u32 {
    match s {
        HeadersStatus::Continue => headers_status::CONTINUE,
        HeadersStatus::StopIteration => headers_status::STOP_ITERATION,
        HeadersStatus::StopAllIterationAndBuffer => headers_status::STOP_ALL_ITERATION_AND_BUFFER,
    }
}

fn body(s: BodyStatus) -> u32 {
    match s {
        BodyStatus::Continue => body_status::CONTINUE,
        BodyStatus::StopIterationAndBuffer => body_status::STOP_ITERATION_AND_BUFFER,
        BodyStatus::StopIterationNoBuffer => body_status::STOP_ITERATION_NO_BUFFER,
    }
}

fn trailers(s: TrailersStatus) -> u32 {
    match s {
        TrailersStatus::Continue => trailers_status::CONTINUE,
        TrailersStatus::StopIteration => trailers_status::STOP_ITERATION,
    }
}

/// Envoy's filter pointer for a boxed [`Other`]: the box, given up, with [`OTHER_TAG`] set.
fn tagged(other: Other) -> *const c_void {
    Box::into_raw(Box::new(other)).map_addr(|a| a | OTHER_TAG).cast_const().cast()
}

/// The [`Other`] behind a filter pointer with [`OTHER_TAG`] set (the tag cleared); `None`
/// for a listener filter's pointer.
fn untagged(ptr: *const c_void) -> Option<*mut Other> {
    (ptr.addr() & OTHER_TAG != 0).then(|| ptr.map_addr(|a| a & !OTHER_TAG).cast::<Other>().cast_mut())
}

/// The filter behind `ptr`, lent for one hook (the `Rc` is not counted again, and not
/// dropped: `Filter::Listener` is `ManuallyDrop`).
///
/// # Safety
/// `ptr` must be NULL or a filter pointer this module returned from `on_http_filter_new`
/// that Envoy has not destroyed yet, and the result must not outlive the hook.
unsafe fn any_filter<'a>(ptr: *const c_void) -> Option<Filter<'a>> {
    if ptr.is_null() {
        None
    } else if let Some(other) = untagged(ptr) {
        // SAFETY: by the function contract, a live `Box<Other>` (the tag was set).
        Some(Filter::Other(unsafe { &*other }))
    } else {
        // SAFETY: by the function contract, a live `HttpFilter::into_raw`; lent, so never
        // dropped here.
        Some(Filter::Listener(ManuallyDrop::new(unsafe { HttpFilter::from_raw(ptr.cast()) })))
    }
}

/// The listener filter behind `ptr`: `Ok(None)` for NULL (the request hooks answer 500),
/// `Err(())` for an upstream or a no-op filter (its request hooks let the request go on).
///
/// # Safety
/// As for [`any_filter`].
unsafe fn filter(ptr: *const c_void) -> Result<Option<ManuallyDrop<HttpFilter>>, ()> {
    // SAFETY: the caller's contract.
    match unsafe { any_filter(ptr) } {
        None => Ok(None),
        Some(Filter::Listener(f)) => Ok(Some(f)),
        Some(Filter::Other(_)) => Err(()),
    }
}

// === Exported hooks: config ===

/// Builds the filter config from `{"config_path": ..., "listener": ...}`, with the config
/// scheduler that brings request copies to the main thread. NULL rejects it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard::or("http_filter_config_new", std::ptr::null, || {
        // SAFETY: Envoy passes the filter_config bytes, valid for this call.
        let bytes = unsafe { config.as_slice() };
        let Some(cfg) = FilterConfig::load(bytes) else { return std::ptr::null() };
        if let FilterConfig::Listener(c) = &cfg {
            // SAFETY: Envoy passes this config's pointer for the duration of this hook, on main.
            let mut envoy = unsafe { EnvoyHttpConfig::new(config_envoy) };
            match envoy.scheduler_new() {
                Some(s) => c.mirror().open(s),
                None => tracing::warn!("no config scheduler: request copies (mirror) will not be sent"),
            }
        }
        Box::into_raw(Box::new(cfg)).cast_const().cast()
    })
}

/// Frees the filter config: the copy queue is closed first (its scheduler deleted, queued
/// copies dropped). Envoy cancels the config's callouts in flight after this hook and calls
/// no callout hook for them.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard::or(
        "http_filter_config_destroy",
        || (),
        || {
            if !config.is_null() {
                // SAFETY: `config` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
                let cfg = unsafe { Box::from_raw(config.cast::<FilterConfig>().cast_mut()) };
                if let FilterConfig::Listener(c) = &*cfg {
                    c.mirror().close();
                }
                drop(cfg);
            }
        },
    )
}

/// Main thread, after a commit of the config's scheduler: the queued request copies go out
/// as HTTP callouts of the config (`mirror.rs`).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: *mut c_void,
    config_module: *const c_void,
    _event_id: u64,
) {
    // SAFETY: Envoy passes our live config (it posts the event with a weak pointer to its
    // config object, which owns ours until `config_destroy`), or NULL.
    let Some(FilterConfig::Listener(cfg)) = (unsafe { config_module.cast::<FilterConfig>().as_ref() }) else { return };
    // SAFETY: this config's pointer, on the main thread, for the duration of this hook.
    let mut host = unsafe { EnvoyHttpConfig::new(config_envoy) };
    guard::or("http_filter_config_scheduled", || (), || mirror::send_pending(cfg.mirror(), &mut host))
}

/// A request copy's answer (or failure): logged at debug, dropped. Envoy calls this only
/// while the config lives.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: *mut c_void,
    config_module: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
    // SAFETY: Envoy passes our live config (it calls this hook only while its config, which
    // owns ours, lives), or NULL.
    let Some(FilterConfig::Listener(cfg)) = (unsafe { config_module.cast::<FilterConfig>().as_ref() }) else { return };
    guard::or(
        "http_filter_config_http_callout_done",
        || (),
        || {
            let status = if headers.is_null() || headers_size == 0 {
                None
            } else {
                // SAFETY: Envoy passes `headers_size` headers valid until this hook returns.
                let hs = unsafe { std::slice::from_raw_parts(headers, headers_size) };
                hs.iter().find_map(|h| {
                    // SAFETY: each key and value points into the response Envoy holds during the hook.
                    let (k, v) = unsafe {
                        (
                            EnvoyBuffer { ptr: h.key_ptr, length: h.key_length }.as_slice(),
                            EnvoyBuffer { ptr: h.value_ptr, length: h.value_length }.as_slice(),
                        )
                    };
                    (k == b":status").then_some(v)
                })
            };
            mirror::callout_done(cfg.mirror(), callout_id, result, status)
        },
    )
}

// === Exported hooks: stream lifetime ===

/// A new stream on a worker: starts the core stream. NULL makes Envoy call the stream's
/// hooks with a NULL filter, and the request-headers hook answers 500.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: *const c_void, _filter_envoy: *mut c_void) -> *const c_void {
    guard::or("http_filter_new", std::ptr::null, || {
        // SAFETY: `config` is the live `HttpConfig` from `config_new` (Envoy keeps the config
        // alive while streams use it); shared read-only across workers (`Engine` is `Sync`).
        let other = match unsafe { config.cast::<FilterConfig>().as_ref() } {
            None => return std::ptr::null(),
            Some(FilterConfig::Upstream) => Other::Upstream,
            Some(FilterConfig::Noop) => Other::Noop,
            Some(FilterConfig::Endpoint(e, slot)) => Other::Endpoint(*e, slot.engine()),
            Some(FilterConfig::Listener(cfg)) => {
                return cfg.new_filter().map_or(std::ptr::null(), |f| f.into_raw().cast());
            }
        };
        tagged(other)
    })
}

/// The stream is complete (access logs are written): the core stream ends here.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(filter_envoy: *mut c_void, filter_module: *const c_void) {
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    let Ok(f) = (unsafe { filter(filter_module) }) else { return };
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    guard::or("http_filter_stream_complete", || (), || http_logic::stream_complete(f.as_deref(), &mut host))
}

/// Frees the filter: ends the core stream first (no wake after), then deletes the scheduler.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *const c_void) {
    if filter_module.is_null() {
        return;
    }
    if let Some(other) = untagged(filter_module) {
        // SAFETY: the pointer came from `tagged` (`Box::into_raw`) in `filter_new`; Envoy
        // destroys it once.
        let other = unsafe { Box::from_raw(other) };
        // Dropping an endpoint's engine may end its config (threads): under the guard too.
        return guard::or("http_filter_destroy", || (), move || drop(other));
    }
    // SAFETY: the pointer came from `HttpFilter::into_raw` in `filter_new`; Envoy destroys it
    // once, so it is taken back once.
    let f = unsafe { HttpFilter::from_raw(filter_module.cast()) };
    guard::or("http_filter_destroy", || (), move || f.destroy())
}

// === Exported hooks: request path ===

/// Request headers: run the core's filters and router.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    if let Some(Filter::Other(Other::Endpoint(e, engine))) = unsafe { any_filter(filter_module) } {
        let answer = || endpoint::request_headers(engine, *e, &mut host, end_of_stream);
        return headers(guard::or("http_filter_endpoint", || HeadersStatus::StopIteration, answer));
    }
    // SAFETY: as above.
    let Ok(f) = (unsafe { filter(filter_module) }) else { return headers_status::CONTINUE };
    headers(guard::or(
        "http_filter_request_headers",
        || HeadersStatus::StopIteration,
        || http_logic::request_headers(f.as_deref(), &mut host, end_of_stream),
    ))
}

/// Request body: buffered for the core when it asked; held while the stream waits.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    if let Some(Filter::Other(Other::Endpoint(e, engine))) = unsafe { any_filter(filter_module) } {
        let answer = || endpoint::request_body(engine, *e, &mut host, end_of_stream);
        return body(guard::or("http_filter_endpoint", || BodyStatus::StopIterationNoBuffer, answer));
    }
    // SAFETY: as above.
    let Ok(f) = (unsafe { filter(filter_module) }) else { return body_status::CONTINUE };
    body(guard::or(
        "http_filter_request_body",
        || BodyStatus::StopIterationNoBuffer,
        || http_logic::request_body(f.as_deref(), &mut host, end_of_stream),
    ))
}

/// Request trailers end a body the core is waiting for.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(filter_envoy: *mut c_void, filter_module: *const c_void) -> u32 {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    let Ok(f) = (unsafe { filter(filter_module) }) else { return trailers_status::CONTINUE };
    trailers(guard::or(
        "http_filter_request_trailers",
        || TrailersStatus::StopIteration,
        || http_logic::request_trailers(f.as_deref(), &mut host),
    ))
}

/// Back on the worker after the core's wake: resume the core, then let the request go on.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(filter_envoy: *mut c_void, filter_module: *const c_void, event_id: u64) {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (it drops a commit after destroy).
    let Ok(f) = (unsafe { filter(filter_module) }) else { return };
    guard::or("http_filter_scheduled", || (), || http_logic::scheduled(f.as_deref(), &mut host, event_id))
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
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    let Ok(f) = (unsafe { filter(filter_module) }) else { return abi::LOCAL_REPLY_CONTINUE };
    // SAFETY: Envoy's details buffer is valid for this call.
    let details = unsafe { details.as_slice() };
    guard::or("http_filter_local_reply", || (), || http_logic::local_reply(f.as_deref(), details));
    abi::LOCAL_REPLY_CONTINUE
}

// === Exported hooks: response path ===

/// Response headers (upstream or local): report the outcome, run the core's send filters,
/// apply their changes.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    let f = match unsafe { filter(filter_module) } {
        Ok(f) => f,
        Err(()) => {
            // SAFETY: as above.
            if !matches!(unsafe { any_filter(filter_module) }, Some(Filter::Other(Other::Noop))) {
                guard::or("http_upstream_filter_response_headers", || (), || upstream::response_headers(&mut host));
            }
            return headers_status::CONTINUE;
        }
    };
    headers(guard::or(
        "http_filter_response_headers",
        || HeadersStatus::Continue,
        || http_logic::response_headers(f.as_deref(), &mut host, end_of_stream),
    ))
}

/// Response body: buffered while a send filter waits for all of it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (or NULL; then: an upstream filter's).
    let Ok(f) = (unsafe { filter(filter_module) }) else { return body_status::CONTINUE };
    body(guard::or(
        "http_filter_response_body",
        || BodyStatus::Continue,
        || http_logic::response_body(f.as_deref(), &mut host, end_of_stream),
    ))
}

/// Response trailers end a buffered response body.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(filter_envoy: *mut c_void, filter_module: *const c_void) -> u32 {
    // SAFETY: Envoy passes this stream's pointer for the duration of this hook.
    let mut host = unsafe { EnvoyHttp::new(filter_envoy) };
    // SAFETY: Envoy passes our live filter pointer (or NULL).
    let Ok(f) = (unsafe { filter(filter_module) }) else { return trailers_status::CONTINUE };
    trailers(guard::or(
        "http_filter_response_trailers",
        || TrailersStatus::Continue,
        || http_logic::response_trailers(f.as_deref(), &mut host),
    ))
}

// === Exported hooks: required by Envoy, unused ===

/// Unused: the stream makes no HTTP callouts (request copies are the config's, see
/// `mirror.rs`).
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
