//! MOSN's metrics: counters with MOSN's names, counted in the core in the shared state block
//! (so every Envoy worker and every nginx worker process adds to the same words), exported in
//! Prometheus text format where `metrics.sinks[{type: prometheus}]` asks for it.
//!
//! - `downstream`, label `listener`: `request_total`, `request_active`, `request_failed` (the
//!   answer was a 5xx), `request_<code>_total` for MOSN's codes, `request_other_code`,
//!   `request_time` (a histogram of the time from the request's start to its end, fixed
//!   buckets [`TIME_BUCKETS_MS`]);
//! - `upstream`, label `cluster` (and `host`): `request_total`, `request_active`,
//!   `request_retry`, `request_retry_overflow`, `request_pending_overflow`,
//!   `request_timeout`, `connection_con_fail`, `response_success`, `response_failed`,
//!   `lb_subsets_fallback` (cluster), host ejections and health changes.

pub mod clock;
pub mod prometheus;

pub use crate::config::metrics::{MetricsConfig, PrometheusSink};
use crate::upstream::state::RowWords;

// === Downstream counters ===

/// The status codes MOSN counts one by one (`request_<code>_total`); others are
/// `request_other_code`.
pub const CODES: [u16; 20] = [200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 429, 499, 500, 502, 503, 504];

const TOTAL: usize = 0;
/// Streams started on these counters whose end is counted elsewhere (in flight on the
/// counters a reload replaced): `request_active` is `request_total` less the streams timed
/// (ended) less these, so a stream costs one atomic add at its start instead of two.
const GONE: usize = 1;
const FAILED: usize = 2;
const OTHER_CODE: usize = 3;
const FIRST_CODE: usize = 4;
/// `request_time`'s bucket bounds (ms); a last bucket takes the rest (`+Inf`).
pub const TIME_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
/// [`TIME_BUCKETS_MS`] in µs, the unit a stream's time is bucketed in.
const TIME_BUCKETS_US: [u64; TIME_BUCKETS_MS.len()] = {
    let mut us = [0; TIME_BUCKETS_MS.len()];
    let mut i = 0;
    while i < us.len() {
        us[i] = TIME_BUCKETS_MS[i] * 1000;
        i += 1;
    }
    us
};
/// One word per bucket (not cumulative), then the sum of the times (µs).
const FIRST_TIME_BUCKET: usize = FIRST_CODE + CODES.len();
const TIME_SUM_US: usize = FIRST_TIME_BUCKET + TIME_BUCKETS_MS.len() + 1;
/// Counters a listener has (words in each of the state block's rows).
pub const LISTENER_WORDS: usize = TIME_SUM_US + 1;

/// One listener's downstream counters (in the state block's rows: each thread counts in
/// its own, see [`crate::upstream::rows`]).
#[derive(Debug, Clone)]
pub struct ListenerCounters(RowWords);

/// A snapshot of [`ListenerCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    pub request_total: u64,
    pub request_active: u64,
    pub request_failed: u64,
    pub other_code: u64,
    /// `(code, count)` for each of [`CODES`].
    pub codes: Vec<(u16, u64)>,
}

impl ListenerCounters {
    pub fn new(words: RowWords) -> ListenerCounters {
        ListenerCounters(words)
    }

    #[inline]
    fn add(&self, i: usize, n: u64) {
        self.0.add(i, n);
    }

    fn sum(&self, i: usize) -> u64 {
        self.0.sum(i)
    }

    /// Takes over the counts of `old` (the same listener in the config a reload replaces);
    /// the in-flight gauge starts at 0 (those streams end on the old counters).
    pub(crate) fn inherit(&self, old: &ListenerCounters) {
        for i in 0..LISTENER_WORDS {
            self.0.set(i, old.sum(i));
        }
        // The old streams in flight end on the old counters: gone from these.
        self.0.set(GONE, old.sum(GONE).wrapping_add(old.active()));
    }

    /// Streams started and not ended (`request_active`). The ended ones are read before the
    /// started ones: a stream starts before it ends, so the difference is never negative.
    fn active(&self) -> u64 {
        let ended: u64 = (0..=TIME_BUCKETS_MS.len()).map(|b| self.sum(FIRST_TIME_BUCKET + b)).sum();
        let gone = self.sum(GONE);
        self.sum(TOTAL).saturating_sub(ended).saturating_sub(gone)
    }

    /// A stream started.
    #[inline]
    pub(crate) fn start(&self) {
        self.add(TOTAL, 1);
    }

    /// The status the client got.
    pub(crate) fn answered(&self, status: u16) {
        let w = CODES.iter().position(|c| *c == status).map_or(OTHER_CODE, |i| FIRST_CODE + i);
        self.add(w, 1);
        if status >= 500 {
            self.add(FAILED, 1);
        }
    }

    /// A stream ended `elapsed` after it started (`request_time`; the stream no longer
    /// counts in `request_active`).
    pub(crate) fn timed(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = TIME_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(TIME_BUCKETS_MS.len());
        self.0.add_two((FIRST_TIME_BUCKET + bucket, 1), (TIME_SUM_US, us));
    }

    /// `request_time` as a Prometheus histogram (seconds).
    pub fn request_time(&self) -> prometheus::Sample {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(TIME_BUCKETS_MS.len());
        for (i, ms) in TIME_BUCKETS_MS.iter().enumerate() {
            cumulative += self.sum(FIRST_TIME_BUCKET + i);
            buckets.push((*ms as f64 / 1000.0, cumulative));
        }
        let count = cumulative + self.sum(FIRST_TIME_BUCKET + TIME_BUCKETS_MS.len());
        let sum = self.sum(TIME_SUM_US) as f64 / 1e6;
        prometheus::Sample::Histogram { buckets, sum, count }
    }

    pub fn stats(&self) -> ListenerStats {
        let w = |i: usize| self.sum(i);
        ListenerStats {
            request_total: w(TOTAL),
            request_active: self.active(),
            request_failed: w(FAILED),
            other_code: w(OTHER_CODE),
            codes: CODES.iter().enumerate().map(|(i, c)| (*c, w(FIRST_CODE + i))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::state::{Layout, StateBlock, WordAllocator};

    fn counters(state: &std::sync::Arc<StateBlock>, layout: &mut Layout) -> ListenerCounters {
        let a = WordAllocator { state, layout: std::cell::RefCell::new(layout) };
        ListenerCounters::new(a.take_rows(LISTENER_WORDS))
    }

    /// `request_active` is derived (started less ended); a reload's new counters keep the
    /// totals and start with none active, whatever the old streams do afterwards.
    #[test]
    fn active_is_started_less_ended_and_restarts_at_reload() {
        let state = std::sync::Arc::new(StateBlock::unallocated());
        let mut layout = Layout::default();
        let (old, new) = (counters(&state, &mut layout), counters(&state, &mut layout));
        state.allocate_for(&layout);
        for _ in 0..3 {
            old.start();
        }
        old.timed(std::time::Duration::from_micros(1500));
        assert_eq!((old.stats().request_total, old.stats().request_active), (3, 2));
        new.inherit(&old);
        assert_eq!((new.stats().request_total, new.stats().request_active), (3, 0));
        old.timed(std::time::Duration::from_millis(3)); // an old stream ends on the old counters
        new.start();
        assert_eq!((new.stats().request_total, new.stats().request_active), (4, 1));
        new.timed(std::time::Duration::from_millis(1));
        assert_eq!(new.stats().request_active, 0);
        let again = {
            let mut l = Layout::default();
            let s = std::sync::Arc::new(StateBlock::unallocated());
            let c = counters(&s, &mut l);
            s.allocate_for(&l);
            c.inherit(&new);
            c.stats()
        };
        assert_eq!((again.request_total, again.request_active), (4, 0));
    }
}
