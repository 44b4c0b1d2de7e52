//! Per-worker registry of live streams, so the cluster LB can find the request it serves.
//!
//! Envoy runs a request's HTTP filter hooks and its upstream host selection on the same
//! worker thread, so the registry is thread-local and holds `Rc`s: no locks, no atomics. The
//! HTTP filter registers its stream under a process-unique id and writes that id into the
//! request's filter state (`mosn.stream_id`); the LB reads the id back from its context.
//! A request whose host the filter hands Envoy itself (`http_logic.rs`: pinned for the LB,
//! `pin.rs`, or an override host) is not registered.

use mosn_extension::Stream;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One request as both the HTTP filter and the cluster LB see it.
pub struct StreamState {
    /// The core's stream; `None` once the request is done (dropping it closes the waker).
    pub stream: Option<Stream>,
    /// Where the request path is.
    pub phase: Phase,
    /// The request had a body after the headers (`end_of_stream` was false).
    pub more_body: bool,
    /// The buffered request body, once the core asked for it.
    pub body: Option<Vec<u8>>,
    /// The request's trailers arrived (Envoy keeps them; the core reads them from there).
    pub trailers: bool,
    /// The response headers wait for the whole response body (a send filter reads it).
    pub response_buffering: bool,
    /// The LB chose a host for this request at least once.
    pub chosen: bool,
    /// How the latest attempt ended was already told to the core.
    pub outcome_reported: bool,
    /// The HTTP filter asked the core for the first attempt's host and the core had none:
    /// the LB answers this (once) instead of asking again.
    pub no_host: Option<mosn_extension::NoHost>,
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

/// The state plus the flags every hook reads first. The flags sit outside the `RefCell`
/// so that a re-entered hook (Envoy runs the local-reply and response hooks inside
/// `send_response`) can read them whatever is borrowed.
pub struct StreamCell {
    /// A hook panicked: no hook touches the core stream again (see `guard.rs`).
    poisoned: Cell<bool>,
    /// A local reply (the module's or Envoy's) answers this request.
    local_reply: Cell<bool>,
    /// That local reply is the module's own (`send_response`), not Envoy's.
    own_reply: Cell<bool>,
    pub state: RefCell<StreamState>,
}

/// A published stream's filter, shared by Envoy's filter pointer and the registry.
pub type SharedState = Rc<crate::http_logic::FilterState>;

// === impl StreamCell ===

impl StreamCell {
    /// A fresh cell for `stream`.
    pub fn new(stream: Stream) -> StreamCell {
        StreamCell {
            poisoned: Cell::new(false),
            local_reply: Cell::new(false),
            own_reply: Cell::new(false),
            state: RefCell::new(StreamState {
                stream: Some(stream),
                phase: Phase::Start,
                more_body: false,
                body: None,
                trailers: false,
                response_buffering: false,
                chosen: false,
                outcome_reported: false,
                no_host: None,
            }),
        }
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.get()
    }

    /// Marks the stream failed for good (idempotent).
    pub fn poison(&self) {
        self.poisoned.set(true);
    }

    pub fn local_reply(&self) -> bool {
        self.local_reply.get()
    }

    pub fn own_reply(&self) -> bool {
        self.own_reply.get()
    }

    /// Envoy announced a local reply (its own, or the module's).
    pub fn set_local_reply(&self) {
        self.local_reply.set(true);
    }

    /// The module is about to send its own local reply (set before `send_response`, whose
    /// nested local-reply hook must know it).
    pub fn set_own_reply(&self) {
        self.local_reply.set(true);
        self.own_reply.set(true);
    }
}

// === The per-thread map ===

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The map's hasher: ids are process-unique counters that no client chooses, so one
/// multiplication (Fibonacci hashing) spreads them; SipHash's flooding defence is not needed.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap = HashMap<u64, SharedState, std::hash::BuildHasherDefault<IdHasher>>;

thread_local! {
    static STREAMS: RefCell<IdMap> = RefCell::new(IdMap::default());
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
