//! One upstream host (MOSN's `hosts[]` entry) and its shared state words.

use super::StateBlock;
use crate::headers::SharedStr;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// State words per host: health (1 = healthy), requests, failures.
pub(crate) const HOST_WORDS: usize = 3;

/// One upstream host.
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
    /// A host whose state words start at `slot` of `state` (marked healthy).
    pub(crate) fn new(cfg: &crate::config::HostConfig, state: &Arc<StateBlock>, slot: usize) -> Host {
        state.word(slot).store(1, Ordering::Relaxed);
        Host {
            address: cfg.address,
            address_text: cfg.address.to_string().into(),
            hostname: cfg.hostname.clone(),
            weight: cfg.weight,
            metadata: cfg.metadata.clone(),
            state: state.clone(),
            slot,
        }
    }

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
