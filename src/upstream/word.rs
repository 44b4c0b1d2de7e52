//! The lock-free steps on shared state words: a limit on things in flight (circuit breakers,
//! `max_connections`) and a token bucket (flow control's GCRA).
//!
//! Every worker (Envoy's threads, nginx's processes) runs them on the same words, so each is
//! one atomic read-modify-write or compare-and-swap loop. They are written once, over the
//! small [`Word`] interface, so that the model tests below (`--cfg loom`) check them under
//! every interleaving loom explores with its own atomics, and the library runs the very same
//! code on `std`'s:
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib --target-dir target/loom upstream::word::loom_tests`

use std::sync::atomic::Ordering;

/// An atomic 64-bit word (`std`'s, or loom's in the model tests).
pub trait Word {
    fn load(&self, order: Ordering) -> u64;
    fn fetch_add(&self, v: u64, order: Ordering) -> u64;
    fn compare_exchange_weak(&self, current: u64, new: u64, success: Ordering, failure: Ordering) -> Result<u64, u64>;
}

macro_rules! impl_word {
    ($t:ty) => {
        impl Word for $t {
            #[inline]
            fn load(&self, order: Ordering) -> u64 {
                <$t>::load(self, order)
            }
            #[inline]
            fn fetch_add(&self, v: u64, order: Ordering) -> u64 {
                <$t>::fetch_add(self, v, order)
            }
            #[inline]
            fn compare_exchange_weak(&self, current: u64, new: u64, success: Ordering, failure: Ordering) -> Result<u64, u64> {
                <$t>::compare_exchange_weak(self, current, new, success, failure)
            }
        }
    };
}

impl_word!(std::sync::atomic::AtomicU64);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicU64);

/// Takes one of `max` places (`max` 0: no limit) counted on two words, `started` and
/// `ended`: in flight is their difference. One atomic operation to take a place and one to
/// give it back ([`end`]), where a gauge beside a total takes three; the total is
/// `started`. Never more than `max` in flight: `ended` only grows, so the difference read
/// before the compare-and-swap is at least the one after it.
#[inline]
pub fn try_start(started: &impl Word, ended: &impl Word, max: u64) -> bool {
    if max == 0 {
        started.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let mut cur = started.load(Ordering::Relaxed);
    loop {
        // An `ended` newer than `cur` only makes the CAS below fail and reread `cur`.
        if cur.saturating_sub(ended.load(Ordering::Acquire)) >= max {
            return false;
        }
        match started.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(v) => cur = v,
        }
    }
}

/// Gives back a place [`try_start`] took (exactly once each).
#[inline]
pub fn end(ended: &impl Word) {
    ended.fetch_add(1, Ordering::AcqRel);
}

/// In flight on [`try_start`]'s words: `ended` is read first, so the result never wraps.
#[inline]
pub fn in_flight(started: &impl Word, ended: &impl Word) -> u64 {
    let e = ended.load(Ordering::Acquire);
    started.load(Ordering::Acquire).saturating_sub(e)
}

/// GCRA on one word holding the theoretical arrival time (ns; 0: none yet): a request at
/// `now` passes while that time is at most `burst` ahead of now, and passing moves it one
/// `emission` later. A time more than `interval` ahead can only mean the clock stepped back:
/// the bucket starts over (it never freezes).
#[inline]
pub fn gcra_take(w: &impl Word, now: u64, emission: u64, burst: u64, interval: u64) -> bool {
    let mut cur = w.load(Ordering::Relaxed);
    loop {
        let tat = if cur == 0 || cur > now + interval { now } else { cur.max(now) };
        if tat - now > burst {
            return false;
        }
        match w.compare_exchange_weak(cur, tat + emission, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(v) => cur = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_limit_and_a_bucket_on_one_thread() {
        let (started, ended) = (AtomicU64::new(0), AtomicU64::new(0));
        assert!(try_start(&started, &ended, 2) && try_start(&started, &ended, 2) && !try_start(&started, &ended, 2));
        assert_eq!(in_flight(&started, &ended), 2);
        end(&ended);
        assert_eq!(in_flight(&started, &ended), 1);
        assert!(try_start(&started, &ended, 2) && !try_start(&started, &ended, 2));
        assert_eq!(started.load(Ordering::Relaxed), 3, "started is the total");
        assert!(try_start(&started, &ended, 0) && in_flight(&started, &ended) == 3, "0 is no limit");
        // 10 per 1000 ns with no burst: one now, the next 100 ns later.
        let b = AtomicU64::new(0);
        assert!(gcra_take(&b, 1_000, 100, 0, 1_000));
        assert!(!gcra_take(&b, 1_050, 100, 0, 1_000));
        assert!(gcra_take(&b, 1_100, 100, 0, 1_000));
        // A clock that stepped back more than an interval starts the bucket over.
        assert!(gcra_take(&b, 1, 100, 0, 1_000) || gcra_take(&b, 2_000, 100, 0, 1_000));
    }
}

/// Model tests: every interleaving loom explores of the steps above on shared words.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicU64, AtomicUsize};
    use loom::sync::Arc;

    /// Two workers race for one place (a third would only multiply the interleavings): at no
    /// point do both hold it, one that failed saw it taken, and the place comes back.
    #[test]
    fn a_limit_on_two_words_is_never_exceeded() {
        loom::model(|| {
            let (started, ended) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let held = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (started, ended, held) = (started.clone(), ended.clone(), held.clone());
                    loom::thread::spawn(move || {
                        if try_start(&*started, &*ended, 1) {
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 1, "{now} hold the one place");
                            held.fetch_sub(1, Ordering::SeqCst);
                            end(&*ended);
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            let admitted = threads.into_iter().map(|t| t.join().unwrap()).filter(|a| *a).count();
            assert!(admitted >= 1, "nobody got the place");
            assert_eq!(in_flight(&*started, &*ended), 0, "every place came back");
            assert_eq!(started.load(Ordering::SeqCst), admitted as u64, "started counts the admitted");
        });
    }

    /// Two workers take from a bucket with one token at the same instant: exactly one passes,
    /// and the bucket's time moved by exactly one token.
    #[test]
    fn a_bucket_gives_each_token_once() {
        loom::model(|| {
            let w = Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let w = w.clone();
                    loom::thread::spawn(move || gcra_take(&*w, 1_000, 100, 0, 1_000))
                })
                .collect();
            let passed = threads.into_iter().map(|t| t.join().unwrap()).filter(|p| *p).count();
            assert_eq!(passed, 1);
            assert_eq!(w.load(Ordering::SeqCst), 1_100);
        });
    }
}
