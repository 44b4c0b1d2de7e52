//! MOSN's `fault_tolerance` filter: passive health checking. The filter itself only carries
//! the settings; the stream reports every attempt's outcome to them (see
//! [`crate::upstream::outlier`]), so ejection sees each try, not only the final response.

use super::registry::ParseContext;
use super::{ReceivePhase, StreamFilter};
use crate::config::reader::{Diagnostics, Obj};
use crate::upstream::outlier::OutlierConfig;
use std::sync::Arc;
use std::time::Duration;

/// The filter, built once per config; `None` settings when `enabled` is false.
pub struct FaultTolerance {
    pub(crate) config: Option<OutlierConfig>,
}

// === impl parse ===

/// Reads `{enabled, exceptionTypes, timeWindow, leastWindowCount, exceptionRateMultiple,
/// maxIpCount, maxIpRatio, recoverTime, taskSize}` (MOSN's names; times in milliseconds).
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(FaultTolerance { config: None })) };
    let errors = d.error_count();
    let mut cfg = OutlierConfig::default();
    let enabled = c.boolean("enabled", d).unwrap_or(false);
    let tpath = c.field_path("exceptionTypes");
    if let Some(types) = c.array("exceptionTypes", d) {
        let codes: Option<Vec<u16>> = types.iter().map(|v| v.as_u64().filter(|s| (100..=599).contains(s)).map(|s| s as u16)).collect();
        match codes {
            Some(codes) if !codes.is_empty() => cfg.exception_statuses = codes,
            Some(_) => {}
            None => d.error(tpath, "expected HTTP statuses (100..=599)"),
        }
    }
    let ms = |c: &mut Obj<'_>, k: &'static str, d: &mut Diagnostics| {
        c.uint(k, 0, 86_400_000 * 7, d).filter(|&v| v > 0).map(Duration::from_millis)
    };
    if let Some(t) = ms(&mut c, "timeWindow", d) {
        cfg.time_window = t;
    }
    if let Some(t) = ms(&mut c, "recoverTime", d) {
        cfg.recover_time = t;
    }
    if let Some(n) = c.uint("leastWindowCount", 0, 1_000_000, d).filter(|&n| n > 0) {
        cfg.least_window_count = n;
    }
    if let Some(n) = c.uint("maxIpCount", 0, 1_000_000, d).filter(|&n| n > 0) {
        cfg.max_ip_count = n;
    }
    for (key, slot, max) in
        [("exceptionRateMultiple", &mut cfg.exception_rate_multiple, 1_000.0), ("maxIpRatio", &mut cfg.max_ip_ratio, 1.0)]
    {
        let path = c.field_path(key);
        if let Some(v) = c.get(key) {
            match v.as_f64() {
                Some(f) if (0.0..=max).contains(&f) => {
                    if f > 0.0 {
                        *slot = f;
                    }
                }
                _ => d.error(path, format!("expected a number in 0..={max}, found {v}")),
            }
        }
    }
    c.finish(d);
    (d.error_count() == errors).then(|| Arc::new(FaultTolerance { config: enabled.then_some(cfg) }) as Arc<dyn StreamFilter>)
}

impl StreamFilter for FaultTolerance {
    fn name(&self) -> &'static str {
        "fault_tolerance"
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn reads_client_address(&self) -> bool {
        false
    }
    /// Nothing to do on requests or responses: outcomes come from the stream.
    fn receive_phase(&self) -> Option<ReceivePhase> {
        None
    }
    fn outlier(&self) -> Option<&OutlierConfig> {
        self.config.as_ref()
    }
}
