//! The clock a stream's `request_time` is measured with.
//!
//! Every stream reads a clock twice (start and end). Where the CPU's time-stamp counter
//! ticks at a constant rate (x86-64 with an invariant TSC, CPUID 8000_0007h EDX bit 8), a
//! read is one instruction (~10 ns against ~25 ns for `clock_gettime` in a VM, measured on
//! the project's machine); the counter is converted to time with a rate measured once
//! against the OS's monotonic clock. Elsewhere it is that monotonic clock.
//!
//! Counters of different cores may differ slightly; a stream that ends on another core
//! than it started on may then read a few ns short or long (never less than zero).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A reading of the clock.
#[derive(Debug, Clone, Copy)]
pub struct Stamp(u64);

/// How readings become time.
enum Source {
    /// TSC ticks; nanoseconds = ticks × `ns_per_tick_q32` / 2³².
    #[cfg(target_arch = "x86_64")]
    Tsc { ns_per_tick_q32: u64 },
    /// Nanoseconds since `epoch`.
    Os { epoch: Instant },
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Picks the clock (and measures the counter's rate: ~1 ms, once per process). Building
/// an engine calls this, so no request pays for it.
pub fn init() {
    source();
}

fn source() -> &'static Source {
    SOURCE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if let Some(ns_per_tick_q32) = tsc_rate() {
            return Source::Tsc { ns_per_tick_q32 };
        }
        Source::Os { epoch: Instant::now() }
    })
}

/// Now.
#[inline]
pub fn now() -> Stamp {
    match source() {
        #[cfg(target_arch = "x86_64")]
        Source::Tsc { .. } => Stamp(tsc()),
        Source::Os { epoch } => Stamp(epoch.elapsed().as_nanos() as u64),
    }
}

/// The time from `since` to now (zero if the reading went backwards).
#[inline]
pub fn elapsed(since: Stamp) -> Duration {
    let Stamp(now) = self::now();
    let d = now.saturating_sub(since.0);
    match source() {
        #[cfg(target_arch = "x86_64")]
        Source::Tsc { ns_per_tick_q32 } => Duration::from_nanos(((d as u128 * *ns_per_tick_q32 as u128) >> 32) as u64),
        Source::Os { .. } => Duration::from_nanos(d),
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and has no preconditions.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// The counter's rate as ns per tick in 32.32 fixed point, if it is invariant and sane.
#[cfg(target_arch = "x86_64")]
fn tsc_rate() -> Option<u64> {
    // Leaf 8000_0000h says which extended leaves exist; 8000_0007h only when it does.
    let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    let invariant = max >= 0x8000_0007 && std::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
    if !invariant {
        return None;
    }
    let (t0, c0) = (Instant::now(), tsc());
    let mut spent = Duration::ZERO;
    while spent < Duration::from_millis(1) {
        spent = t0.elapsed();
    }
    let ticks = tsc().checked_sub(c0)?;
    // From 10 MHz to 100 GHz: anything else is a counter not to trust.
    let ns = spent.as_nanos() as u64;
    if ticks < ns / 100 || ticks > ns * 100 {
        return None;
    }
    Some(((ns as u128) << 32).checked_div(ticks as u128)? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock agrees with the OS's over a few ms (within 5 % and 1 ms of scheduling).
    #[test]
    fn elapsed_follows_the_os_clock() {
        init();
        let (t0, s0) = (Instant::now(), now());
        std::thread::sleep(Duration::from_millis(20));
        let (ours, os) = (elapsed(s0), t0.elapsed());
        let diff = ours.as_nanos().abs_diff(os.as_nanos());
        assert!(diff < os.as_nanos() / 20 + 1_000_000, "ours {ours:?} os {os:?}");
    }

    #[test]
    fn never_negative() {
        let later = now();
        assert!(elapsed(later) < Duration::from_secs(1));
        assert_eq!(elapsed(Stamp(u64::MAX)), Duration::ZERO);
    }
}
