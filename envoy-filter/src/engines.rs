//! The process-wide config registry: one [`ConfigSlot`] per MOSN config (a file path, or an
//! inline config's text), holding the config's current [`Engine`].
//!
//! The HTTP filter configs, the endpoint configs and every cluster config that name the same
//! `mosn.json` share one slot. Envoy creates configs on the main thread only, so a plain
//! mutex guards the map (never taken on the request path).
//!
//! Reload without restart (a file's slot): [`ConfigSlot::reload`] reads the file again,
//! builds a new engine, refuses it if the running Envoy can not take it (a listener or an
//! Envoy-level cluster setting changed, see [`reload_blockers`]), hands it the old engine's
//! live state, and swaps it in. Streams started before keep the engine they started with
//! (an `Arc`); the next stream gets the new one. A file watcher (a library thread polling
//! the file's modification time and size) and the admin API's `POST /api/v1/reload` call
//! it. A bad file is refused with its JSON paths, logged, and the old engine keeps serving.
//!
//! An inline config (`{"config": {...}}`, carried by xDS) never changes in place: a new
//! version arrives as a new Envoy config with a new slot; it takes over the state of the
//! slot the same Envoy cluster / listener used before (see [`ConfigSlot::inline`]).

use crate::log_error;
use crate::policy::{AdapterConfig, ConfigSource};
use mosn_extension::hostgen::envoy::{reload_blockers, ADDED_CLUSTERS};
use mosn_extension::Engine;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

/// Slots by key (a canonical file path, or `inline:` and the text). Weak: a slot lives as
/// long as a config of Envoy's holds it.
static SLOTS: Mutex<BTreeMap<String, Weak<ConfigSlot>>> = Mutex::new(BTreeMap::new());

/// The last inline slot per Envoy object (`cluster:<name>`, `listener:<name>`), so the next
/// version of an inline config takes over its state.
static LAST_INLINE: Mutex<BTreeMap<String, Weak<ConfigSlot>>> = Mutex::new(BTreeMap::new());

/// How long a reload waits for Envoy's clusters to add its new hosts, at most.
const STAGE_WAIT: Duration = Duration::from_secs(2);
/// Then how long the workers get to apply Envoy's host update before the swap.
const WORKER_GRACE: Duration = Duration::from_millis(100);

/// How often the file watcher looks at a config file.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// One MOSN config and its current engine.
pub struct ConfigSlot {
    /// The file, for a config given by path (`None`: inline).
    path: Option<PathBuf>,
    current: RwLock<Current>,
    /// Bumped by every reload that swapped the engine (readers cache per generation).
    generation: AtomicU64,
    /// The config Envoy's listeners and clusters were generated from (the first engine's).
    started: mosn_extension::config::MosnConfig,
    /// The Envoy clusters serving this config (their MOSN cluster name, or
    /// [`ADDED_CLUSTERS`]), told of each reload.
    clusters: Mutex<Vec<(String, Weak<ReloadHook>)>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// A reload's engine while Envoy's clusters get its new hosts, before the swap.
    staged: RwLock<Option<Arc<Engine>>>,
    /// Envoy clusters that have added the staged engine's hosts.
    acks: AtomicU64,
}

/// What an Envoy cluster runs after a reload is staged (it queues the host changes).
pub type ReloadHook = dyn Fn() + Send + Sync;

/// A validated reload: the new engine and the text it was built from.
pub type Prepared = (Arc<Engine>, Arc<str>);

/// What a reload swaps.
#[derive(Clone)]
pub struct Current {
    pub engine: Arc<Engine>,
    /// The config text the engine was built from.
    text: Arc<str>,
    /// MOSN clusters with no Envoy cluster of their own (a reload added them): the HTTP
    /// filter names [`ADDED_CLUSTERS`] for them. `None` when there are none (the usual case).
    pub added: Option<Arc<HashSet<String>>>,
    /// The file's modification time and size when it was read.
    stamp: Option<(SystemTime, u64)>,
}

impl Current {
    /// The Envoy cluster that serves MOSN cluster `name`.
    pub fn envoy_cluster<'a>(&self, name: &'a str) -> &'a str {
        envoy_cluster(self.added.as_deref(), name)
    }
}

/// The Envoy cluster that serves MOSN cluster `name` when a reload `added` these MOSN
/// clusters: [`ADDED_CLUSTERS`] for those, else the cluster of the same name.
pub fn envoy_cluster<'a>(added: Option<&HashSet<String>>, name: &'a str) -> &'a str {
    match added {
        Some(a) if a.contains(name) => ADDED_CLUSTERS,
        _ => name,
    }
}

// === Loading ===

/// The slot for `source`, loading and validating it the first time.
///
/// On failure returns one line per config error, e.g.
/// `cluster_manager.clusters[0].hosts[0].address: "127.0.0.1" has no port`; nothing is
/// cached, so a later config naming the same source reports the errors again.
pub fn slot_for(source: &ConfigSource) -> Result<Arc<ConfigSlot>, Vec<String>> {
    // A poisoned lock only means a panic elsewhere while holding it; the map is still valid.
    let mut map = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    let (key, path) = match source {
        // One slot per file, however the configs spell its path (relative, `//`, symlink).
        ConfigSource::Path(p) => {
            let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            (canonical.display().to_string(), Some(canonical))
        }
        ConfigSource::Inline(text) => (format!("inline:{text}"), None),
    };
    if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(s);
    }
    let (text, stamp) = match (source, &path) {
        (ConfigSource::Inline(t), _) => (t.clone(), None),
        (ConfigSource::Path(p), canonical) => read(canonical.as_ref().unwrap_or(p)).map_err(|e| vec![e])?,
    };
    let engine = Engine::from_json(&text).map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    let slot = Arc::new(ConfigSlot {
        path: path.clone(),
        started: engine.config.clone(),
        current: RwLock::new(Current { engine, text: text.into(), added: None, stamp }),
        generation: AtomicU64::new(0),
        clusters: Mutex::new(Vec::new()),
        reloading: Mutex::new(()),
        staged: RwLock::new(None),
        acks: AtomicU64::new(0),
    });
    map.insert(key, Arc::downgrade(&slot));
    if path.is_some() {
        watch(&slot);
    }
    Ok(slot)
}

/// The file's text with its modification time and size.
fn read(path: &std::path::Path) -> Result<(String, Option<(SystemTime, u64)>), String> {
    let stamp = std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, stamp))
}

/// Parses an Envoy `filter_config`/`cluster_config` (`name_key` is `"listener"` or
/// `"cluster"`) and returns it with its slot. On failure every error is logged to Envoy's
/// log (`what` names the config in the message) and `None` is returned, which makes Envoy
/// refuse the config.
pub fn load(bytes: &[u8], name_key: &str, what: &str) -> Option<(AdapterConfig, Arc<ConfigSlot>)> {
    let cfg = match AdapterConfig::parse(bytes, name_key) {
        Ok(c) => c,
        Err(e) => {
            log_error(&format!("mosn: config error: {what}: {e}"));
            return None;
        }
    };
    match slot_for(&cfg.source) {
        Ok(slot) => {
            if matches!(cfg.source, ConfigSource::Inline(_)) {
                slot.inline(&format!("{name_key}:{}", cfg.name.as_deref().unwrap_or("")));
            }
            Some((cfg, slot))
        }
        Err(errors) => {
            for e in &errors {
                log_error(&format!("mosn: config error: {e}"));
            }
            log_error(&format!("mosn: {} rejected ({} errors)", cfg.source, errors.len()));
            None
        }
    }
}

// === impl ConfigSlot ===

impl ConfigSlot {
    /// The current engine and what goes with it (one read lock; no allocation).
    pub fn current(&self) -> Current {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current engine.
    pub fn engine(&self) -> Arc<Engine> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).engine.clone()
    }

    /// Changes with every reload that swapped the engine.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The config is a file (Envoy's clusters were generated from its first version), not
    /// inline (xDS may bring clusters of another version than the listeners').
    pub fn is_file(&self) -> bool {
        self.path.is_some()
    }

    /// Registers an Envoy cluster of this config (`name`: its MOSN cluster, or
    /// [`ADDED_CLUSTERS`]); `on_reload` runs after each reload (from the reloading thread)
    /// while the cluster lives.
    pub fn add_cluster(&self, name: &str, on_reload: &Arc<ReloadHook>) {
        let mut cs = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        cs.retain(|(_, w)| w.strong_count() > 0);
        cs.push((name.to_string(), Arc::downgrade(on_reload)));
    }

    /// True if MOSN cluster `name` has an Envoy cluster of its own.
    pub fn has_envoy_cluster(&self, name: &str) -> bool {
        let cs = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        cs.iter().any(|(n, w)| n == name && w.strong_count() > 0)
    }

    /// The MOSN cluster names (and [`ADDED_CLUSTERS`]) that have an Envoy cluster now.
    fn own_clusters(&self) -> HashSet<String> {
        let cs = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        cs.iter().filter(|(_, w)| w.strong_count() > 0).map(|(n, _)| n.clone()).collect()
    }

    /// An inline config's slot for Envoy object `who`: takes over the state of the slot
    /// `who` used before (the previous version xDS sent), once.
    fn inline(self: &Arc<Self>, who: &str) {
        let mut last = LAST_INLINE.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|_, w| w.strong_count() > 0);
        let before = last.insert(who.to_string(), Arc::downgrade(self)).and_then(|w| w.upgrade());
        let Some(before) = before.filter(|b| !Arc::ptr_eq(b, self)) else { return };
        // Only a slot no stream has run on yet takes over state (a second Envoy object
        // naming the same new version finds it running already).
        let me = self.engine();
        if me.listeners.iter().all(|l| l.counters.stats().request_total == 0) {
            me.inherit_state(&before.engine());
            tracing::info!("inline MOSN config: a new version took over the previous one's state");
        }
    }

    /// A reload's engine staged (its hosts being added to Envoy), if any.
    pub fn staged(&self) -> Option<Arc<Engine>> {
        self.staged.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An Envoy cluster added the staged engine's hosts (main thread).
    pub fn ack(&self) {
        self.acks.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads the config file again and, if it changed and the running Envoy can take it,
    /// swaps the new engine in (see [`ConfigSlot::prepare`] and [`ConfigSlot::commit`]).
    /// `Ok(false)`: unchanged. On error the old engine keeps serving; each error line names
    /// its JSON path (also logged). Not on an Envoy thread: it waits for the main thread.
    pub fn reload(&self) -> Result<bool, Vec<String>> {
        match self.prepare()? {
            Some(prepared) => {
                self.commit(prepared);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The first half of a reload, quick enough for any thread: reads and validates the
    /// file and checks that the running Envoy can take it. `Ok(None)`: unchanged. Errors are
    /// logged.
    pub fn prepare(&self) -> Result<Option<Prepared>, Vec<String>> {
        let result = self.try_prepare();
        if let Err(errors) = &result {
            for e in errors {
                log_error(&format!("mosn: reload refused: {e}"));
            }
            log_error("mosn: reload refused; the running config keeps serving");
        }
        result
    }

    fn try_prepare(&self) -> Result<Option<Prepared>, Vec<String>> {
        let Some(path) = &self.path else {
            return Err(vec!["an inline config changes through xDS (a new Envoy config), not by reload".into()]);
        };
        let old = self.current();
        let (text, stamp) = read(path).map_err(|e| vec![e])?;
        // The same file is not read again by the watcher until it changes.
        self.current.write().unwrap_or_else(|e| e.into_inner()).stamp = stamp;
        if *text == *old.text {
            return Ok(None);
        }
        // No side effect yet (log level, notes): those come with the swap.
        let engine = Engine::load(&text).map(Arc::new).map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        let blockers = reload_blockers(&self.started, &engine.config, &self.own_clusters());
        if !blockers.is_empty() {
            return Err(blockers.into_iter().map(|(p, why)| format!("{p}: {why}")).collect());
        }
        Ok(Some((engine, text.into())))
    }

    /// The second half: stages `engine` so Envoy's clusters add its new hosts (main thread),
    /// waits for them and for the workers to see them, then hands it the old engine's live
    /// state and swaps it in. Streams started before keep the old engine.
    pub fn commit(&self, (engine, text): Prepared) {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let hooks: Vec<_> = self.clusters.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(|(_, w)| w.upgrade()).collect();
        *self.staged.write().unwrap_or_else(|e| e.into_inner()) = Some(engine.clone());
        let before = self.acks.load(Ordering::Acquire);
        for hook in &hooks {
            hook();
        }
        let deadline = std::time::Instant::now() + STAGE_WAIT;
        while self.acks.load(Ordering::Acquire) < before + hooks.len() as u64 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(WORKER_GRACE);
        let own = self.own_clusters();
        let old = self.current();
        engine.inherit_state(&old.engine);
        let added: HashSet<String> = engine.clusters.iter().map(|c| c.name.to_string()).filter(|n| !own.contains(n)).collect();
        let added = (!added.is_empty()).then(|| Arc::new(added));
        let had_checks = old.engine.clusters.iter().any(|c| c.health_check.is_some());
        {
            let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
            let stamp = cur.stamp;
            *cur = Current { engine: engine.clone(), text, added, stamp };
        }
        *self.staged.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
        engine.announce();
        // The old engine's checks stop; the new one's run (streams on the old engine still
        // see its hosts' last health).
        old.engine.stop_background();
        if had_checks || engine.clusters.iter().any(|c| c.health_check.is_some()) {
            engine.start_health_checks();
        }
        if engine.clusters.iter().any(|c| c.dns.is_some()) {
            // A STRICT_DNS address change of the new config reaches Envoy as a reload does:
            // its clusters add the new address, and sweep the old one a little later.
            let hooks: Vec<Weak<ReloadHook>> =
                self.clusters.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(_, w)| w.clone()).collect();
            engine.watch_addresses(Arc::new(move |_, _, _| hooks.iter().filter_map(Weak::upgrade).for_each(|hook| hook())));
            engine.start_dns_refresh();
        }
        tracing::info!(config = %self.path.as_deref().map_or("inline".into(), |p| p.display().to_string()), "mosn.json reloaded");
    }

    /// True if the file's modification time or size differ from what was read last.
    fn file_changed(&self) -> bool {
        let Some(path) = &self.path else { return false };
        let now = std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        now.is_some() && now != self.current.read().unwrap_or_else(|e| e.into_inner()).stamp
    }
}

/// Starts the slot's file watcher: a thread that reloads when the file changes, and ends
/// with the slot.
fn watch(slot: &Arc<ConfigSlot>) {
    let weak = Arc::downgrade(slot);
    let spawned = std::thread::Builder::new().name("mosn-reload".into()).spawn(move || loop {
        std::thread::sleep(WATCH_INTERVAL);
        let Some(slot) = weak.upgrade() else { return };
        if slot.file_changed() {
            // A panic while reloading stays on this thread; the old engine keeps serving.
            let _ = crate::guard::catch("reload", || slot.reload());
        }
    });
    if let Err(e) = spawned {
        log_error(&format!("mosn: no config file watcher ({e}); reload through the admin API"));
    }
}

/// Reloads every file-based config (the admin API's `POST /api/v1/reload`): the first error
/// list, or how many configs changed.
pub fn reload_all() -> Result<usize, Vec<String>> {
    let slots: Vec<Arc<ConfigSlot>> = SLOTS.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(Weak::upgrade).collect();
    let mut changed = 0;
    for s in slots.iter().filter(|s| s.path.is_some()) {
        if let Some(prepared) = s.prepare()? {
            // The swap waits for Envoy's main thread: not on this (worker) thread.
            let s = s.clone();
            let spawned = std::thread::Builder::new().name("mosn-reload-commit".into()).spawn(move || s.commit(prepared));
            spawned.map_err(|e| vec![format!("no thread to finish the reload: {e}")])?;
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("mosn-envoy-test-{}-{name}.json", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = r#"{
      "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
          "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "s1"}}]}]}],
        "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true, "filter_chains": [{"filters": [{"type": "proxy",
          "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
      "cluster_manager": {"clusters": [{"name": "s1", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
        "hosts": [{"address": "127.0.0.1:2"}]}]}
    }"#;

    fn path_slot(p: &std::path::Path) -> Result<Arc<ConfigSlot>, Vec<String>> {
        slot_for(&ConfigSource::Path(p.to_path_buf()))
    }

    #[test]
    fn one_slot_per_path_however_it_is_spelled() {
        let p = write("good", GOOD);
        let a = path_slot(&p).unwrap();
        let b = path_slot(&p.parent().unwrap().join(".").join(p.file_name().unwrap())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.engine().cluster("s1").is_some());
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn errors_name_the_json_path() {
        let p = write("bad", &GOOD.replace("127.0.0.1:2", "127.0.0.1"));
        let Err(errs) = path_slot(&p) else { panic!("bad config accepted") };
        assert!(errs.iter().any(|e| e.contains("cluster_manager.clusters[0].hosts[0].address")), "{errs:?}");
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn a_reload_swaps_the_engine_and_a_bad_file_keeps_the_old_one() {
        let p = write("reload", GOOD);
        let slot = path_slot(&p).unwrap();
        let hook: Arc<ReloadHook> = Arc::new(|| {});
        slot.add_cluster("s1", &hook);
        let first = slot.engine();
        assert_eq!(slot.reload(), Ok(false), "unchanged");
        std::fs::write(&p, GOOD.replace("127.0.0.1:2", "127.0.0.1:3")).unwrap();
        assert_eq!(slot.reload(), Ok(true));
        assert!(!Arc::ptr_eq(&first, &slot.engine()));
        assert_eq!(slot.generation(), 1);
        assert_eq!(&*slot.engine().cluster("s1").unwrap().hosts[0].address_text, "127.0.0.1:3");
        // A bad file: refused with its path, the engine stays.
        std::fs::write(&p, GOOD.replace("127.0.0.1:2", "127.0.0.1")).unwrap();
        let errs = slot.reload().unwrap_err();
        assert!(errs.iter().any(|e| e.contains("cluster_manager.clusters[0].hosts[0].address")), "{errs:?}");
        assert_eq!(&*slot.engine().cluster("s1").unwrap().hosts[0].address_text, "127.0.0.1:3");
        // A new cluster with no Envoy cluster to serve it: refused; with one, served by it.
        let two = GOOD.replace(
            r#""hosts": [{"address": "127.0.0.1:2"}]}]"#,
            r#""hosts": [{"address": "127.0.0.1:2"}]}, {"name": "s2", "hosts": [{"address": "127.0.0.1:4"}]}]"#,
        );
        std::fs::write(&p, &two).unwrap();
        assert!(slot.reload().unwrap_err().iter().any(|e| e.starts_with("cluster_manager.clusters[1]")));
        slot.add_cluster(ADDED_CLUSTERS, &hook);
        assert_eq!(slot.reload(), Ok(true));
        let cur = slot.current();
        assert_eq!((cur.envoy_cluster("s1"), cur.envoy_cluster("s2")), ("s1", ADDED_CLUSTERS));
        std::fs::remove_file(p).ok();
    }

    #[test]
    fn a_new_inline_version_takes_over_the_state_of_the_one_before() {
        let cfg = |host: &str, key: &str| {
            let mosn: serde_json::Value = serde_json::from_str(&GOOD.replace("127.0.0.1:2", host)).unwrap();
            let name = if key == "cluster" { "s1" } else { "l" };
            serde_json::json!({ "config": mosn, key: name }).to_string()
        };
        let (_, v1) = load(cfg("127.0.0.1:2", "cluster").as_bytes(), "cluster", "test").unwrap();
        drop(v1.engine().new_stream(0, None));
        drop(v1.engine().new_stream(0, None));
        // xDS sends the next version (a host added): a new slot, with the counts of the first.
        let (_, v2) = load(cfg("127.0.0.1:2\"}, {\"address\": \"127.0.0.1:3", "cluster").as_bytes(), "cluster", "test").unwrap();
        assert!(!Arc::ptr_eq(&v1, &v2));
        assert_eq!(v2.engine().cluster("s1").unwrap().hosts.len(), 2);
        assert_eq!(v2.engine().listeners[0].counters.stats().request_total, 2);
        // The same version named again (the listener's config) is the same slot, state untouched.
        let (_, again) = load(cfg("127.0.0.1:2\"}, {\"address\": \"127.0.0.1:3", "listener").as_bytes(), "listener", "test").unwrap();
        assert!(Arc::ptr_eq(&v2, &again));
    }
}
