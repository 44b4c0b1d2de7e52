//! Passive health: hosts ejected from what real requests saw (MOSN's `fault_tolerance`).
//!
//! Every attempt's outcome is recorded on its host (shared words, so all workers count
//! together). A host is ejected (MOSN's `FAILED_OUTLIER_CHECK`) when:
//! - **rate** (MOSN): at the end of a `timeWindow`, it had at least `leastWindowCount`
//!   calls and an exception rate at least `exceptionRateMultiple` × the cluster's average;
//! - **consecutive** (here, not in MOSN): its last `leastWindowCount` calls were all
//!   exceptions. MOSN waits for the window, and with its default multiple of 5 a dead host
//!   among fewer than 6 is never ejected; this rule bounds the failed attempts a dead host
//!   gets to `leastWindowCount`.
//!
//! At most `maxIpCount` hosts of a cluster are ejected at a time (MOSN), and at most
//! `maxIpRatio` of them when it is set (MOSN parses it but never checks it). An ejection lasts
//! `recoverTime` × the number of times the host was ejected, at most 10 × (MOSN: always
//! `recoverTime`). Windows roll lazily: the first
//! outcome recorded after a window ends evaluates it (one worker wins the roll).

use super::cluster::Cluster;
use super::host::{health, HostState};
use crate::api::UpstreamOutcome;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `fault_tolerance`'s settings (MOSN's defaults in [`OutlierConfig::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    /// Statuses that count as exceptions (`exceptionTypes`); connect failures, resets and
    /// timeouts count as their local status (502, 502, 504).
    pub exception_statuses: Vec<u16>,
    pub time_window: Duration,
    pub least_window_count: u64,
    pub exception_rate_multiple: f64,
    pub max_ip_count: u64,
    /// `maxIpRatio`: at most this share of a cluster's hosts ejected at once (0: no such
    /// cap). MOSN parses it but its check is commented out.
    pub max_ip_ratio: f64,
    pub recover_time: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            exception_statuses: vec![502, 503, 504],
            time_window: Duration::from_millis(10_000),
            least_window_count: 10,
            exception_rate_multiple: 5.0,
            max_ip_count: 1,
            max_ip_ratio: 0.0,
            recover_time: Duration::from_millis(900_000),
        }
    }
}

/// Ejections last at most this many `recoverTime`s.
const MAX_EJECTION_FACTOR: u64 = 10;

/// Milliseconds since the Unix epoch: comparable across nginx's worker processes.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

// === impl OutlierConfig ===

impl OutlierConfig {
    /// The status an outcome counts as, if it is an exception.
    fn is_exception(&self, outcome: UpstreamOutcome) -> bool {
        let status = match outcome {
            UpstreamOutcome::Response(s) => s,
            UpstreamOutcome::ConnectFailure | UpstreamOutcome::Reset => 502,
            UpstreamOutcome::Timeout => 504,
            // Our own breaker, not the host's fault.
            UpstreamOutcome::Overflow => return false,
        };
        self.exception_statuses.contains(&status)
    }

    /// Records one attempt on host `index` of `cluster`.
    pub fn record(&self, cluster: &Cluster, index: usize, outcome: UpstreamOutcome, now_ms: u64) {
        let host = &cluster.hosts[index].state;
        let exception = self.is_exception(outcome);
        host.window_calls().fetch_add(1, Ordering::Relaxed);
        if exception {
            host.window_errors().fetch_add(1, Ordering::Relaxed);
            let streak = host.consecutive_failures().fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= self.least_window_count {
                self.eject(cluster, index, now_ms);
            }
        } else {
            host.consecutive_failures().store(0, Ordering::Relaxed);
        }
        self.maybe_roll_window(cluster, now_ms);
    }

    /// Ends the window if it is over: the worker that moves its start evaluates it.
    fn maybe_roll_window(&self, cluster: &Cluster, now_ms: u64) {
        let start = cluster.window_start_ms();
        let began = start.load(Ordering::Relaxed);
        if began == 0 {
            let _ = start.compare_exchange(0, now_ms, Ordering::Relaxed, Ordering::Relaxed);
            return;
        }
        if now_ms.saturating_sub(began) < self.time_window.as_millis() as u64 {
            return;
        }
        if start.compare_exchange(began, now_ms, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return; // another worker rolls it
        }
        self.evaluate_window(cluster, now_ms);
    }

    /// MOSN's rate rule over the window that just ended; resets the window counters.
    fn evaluate_window(&self, cluster: &Cluster, now_ms: u64) {
        let counts: Vec<(u64, u64)> = cluster
            .hosts
            .iter()
            .map(|h| (h.state.window_calls().swap(0, Ordering::Relaxed), h.state.window_errors().swap(0, Ordering::Relaxed)))
            .collect();
        let (calls, errors) = counts.iter().filter(|(c, _)| *c >= self.least_window_count).fold((0, 0), |(a, b), (c, e)| (a + c, b + e));
        if calls == 0 || errors == 0 {
            return;
        }
        let average = errors as f64 / calls as f64;
        for (i, (c, e)) in counts.iter().enumerate() {
            if *c >= self.least_window_count && (*e as f64 / *c as f64) >= average * self.exception_rate_multiple {
                self.eject(cluster, i, now_ms);
            }
        }
    }

    /// Ejects host `index` unless `maxIpCount` hosts already are.
    fn eject(&self, cluster: &Cluster, index: usize, now_ms: u64) {
        let host = &cluster.hosts[index].state;
        if host.flags() & health::FAILED_OUTLIER_CHECK != 0 {
            return;
        }
        // Two workers may both pass this check at once: the cap can be exceeded by one
        // ejection per racing worker, never more.
        // An ejection whose time is over counts no more (its flag is cleared lazily).
        let ejected = cluster
            .hosts
            .iter()
            .filter(|h| !recover_if_due(&h.state, now_ms) && h.state.flags() & health::FAILED_OUTLIER_CHECK != 0)
            .count() as u64;
        if ejected >= self.max_ip_count {
            return;
        }
        if self.max_ip_ratio > 0.0 && (ejected + 1) as f64 > self.max_ip_ratio * cluster.hosts.len() as f64 {
            return;
        }
        let n = host.ejections_word().fetch_add(1, Ordering::Relaxed) + 1;
        let duration = self.recover_time.as_millis() as u64 * n.min(MAX_EJECTION_FACTOR);
        // Published before the flag (Release), read after it (Acquire in recover_if_due): a
        // worker that sees the flag sees the deadline.
        host.ejected_until_ms().store(now_ms + duration, Ordering::Release);
        host.consecutive_failures().store(0, Ordering::Relaxed);
        if host.set_flag(health::FAILED_OUTLIER_CHECK, true) {
            tracing::warn!(cluster = %cluster.name, host = %cluster.hosts[index].address_text, ms = duration, "host ejected (fault_tolerance)");
        }
    }
}

/// Clears an ejection whose time is over; true if the host is healthy now. Called when a
/// balancer looks at an unhealthy host (cheap: only hosts with a flag set).
pub fn recover_if_due(host: &HostState, now_ms: u64) -> bool {
    let flags = host.flags_acquire();
    if flags & health::FAILED_OUTLIER_CHECK != 0 && now_ms >= host.ejected_until_ms().load(Ordering::Acquire) {
        host.set_flag(health::FAILED_OUTLIER_CHECK, false);
        return host.is_healthy();
    }
    flags == 0
}
