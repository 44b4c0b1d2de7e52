//! Request mirroring (MOSN's route `request_mirror_policies` and its `mirror` filter): copies
//! of a request sent to another cluster, whose answers nobody waits for.
//!
//! The route holds the policy; the `mirror` filter decides per request (the policy's
//! `percent`, its own `amplification` and `broadcast`) and the core picks the hosts; the host
//! sends the copies (Envoy: an HTTP callout per copy; nginx: a background subrequest).

use super::Cluster;
use std::sync::Arc;

/// A route's `request_mirror_policies`.
#[derive(Debug)]
pub struct MirrorPolicy {
    pub cluster: Arc<Cluster>,
    /// 0..=100.
    pub percent: u32,
}

/// One copy to send: a host of the mirror cluster.
#[derive(Debug, Clone)]
pub struct MirrorTarget {
    pub cluster: Arc<Cluster>,
    pub index: usize,
}

impl MirrorPolicy {
    /// True for `percent` of the requests (MOSN: `rand(100) < percent`).
    pub fn roll(&self) -> bool {
        self.percent >= 100 || fastrand::u32(0..100) < self.percent
    }

    /// The hosts for `copies` copies: each copy to every healthy host (`broadcast`), or to
    /// one host the cluster's balancer picks.
    pub fn targets(&self, copies: u32, broadcast: bool) -> Vec<MirrorTarget> {
        let c = &self.cluster;
        let mut out = Vec::new();
        for _ in 0..copies {
            if broadcast {
                let healthy = c.hosts.iter().enumerate().filter(|(_, h)| h.is_healthy() && h.current().is_some());
                out.extend(healthy.map(|(index, _)| MirrorTarget { cluster: c.clone(), index }));
            } else if let Some(index) = c.choose_any() {
                out.push(MirrorTarget { cluster: c.clone(), index });
            }
        }
        out
    }
}

impl MirrorTarget {
    /// The copy's `ip:port` (lives as long as the config).
    pub fn address(&self) -> &str {
        self.current().map_or(&self.cluster.hosts[self.index].address_text, |(_, t)| t)
    }
    /// Where to send the copy now and its `ip:port` text (read together); `None` for a
    /// STRICT_DNS slot that has lost its address since the copy was chosen.
    pub fn current(&self) -> Option<(std::net::SocketAddr, &str)> {
        self.cluster.hosts[self.index].current()
    }
}
