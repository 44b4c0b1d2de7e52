//! Upstream: clusters of hosts and the load balancers that pick one.
//!
//! A [`Cluster`] is shared by every worker (Envoy's worker threads call into the same
//! object), so its mutable state is atomics only: the round-robin cursor, host health
//! and per-host counters. No lock is taken on the request path. Those atomics live in the
//! config's [`StateBlock`], which nginx moves into memory shared by its worker processes.

mod lb;
mod state;

pub use lb::TriedHosts;
pub(crate) use state::Layout;
pub use state::StateBlock;

use crate::config::{ClusterConfig, LbType};
use crate::headers::SharedStr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// State words per host: health (1 = healthy), requests, failures.
const HOST_WORDS: usize = 3;

/// One upstream host (MOSN's `hosts[]` entry).
#[derive(Debug)]
pub struct Host {
    pub address: SocketAddr,
    /// `ip:port`, the form hosts connect to and log.
    pub address_text: SharedStr,
    pub hostname: Option<String>,
    pub weight: u32,
    /// `metadata.filter_metadata["mosn.lb"]`, sorted by key.
    pub metadata: Vec<(String, String)>,
    state: Arc<StateBlock>,
    slot: usize,
}

impl Host {
    pub fn is_healthy(&self) -> bool {
        self.state.word(self.slot).load(Ordering::Relaxed) == 1
    }
    pub fn set_healthy(&self, healthy: bool) {
        self.state.word(self.slot).store(u64::from(healthy), Ordering::Relaxed)
    }
    /// Attempts sent to this host (all workers).
    pub fn requests(&self) -> &AtomicU64 {
        self.state.word(self.slot + 1)
    }
    /// Attempts that failed to connect, timed out or were reset (all workers).
    pub fn failures(&self) -> &AtomicU64 {
        self.state.word(self.slot + 2)
    }
}

/// A MOSN cluster: its hosts and load balancer.
#[derive(Debug)]
pub struct Cluster {
    pub name: SharedStr,
    pub lb_type: LbType,
    pub connect_timeout: Option<Duration>,
    pub hosts: Vec<Host>,
    state: Arc<StateBlock>,
    cursor_slot: usize,
}

impl Cluster {
    /// State words a cluster with `hosts` hosts needs.
    pub(crate) fn state_words(hosts: usize) -> usize {
        1 + HOST_WORDS * hosts
    }

    pub(crate) fn new(cfg: &ClusterConfig, state: &Arc<StateBlock>, layout: &mut Layout) -> Cluster {
        let cursor_slot = layout.take(1);
        Cluster {
            name: cfg.name.as_str().into(),
            lb_type: cfg.lb_type,
            connect_timeout: cfg.connect_timeout,
            hosts: cfg
                .hosts
                .iter()
                .map(|h| {
                    let slot = layout.take(HOST_WORDS);
                    state.word(slot).store(1, Ordering::Relaxed); // healthy
                    Host {
                        address: h.address,
                        address_text: h.address.to_string().into(),
                        hostname: h.hostname.clone(),
                        weight: h.weight,
                        metadata: h.metadata.clone(),
                        state: state.clone(),
                        slot,
                    }
                })
                .collect(),
            // The cursor starts at 0 (MOSN starts at random) so an operator can predict
            // the order.
            state: state.clone(),
            cursor_slot,
        }
    }

    /// Picks a host index: a healthy host not in `tried` if one exists, else a healthy
    /// tried one (a retry on a one-host cluster), else `None` (no healthy host).
    pub fn choose(&self, tried: &TriedHosts) -> Option<usize> {
        let n = self.hosts.len();
        if n == 0 {
            return None;
        }
        let start = match self.lb_type {
            LbType::RoundRobin => (self.state.word(self.cursor_slot).fetch_add(1, Ordering::Relaxed) % n as u64) as usize,
            LbType::Random => fastrand::usize(0..n),
        };
        lb::first_usable(n, start, |i| self.hosts[i].is_healthy(), tried)
    }
}
