//! What a matching route does: forward to a cluster (with timeout and retry policy) or
//! answer directly.

use crate::config::{ForwardConfig, RetryPolicyConfig};
use crate::headers::SharedStr;
use crate::upstream::Cluster;
use std::sync::Arc;
use std::time::Duration;

/// What a matching route does.
#[derive(Debug)]
pub enum RouteAction {
    Forward(Arc<Forward>),
    DirectResponse { status: u16, body: SharedStr },
}

/// A route's upstream action: the cluster(s), timeout and retry policy.
#[derive(Debug)]
pub struct Forward {
    /// `(cluster, weight)`; weighted random when more than one.
    pub clusters: Vec<(Arc<Cluster>, u32)>,
    total_weight: u64,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
}

/// When and how often to retry (from MOSN's `retry_policy`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// MOSN's `retry_on`: false retries connect failures only.
    pub retry_on: bool,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    /// Statuses that are retried; empty means 5xx when `retry_on`.
    pub status_codes: Vec<u16>,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    fn new(c: &RetryPolicyConfig) -> RetryPolicy {
        RetryPolicy {
            retry_on: c.retry_on,
            num_retries: c.num_retries,
            per_try_timeout: c.retry_timeout,
            status_codes: c.status_codes.clone(),
        }
    }
}

// === impl Forward ===

impl Forward {
    /// Builds the action; `cluster` resolves a (validated) cluster name.
    pub(crate) fn new(f: &ForwardConfig, cluster: &dyn Fn(&str) -> Option<Arc<Cluster>>) -> Option<Forward> {
        let clusters = f.clusters.iter().map(|(n, w, _)| cluster(n).map(|c| (c, *w))).collect::<Option<Vec<_>>>()?;
        let total_weight = clusters.iter().map(|(_, w)| u64::from(*w)).sum::<u64>().max(1);
        Some(Forward { clusters, total_weight, timeout: f.timeout, retry: f.retry_policy.as_ref().map(RetryPolicy::new) })
    }

    /// Picks the cluster index (weighted random among several).
    pub fn pick(&self) -> usize {
        if self.clusters.len() == 1 {
            return 0;
        }
        let mut r = fastrand::u64(0..self.total_weight);
        for (i, (_, w)) in self.clusters.iter().enumerate() {
            if r < u64::from(*w) {
                return i;
            }
            r -= u64::from(*w);
        }
        self.clusters.len() - 1
    }
}
