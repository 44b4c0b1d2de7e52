//! Per-worker registry of live streams, so the cluster LB can find the request it serves.
//!
//! Envoy runs a request's HTTP filter hooks and its upstream host selection on the same
//! worker thread, so the registry is thread-local and holds `Rc`s: no locks, no atomics. The
//! HTTP filter registers its stream under a process-unique id and writes that id into the
//! request's filter state (`mosn.stream_id`); the LB reads the id back from its context.

use mosn_extension::Stream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One request as both the HTTP filter and the cluster LB see it.
pub struct StreamState {
    /// The core's stream; `None` once the request is done (dropping it closes the waker).
    pub stream: Option<mosn_extension::Stream>,
    /// Where the request path is.
    pub phase: Phase,
    /// The request had a body after the headers (`end_of_stream` was false).
    pub more_body: bool,
    /// The buffered request body, once the core asked for it.
    pub body: Option<Vec<u8>>,
    /// The LB chose a host for this request at least once.
    pub chosen: bool,
    /// How the latest attempt ended was already told to the core.
    pub outcome_reported: bool,
    /// A local reply (the module's or Envoy's) is answering this request.
    pub local_reply: bool,
    /// The local reply is the module's own (`send_response`), not Envoy's.
    pub own_reply: bool,
}

/// The request path's progress, as far as the adapter drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before request headers.
    Start,
    /// Collecting the body for the core (`Action::BufferBody`).
    Buffering,
    /// Parked until the core's wake (`Action::Wait`).
    Waiting,
    /// Handed to Envoy's router.
    Forwarded,
    /// Answered locally.
    Replied,
}

/// Shared by the filter object and the registry.
pub type SharedState = Rc<RefCell<StreamState>>;

impl StreamState {
    /// A fresh state for `stream`.
    pub fn new(stream: Stream) -> SharedState {
        Rc::new(RefCell::new(StreamState {
            stream: Some(stream),
            phase: Phase::Start,
            more_body: false,
            body: None,
            chosen: false,
            outcome_reported: false,
            local_reply: false,
            own_reply: false,
        }))
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static STREAMS: RefCell<HashMap<u64, SharedState>> = RefCell::new(HashMap::new());
}

/// A process-unique stream id (never 0).
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Registers `state` under `id` on this thread.
pub fn insert(id: u64, state: SharedState) {
    STREAMS.with(|m| m.borrow_mut().insert(id, state));
}

/// The stream registered under `id` on this thread.
pub fn get(id: u64) -> Option<SharedState> {
    STREAMS.with(|m| m.borrow().get(&id).cloned())
}

/// Forgets `id` (idempotent).
pub fn remove(id: u64) {
    // `try_with`: during thread teardown the map may already be gone.
    let _ = STREAMS.try_with(|m| m.borrow_mut().remove(&id));
}

/// Streams registered on this thread (tests and debugging).
pub fn len() -> usize {
    STREAMS.with(|m| m.borrow().len())
}
