//! Active health checks (MOSN's `pkg/upstream/healthcheck`): probes run by the library
//! off the request path, their results in the hosts' shared words.
//!
//! One scheduler thread per config keeps every checked host's next due time and hands due
//! probes to a few prober threads (a dead host's timeout never delays the others' checks).
//! A probe is a TCP connect, or an HTTP/1.1 request whose status must fall in `codes`.
//! `unhealthy_threshold` failures in a row set the host's `FAILED_ACTIVE_HC`;
//! `healthy_threshold` passes in a row clear it (a passive ejection runs its course, as in
//! MOSN). Hosts start healthy (MOSN).
//!
//! Who runs the checks: on nginx exactly one worker (the results reach the others through
//! the shared zone); on Envoy the process, which also tells Envoy's cluster (see
//! [`HealthWatch`]). [`HealthChecker`] stops its threads when dropped.

use super::cluster::Cluster;
use super::host::{health, HostState};
use crate::config::{HealthCheckConfig, HealthCheckProtocol, HttpCheck};
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Told about every health change the checks make: `(cluster, host index, healthy)`.
pub type HealthWatch = Arc<dyn Fn(&Cluster, usize, bool) + Send + Sync>;

/// Probes run at once at most.
const PROBERS: usize = 4;

/// The running checks of one config.
pub struct HealthChecker {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker").field("threads", &self.threads.len()).finish()
    }
}

/// One host to check.
struct Target {
    cluster: Arc<Cluster>,
    index: usize,
}

/// A due probe, ordered by due time (earliest first).
struct Due {
    at: Instant,
    target: usize,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at)
    }
}

// === impl HealthChecker ===

impl HealthChecker {
    /// Starts checking every host of the `clusters` that have a `health_check`; `None` when
    /// none has. `watch` hears every health change.
    pub fn start(clusters: &[Arc<Cluster>], watch: Option<HealthWatch>) -> Option<HealthChecker> {
        let targets: Vec<Target> = clusters
            .iter()
            .filter(|c| c.health_check.is_some())
            .flat_map(|c| (0..c.hosts.len()).map(move |index| Target { cluster: c.clone(), index }))
            .collect();
        if targets.is_empty() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(targets);
        let (tx, rx) = mpsc::channel::<usize>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done_rx) = mpsc::channel::<usize>();
        let mut threads = Vec::new();
        for i in 0..PROBERS.min(targets.len()) {
            let (targets, rx, done, stop, watch) = (targets.clone(), rx.clone(), done_tx.clone(), stop.clone(), watch.clone());
            let t =
                std::thread::Builder::new().name(format!("mosn-hc-{i}")).spawn(move || prober(&targets, &rx, &done, &stop, watch.as_ref()));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!("health checks: cannot start a prober thread: {e}"),
            }
        }
        if threads.is_empty() {
            return None;
        }
        let (targets2, stop2) = (targets.clone(), stop.clone());
        match std::thread::Builder::new().name("mosn-hc".into()).spawn(move || scheduler(&targets2, &tx, &done_rx, &stop2)) {
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::error!("health checks: cannot start the scheduler thread: {e}");
                stop.store(true, Ordering::Relaxed);
                return None;
            }
        }
        tracing::info!(hosts = targets.len(), "active health checks started");
        Some(HealthChecker { stop, threads })
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        // The threads see the flag within one tick or one probe timeout; they hold their
        // clusters alive until then, so no join (a drop on a host's thread must not block).
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The scheduler: sends each target's index to the probers when due; a target is not
/// scheduled again until its probe is done.
fn scheduler(targets: &[Target], tx: &mpsc::Sender<usize>, done: &mpsc::Receiver<usize>, stop: &AtomicBool) {
    let now = Instant::now();
    let mut heap: BinaryHeap<Due> = targets.iter().enumerate().map(|(i, t)| Due { at: now + config(t).initial_delay, target: i }).collect();
    const TICK: Duration = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while heap.peek().is_some_and(|d| d.at <= now) {
            let Some(d) = heap.pop() else { break };
            if tx.send(d.target).is_err() {
                return;
            }
        }
        // Done probes come back to be scheduled one interval (plus jitter) later.
        let wait = heap.peek().map_or(TICK, |d| d.at.saturating_duration_since(now)).min(TICK);
        match done.recv_timeout(wait) {
            Ok(i) => {
                let c = config(&targets[i]);
                let jitter = if c.interval_jitter.is_zero() { Duration::ZERO } else { c.interval_jitter.mul_f64(fastrand::f64()) };
                heap.push(Due { at: Instant::now() + c.interval + jitter, target: i });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A prober: runs due probes and records their results.
fn prober(
    targets: &[Target],
    rx: &Mutex<mpsc::Receiver<usize>>,
    done: &mpsc::Sender<usize>,
    stop: &AtomicBool,
    watch: Option<&HealthWatch>,
) {
    loop {
        let next = {
            let Ok(rx) = rx.lock() else { return };
            rx.recv_timeout(Duration::from_millis(100))
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let i = match next {
            Ok(i) => i,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let t = &targets[i];
        let host = &t.cluster.hosts[t.index];
        // A STRICT_DNS slot without an address has nothing to check.
        let Some((addr, _)) = host.current() else {
            if done.send(i).is_err() {
                return;
            }
            continue;
        };
        let passed = probe(config(t), addr);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(healthy) = record(config(t), &host.state, passed) {
            tracing::warn!(cluster = %t.cluster.name, host = %host.address_text, healthy, "health check changed the host's health");
            if let Some(w) = watch {
                // A panicking watcher must not stop this prober (its targets would never be
                // checked again).
                let call = std::panic::AssertUnwindSafe(|| w(&t.cluster, t.index, healthy));
                if std::panic::catch_unwind(call).is_err() {
                    tracing::error!(cluster = %t.cluster.name, "health watcher panicked");
                }
            }
        }
        if done.send(i).is_err() {
            return;
        }
    }
}

fn config(t: &Target) -> &HealthCheckConfig {
    t.cluster.health_check.as_ref().expect("only clusters with a health_check are targets")
}

/// Folds one result into the host's streak; returns the new health when it changed.
pub fn record(cfg: &HealthCheckConfig, host: &HostState, passed: bool) -> Option<bool> {
    // The streak word holds passes in a row as a positive number, failures as a negative one.
    let prev = host.hc_streak().load(Ordering::Relaxed) as i64;
    let streak = if passed { prev.max(0) + 1 } else { prev.min(0) - 1 };
    host.hc_streak().store(streak as u64, Ordering::Relaxed);
    let flagged = host.flags() & health::FAILED_ACTIVE_HC != 0;
    if passed && streak >= i64::from(cfg.healthy_threshold) {
        let was_healthy = host.is_healthy();
        if flagged {
            host.set_flag(health::FAILED_ACTIVE_HC, false);
        }
        // A passive ejection runs its course (MOSN: the checks and fault_tolerance are apart).
        return (!was_healthy && host.is_healthy()).then_some(true);
    }
    if !passed && -streak >= i64::from(cfg.unhealthy_threshold) && !flagged {
        let was_healthy = host.is_healthy();
        host.set_flag(health::FAILED_ACTIVE_HC, true);
        return was_healthy.then_some(false);
    }
    None
}

/// One probe of `addr`: true if it passed.
pub fn probe(cfg: &HealthCheckConfig, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + cfg.timeout;
    match &cfg.protocol {
        HealthCheckProtocol::Tcp => TcpStream::connect_timeout(&addr, cfg.timeout).is_ok(),
        HealthCheckProtocol::Http(http) => {
            let deadline = http.timeout.map_or(deadline, |t| deadline.min(Instant::now() + t));
            http_probe(http, addr, deadline).unwrap_or(false)
        }
    }
}

/// An HTTP/1.1 request; passes if the status is in `codes`.
fn http_probe(http: &HttpCheck, addr: SocketAddr, deadline: Instant) -> std::io::Result<bool> {
    let addr = SocketAddr::new(addr.ip(), http.port.unwrap_or(addr.port()));
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mut s = TcpStream::connect_timeout(&addr, left())?;
    s.set_write_timeout(Some(left()))?;
    let host = http.domain.clone().unwrap_or_else(|| addr.to_string());
    let req = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mosn-extension-health-check\r\nConnection: close\r\n\r\n",
        http.method, http.path
    );
    s.write_all(req.as_bytes())?;
    // The status line is all we need: "HTTP/1.x NNN".
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        s.set_read_timeout(Some(left()))?;
        if Instant::now() >= deadline {
            return Ok(false);
        }
        match s.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    let status = std::str::from_utf8(&buf[..got])
        .ok()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.get(9..12))
        .and_then(|c| c.parse::<u16>().ok());
    Ok(status.is_some_and(|s| http.codes.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s))))
}
