//! One library thread that fires [`Waker`]s after a delay (fault delays).
//!
//! Started lazily by the first delay, so it is created in the process that serves
//! requests (an nginx worker after fork, never the master). It never touches host
//! APIs: waking calls the host's wake function, which only queues a notification.

use crate::wake::Waker;
use crossbeam_channel::{Receiver, Sender};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Process-directed signals (nginx's SIGHUP, SIGTERM...) must reach the host's own threads,
/// never this one, as nginx's own thread pools do.
fn block_signals() {
    // SAFETY: `set` is a plain sigset_t on our stack, initialised by sigfillset before use;
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

static TIMER: OnceLock<Sender<(Instant, Waker)>> = OnceLock::new();

/// Wakes `waker` after `delay`, from the timer thread.
pub fn wake_after(delay: Duration, waker: Waker) {
    let tx = TIMER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new().name("mosn-ext-timer".into()).spawn(move || run(rx)).expect("spawn timer thread");
        tx
    });
    if tx.send((Instant::now() + delay, waker.clone())).is_err() {
        waker.wake();
    }
}

fn run(rx: Receiver<(Instant, Waker)>) {
    block_signals();
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Reverse(e) = heap.pop().expect("peeked");
            // A panic in a host's wake function must not kill the timer thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.waker.wake()));
        }
        let msg = match heap.peek() {
            Some(Reverse(e)) => match rx.recv_timeout(e.at.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
        };
        if let Some((at, waker)) = msg {
            seq += 1;
            heap.push(Reverse(Entry { at, seq, waker }));
        }
    }
}
