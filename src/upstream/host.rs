//! One upstream host (MOSN's `hosts[]` entry) and its shared state words.

use super::in_flight::InFlight;
use super::StateBlock;
use crate::headers::SharedStr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a host is not used (MOSN's health flags). 0 is healthy.
pub mod health {
    /// The active health check failed `unhealthy_threshold` times in a row.
    pub const FAILED_ACTIVE_HC: u64 = 0x1;
    /// Ejected by passive health checking (MOSN's `fault_tolerance`, or consecutive
    /// failures) until its ejection time is over.
    pub const FAILED_OUTLIER_CHECK: u64 = 0x2;
}

// The host's words, in order. All start at 0.
const FLAGS: usize = 0;
/// Attempts started, then ended (these two words are unused when the host counts them in
/// rows: see [`InFlight`]).
const RQ_TOTAL: usize = 1;
const _RQ_ENDED: usize = 2; // RQ_TOTAL + 1: `InFlight::Shared`
const RQ_FAILED: usize = 3;
const RQ_ERROR_RESPONSE: usize = 4;
const EJECTIONS: usize = 5;
const EJECTED_UNTIL_MS: usize = 6;
const CONSECUTIVE_FAILURES: usize = 7;
const HEALTH_CHANGES: usize = 8;
const EWMA_LATENCY_NS: usize = 9;
const EWMA_STAMP_NS: usize = 10;
const HC_STREAK: usize = 11;
const WINDOW_CALLS: usize = 12;
const WINDOW_ERRORS: usize = 13;
const CONNECT_FAILURES: usize = 14;
const TIMEOUTS: usize = 15;
const RESPONSE_SUCCESS: usize = 16;

/// State words per host.
pub(crate) const HOST_WORDS: usize = 17;

/// A host's live state (health flags, counters), shared by every worker: a handle to its
/// words in the config's [`StateBlock`]. Cheap to clone; balancers keep one per member.
#[derive(Clone)]
pub struct HostState {
    state: Arc<StateBlock>,
    slot: usize,
    /// Attempts in flight: the shared words `RQ_TOTAL`/`RQ_ENDED`, or counters in rows.
    attempts: InFlight,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").field("flags", &self.flags()).field("active", &self.active()).finish()
    }
}

// === impl HostState ===

impl HostState {
    /// A host's state at `slot` of `state`, counting attempts in its own words.
    pub(crate) fn new(state: &Arc<StateBlock>, slot: usize) -> HostState {
        HostState { state: state.clone(), slot, attempts: InFlight::Shared { started: slot + RQ_TOTAL } }
    }

    /// As [`HostState::new`], counting attempts in rows (no limit, nothing reads the load
    /// per pick) when `attempts` says so.
    pub(crate) fn with_attempts(state: &Arc<StateBlock>, slot: usize, attempts: Option<InFlight>) -> HostState {
        let h = HostState::new(state, slot);
        HostState { attempts: attempts.unwrap_or(h.attempts), ..h }
    }

    fn word(&self, w: usize) -> &AtomicU64 {
        self.state.word(self.slot + w)
    }

    /// MOSN's health flags ([`health`]); 0 is healthy.
    pub fn flags(&self) -> u64 {
        self.word(FLAGS).load(Ordering::Relaxed)
    }
    pub fn is_healthy(&self) -> bool {
        self.flags() == 0
    }
    /// The flags, ordered after what was published before them (passive ejection reads its
    /// deadline after the flag).
    pub(crate) fn flags_acquire(&self) -> u64 {
        self.word(FLAGS).load(Ordering::Acquire)
    }
    /// Sets or clears one [`health`] flag; true if the host's health changed (counted).
    pub fn set_flag(&self, flag: u64, on: bool) -> bool {
        let before =
            if on { self.word(FLAGS).fetch_or(flag, Ordering::Relaxed) } else { self.word(FLAGS).fetch_and(!flag, Ordering::Relaxed) };
        let after = if on { before | flag } else { before & !flag };
        let changed = (before == 0) != (after == 0);
        if changed {
            self.word(HEALTH_CHANGES).fetch_add(1, Ordering::Relaxed);
        }
        changed
    }
    /// Requests in flight to this host (all workers).
    pub fn active(&self) -> u64 {
        self.attempts.active(&self.state)
    }
    /// Starts an attempt unless `max_active` (0: no limit) are already in flight; the
    /// check and the count are one atomic step, so concurrent workers never exceed it.
    pub(crate) fn try_start_attempt(&self, max_active: u64) -> bool {
        self.attempts.try_start(&self.state, max_active)
    }
    /// Counts an attempt with no limit (balancer tests set up load with it).
    #[cfg(test)]
    #[allow(dead_code)] // used by the balancers' tests
    pub(crate) fn attempt_started(&self) {
        self.try_start_attempt(0);
    }
    /// Ends an attempt this process started (each start is ended exactly once).
    pub(crate) fn attempt_ended(&self) {
        self.attempts.end(&self.state);
    }
    /// Attempts sent to this host (all workers).
    pub fn requests(&self) -> u64 {
        self.attempts.started(&self.state)
    }
    /// Attempts that failed to connect, timed out or were reset (all workers).
    pub fn failures(&self) -> u64 {
        self.word(RQ_FAILED).load(Ordering::Relaxed)
    }
    pub(crate) fn count_failure(&self) {
        self.word(RQ_FAILED).fetch_add(1, Ordering::Relaxed);
    }
    /// Attempts whose connection failed (MOSN's `connection_con_fail`).
    pub fn connect_failures(&self) -> u64 {
        self.word(CONNECT_FAILURES).load(Ordering::Relaxed)
    }
    pub(crate) fn count_connect_failure(&self) {
        self.word(CONNECT_FAILURES).fetch_add(1, Ordering::Relaxed);
    }
    /// Attempts that timed out (MOSN's `request_timeout`).
    pub fn timeouts(&self) -> u64 {
        self.word(TIMEOUTS).load(Ordering::Relaxed)
    }
    pub(crate) fn count_timeout(&self) {
        self.word(TIMEOUTS).fetch_add(1, Ordering::Relaxed);
    }
    /// Responses below 500 (MOSN's `response_success`).
    pub fn response_success(&self) -> u64 {
        self.word(RESPONSE_SUCCESS).load(Ordering::Relaxed)
    }
    pub(crate) fn count_response_success(&self) {
        self.word(RESPONSE_SUCCESS).fetch_add(1, Ordering::Relaxed);
    }
    /// Responses with an error status (5xx).
    pub fn error_responses(&self) -> u64 {
        self.word(RQ_ERROR_RESPONSE).load(Ordering::Relaxed)
    }
    /// Attempts that failed or got a 5xx (MOSN's `response_failed`).
    pub fn response_failed(&self) -> u64 {
        self.failures() + self.error_responses()
    }
    pub(crate) fn count_error_response(&self) {
        self.word(RQ_ERROR_RESPONSE).fetch_add(1, Ordering::Relaxed);
    }
    /// Times passive health checking ejected this host.
    pub fn ejections(&self) -> u64 {
        self.word(EJECTIONS).load(Ordering::Relaxed)
    }
    /// Times this host went from healthy to unhealthy or back.
    pub fn health_changes(&self) -> u64 {
        self.word(HEALTH_CHANGES).load(Ordering::Relaxed)
    }

    /// Copies every word of `old` (the same host in the config a reload replaces), with no
    /// attempt in flight (the old config's attempts end there).
    pub(crate) fn inherit(&self, old: &HostState) {
        for w in 0..HOST_WORDS {
            self.word(w).store(old.word(w).load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.inherit_attempts(old);
    }

    /// Takes over `old`'s attempt total with none in flight (a reload).
    pub(crate) fn inherit_attempts(&self, old: &HostState) {
        self.attempts.inherit(&self.state, old.attempts, &old.state);
    }

    /// Forgets the health the host's previous address had (a STRICT_DNS slot that now holds
    /// another address): flags, ejection, streaks, windows, latency. Traffic counters stay.
    pub(crate) fn reset_health(&self) {
        for w in [FLAGS, EJECTED_UNTIL_MS, CONSECUTIVE_FAILURES, HC_STREAK, WINDOW_CALLS, WINDOW_ERRORS, EWMA_LATENCY_NS, EWMA_STAMP_NS] {
            self.word(w).store(0, Ordering::Release);
        }
    }

    // --- passive health (see `outlier.rs`)
    pub(crate) fn ejections_word(&self) -> &AtomicU64 {
        self.word(EJECTIONS)
    }
    pub(crate) fn ejected_until_ms(&self) -> &AtomicU64 {
        self.word(EJECTED_UNTIL_MS)
    }
    pub(crate) fn consecutive_failures(&self) -> &AtomicU64 {
        self.word(CONSECUTIVE_FAILURES)
    }
    pub(crate) fn window_calls(&self) -> &AtomicU64 {
        self.word(WINDOW_CALLS)
    }
    pub(crate) fn window_errors(&self) -> &AtomicU64 {
        self.word(WINDOW_ERRORS)
    }

    // --- active health (see `health_check.rs`): consecutive results, + for passes, - for failures
    pub(crate) fn hc_streak(&self) -> &AtomicU64 {
        self.word(HC_STREAK)
    }

    // --- latency (LB_PEAK_EWMA)

    /// The latency EWMA in nanoseconds, decayed to `now_ns`, or `None` before any report.
    pub fn latency_ewma_ns(&self, now_ns: u64, decay_ns: f64) -> Option<f64> {
        let stamp = self.word(EWMA_STAMP_NS).load(Ordering::Relaxed);
        if stamp == 0 {
            return None;
        }
        let v = f64::from_bits(self.word(EWMA_LATENCY_NS).load(Ordering::Relaxed));
        // Peak EWMA decays toward 0 while the host is not reported on.
        let age = now_ns.saturating_sub(stamp) as f64;
        Some(v * (-age / decay_ns).exp())
    }
    /// Folds one attempt's latency into the EWMA (a peak: a slower sample replaces it).
    pub(crate) fn record_latency(&self, latency_ns: u64, now_ns: u64, decay_ns: f64) {
        let sample = latency_ns as f64;
        let _ = self.word(EWMA_LATENCY_NS).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            let stamp = self.word(EWMA_STAMP_NS).load(Ordering::Relaxed);
            let old = f64::from_bits(bits);
            let next = if stamp == 0 || sample > old {
                sample
            } else {
                let w = (-(now_ns.saturating_sub(stamp) as f64) / decay_ns).exp();
                old * w + sample * (1.0 - w)
            };
            Some(next.to_bits())
        });
        self.word(EWMA_STAMP_NS).store(now_ns.max(1), Ordering::Relaxed);
    }
}

/// One upstream host.
#[derive(Debug)]
pub struct Host {
    /// The configured address (a STRICT_DNS slot: `0.0.0.0:port`; see [`Host::current`]).
    pub address: SocketAddr,
    /// `ip:port`, the form hosts connect to and log (a STRICT_DNS slot: `name:port`).
    pub address_text: SharedStr,
    /// STRICT_DNS: the slot whose resolved address this host is.
    pub dns: Option<super::dns::DnsSlot>,
    pub hostname: Option<String>,
    pub weight: u32,
    /// `metadata.filter_metadata["mosn.lb"]`, sorted by key.
    pub metadata: Vec<(String, String)>,
    pub state: HostState,
}

impl Host {
    /// A host whose state words start at `slot` of `state` (attempts counted in rows where
    /// `attempts` says so).
    pub(crate) fn new(cfg: &crate::config::HostConfig, state: &Arc<StateBlock>, slot: usize, attempts: Option<InFlight>) -> Host {
        Host {
            address: cfg.address,
            address_text: match &cfg.dns_name {
                Some(n) => format!("{n}:{}", cfg.address.port()).into(),
                None => cfg.address.to_string().into(),
            },
            dns: cfg.dns_name.as_deref().map(|n| super::dns::DnsSlot::new(n, cfg.address.port())),
            hostname: cfg.hostname.clone(),
            weight: cfg.weight,
            metadata: cfg.metadata.clone(),
            state: HostState::with_attempts(state, slot, attempts),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.state.is_healthy()
    }
    /// The address to connect to now and its `ip:port` text; `None` for a STRICT_DNS slot
    /// without an address. The text lives as long as the config.
    #[inline]
    pub fn current(&self) -> Option<(SocketAddr, &str)> {
        match &self.dns {
            None => Some((self.address, &self.address_text)),
            Some(slot) => slot.get().map(|r| (r.addr, &*r.text)),
        }
    }
    /// Marks the host up or down as an active health check would (tests, hosts that
    /// report health themselves).
    pub fn set_healthy(&self, healthy: bool) {
        self.state.set_flag(health::FAILED_ACTIVE_HC, !healthy);
    }
    /// The value of metadata key `k` (`mosn.lb`).
    pub fn metadata_value(&self, k: &str) -> Option<&str> {
        self.metadata.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
}
