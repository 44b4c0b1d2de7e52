//! Upstream: clusters of hosts and the load balancers that pick one.
//!
//! A [`Cluster`] is shared by every worker (Envoy's worker threads call into the same
//! object), so its mutable state is atomics only: the round-robin cursor, host health
//! and per-host counters. No lock is taken on the request path.

mod lb;

pub use lb::TriedHosts;

use crate::config::{ClusterConfig, LbType};
use crate::headers::SharedStr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

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
    healthy: AtomicBool,
    /// Attempts sent to this host.
    pub requests: AtomicU64,
    /// Attempts that failed to connect, timed out or were reset.
    pub failures: AtomicU64,
}

impl Host {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed)
    }
}

/// A MOSN cluster: its hosts and load balancer.
#[derive(Debug)]
pub struct Cluster {
    pub name: SharedStr,
    pub lb_type: LbType,
    pub connect_timeout: Option<Duration>,
    pub hosts: Vec<Host>,
    cursor: AtomicUsize,
}

impl Cluster {
    pub fn new(cfg: &ClusterConfig) -> Cluster {
        Cluster {
            name: cfg.name.as_str().into(),
            lb_type: cfg.lb_type,
            connect_timeout: cfg.connect_timeout,
            hosts: cfg
                .hosts
                .iter()
                .map(|h| Host {
                    address: h.address,
                    address_text: h.address.to_string().into(),
                    hostname: h.hostname.clone(),
                    weight: h.weight,
                    metadata: h.metadata.clone(),
                    healthy: AtomicBool::new(true),
                    requests: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                })
                .collect(),
            // Starts at 0 (MOSN starts at random) so an operator can predict the order.
            cursor: AtomicUsize::new(0),
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
            LbType::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            LbType::Random => fastrand::usize(0..n),
        };
        lb::first_usable(n, start, |i| self.hosts[i].is_healthy(), tried)
    }

    pub fn host_index(&self, address: &str) -> Option<usize> {
        self.hosts.iter().position(|h| &*h.address_text == address)
    }
}
