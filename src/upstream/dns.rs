//! STRICT_DNS clusters (MOSN's `strict_dns_cluster.go`): each `name:port` host entry is
//! resolved when the config loads and again every `dns_refresh_rate`, off the request path;
//! every address it resolves to is a host.
//!
//! The cluster's shape is fixed when the config loads (balancers, subsets and the shared
//! state are built once), so each name gets [`SLOTS_PER_NAME`] host slots: a slot holds one
//! resolved address or none (a host without an address is never picked). The sorted
//! addresses fill the slots in order, so processes that resolved the same set agree; a slot
//! whose address changes starts with fresh health (its old address's state does not carry
//! over).
//!
//! Each process resolves on its own (nginx: every worker, as the master's first resolution is
//! inherited at fork); the addresses live in process memory, read lock-free on the request
//! path. Every value a slot ever held is kept until the config is dropped, so a reference
//! handed out stays valid as long as the config (the C ABI's rule for strings it returns).

use crate::config::{DnsConfig, DnsFamily};
use crate::headers::SharedStr;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// Host slots per STRICT_DNS name: addresses beyond this many are not used (logged).
pub const SLOTS_PER_NAME: usize = 8;

/// An address a slot holds, with its `ip:port` text.
#[derive(Debug)]
pub struct Resolved {
    pub addr: SocketAddr,
    pub text: SharedStr,
}

/// One host slot of a STRICT_DNS name.
#[derive(Debug)]
pub struct DnsSlot {
    /// The name and port this slot resolves (`name:port` as configured).
    pub name: String,
    pub port: u16,
    current: AtomicPtr<Resolved>,
    /// Every value published so far; owns what `current` points to. Boxed: a published
    /// value must not move when the Vec grows.
    #[allow(clippy::vec_box)]
    history: Mutex<Vec<Box<Resolved>>>,
}

// === impl DnsSlot ===

impl DnsSlot {
    pub(crate) fn new(name: &str, port: u16) -> DnsSlot {
        DnsSlot { name: name.to_string(), port, current: AtomicPtr::new(std::ptr::null_mut()), history: Mutex::new(Vec::new()) }
    }

    /// The slot's address now, if it has one.
    pub fn get(&self) -> Option<&Resolved> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: `p` is NULL or points into a Box in `self.history`, which is only ever
        // appended to and lives as long as `self`, so the reference is valid for `&self`.
        unsafe { p.as_ref() }
    }

    /// Publishes `addr` (or no address); true if it changed.
    pub(crate) fn set(&self, addr: Option<SocketAddr>) -> bool {
        if self.get().map(|r| r.addr) == addr {
            return false;
        }
        let p = match addr {
            None => std::ptr::null_mut(),
            Some(a) => {
                let Ok(mut h) = self.history.lock() else { return false };
                // A value this slot held before is reused (no growth when addresses flap).
                if !h.iter().any(|r| r.addr == a) {
                    h.push(Box::new(Resolved { addr: a, text: a.to_string().into() }));
                }
                // The pointer is taken after the Box is in place (it never moves again).
                h.iter().find(|r| r.addr == a).map_or(std::ptr::null_mut(), |r| &**r as *const Resolved as *mut Resolved)
            }
        };
        self.current.store(p, Ordering::Release);
        true
    }
}

/// Resolves `name:port` with the system resolver; the addresses of `family`, sorted.
pub fn resolve(name: &str, port: u16, family: DnsFamily) -> std::io::Result<Vec<SocketAddr>> {
    let mut out: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()?
        .filter(|a| match family {
            DnsFamily::V4Only => a.is_ipv4(),
            DnsFamily::V6Only => a.is_ipv6(),
            DnsFamily::All => true,
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Puts `addrs` (sorted) into `slots` in order: slot i holds the i-th address, the rest none.
/// The placement depends only on the resolved set, so every process that resolved the same
/// set agrees on it (nginx's workers resolve each for itself but share each slot's health and
/// counters). Returns the indexes (into `slots`) that changed.
pub fn assign(slots: &[&DnsSlot], addrs: &[SocketAddr]) -> Vec<usize> {
    if addrs.len() > slots.len() {
        tracing::warn!(name = %slots.first().map_or("", |s| s.name.as_str()), unused = addrs.len() - slots.len(), "STRICT_DNS: more addresses than host slots ({SLOTS_PER_NAME}); the rest are not used");
    }
    slots.iter().enumerate().filter(|(i, s)| s.set(addrs.get(*i).copied())).map(|(i, _)| i).collect()
}

/// Resolves one name into its slots; logs a failure (the slots keep their addresses, as
/// MOSN keeps its hosts when a refresh fails). Returns the changed slot indexes.
pub fn refresh(slots: &[&DnsSlot], cfg: &DnsConfig) -> Vec<usize> {
    let Some(first) = slots.first() else { return Vec::new() };
    match resolve(&first.name, first.port, cfg.family) {
        Ok(addrs) => assign(slots, &addrs),
        Err(e) => {
            tracing::warn!(name = %first.name, "STRICT_DNS: cannot resolve: {e}");
            Vec::new()
        }
    }
}

/// Told about every address change a refresh makes: `(cluster, host index, new address)`.
pub type AddressWatch = std::sync::Arc<dyn Fn(&super::Cluster, usize, Option<SocketAddr>) + Send + Sync>;

/// The thread that resolves a config's STRICT_DNS names again and again; stops when dropped.
pub struct DnsRefresher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for DnsRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsRefresher")
    }
}

impl DnsRefresher {
    /// Starts refreshing the `clusters` of type STRICT_DNS; `None` when there is none.
    pub fn start(clusters: &[std::sync::Arc<super::Cluster>], watch: AddressWatch) -> Option<DnsRefresher> {
        let dns: Vec<std::sync::Arc<super::Cluster>> = clusters.iter().filter(|c| c.dns.is_some()).cloned().collect();
        if dns.is_empty() {
            return None;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let spawned = std::thread::Builder::new().name("mosn-dns".into()).spawn(move || {
            let start = std::time::Instant::now();
            let mut due: Vec<std::time::Instant> =
                dns.iter().map(|c| start + c.dns.map_or(std::time::Duration::from_secs(5), |d| d.refresh)).collect();
            while !s2.load(Ordering::Relaxed) {
                let now = std::time::Instant::now();
                for (c, at) in dns.iter().zip(due.iter_mut()) {
                    if *at > now {
                        continue;
                    }
                    for (index, addr) in c.refresh_dns() {
                        tracing::info!(cluster = %c.name, host = index, ?addr, "STRICT_DNS: address changed");
                        watch(c, index, addr);
                    }
                    *at = std::time::Instant::now() + c.dns.map_or(std::time::Duration::from_secs(5), |d| d.refresh);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        match spawned {
            Ok(_) => Some(DnsRefresher { stop }),
            Err(e) => {
                tracing::error!("STRICT_DNS: cannot start the refresh thread: {e}");
                None
            }
        }
    }
}

impl Drop for DnsRefresher {
    fn drop(&mut self) {
        // The thread sees it within 100 ms (or after a resolution in progress); it holds its
        // clusters alive until then.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize) -> Vec<DnsSlot> {
        (0..n).map(|_| DnsSlot::new("svc.test", 80)).collect()
    }

    fn addrs(xs: &[&str]) -> Vec<SocketAddr> {
        xs.iter().map(|x| x.parse().unwrap()).collect()
    }

    fn held(s: &[DnsSlot]) -> Vec<Option<String>> {
        s.iter().map(|x| x.get().map(|r| r.text.to_string())).collect()
    }

    #[test]
    fn the_resolved_set_alone_decides_the_slots() {
        let s = slots(3);
        let refs: Vec<&DnsSlot> = s.iter().collect();
        assert_eq!(assign(&refs, &addrs(&["10.0.0.1:80", "10.0.0.2:80"])), [0, 1]);
        assert_eq!(held(&s), [Some("10.0.0.1:80".into()), Some("10.0.0.2:80".into()), None]);
        assert_eq!(assign(&refs, &addrs(&["10.0.0.1:80", "10.0.0.2:80"])), Vec::<usize>::new(), "no change");
        // .1 vanishes, .3 appears: slots hold the sorted set, whatever they held before.
        assert_eq!(assign(&refs, &addrs(&["10.0.0.2:80", "10.0.0.3:80"])), [0, 1]);
        assert_eq!(held(&s), [Some("10.0.0.2:80".into()), Some("10.0.0.3:80".into()), None]);
        // Another process that saw other sets in between ends the same.
        let other = slots(3);
        let orefs: Vec<&DnsSlot> = other.iter().collect();
        assign(&orefs, &addrs(&["10.0.0.9:80"]));
        assign(&orefs, &addrs(&["10.0.0.2:80", "10.0.0.3:80"]));
        assert_eq!(held(&other), held(&s));
        assert_eq!(assign(&refs, &[]), [0, 1]);
        assert_eq!(held(&s), [None, None, None]);
    }

    #[test]
    fn more_addresses_than_slots_use_the_first_ones() {
        let s = slots(2);
        let refs: Vec<&DnsSlot> = s.iter().collect();
        assign(&refs, &addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]));
        assert_eq!(held(&s), [Some("10.0.0.1:80".into()), Some("10.0.0.2:80".into())]);
    }

    #[test]
    fn a_flapping_address_reuses_its_value() {
        let s = DnsSlot::new("svc.test", 80);
        for _ in 0..100 {
            s.set(Some("10.0.0.1:80".parse().unwrap()));
            s.set(None);
            s.set(Some("10.0.0.2:80".parse().unwrap()));
        }
        assert_eq!(s.history.lock().unwrap().len(), 2);
    }

    #[test]
    fn localhost_resolves() {
        let a = resolve("localhost", 8080, DnsFamily::V4Only).unwrap();
        assert!(a.contains(&"127.0.0.1:8080".parse().unwrap()), "{a:?}");
        assert!(a.iter().all(SocketAddr::is_ipv4));
    }
}
