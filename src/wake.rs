//! Waking a parked stream from any thread, exactly once, never after it is done.
//!
//! The host registers one [`WakeFn`] per stream. Each time a filter waits, the stream
//! arms a fresh [`WakeCell`]; the [`Waker`] handed to the filter calls the host's
//! function at most once. When the host says the stream is done, the cell is closed
//! under its lock, so a wake racing with the close either finished before the close
//! returned or never calls the host at all.

use parking_lot::Mutex;
use std::ffi::c_void;
use std::sync::Arc;

/// How the host wants to be told that a stream may resume.
#[derive(Clone)]
pub enum WakeFn {
    /// A C function and its opaque context (the `wake` argument of `mosn_ext_stream_new`).
    C { f: unsafe extern "C" fn(*mut c_void), ctx: *mut c_void },
    /// A Rust closure (the Envoy adapter).
    Rust(Arc<dyn Fn() + Send + Sync>),
}

// SAFETY: the C host promises in the header that its wake function may be called from
// any thread with its context pointer; the pointer is only passed back, never read here.
unsafe impl Send for WakeFn {}
// SAFETY: as above; calling the function through a shared reference is the contract.
unsafe impl Sync for WakeFn {}

impl WakeFn {
    fn call(&self) {
        match self {
            // SAFETY: the host registered `f` with `ctx` for exactly this call; see above.
            WakeFn::C { f, ctx } => unsafe { f(*ctx) },
            WakeFn::Rust(f) => f(),
        }
    }
}

#[derive(Default)]
struct CellState {
    target: Option<WakeFn>,
}

/// One wait's wake-up slot.
pub struct WakeCell {
    state: Mutex<CellState>,
}

/// Resumes one waiting stream. Cheap to clone; only the first `wake` has an effect.
#[derive(Clone)]
pub struct Waker(Arc<WakeCell>);

impl Waker {
    /// Calls the host's wake function unless the stream already woke or is done.
    /// The host's function runs under the cell lock, so `close` waits for it.
    pub fn wake(&self) {
        let mut st = self.0.state.lock();
        if let Some(t) = st.target.take() {
            t.call();
        }
    }
}

/// The stream's side: its host wake function and the current cell.
#[derive(Default)]
pub struct WakeSource {
    target: Option<WakeFn>,
    current: Mutex<Option<Arc<WakeCell>>>,
}

impl WakeSource {
    pub fn new(target: Option<WakeFn>) -> WakeSource {
        WakeSource { target, current: Mutex::new(None) }
    }

    pub fn set_target(&mut self, target: WakeFn) {
        self.target = Some(target);
    }

    pub fn has_target(&self) -> bool {
        self.target.is_some()
    }

    /// Arms a new wait: closes any previous cell and returns a waker for the new one.
    pub(crate) fn arm(&self) -> Waker {
        let cell = Arc::new(WakeCell { state: Mutex::new(CellState { target: self.target.clone() }) });
        let old = self.current.lock().replace(cell.clone());
        if let Some(old) = old {
            old.state.lock().target = None;
        }
        Waker(cell)
    }

    /// Stream done: no wake function is called after this returns.
    pub fn close(&self) {
        if let Some(cell) = self.current.lock().take() {
            cell.state.lock().target = None;
        }
    }
}

impl Drop for WakeSource {
    fn drop(&mut self) {
        self.close();
    }
}
