//! A MOSN cluster: its hosts and load balancer.

use super::host::{Host, HOST_WORDS};
use super::lb::{self, LoadBalancer, Member, Pick, TriedHosts};
use super::state::{Layout, StateBlock};
use crate::config::{ClusterConfig, LbType};
use crate::headers::SharedStr;
use std::sync::Arc;
use std::time::Duration;

/// A MOSN cluster, shared by every worker (its mutable state is atomics in the config's
/// [`StateBlock`]).
#[derive(Debug)]
pub struct Cluster {
    pub name: SharedStr,
    pub lb_type: LbType,
    pub connect_timeout: Duration,
    pub hosts: Vec<Host>,
    lb: Box<dyn LoadBalancer>,
}

impl Cluster {
    pub(crate) fn new(cfg: &ClusterConfig, state: &Arc<StateBlock>, layout: &mut Layout) -> Cluster {
        let hosts: Vec<Host> = cfg.hosts.iter().map(|h| Host::new(h, state, layout.take(HOST_WORDS))).collect();
        let members: Vec<Member> = hosts
            .iter()
            .map(|h| Member { weight: h.weight, key: super::hash::bytes(h.address_text.as_bytes()), state: h.state.clone() })
            .collect();
        let lb = lb::build(&cfg.lb, &members, state, layout);
        Cluster { name: cfg.name.as_str().into(), lb_type: cfg.lb.lb_type, connect_timeout: cfg.connect_timeout, hosts, lb }
    }

    /// Picks a host index: a healthy host not in `tried` if one exists, else a healthy
    /// tried one (a retry on a one-host cluster), else `None` (no healthy host).
    pub fn choose(&self, tried: &TriedHosts) -> Option<usize> {
        let n = self.hosts.len();
        if n == 0 {
            return None;
        }
        let pick = Pick { hash: None, attempt: 1 };
        let healthy = |i: usize| self.hosts[i].is_healthy();
        self.lb.select(&pick, &mut |i| healthy(i) && !tried.contains(i)).or_else(|| {
            if tried.is_empty() {
                None
            } else {
                self.lb.select(&pick, &mut |i| healthy(i))
            }
        })
    }
}
