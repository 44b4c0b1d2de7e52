//! Request mirroring on Envoy: the copies the core decided on ([`Stream::mirrors`]) go out as
//! HTTP callouts of the filter *config*, on Envoy's main thread, each to the host the core
//! chose.
//!
//! ```text
//! worker:  request released (Continue) ─► copies(headers as they go upstream, buffered body)
//!          ─► MirrorSender::push ─► config scheduler commit (once per batch)
//! main:    on_http_filter_config_scheduled ─► send_pending ─► http_filter_config_http_callout
//!          per copy, to the Envoy cluster named like the MOSN cluster, with
//!          `:mosn-mirror-host: <ip:port>` ─► that cluster's LB (main thread's) ─► the host
//!          on_http_filter_config_http_callout_done ─► logged at debug, dropped
//! ```
//!
//! Why the config's callouts and not the stream's (`http_filter_http_callout`): Envoy cancels
//! a stream's callouts when the stream is destroyed (read in its source:
//! `DynamicModuleHttpFilter::destroy` cancels every pending request after
//! `on_http_filter_destroy`), i.e. as soon as the client's response is done. A copy would then reach its host only if it was written before
//! the client's answer, so the copies would depend on the response's timing; MOSN sends them
//! on their own and nobody waits for them. The config's callouts live as long as the filter
//! config; they can only be made on the main thread (their table is not shared across
//! threads), so the worker hands the copies over through the config's scheduler. Nothing of
//! a copy refers to the stream: a client that goes away, a stream destroyed while copies are
//! queued or in flight, changes nothing for them, and their answers never reach a stream.
//! Envoy calls the done hook only while the config lives (it nulls the module config first
//! and cancels the pending callouts when the config is destroyed).
//!
//! How the cluster's LB learns the host: the callout carries the core's choice in the
//! request header [`MIRROR_HOST_KEY`], which the LB reads with
//! `cluster_lb_context_get_downstream_header` (for a callout Envoy's router hands the LB the
//! callout's own headers) and turns into the Envoy host of that address
//! ([`crate::lb`]). The key is a pseudo-header (`:`-prefixed), for two reasons measured on
//! 1.40: Envoy's HTTP/1 encoder writes no `:` header but `:authority` (as Host), so the key
//! never reaches the mirror host (MOSN adds nothing to a copy), and no client can send one
//! (Envoy answers 400 to a `:` in an HTTP/1 header name; HTTP/2, which the generated
//! listeners do not serve, refuses unknown pseudo-headers by protocol). The LB honours it only for a request without filter state
//! `mosn.stream_id`, which every client request this module serves has when it reaches the LB
//! (one that does not have it got its host from the filter: pinned, which the LB returns
//! before it looks for this key, or as an override host, which never reaches the LB),
//! and the HTTP filter removes it from client requests anyway. Every generated cluster speaks HTTP/1.1; an
//! HTTP/2 mirror cluster (a hand-written envoy.yaml) would send the key as a pseudo-header,
//! which an HTTP/2 server refuses: its copies would be lost, never the client's request.
//!
//! Bounds: at most [`MAX_PENDING_COPIES`] copies and [`MAX_PENDING_BYTES`] bytes wait for the
//! main thread, and at most [`MAX_IN_FLIGHT`] copies are unanswered; beyond that a copy is
//! dropped (logged). Each callout has the route's timeout (or [`DEFAULT_TIMEOUT`]).
//!
//! What a copy carries: the request's headers as they go upstream (the core's mutations
//! applied; without hop-by-hop headers, `expect`, and what this module tells Envoy's router:
//! the `x-envoy-*` retry and timeout headers) and the buffered body, with
//! its `content-length`. Envoy's async client adds `x-envoy-internal: true` and appends the
//! node's address to `x-forwarded-for` (no callout option turns that off in 1.40).

use crate::host::{CalloutRefused, ConfigHost, HeaderKind, HttpHost, LbHost, Scheduler};
use crate::policy;
use mosn_extension::Stream;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The callout header naming the host the core chose for a copy (`ip:port`).
pub const MIRROR_HOST_KEY: &str = ":mosn-mirror-host";

/// A copy's timeout when its route has none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies waiting for the main thread, at most.
pub const MAX_PENDING_COPIES: usize = 4096;

/// Bytes (headers and bodies) waiting for the main thread, at most.
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// Copies sent and not answered yet (each holds its request in Envoy until its answer or
/// its timeout), at most: a mirror host that answers slowly or never costs bounded memory.
pub const MAX_IN_FLIGHT: usize = 8192;

/// The config scheduler's event id.
pub const MIRROR_EVENT: u64 = 1;

/// Request headers a copy does not carry: hop-by-hop headers and `expect` (the copy is sent
/// whole), `content-length` (set from the body), and (`http_logic::GUARDED`) what this
/// module tells Envoy's router about the original request (which Envoy removes before it
/// goes upstream).
const NOT_COPIED: &[&str] =
    &["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "expect", "content-length"];

/// One header, owned.
pub type OwnedHeader = (Vec<u8>, Vec<u8>);

/// One copy of a request, on its way to one host.
#[derive(Debug, Clone)]
pub struct MirrorCopy {
    /// The Envoy cluster (named like the MOSN cluster).
    pub cluster: String,
    /// The host the core chose, `ip:port`.
    pub address: String,
    /// The request headers as they went upstream (shared by the copies of one request).
    pub headers: Arc<[OwnedHeader]>,
    /// The buffered request body (shared likewise).
    pub body: Arc<[u8]>,
    pub timeout_ms: u64,
}

impl MirrorCopy {
    fn size(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

/// The copies of the request `host` is about to release upstream: one per
/// [`Stream::mirrors`] target, with the request headers as they are now (the core's
/// mutations applied) and `body` (the buffered body; `more_body` says the request had one).
pub fn copies(host: &dyn HttpHost, stream: &Stream, body: Option<&[u8]>, more_body: bool) -> Vec<MirrorCopy> {
    let targets = stream.mirrors();
    if targets.is_empty() {
        return Vec::new();
    }
    if more_body && body.is_none() {
        // Only a listener with the mirror filter makes copies, and it buffers every body.
        tracing::warn!("request mirrored without its buffered body; no copy sent");
        return Vec::new();
    }
    let mut headers: Vec<OwnedHeader> = Vec::new();
    let mut had_length = false;
    host.for_each_header(HeaderKind::Request, &mut |k, v| {
        if k.eq_ignore_ascii_case(b"content-length") {
            had_length = true;
        }
        if !NOT_COPIED.iter().chain(&crate::http_logic::GUARDED).any(|n| k.eq_ignore_ascii_case(n.as_bytes())) {
            headers.push((k.to_vec(), v.to_vec()));
        }
    });
    let body: Arc<[u8]> = Arc::from(body.unwrap_or_default());
    if !body.is_empty() || had_length {
        headers.push((b"content-length".to_vec(), body.len().to_string().into_bytes()));
    }
    let headers: Arc<[OwnedHeader]> = headers.into();
    let timeout = stream.timeout().filter(|t| !t.is_zero()).unwrap_or(DEFAULT_TIMEOUT);
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        let address = t.address();
        if address.parse::<SocketAddr>().is_err() {
            // A STRICT_DNS slot without an address: no host to send to.
            tracing::debug!(cluster = %t.cluster.name, address, "mirror host has no address; copy skipped");
            continue;
        }
        out.push(MirrorCopy {
            cluster: t.cluster.name.to_string(),
            address: address.to_string(),
            headers: headers.clone(),
            body: body.clone(),
            timeout_ms,
        });
    }
    out
}

// === MirrorSender ===

/// The copies of one filter config on their way from the workers to the main thread.
pub struct MirrorSender {
    state: Mutex<SenderState>,
}

#[derive(Default)]
struct SenderState {
    /// The config's scheduler (`None` before `open` or after `close`).
    scheduler: Option<Arc<dyn Scheduler>>,
    pending: Vec<MirrorCopy>,
    bytes: usize,
    /// An event is on its way (committed, not drained yet).
    committed: bool,
    closed: bool,
    /// Copies dropped: queue full, no scheduler, too many in flight.
    dropped: u64,
    /// Main thread: copies sent and not answered yet.
    in_flight: usize,
}

impl Default for MirrorSender {
    fn default() -> Self {
        MirrorSender::new()
    }
}

impl MirrorSender {
    pub fn new() -> MirrorSender {
        MirrorSender { state: Mutex::new(SenderState::default()) }
    }

    /// A poisoned lock only means a panic elsewhere while holding it; the state is plain data.
    fn lock(&self) -> MutexGuard<'_, SenderState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Main thread, at config creation: the scheduler that brings the copies to the main
    /// thread.
    pub fn open(&self, scheduler: Arc<dyn Scheduler>) {
        let mut st = self.lock();
        if !st.closed {
            st.scheduler = Some(scheduler);
        }
    }

    /// Any thread (a worker, as a request is released): queues the copies and makes sure an
    /// event is on its way. Never blocks on Envoy, never fails the request.
    pub fn push(&self, copies: Vec<MirrorCopy>) {
        if copies.is_empty() {
            return;
        }
        let mut st = self.lock();
        if st.closed {
            return;
        }
        if st.scheduler.is_none() {
            st.dropped += copies.len() as u64;
            tracing::warn!(dropped = st.dropped, "no config scheduler: request copies are not sent");
            return;
        }
        for c in copies {
            let size = c.size();
            if st.pending.len() >= MAX_PENDING_COPIES || st.bytes + size > MAX_PENDING_BYTES {
                st.dropped += 1;
                if st.dropped % 1024 == 1 {
                    tracing::warn!(dropped = st.dropped, pending = st.pending.len(), "mirror queue full: request copy dropped");
                }
                continue;
            }
            st.bytes += size;
            st.pending.push(c);
        }
        if !st.committed && !st.pending.is_empty() {
            if let Some(s) = &st.scheduler {
                // Under the lock `close` deletes the scheduler with: it is live here.
                s.commit(MIRROR_EVENT);
                st.committed = true;
            }
        }
    }

    /// Main thread, in the scheduled hook: the queued copies, in order.
    pub fn drain(&self) -> Vec<MirrorCopy> {
        let mut st = self.lock();
        st.committed = false;
        st.bytes = 0;
        std::mem::take(&mut st.pending)
    }

    /// Main thread, at config destroy: nothing is queued or committed after this; the
    /// scheduler is deleted.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.pending.clear();
        st.bytes = 0;
        if let Some(s) = st.scheduler.take() {
            s.delete();
        }
    }

    /// Copies waiting for the main thread.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Copies dropped so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Copies sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }
}

/// Main thread (`on_http_filter_config_scheduled`): sends every queued copy as a callout.
/// A refused callout is logged and the next one is sent.
pub fn send_pending(sender: &MirrorSender, host: &mut dyn ConfigHost) {
    for c in sender.drain() {
        if sender.in_flight() >= MAX_IN_FLIGHT {
            let mut st = sender.lock();
            st.dropped += 1;
            if st.dropped % 1024 == 1 {
                tracing::warn!(dropped = st.dropped, in_flight = st.in_flight, "too many request copies unanswered: copy dropped");
            }
            continue;
        }
        let mut headers: Vec<(&[u8], &[u8])> = c.headers.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        headers.push((MIRROR_HOST_KEY.as_bytes(), c.address.as_bytes()));
        match host.http_callout(&c.cluster, &headers, &c.body, c.timeout_ms) {
            Ok(id) => {
                sender.lock().in_flight += 1;
                tracing::debug!(id, cluster = %c.cluster, host = %c.address, "request copy sent");
            }
            Err(why) => tracing::debug!(?why, cluster = %c.cluster, host = %c.address, "request copy not sent"),
        }
    }
}

/// `on_http_filter_config_http_callout_done` (main thread): a copy's answer, or its failure
/// (`result` not 0: reset, timeout, no host), logged at debug and dropped.
pub fn callout_done(sender: &MirrorSender, id: u64, result: u32, status: Option<&[u8]>) {
    {
        let mut st = sender.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
    let status = status.map(String::from_utf8_lossy);
    tracing::debug!(id, result, status = status.as_deref().unwrap_or("-"), "request copy answered (dropped)");
}

/// An Envoy `http_callout_init_result` as [`CalloutRefused`] (`None` for success).
pub fn refused(code: u32) -> Option<CalloutRefused> {
    match code {
        0 => None,
        1 => Some(CalloutRefused::MissingRequiredHeaders),
        2 => Some(CalloutRefused::ClusterNotFound),
        4 => Some(CalloutRefused::CannotCreateRequest),
        other => Some(CalloutRefused::Other(other)),
    }
}

// === LB side ===

/// The host a copy must go to, if the request being balanced is one of this module's
/// copies: it carries [`MIRROR_HOST_KEY`] with an `ip:port` and has no filter state
/// `mosn.stream_id` (every client request this module serves that reaches the LB has one;
/// a callout has a stream info of its own, without it).
pub fn requested_host(lb: &dyn LbHost) -> Option<&str> {
    if !lb.has_context() || lb.filter_state(policy::STREAM_ID_KEY).is_some() {
        return None;
    }
    let value = std::str::from_utf8(lb.downstream_header(MIRROR_HOST_KEY)?).ok()?;
    value.parse::<SocketAddr>().is_ok().then_some(value)
}
