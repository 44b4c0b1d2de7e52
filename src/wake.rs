//! Waking a parked stream from any thread, exactly once, never after it is done.
//!
//! The host registers one [`WakeFn`] per stream. Each time a filter waits, the stream
//! arms a fresh [`WakeCell`]; the [`Waker`] handed to the filter calls the host's
//! function at most once. The function runs outside the cell's lock with the cell marked
//! in flight; closing the cell (the host said the stream is done) waits until an in-flight
//! call returned, so no call can start or still run after the close returned. A close
//! from inside the wake function itself (same thread) does not wait for itself.
//!
//! Host rule (in the C header): the wake function must not block on a lock the host holds
//! while it calls into the stream, or `destroy` and the wake wait for each other.

use std::ffi::c_void;
use sync::{current_thread, wait, Arc, Condvar, Mutex, ThreadId};

/// The primitives: parking_lot's, or loom's when the model tests run (`--cfg loom`, see
/// `loom_tests` below), behind one small interface.
#[cfg(not(loom))]
mod sync {
    pub use parking_lot::{Condvar, Mutex, MutexGuard};
    pub use std::sync::Arc;
    pub use std::thread::ThreadId;

    pub fn current_thread() -> ThreadId {
        std::thread::current().id()
    }

    /// Waits on `cv`, releasing the lock meanwhile.
    pub fn wait<'a, T>(cv: &Condvar, mut g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cv.wait(&mut g);
        g
    }
}

#[cfg(loom)]
mod sync {
    pub use loom::sync::{Arc, Condvar, MutexGuard};
    pub use loom::thread::ThreadId;

    /// loom's mutex with parking_lot's `lock` (no poisoning to handle).
    #[derive(Debug, Default)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(v: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }

    pub fn current_thread() -> ThreadId {
        loom::thread::current().id()
    }

    pub fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cv.wait(g).unwrap()
    }
}

/// How the host wants to be told that a stream may resume.
#[derive(Clone)]
pub enum WakeFn {
    /// A C function and its opaque context (the `wake` argument of `mosn_ext_stream_new`).
    C { f: unsafe extern "C" fn(*mut c_void), ctx: *mut c_void },
    /// A Rust closure (the Envoy adapter).
    Rust(std::sync::Arc<dyn Fn() + Send + Sync>),
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
    /// The thread running the host's wake function, while it runs.
    in_flight: Option<ThreadId>,
}

/// One wait's wake-up slot.
pub struct WakeCell {
    state: Mutex<CellState>,
    returned: Condvar,
}

impl WakeCell {
    fn new(target: Option<WakeFn>) -> WakeCell {
        WakeCell { state: Mutex::new(CellState { target, in_flight: None }), returned: Condvar::new() }
    }

    /// No call after this returns (waits for one in flight on another thread).
    fn close(&self) {
        let me = current_thread();
        let mut st = self.state.lock();
        st.target = None;
        while st.in_flight.is_some_and(|t| t != me) {
            st = wait(&self.returned, st);
        }
    }
}

/// Resumes one waiting stream. Cheap to clone; only the first `wake` has an effect.
#[derive(Clone)]
pub struct Waker(Arc<WakeCell>);

impl Waker {
    /// Calls the host's wake function unless the stream already woke or is done.
    pub fn wake(&self) {
        let target = {
            let mut st = self.0.state.lock();
            let t = st.target.take();
            if t.is_some() {
                st.in_flight = Some(current_thread());
            }
            t
        };
        let Some(t) = target else { return };
        // Cleared even if the host's function panics, so `close` never waits forever.
        struct Done<'a>(&'a WakeCell);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.state.lock().in_flight = None;
                self.0.returned.notify_all();
            }
        }
        let _done = Done(&self.0);
        t.call();
    }
}

/// The stream's side: its host wake function and the current cell.
///
/// Only the thread calling into the stream arms or closes (a `Cell`, no lock: a stream is
/// `Send`, not `Sync`); wakers reach the cell itself, which has the lock.
#[derive(Default)]
pub struct WakeSource {
    target: Option<WakeFn>,
    current: std::cell::Cell<Option<Arc<WakeCell>>>,
}

impl WakeSource {
    pub fn new(target: Option<WakeFn>) -> WakeSource {
        WakeSource { target, current: std::cell::Cell::new(None) }
    }

    pub fn set_target(&mut self, target: WakeFn) {
        self.target = Some(target);
    }

    pub fn has_target(&self) -> bool {
        self.target.is_some()
    }

    /// Arms a new wait: closes any previous cell and returns a waker for the new one.
    pub(crate) fn arm(&self) -> Waker {
        let cell = Arc::new(WakeCell::new(self.target.clone()));
        if let Some(old) = self.current.replace(Some(cell.clone())) {
            old.close();
        }
        Waker(cell)
    }

    /// Stream done: no wake function is called after this returns.
    pub fn close(&self) {
        if let Some(cell) = self.current.take() {
            cell.close();
        }
    }
}

impl Drop for WakeSource {
    fn drop(&mut self) {
        self.close();
    }
}

/// Model tests: every interleaving (loom) of a wake on another thread against the stream's
/// end, and of two wakes racing. Run with
/// `RUSTFLAGS="--cfg loom" cargo test --release --lib --target-dir target/loom wake::loom_tests`
/// (`make test` does).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicUsize, Ordering};

    /// A wake function that records it started and finished (and the stream's end must
    /// never fall in between nor before a late start).
    fn recording(closed: Arc<AtomicUsize>, calls: Arc<AtomicUsize>) -> WakeFn {
        WakeFn::Rust(std::sync::Arc::new(move || {
            assert_eq!(closed.load(Ordering::SeqCst), 0, "a wake function started after close returned");
            calls.fetch_add(1, Ordering::SeqCst);
            loom::thread::yield_now();
            assert_eq!(closed.load(Ordering::SeqCst), 0, "close returned while a wake function ran");
        }))
    }

    #[test]
    fn a_wake_never_runs_after_or_across_close() {
        loom::model(|| {
            let closed = Arc::new(AtomicUsize::new(0));
            let calls = Arc::new(AtomicUsize::new(0));
            let src = WakeSource::new(Some(recording(closed.clone(), calls.clone())));
            let w = src.arm();
            let t = loom::thread::spawn(move || w.wake());
            src.close();
            closed.store(1, Ordering::SeqCst);
            t.join().unwrap();
            assert!(calls.load(Ordering::SeqCst) <= 1);
        });
    }

    #[test]
    fn two_wakes_call_the_host_once() {
        loom::model(|| {
            let closed = Arc::new(AtomicUsize::new(0));
            let calls = Arc::new(AtomicUsize::new(0));
            let src = WakeSource::new(Some(recording(closed.clone(), calls.clone())));
            let w = src.arm();
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.wake());
            w.wake();
            t.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            src.close();
        });
    }

    #[test]
    fn a_new_wait_closes_the_old_one() {
        loom::model(|| {
            let closed = Arc::new(AtomicUsize::new(0));
            let calls = Arc::new(AtomicUsize::new(0));
            let src = WakeSource::new(Some(recording(closed.clone(), calls.clone())));
            let old = src.arm();
            let t = loom::thread::spawn(move || old.wake());
            // Re-arming ends the old wait: its wake either ran before or never runs.
            let _new = src.arm();
            let after_rearm = calls.load(Ordering::SeqCst);
            t.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), after_rearm, "the old wait woke after the new one was armed");
            src.close();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counting() -> (Arc<AtomicUsize>, WakeFn) {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        (
            n,
            WakeFn::Rust(Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            })),
        )
    }

    #[test]
    fn wakes_once_and_never_after_close() {
        let (n, f) = counting();
        let src = WakeSource::new(Some(f));
        let w = src.arm();
        w.wake();
        w.wake();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let w2 = src.arm();
        src.close();
        w2.wake();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn close_waits_for_a_wake_in_flight_on_another_thread() {
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let (s, f) = (started.clone(), finished.clone());
        let src = WakeSource::new(Some(WakeFn::Rust(Arc::new(move || {
            s.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            f.store(1, Ordering::SeqCst);
        }))));
        let w = src.arm();
        let t = std::thread::spawn(move || w.wake());
        while started.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        src.close();
        assert_eq!(finished.load(Ordering::SeqCst), 1, "close returned while the wake function still ran");
        t.join().unwrap();
    }

    #[test]
    fn closing_from_inside_the_wake_function_does_not_deadlock() {
        // A host whose wake function ends the stream right away (same thread).
        let cell: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let c = cell.clone();
        let src = WakeSource::new(Some(WakeFn::Rust(Arc::new(move || {
            if let Some(w) = c.lock().take() {
                w.0.close();
            }
        }))));
        let w = src.arm();
        *cell.lock() = Some(w.clone());
        w.wake();
        src.close();
    }
}
