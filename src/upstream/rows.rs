//! Per-thread rows of counters.
//!
//! An uncontended locked add (`fetch_add`) still costs ~6 ns; a request's start and end
//! counted five of them (the live streams, the listener's `request_total`, and its
//! `request_time` bucket and sum), about a sixth of the core's decision. So a counter here
//! has [`ROWS`] rows: a thread claims a row of its own once and adds to it with a plain load
//! and store; readers sum the rows. Row 0 is for threads that found no free row: they add to
//! it with `fetch_add`. Sums are exact: every row has one writer, or only locked writers.
//!
//! A stream may end on another thread than the one it started on: each add takes the row of
//! the thread doing it, so a row can go "negative" (wrapping); the sum is still right.
//!
//! Rows are claimed from a word that lives with the counters (the state block's header), so
//! nginx's worker processes, which share the block, claim distinct rows too.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows per counter: row 0 shared, rows `1..ROWS` one writer each.
pub const ROWS: usize = 32;

/// Adds `n` (wrapping) to `w`, a word in row `row` of the calling thread (from [`row`]).
#[inline]
pub(crate) fn add(row: usize, w: &AtomicU64, n: u64) {
    if row == 0 {
        w.fetch_add(n, Ordering::Relaxed);
    } else {
        // Only this thread writes this row: a read-modify-write without a lock loses nothing.
        w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
}

/// A row this thread holds: `(key, row, the row's first word)`, key 0 empty.
type Slot = Cell<(u64, u32, *const AtomicU64)>;

thread_local! {
    /// This thread's rows, newest first.
    static HELD: [Slot; 4] = const { [const { Cell::new((0, 0, std::ptr::null())) }; 4] };
}

/// The calling thread's row among those handed out by `claims` (a word counting the rows
/// claimed so far), which `key` names, and the address of that row's first word (`first`
/// of the row). `key` is never 0 and names one set of rows at one address for the
/// process's life: the address is remembered with the row.
///
/// A thread keeps the rows of its last four keys; one it lost it never writes again (a new
/// one is claimed), so a row keeps one writer.
#[inline]
pub(crate) fn row<'a>(
    key: u64,
    first: impl Fn(usize) -> *const AtomicU64,
    claims: impl FnOnce() -> &'a AtomicU64,
) -> (usize, *const AtomicU64) {
    HELD.try_with(|held| {
        for h in held {
            let (k, row, at) = h.get();
            if k == key {
                return (row as usize, at);
            }
        }
        let row = claim(claims());
        let at = first(row);
        for i in (1..held.len()).rev() {
            held[i].set(held[i - 1].get());
        }
        held[0].set((key, row as u32, at));
        (row, at)
    })
    .unwrap_or_else(|_| (0, first(0))) // thread-locals gone (a thread's exit): the shared row
}

#[cold]
fn claim(claims: &AtomicU64) -> usize {
    forget_at_fork();
    let n = claims.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    if n < ROWS as u64 {
        n as usize
    } else {
        0
    }
}

/// A process forked from one holding rows (nginx's master, if it ever counted) must not
/// write them too: the child forgets them and claims its own.
fn forget_at_fork() {
    extern "C" fn child() {
        let _ = HELD.try_with(|held| held.iter().for_each(|h| h.set((0, 0, std::ptr::null()))));
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `child` is a plain function, callable after fork in the child's only thread;
    // it touches this thread's own thread-locals only.
    ONCE.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(child));
    });
}

/// A process-wide counter in rows (in process memory, each row on its own cache line).
pub(crate) struct Striped {
    key: u64,
    claims: AtomicU64,
    rows: [Line; ROWS],
}

#[repr(align(64))]
struct Line(AtomicU64);

impl Striped {
    /// A counter at 0; `key` must differ from every other `Striped`'s and from state
    /// blocks' (those count up from 1).
    pub(crate) const fn new(key: u64) -> Striped {
        Striped { key, claims: AtomicU64::new(0), rows: [const { Line(AtomicU64::new(0)) }; ROWS] }
    }

    /// Adds `n` (wrapping: `u64::MAX` subtracts one). `'static`: threads remember where
    /// their row is.
    #[inline]
    pub(crate) fn add(&'static self, n: u64) {
        let (row, at) = self::row(self.key, |r| &self.rows[r].0, || &self.claims);
        // SAFETY: `at` is `&self.rows[row].0` (a row number below ROWS, from `row`, whose
        // key is this counter's alone), and `self` lives forever.
        add(row, unsafe { &*at }, n);
    }

    /// The sum of the rows.
    pub(crate) fn sum(&self) -> u64 {
        self.rows.iter().fold(0u64, |s, l| s.wrapping_add(l.0.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_their_own_rows_and_the_sum_is_exact() {
        static C: Striped = Striped::new(u64::MAX - 100);
        let threads: Vec<_> = (0..ROWS + 8) // more threads than rows: some share row 0
            .map(|t| {
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        C.add(3);
                    }
                    // Ends counted on another thread than the start: the sum still holds.
                    if t % 2 == 0 {
                        for _ in 0..1000 {
                            C.add(u64::MAX);
                        }
                    }
                    row(C.key, |r| &C.rows[r].0, || &C.claims).0
                })
            })
            .collect();
        let rows: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let n = ROWS as u64 + 8;
        assert_eq!(C.sum(), 3000 * n - 1000 * n.div_ceil(2));
        let mut private: Vec<usize> = rows.iter().copied().filter(|r| *r != 0).collect();
        private.sort_unstable();
        private.dedup();
        assert_eq!(private.len(), ROWS - 1, "every private row claimed once: {rows:?}");
        assert!(rows.iter().filter(|r| **r == 0).count() >= 9, "the rest share row 0: {rows:?}");
    }

    #[test]
    fn a_thread_keeps_its_last_four_keys_and_claims_again_after() {
        let claims: Vec<AtomicU64> = (0..6).map(|_| AtomicU64::new(0)).collect();
        let row = |key: u64, claims: &AtomicU64| row(key, |_| std::ptr::null(), || claims).0;
        std::thread::spawn(move || {
            let first: Vec<usize> = (0..4).map(|k| row(1000 + k as u64, &claims[k])).collect();
            assert_eq!(first, [1, 1, 1, 1]);
            assert_eq!(row(1000, &claims[0]), 1, "held: no new claim");
            assert_eq!(claims[0].load(Ordering::Relaxed), 1);
            row(1004, &claims[4]); // evicts the first claimed (1000)
            assert_eq!(row(1001, &claims[1]), 1, "still held");
            assert_eq!(row(1000, &claims[0]), 2, "lost: claims a new row");
        })
        .join()
        .unwrap();
    }
}
