//! The host traits over the real Envoy ABI (`abi.rs`); not compiled in tests.
//!
//! Each type wraps the raw pointer Envoy passed to the hook being run. They are built with
//! `unsafe fn new`, whose contract (the pointer is live and used only on its thread, during
//! the hook) is what every `unsafe` block below relies on.

use crate::abi::{self, body_type, header_type, EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader};
use crate::host::{
    BodyKind, CalloutRefused, ClusterHost, ConfigHost, HeaderKind, HeaderList, HostHandle, HostSpec, HttpHost, LbHost, Scheduler,
    HEADER_LIST_INLINE,
};
use mosn_extension::filter::LocalReply;
use mosn_extension::headers::{Header, Lookup};
use std::cell::Cell;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::sync::Arc;

fn header_kind(kind: HeaderKind) -> u32 {
    match kind {
        HeaderKind::Request => header_type::REQUEST,
        HeaderKind::RequestTrailers => header_type::REQUEST_TRAILER,
        HeaderKind::Response => header_type::RESPONSE,
    }
}

// === impl EnvoyHttp ===

/// One HTTP stream (`filter_envoy`), inside one of its hooks.
pub struct EnvoyHttp {
    envoy: *mut c_void,
}

impl EnvoyHttp {
    /// # Safety
    /// `envoy` is the `filter_envoy` pointer Envoy passed to the hook now running on this
    /// thread, and the value is used only until that hook returns.
    pub unsafe fn new(envoy: *mut c_void) -> EnvoyHttp {
        EnvoyHttp { envoy }
    }

    /// Drains the buffered body and the current hook's chunk (`received_in_buffer`: that
    /// chunk is the buffer itself) and adds `body` in their place.
    fn replace_body(&mut self, received: u32, buffered: u32, received_in_buffer: bool, body: &[u8]) {
        // SAFETY: the stream's pointer inside one of its hooks. Draining more than a body
        // holds drains all of it; Envoy answers false where there is no such body (no current
        // chunk outside a body hook, nothing buffered yet).
        let had_chunk = unsafe { abi::envoy_dynamic_module_callback_http_drain_body(self.envoy, received, usize::MAX) };
        // SAFETY: as above.
        unsafe { abi::envoy_dynamic_module_callback_http_drain_body(self.envoy, buffered, usize::MAX) };
        // The current chunk, when it is not the buffer itself, goes on after the buffer.
        let into = if had_chunk && !received_in_buffer { received } else { buffered };
        // SAFETY: as above; Envoy copies `body` before returning.
        unsafe { abi::envoy_dynamic_module_callback_http_append_body(self.envoy, into, ModuleBuffer::new(body)) };
    }
}

impl HttpHost for EnvoyHttp {
    fn header(&self, kind: HeaderKind, name: &str) -> Lookup<'_> {
        let mut out = EnvoyBuffer::empty();
        let mut count = 0usize;
        // SAFETY: the stream's pointer inside its hook (`new`'s contract); `out` and `count`
        // are valid for writes; the key buffer lives for the call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.envoy,
                header_kind(kind),
                ModuleBuffer::from(name),
                &mut out,
                0,
                &mut count,
            )
        };
        if !found {
            return Lookup::Missing;
        }
        // SAFETY: Envoy's value stays valid until the map is mutated or the hook returns; the
        // lookup borrows `&self`, and every mutation takes `&mut self`, so it can not outlive
        // either.
        let v = unsafe { out.as_slice() };
        if count > 1 {
            Lookup::Many(v)
        } else {
            Lookup::One(v)
        }
    }

    fn for_each_header(&self, kind: HeaderKind, f: &mut dyn FnMut(&[u8], &[u8])) {
        let mut all = HeaderList::new();
        self.read_headers(kind, &mut all);
        for h in all {
            f(h.name, h.value);
        }
    }

    fn read_headers<'s>(&'s self, kind: HeaderKind, out: &mut HeaderList<'s>) {
        let kind = header_kind(kind);
        // SAFETY: as in `header`.
        let n = unsafe { abi::envoy_dynamic_module_callback_http_get_headers_size(self.envoy, kind) };
        if n == 0 {
            return;
        }
        // Envoy writes the `n` entries: uninitialised room on the stack when they fit (no
        // zeroing, no allocation), else a heap buffer.
        let mut stack = [MaybeUninit::<EnvoyHttpHeader>::uninit(); HEADER_LIST_INLINE];
        let mut heap: Vec<EnvoyHttpHeader> = Vec::new();
        let buf: *mut EnvoyHttpHeader = if n <= stack.len() {
            stack.as_mut_ptr().cast()
        } else {
            heap.reserve_exact(n);
            heap.as_mut_ptr()
        };
        // SAFETY: `buf` has room for the `n` headers Envoy just counted; same thread and hook,
        // so the map did not change in between.
        if !unsafe { abi::envoy_dynamic_module_callback_http_get_headers(self.envoy, kind, buf) } {
            return;
        }
        // SAFETY: Envoy initialised the first `n` entries of `buf`, which lives to the end of
        // this function.
        let filled = unsafe { std::slice::from_raw_parts(buf, n) };
        let start = out.len();
        out.reserve_exact(n);
        // SAFETY: `reserve_exact` made room for `n` more after the `start` there are.
        let dst = unsafe { out.as_mut_ptr().add(start) };
        for (i, h) in filled.iter().enumerate() {
            // SAFETY: Envoy filled these from its live map, valid until the map is mutated or
            // the hook returns; the result borrows `&self`, and every mutation takes
            // `&mut self`, so it can not outlive either (as in `header`). `start + i <
            // start + n <= capacity`, so the write is in bounds.
            unsafe {
                dst.add(i).write(Header {
                    name: EnvoyBuffer { ptr: h.key_ptr, length: h.key_length }.as_slice(),
                    value: EnvoyBuffer { ptr: h.value_ptr, length: h.value_length }.as_slice(),
                });
            }
        }
        // SAFETY: the `n` entries after `start` were just written.
        unsafe { out.set_len(start + n) };
    }

    fn set_header(&mut self, kind: HeaderKind, name: &str, value: &str) {
        // SAFETY: the stream's pointer inside its hook; buffers live for the call, Envoy copies.
        unsafe { abi::envoy_dynamic_module_callback_http_set_header(self.envoy, header_kind(kind), name.into(), value.into()) };
    }

    fn add_header(&mut self, kind: HeaderKind, name: &str, value: &str) {
        // SAFETY: as in `set_header`.
        unsafe { abi::envoy_dynamic_module_callback_http_add_header(self.envoy, header_kind(kind), name.into(), value.into()) };
    }

    fn remove_header(&mut self, kind: HeaderKind, name: &str) {
        // SAFETY: as in `set_header`; a NULL value removes every value (reference §1.2).
        unsafe { abi::envoy_dynamic_module_callback_http_set_header(self.envoy, header_kind(kind), name.into(), ModuleBuffer::null()) };
    }

    fn send_local_reply(&mut self, r: &LocalReply) {
        let headers: Vec<ModuleHttpHeader> = r
            .headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader { key_ptr: k.as_ptr(), key_length: k.len(), value_ptr: v.as_ptr(), value_length: v.len() })
            .collect();
        // SAFETY: the stream's pointer inside its hook (or `on_http_filter_scheduled`);
        // `headers` and the strings it points into outlive the call; Envoy copies everything.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.envoy,
                u32::from(r.status),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::from(&*r.body),
                ModuleBuffer::from(r.details),
            )
        };
    }

    fn route_to_cluster(&mut self, cluster: &str) -> bool {
        let envoy = self.envoy;
        // SAFETY: the stream's pointer inside its hook.
        crate::specifier::Handoff::route(cluster, || unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cluster_cache(envoy) })
    }

    fn set_dynamic_metadata(&mut self, namespace: &str, key: &str, value: &str) {
        // SAFETY: as in `set_header`; Envoy copies namespace, key and value.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(self.envoy, namespace.into(), key.into(), value.into())
        };
    }

    fn set_filter_state(&mut self, key: &str, value: &str) -> bool {
        // SAFETY: as in `set_header`; Envoy copies key and value.
        unsafe { abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(self.envoy, key.into(), value.into()) }
    }

    fn set_upstream_override_host(&mut self, address: &str) -> bool {
        // SAFETY: as in `set_header`; Envoy copies the address.
        unsafe { abi::envoy_dynamic_module_callback_http_set_upstream_override_host(self.envoy, address.into(), true) }
    }

    fn filter_state(&self, key: &str) -> Option<&[u8]> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: as in `header`: this stream's pointer inside one of its hooks; `out` is
        // writable; the key buffer lives for the call.
        let found = unsafe { abi::envoy_dynamic_module_callback_http_get_filter_state_bytes(self.envoy, key.into(), &mut out) };
        // SAFETY: Envoy's buffer stays valid while the filter state is unchanged, i.e. for the
        // rest of this hook; the borrow is tied to `&self`.
        found.then(|| unsafe { out.as_slice() })
    }

    fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>> {
        // SAFETY: the stream's pointer inside a request hook, after Envoy set the decoder
        // callbacks that `scheduler_new` uses.
        let sched = unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.envoy) };
        (!sched.is_null()).then(|| Arc::new(EnvoyScheduler(sched as usize)) as Arc<dyn Scheduler>)
    }

    fn continue_decoding(&mut self) {
        // SAFETY: the stream's pointer inside its scheduled hook.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.envoy) };
    }

    fn request_body(&self, kind: BodyKind, out: &mut Vec<u8>) {
        let kind = match kind {
            BodyKind::Received => body_type::RECEIVED_REQUEST,
            BodyKind::Buffered => body_type::BUFFERED_REQUEST,
            BodyKind::ResponseReceived => body_type::RECEIVED_RESPONSE,
            BodyKind::ResponseBuffered => body_type::BUFFERED_RESPONSE,
        };
        // SAFETY: the stream's pointer inside its body or trailers hook.
        let n = unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.envoy, kind) };
        if n == 0 {
            return;
        }
        let mut chunks = vec![EnvoyBuffer::empty(); n];
        // SAFETY: room for the `n` chunks Envoy just counted, same hook.
        if unsafe { abi::envoy_dynamic_module_callback_http_get_body_chunks(self.envoy, kind, chunks.as_mut_ptr()) } {
            for c in &chunks {
                // SAFETY: Envoy's slices stay valid until the body changes or the hook
                // returns; copied right away.
                out.extend_from_slice(unsafe { c.as_slice() });
            }
        }
    }

    fn received_body_is_buffered(&self) -> bool {
        // SAFETY: the stream's pointer inside its hook.
        unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.envoy) }
    }

    fn received_response_body_is_buffered(&self) -> bool {
        // SAFETY: the stream's pointer inside its hook.
        unsafe { abi::envoy_dynamic_module_callback_http_received_buffered_response_body(self.envoy) }
    }

    fn replace_request_body(&mut self, body: &[u8]) {
        let in_buffer = self.received_body_is_buffered();
        self.replace_body(body_type::RECEIVED_REQUEST, body_type::BUFFERED_REQUEST, in_buffer, body);
    }

    fn replace_response_body(&mut self, body: &[u8]) {
        let in_buffer = self.received_response_body_is_buffered();
        self.replace_body(body_type::RECEIVED_RESPONSE, body_type::BUFFERED_RESPONSE, in_buffer, body);
    }

    fn buffer_limit(&self) -> u64 {
        // SAFETY: the stream's pointer inside its hook (Envoy answers 0 without callbacks).
        unsafe { abi::envoy_dynamic_module_callback_http_get_buffer_limit(self.envoy) }
    }

    fn source_address(&self) -> Option<&[u8]> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: the stream's pointer inside its hook; `out` is writable. Envoy answers false
        // for an id it does not know or a value of another type.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(self.envoy, abi::attribute_id::SOURCE_ADDRESS, &mut out)
        };
        // SAFETY: the address text belongs to the connection's address object, which outlives
        // the stream's hooks; the slice borrows `&self` (this hook) only.
        found.then(|| unsafe { out.as_slice() })
    }

    fn response_code(&self) -> Option<u16> {
        let mut code = 0u64;
        // SAFETY: the stream's pointer inside its hook; `code` is writable. False when the
        // stream has no code yet.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(self.envoy, abi::attribute_id::RESPONSE_CODE, &mut code)
        };
        found.then(|| u16::try_from(code).ok()).flatten().filter(|c| (100..=999).contains(c))
    }
}

// === impl EnvoyScheduler ===

/// Envoy's scheduler of one stream (the address of `http_filter_scheduler_new`'s result).
struct EnvoyScheduler(usize);

impl Scheduler for EnvoyScheduler {
    fn commit(&self, event_id: u64) {
        // SAFETY: `scheduler_commit` is thread-safe (reference §3). The only committer is the
        // core stream's wake function, and the stream is dropped (closing its wake cell under
        // the lock a commit runs under) before `delete`, so no commit reaches a deleted
        // scheduler.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0 as *mut c_void, event_id) }
    }

    fn delete(&self) {
        // SAFETY: created by `scheduler_new` for this stream; called once, on the worker, from
        // `on_http_filter_destroy` after the stream (and with it every commit) is gone.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0 as *mut c_void) }
    }
}

// === impl EnvoyHttpConfig ===

/// One HTTP filter config (`filter_config_envoy`), on the main thread.
pub struct EnvoyHttpConfig {
    envoy: *mut c_void,
}

impl EnvoyHttpConfig {
    /// # Safety
    /// `envoy` is the `filter_config_envoy` pointer of the config hook now running on the main
    /// thread (`on_http_filter_config_new` or `on_http_filter_config_scheduled`), used only
    /// until it returns.
    pub unsafe fn new(envoy: *mut c_void) -> EnvoyHttpConfig {
        EnvoyHttpConfig { envoy }
    }

    /// The config's scheduler: `commit` from any thread runs `on_http_filter_config_scheduled`
    /// on the main thread. `None` if Envoy gives none.
    pub fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>> {
        // SAFETY: the config's pointer inside its `config_new` hook on the main thread (`new`'s
        // contract); 1.40 builds the scheduler from the config's weak pointer (the config is
        // already owned by a shared pointer when `config_new` runs) and the main dispatcher.
        let sched = unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.envoy) };
        (!sched.is_null()).then(|| Arc::new(EnvoyConfigScheduler(sched as usize)) as Arc<dyn Scheduler>)
    }
}

impl ConfigHost for EnvoyHttpConfig {
    fn http_callout(&mut self, cluster: &str, headers: &[(&[u8], &[u8])], body: &[u8], timeout_ms: u64) -> Result<u64, CalloutRefused> {
        let hs: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader { key_ptr: k.as_ptr(), key_length: k.len(), value_ptr: v.as_ptr(), value_length: v.len() })
            .collect();
        let mut id = 0u64;
        // SAFETY: the config's pointer on the main thread inside one of its hooks (`new`'s
        // contract; config callouts are main-thread only); `id` is writable; `hs` and the bytes
        // it points into, the cluster name and the body outlive the call, and Envoy copies
        // them all into the request it builds.
        let code = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.envoy,
                &mut id,
                ModuleBuffer::from(cluster),
                hs.as_ptr(),
                hs.len(),
                ModuleBuffer::new(body),
                timeout_ms,
            )
        };
        match crate::mirror::refused(code) {
            None => Ok(id),
            Some(why) => Err(why),
        }
    }
}

// === impl EnvoyConfigScheduler ===

/// An HTTP filter config's scheduler (the address of `http_filter_config_scheduler_new`'s
/// result).
pub struct EnvoyConfigScheduler(usize);

impl Scheduler for EnvoyConfigScheduler {
    fn commit(&self, event_id: u64) {
        // SAFETY: the config scheduler's commit is thread-safe (it posts to the main
        // dispatcher, holding the config weakly). Commits happen under the lock of the
        // config's `MirrorSender`, which deletes the scheduler under the same lock, so it is
        // live here.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0 as *mut c_void, event_id) }
    }

    fn delete(&self) {
        // SAFETY: created by `http_filter_config_scheduler_new` for this config; deleted once,
        // on the main thread, from `on_http_filter_config_destroy` (the sender gives its
        // scheduler up only once).
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0 as *mut c_void) }
    }
}

// === impl EnvoyCluster ===

/// One cluster (`cluster_envoy`), on the main thread.
pub struct EnvoyCluster {
    envoy: *mut c_void,
}

impl EnvoyCluster {
    /// # Safety
    /// `envoy` is the `cluster_envoy` pointer of the cluster hook now running on the main
    /// thread, used only until it returns.
    pub unsafe fn new(envoy: *mut c_void) -> EnvoyCluster {
        EnvoyCluster { envoy }
    }
}

impl ClusterHost for EnvoyCluster {
    fn add_hosts(&mut self, hosts: &[HostSpec<'_>], metadata_filter: &str) -> Option<Vec<Option<HostHandle>>> {
        let n = hosts.len();
        let addresses: Vec<ModuleBuffer> = hosts.iter().map(|h| ModuleBuffer::from(h.address)).collect();
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight).collect();
        let no_locality = vec![ModuleBuffer::null(); n];
        let per_host = hosts.first().map_or(0, |h| h.metadata.len());
        if hosts.iter().any(|h| h.metadata.len() != per_host) {
            return None; // the ABI takes a fixed number of triples per host
        }
        let triples: Vec<ModuleBuffer> = hosts
            .iter()
            .flat_map(|h| h.metadata.iter())
            .flat_map(|(k, v)| [ModuleBuffer::from(metadata_filter), ModuleBuffer::from(k.as_str()), ModuleBuffer::from(v.as_str())])
            .collect();
        let mut out = vec![std::ptr::null_mut::<c_void>(); n];
        // SAFETY: main thread, inside one of this cluster's hooks (`new`'s contract); every
        // array has `n` entries (the triples array `n * per_host`), all buffers outlive the
        // call and Envoy copies them; `out` has room for `n` host pointers (entries Envoy
        // does not fill stay NULL).
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_cluster_add_hosts(
                self.envoy,
                0,
                addresses.as_ptr(),
                weights.as_ptr(),
                no_locality.as_ptr(),
                no_locality.as_ptr(),
                no_locality.as_ptr(),
                if per_host == 0 { std::ptr::null() } else { triples.as_ptr() },
                per_host,
                n,
                out.as_mut_ptr(),
            )
        };
        ok.then(|| out.into_iter().map(|p| (!p.is_null()).then_some(HostHandle(p as usize))).collect())
    }

    fn remove_hosts(&mut self, hosts: &[HostHandle]) -> usize {
        if hosts.is_empty() {
            return 0;
        }
        let ptrs: Vec<*mut c_void> = hosts.iter().map(|h| h.0 as *mut c_void).collect();
        // SAFETY: our cluster's pointer, on the main thread, inside one of its hooks; `ptrs`
        // has `hosts.len()` entries and outlives the call. Envoy only uses each pointer as a
        // key into the cluster's host map (1.40, checked with `objdump`: `findHost` under the
        // map's lock), never dereferences it; the handles are ones `add_hosts` returned for
        // this cluster and not removed since (`lb.rs` forgets a handle when it removes it),
        // so none can name a newer host that reused a freed one's memory.
        unsafe { abi::envoy_dynamic_module_callback_cluster_remove_hosts(self.envoy, ptrs.as_ptr(), ptrs.len()) }
    }

    fn pre_init_complete(&mut self) {
        // SAFETY: our cluster's pointer, on the main thread, in its init hook.
        unsafe { abi::envoy_dynamic_module_callback_cluster_pre_init_complete(self.envoy) };
    }

    fn is_validation_mode(&self) -> bool {
        // SAFETY: a process-wide query without arguments.
        unsafe { abi::envoy_dynamic_module_callback_is_validation_mode() }
    }

    fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>> {
        // SAFETY: our cluster's pointer, on the main thread, inside one of its hooks.
        let sched = unsafe { abi::envoy_dynamic_module_callback_cluster_scheduler_new(self.envoy) };
        (!sched.is_null()).then(|| Arc::new(EnvoyClusterScheduler(sched as usize)) as Arc<dyn Scheduler>)
    }

    fn update_host_health(&mut self, host: HostHandle, healthy: bool) -> bool {
        let health = if healthy { abi::host_health::HEALTHY } else { abi::host_health::UNHEALTHY };
        // SAFETY: our cluster's pointer, on the main thread, inside one of its hooks. Envoy
        // looks `host` up in the cluster's host map (1.40: `findHost`, as for removals) and
        // answers false for a host it does not have. `host` is a handle `add_hosts` returned
        // for this cluster and `remove_hosts` was never given (the trait's contract: `lb.rs`
        // keeps static hosts for the cluster's life and forgets a STRICT_DNS host's handle
        // when it removes it), so the host is alive and the key can not name a newer host.
        unsafe { abi::envoy_dynamic_module_callback_cluster_update_host_health(self.envoy, host.0 as *mut c_void, health) }
    }
}

// === impl EnvoyClusterScheduler ===

/// A cluster's scheduler (the address of `cluster_scheduler_new`'s result).
struct EnvoyClusterScheduler(usize);

impl Scheduler for EnvoyClusterScheduler {
    fn commit(&self, event_id: u64) {
        // SAFETY: `cluster_scheduler_commit` is thread-safe (reference: upstream §2.2, §7.2).
        // Commits happen under the lock of the cluster's `HostFeed`, which deletes the
        // scheduler under the same lock, so the scheduler is live here.
        unsafe { abi::envoy_dynamic_module_callback_cluster_scheduler_commit(self.0 as *mut c_void, event_id) }
    }

    fn delete(&self) {
        // SAFETY: created by `cluster_scheduler_new` for this cluster; deleted once, on the main
        // thread, from `on_cluster_destroy` (the feed gives its scheduler up only once).
        unsafe { abi::envoy_dynamic_module_callback_cluster_scheduler_delete(self.0 as *mut c_void) }
    }
}

// === impl EnvoyLb ===

/// A worker's load balancer (`lb_envoy`) and the context of one `choose_host` call (`ctx`,
/// may be NULL).
pub struct EnvoyLb {
    lb: *mut c_void,
    ctx: *mut c_void,
    /// `end_without_host` completed the selection: the hook must answer asynchronously.
    ended: Cell<bool>,
}

impl EnvoyLb {
    /// # Safety
    /// `lb` is the `lb_envoy` pointer Envoy gave the LB now choosing on this thread, and
    /// `ctx` is NULL or the context of the `choose_host` call now running; the value is used
    /// only until that call returns.
    pub unsafe fn new(lb: *mut c_void, ctx: *mut c_void) -> EnvoyLb {
        EnvoyLb { lb, ctx, ended: Cell::new(false) }
    }

    /// True if the selection was completed through `end_without_host`: `choose_host` must
    /// then hand Envoy an async handle (and no host), whatever else happened.
    pub fn ended(&self) -> bool {
        self.ended.get()
    }
}

impl LbHost for EnvoyLb {
    fn healthy_host_count(&self) -> usize {
        // SAFETY: our LB pointer, on the thread Envoy created it for (`new`'s contract).
        unsafe { abi::envoy_dynamic_module_callback_cluster_lb_get_healthy_host_count(self.lb, 0) }
    }

    fn healthy_host(&self, index: usize) -> Option<HostHandle> {
        // SAFETY: as above; Envoy answers NULL for an index out of range.
        let h = unsafe { abi::envoy_dynamic_module_callback_cluster_lb_get_healthy_host(self.lb, 0, index) };
        (!h.is_null()).then_some(HostHandle(h as usize))
    }

    fn find_host_by_address(&self, address: &str) -> Option<HostHandle> {
        // SAFETY: our LB pointer, on its own worker (`new`'s contract); Envoy copies the
        // address. The host returned is an entry of this worker's priority set, which holds
        // it (a shared pointer) until the worker applies a host update the main thread
        // posted: never during this `choose_host` call, so it is alive while we hand it back.
        let h = unsafe { abi::envoy_dynamic_module_callback_cluster_lb_find_host_by_address(self.lb, ModuleBuffer::from(address)) };
        (!h.is_null()).then_some(HostHandle(h as usize))
    }

    fn has_context(&self) -> bool {
        !self.ctx.is_null()
    }

    fn filter_state(&self, key: &str) -> Option<&[u8]> {
        if self.ctx.is_null() {
            return None;
        }
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `ctx` is non-NULL and live for this `choose_host` call; `out` is writable.
        let found = unsafe { abi::envoy_dynamic_module_callback_cluster_lb_context_get_filter_state_bytes(self.ctx, key.into(), &mut out) };
        // SAFETY: Envoy's buffer is valid during this call; the slice borrows `&self`, which
        // lives no longer than the call (`new`'s contract).
        found.then(|| unsafe { out.as_slice() })
    }

    fn downstream_header(&self, name: &str) -> Option<&[u8]> {
        if self.ctx.is_null() {
            return None;
        }
        let mut out = EnvoyBuffer::empty();
        let mut count = 0usize;
        // SAFETY: `ctx` is non-NULL and live for this `choose_host` call; `out` and `count` are
        // writable; the key buffer lives for the call (checked with `objdump` on 1.40: ctx,
        // key, out, index, count).
        let found = unsafe {
            abi::envoy_dynamic_module_callback_cluster_lb_context_get_downstream_header(self.ctx, name.into(), &mut out, 0, &mut count)
        };
        // SAFETY: the value lives in the request's header map, which nobody changes during
        // this call; the slice borrows `&self`, which lives no longer than the call.
        found.then(|| unsafe { out.as_slice() })
    }

    fn should_select_another_host(&self, index: usize) -> bool {
        if self.ctx.is_null() {
            return false;
        }
        // SAFETY: `ctx` is the live context of this call, `lb` ours; `index` is a healthy
        // index at priority 0, as the callback expects for cluster LBs.
        unsafe { abi::envoy_dynamic_module_callback_cluster_lb_context_should_select_another_host(self.lb, self.ctx, 0, index) }
    }

    fn end_without_host(&self, details: &'static str) -> bool {
        if self.ctx.is_null() || self.ended.get() {
            return false;
        }
        // SAFETY: `lb` is our LB and `ctx` the live context of this `choose_host` call; Envoy
        // copies `details`. Measured on 1.40 (and read in its code): the completion is posted
        // to the worker's dispatcher, so the router sees it only after this hook returned the
        // async handle (`ended` makes sure it does) and stored its callback; a request that
        // is gone by then cancels it, and the posted completion is dropped.
        unsafe {
            abi::envoy_dynamic_module_callback_cluster_lb_async_host_selection_complete(
                self.lb,
                self.ctx,
                std::ptr::null_mut(),
                ModuleBuffer::from(details),
            )
        };
        self.ended.set(true);
        true
    }
}
