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

pub mod prometheus;

pub use crate::config::metrics::{MetricsConfig, PrometheusSink};
use crate::upstream::state::Words;
use std::sync::atomic::Ordering;

// === Downstream counters ===

/// The status codes MOSN counts one by one (`request_<code>_total`); others are
/// `request_other_code`.
pub const CODES: [u16; 20] = [200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 429, 499, 500, 502, 503, 504];

const TOTAL: usize = 0;
const ACTIVE: usize = 1;
const FAILED: usize = 2;
const OTHER_CODE: usize = 3;
const FIRST_CODE: usize = 4;
/// `request_time`'s bucket bounds (ms); a last bucket takes the rest (`+Inf`).
pub const TIME_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
/// One word per bucket (not cumulative), then the sum of the times (µs).
const FIRST_TIME_BUCKET: usize = FIRST_CODE + CODES.len();
const TIME_SUM_US: usize = FIRST_TIME_BUCKET + TIME_BUCKETS_MS.len() + 1;
/// State words a listener's counters take.
pub const LISTENER_WORDS: usize = TIME_SUM_US + 1;

/// One listener's downstream counters (words of the shared state block).
#[derive(Debug, Clone)]
pub struct ListenerCounters(Words);

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
    pub fn new(words: Words) -> ListenerCounters {
        ListenerCounters(words)
    }

    /// Takes over the counts of `old` (the same listener in the config a reload replaces);
    /// the in-flight gauge starts at 0 (those streams end on the old config).
    pub(crate) fn inherit(&self, old: &ListenerCounters) {
        for i in 0..LISTENER_WORDS {
            let v = if i == ACTIVE { 0 } else { old.0.word(i).load(Ordering::Relaxed) };
            self.0.word(i).store(v, Ordering::Relaxed);
        }
    }

    /// A stream started.
    #[inline]
    pub(crate) fn start(&self) {
        self.0.word(TOTAL).fetch_add(1, Ordering::Relaxed);
        self.0.word(ACTIVE).fetch_add(1, Ordering::Relaxed);
    }

    /// A stream ended.
    #[inline]
    pub(crate) fn end(&self) {
        self.0.word(ACTIVE).fetch_sub(1, Ordering::Relaxed);
    }

    /// The status the client got.
    pub(crate) fn answered(&self, status: u16) {
        let w = CODES.iter().position(|c| *c == status).map_or(OTHER_CODE, |i| FIRST_CODE + i);
        self.0.word(w).fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.0.word(FAILED).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A stream ended `elapsed` after it started (`request_time`).
    pub(crate) fn timed(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = TIME_BUCKETS_MS.iter().position(|&ms| us <= ms * 1000).unwrap_or(TIME_BUCKETS_MS.len());
        self.0.word(FIRST_TIME_BUCKET + bucket).fetch_add(1, Ordering::Relaxed);
        self.0.word(TIME_SUM_US).fetch_add(us, Ordering::Relaxed);
    }

    /// `request_time` as a Prometheus histogram (seconds).
    pub fn request_time(&self) -> prometheus::Sample {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(TIME_BUCKETS_MS.len());
        for (i, ms) in TIME_BUCKETS_MS.iter().enumerate() {
            cumulative += self.0.word(FIRST_TIME_BUCKET + i).load(Ordering::Relaxed);
            buckets.push((*ms as f64 / 1000.0, cumulative));
        }
        let count = cumulative + self.0.word(FIRST_TIME_BUCKET + TIME_BUCKETS_MS.len()).load(Ordering::Relaxed);
        let sum = self.0.word(TIME_SUM_US).load(Ordering::Relaxed) as f64 / 1e6;
        prometheus::Sample::Histogram { buckets, sum, count }
    }

    pub fn stats(&self) -> ListenerStats {
        let w = |i: usize| self.0.word(i).load(Ordering::Relaxed);
        ListenerStats {
            request_total: w(TOTAL),
            request_active: w(ACTIVE),
            request_failed: w(FAILED),
            other_code: w(OTHER_CODE),
            codes: CODES.iter().enumerate().map(|(i, c)| (*c, w(FIRST_CODE + i))).collect(),
        }
    }
}
