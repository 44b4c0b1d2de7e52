//! Hand-written bindings to the Envoy 1.40 dynamic-module ABI: only what this crate uses.
//!
//! Pinned to Envoy 1.40.0 (`ENVOY_DYNAMIC_MODULES_ABI_VERSION` = `v0.2.0`). The shapes were
//! written from the reference notes in `/work/shared/reference/envoy-*-1.40.md` and checked
//! against the 1.40 binary (`nm -D`, and `objdump` for the argument registers of
//! `http_get_header`, `http_get_headers_size`, `http_get_body_chunks_size`,
//! `http_set_filter_state_bytes`, `http_send_response`, `http_get_buffer_limit`, `log`,
//! `cluster_lb_context_get_filter_state_bytes`, `cluster_lb_context_should_select_another_host`,
//! `cluster_lb_context_get_downstream_header` and `http_filter_config_http_callout`).
//! Signatures drift between Envoy releases: re-check them (and the `nm -D` subset test in the
//! crate README) before moving to another Envoy version.
//!
//! Conventions of the C ABI: every Envoy object is an opaque pointer; C enums are passed as
//! `u32`; `bool` is C `_Bool`; both buffer kinds are `{ const char* ptr; size_t length; }`
//! passed by value.

#![allow(dead_code)]

use std::ffi::c_void;

/// The ABI version string `envoy_dynamic_module_on_program_init` returns (NUL-terminated).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

// === Types ===

/// A buffer owned by the module, lent to Envoy for one call (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// Borrows `bytes` for one call into Envoy.
    pub fn new(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr(), length: bytes.len() }
    }
    /// `{NULL, 0}`: "no value" (e.g. removes a header in `http_set_header`).
    pub fn null() -> ModuleBuffer {
        ModuleBuffer { ptr: std::ptr::null(), length: 0 }
    }
}

impl From<&str> for ModuleBuffer {
    fn from(s: &str) -> ModuleBuffer {
        ModuleBuffer::new(s.as_bytes())
    }
}

/// A buffer owned by Envoy, lent to the module (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub fn empty() -> EnvoyBuffer {
        EnvoyBuffer { ptr: std::ptr::null(), length: 0 }
    }

    /// The bytes, or an empty slice for a NULL buffer.
    ///
    /// # Safety
    /// `ptr` must point to `length` readable bytes that stay valid and unchanged for `'a`
    /// (Envoy's rule: until the hook returns or the same map/buffer is mutated).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, and the caller vouches for length and lifetime.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// A header lent to Envoy (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// A header lent by Envoy (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_event_cb`: the completion callback of `on_cluster_shutdown`.
pub type EventCb = Option<unsafe extern "C" fn(*mut c_void)>;

// === Enum values (passed as u32) ===

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    pub const REQUEST: u32 = 0;
    pub const REQUEST_TRAILER: u32 = 1;
    pub const RESPONSE: u32 = 2;
    pub const RESPONSE_TRAILER: u32 = 3;
}

/// `envoy_dynamic_module_type_http_body_type`.
pub mod body_type {
    pub const RECEIVED_REQUEST: u32 = 0;
    pub const BUFFERED_REQUEST: u32 = 1;
    pub const RECEIVED_RESPONSE: u32 = 2;
    pub const BUFFERED_RESPONSE: u32 = 3;
}

/// `envoy_dynamic_module_type_log_level` (Trace=0 … Critical=5, Off=6). The core's levels
/// (0 trace … 4 error) are the same numbers.
pub mod log_level {
    pub const TRACE: u32 = 0;
    pub const ERROR: u32 = 4;
}

/// Return values of `on_http_filter_request_headers` / `response_headers`.
pub mod headers_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION: u32 = 1;
    pub const STOP_ALL_ITERATION_AND_BUFFER: u32 = 3;
}

/// Return values of `on_http_filter_request_body` / `response_body`.
pub mod body_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION_AND_BUFFER: u32 = 1;
    pub const STOP_ITERATION_NO_BUFFER: u32 = 3;
}

/// Return values of `on_http_filter_request_trailers` / `response_trailers`.
pub mod trailers_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION: u32 = 1;
}

/// `envoy_dynamic_module_type_attribute_id` (CEL attribute ids).
///
/// Checked on the 1.40 binary by logging every id's string value for a request from curl:
/// 24 is the client's `ip:port` (26, `destination.address`, is the listener's). 23 is
/// `response.backend_latency`, an int attribute: that enum entry exists in 1.40 (older
/// headers without it would make `source.address` 23).
pub mod attribute_id {
    /// `response.code` (int): nine before `source.address` in the 1.40 enum.
    pub const RESPONSE_CODE: u32 = 15;
    pub const SOURCE_ADDRESS: u32 = 24;
}

/// `envoy_dynamic_module_type_host_health`.
pub mod host_health {
    pub const UNHEALTHY: u32 = 0;
    pub const HEALTHY: u32 = 2;
}

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub mod callout_init {
    pub const SUCCESS: u32 = 0;
    pub const MISSING_REQUIRED_HEADERS: u32 = 1;
    pub const CLUSTER_NOT_FOUND: u32 = 2;
    pub const DUPLICATE_CALLOUT_ID: u32 = 3;
    pub const CANNOT_CREATE_REQUEST: u32 = 4;
}

/// Return value of `on_http_filter_local_reply`: let Envoy send its reply unchanged.
pub const LOCAL_REPLY_CONTINUE: u32 = 0;

// === Callbacks Envoy exports ===

extern "C" {
    // --- logging (any thread) ---
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    // --- HTTP filter: headers ---
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_count: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_headers_size(filter_envoy: *mut c_void, header_type: u32) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy: *mut c_void,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter_envoy: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // --- HTTP filter: body ---
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(filter_envoy: *mut c_void, body_type: u32) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter_envoy: *mut c_void,
        body_type: u32,
        result_buffer_vector: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(filter_envoy: *mut c_void) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(filter_envoy: *mut c_void) -> bool;
    /// Drains up to `number_of_bytes` (all of it when larger); false if there is no such body.
    pub fn envoy_dynamic_module_callback_http_drain_body(filter_envoy: *mut c_void, body_type: u32, number_of_bytes: usize) -> bool;
    /// Appends `data` (copied); false if there is no such body (a current chunk outside a body hook).
    pub fn envoy_dynamic_module_callback_http_append_body(filter_envoy: *mut c_void, body_type: u32, data: ModuleBuffer) -> bool;
    /// `uint64_t f(void*)` (checked with `objdump` on 1.40: one argument; 0 without callbacks).
    pub fn envoy_dynamic_module_callback_http_get_buffer_limit(filter_envoy: *mut c_void) -> u64;

    // --- HTTP filter: routing, replies, flow ---
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter_envoy: *mut c_void);
    /// Asks the cached route's cluster specifier for the cluster again (Envoy 1.40:
    /// `refreshRouteCluster`, synchronously, on this worker); no route re-match.
    pub fn envoy_dynamic_module_callback_http_clear_route_cluster_cache(filter_envoy: *mut c_void);
    /// `bool f(void*, module_buffer host, bool strict)` (checked with `objdump` on 1.40: the
    /// buffer in two registers, `strict` in the fourth; false without decoder callbacks or
    /// when `host` is not an `ip:port`). The router's first attempt takes this host from the
    /// cluster without asking its LB; a retry asks the LB.
    pub fn envoy_dynamic_module_callback_http_set_upstream_override_host(
        filter_envoy: *mut c_void,
        host: ModuleBuffer,
        strict: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy: *mut c_void,
        status_code: u32,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter_envoy: *mut c_void);

    // --- HTTP filter: metadata and filter state ---
    /// Returns bool in newer headers, void in older ones: declared void (the result is unused).
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter_envoy: *mut c_void,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter_envoy: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Upstream filters read the downstream stream's filter state (measured on 1.40).
    pub fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter_envoy: *mut c_void,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
    ) -> bool;

    // --- HTTP filter: attributes ---
    /// `bool f(filter, attribute_id, envoy_buffer* out)` (checked with `objdump` on 1.40: three
    /// arguments, the result through one buffer; ids above 41 answer false).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy: *mut c_void,
        attribute_id: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;

    /// `bool f(filter, attribute_id, uint64_t* out)`: the int attributes.
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(filter_envoy: *mut c_void, attribute_id: u32, out: *mut u64)
        -> bool;

    // --- HTTP filter: scheduler (new/delete on the worker, commit from any thread) ---
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter_envoy: *mut c_void) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);

    // --- HTTP filter config: scheduler (new/delete on main, commit from any thread) and
    // HTTP callouts (main thread). The 1.40 config scheduler holds the config weakly and
    // posts `on_http_filter_config_scheduled` to the main thread. ---
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy: *mut c_void) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    /// Sends one request to Envoy cluster `cluster_name` through the main thread's async
    /// client; the answer comes to `on_http_filter_config_http_callout_done`. Returns an
    /// [`callout_init`] value. Checked with `objdump` on 1.40: config, id out, cluster in
    /// `rdx:rcx`, headers in `r8`/`r9`, then the body buffer and the timeout (ms) on the stack;
    /// it refuses a request without `:path`, `:method` or a Host (`MissingRequiredHeaders`).
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config_envoy: *mut c_void,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    // --- cluster (main thread) ---
    pub fn envoy_dynamic_module_callback_cluster_add_hosts(
        cluster_envoy: *mut c_void,
        priority: u32,
        addresses: *const ModuleBuffer,
        weights: *const u32,
        regions: *const ModuleBuffer,
        zones: *const ModuleBuffer,
        sub_zones: *const ModuleBuffer,
        metadata_triples: *const ModuleBuffer,
        metadata_triples_per_host: usize,
        count: usize,
        out_hosts: *mut *mut c_void,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_cluster_pre_init_complete(cluster_envoy: *mut c_void);
    /// Main thread only. 1.40 looks each pointer up in the cluster's host map (under its
    /// lock; checked with `objdump`) and removes the ones it finds; returns how many.
    pub fn envoy_dynamic_module_callback_cluster_remove_hosts(cluster_envoy: *mut c_void, hosts: *const *mut c_void, count: usize)
        -> usize;
    /// `host_health`: Unhealthy = 0, Degraded = 1, Healthy = 2. Main thread only (1.40 answers
    /// false elsewhere).
    pub fn envoy_dynamic_module_callback_cluster_update_host_health(
        cluster_envoy: *mut c_void,
        host: *mut c_void,
        host_health: u32,
    ) -> bool;
    /// New / delete on the main thread; commit from any thread (then `on_cluster_scheduled`
    /// runs on main). The 1.40 scheduler holds the cluster weakly: a commit for a cluster
    /// that is gone is dropped.
    pub fn envoy_dynamic_module_callback_cluster_scheduler_new(cluster_envoy: *mut c_void) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_cluster_scheduler_commit(scheduler: *mut c_void, event_id: u64);
    pub fn envoy_dynamic_module_callback_cluster_scheduler_delete(scheduler: *mut c_void);

    // --- process ---
    /// True under `envoy --mode validate` (no argument; any thread).
    pub fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    // --- cluster LB (its own worker) ---
    pub fn envoy_dynamic_module_callback_cluster_lb_get_healthy_host_count(lb_envoy: *mut c_void, priority: u32) -> usize;
    pub fn envoy_dynamic_module_callback_cluster_lb_get_healthy_host(lb_envoy: *mut c_void, priority: u32, index: usize) -> *mut c_void;
    /// The host at `ip:port` in this LB's (worker's) priority set, any priority and health;
    /// NULL if it has none (an O(1) map lookup).
    pub fn envoy_dynamic_module_callback_cluster_lb_find_host_by_address(lb_envoy: *mut c_void, address: ModuleBuffer) -> *mut c_void;

    // --- cluster LB context (only during choose_host) ---
    pub fn envoy_dynamic_module_callback_cluster_lb_context_get_filter_state_bytes(
        ctx: *mut c_void,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
    /// Ends a selection `choose_host` answered with an async handle; a NULL host is "no host"
    /// and `details` become the reply's details. 1.40 posts the completion to the worker's
    /// dispatcher (measured: the router's local reply ran after the call returned).
    pub fn envoy_dynamic_module_callback_cluster_lb_async_host_selection_complete(
        lb_envoy: *mut c_void,
        ctx: *mut c_void,
        host: *mut c_void,
        details: ModuleBuffer,
    );
    /// The value `index` of request header `key` of the request being balanced (the router's
    /// `downstreamHeaders()`: for an HTTP callout, the callout's own headers); `count` gets
    /// how many values it has. False if it has none (or no headers).
    pub fn envoy_dynamic_module_callback_cluster_lb_context_get_downstream_header(
        ctx: *mut c_void,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        count: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_cluster_lb_context_should_select_another_host(
        lb_envoy: *mut c_void,
        ctx: *mut c_void,
        priority: u32,
        healthy_index: usize,
    ) -> bool;

    // --- cluster specifier (only during `on_cluster_specifier_select`, on the request's worker) ---
    /// Names the route's cluster (copied). An unknown name makes Envoy answer 503.
    pub fn envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(ctx: *mut c_void, cluster_name: ModuleBuffer);
}

// === impl logging ===

/// Writes one line to Envoy's `dynamic_modules` logger. Safe from any thread.
pub fn log(level: u32, message: &str) {
    // SAFETY: `log` may be called from any thread (reference §3); the buffer is valid for
    // the duration of the call and Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::from(message)) }
}

/// True if Envoy would print a line at `level`.
pub fn log_enabled(level: u32) -> bool {
    // SAFETY: a pure query of Envoy's logger level, callable from any thread.
    unsafe { envoy_dynamic_module_callback_log_enabled(level) }
}
