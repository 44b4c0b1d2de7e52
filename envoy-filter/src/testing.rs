//! Test doubles (compiled for `cargo test` only): recording fakes of the host traits, a
//! scripted core filter, and a small MOSN config.
//!
//! The fakes record every call in order and keep a header map that the calls really change,
//! so a test can assert both "what was called" and "what Envoy would forward".

use crate::host::{BodyKind, CalloutRefused, ClusterHost, ConfigHost, HeaderKind, HostHandle, HostSpec, HttpHost, LbHost, Scheduler};
use mosn_extension::filter::{FilterStatus, LocalReply, ReceiveContext, SendContext, StreamFilter};
use mosn_extension::headers::{self, Header, Lookup};
use mosn_extension::wake::Waker;
use mosn_extension::Engine;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

// === Captured log lines ===

thread_local! {
    static LOGS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records an error line of this thread (what `crate::log_error` does in tests).
pub fn record_log(line: &str) {
    LOGS.with(|l| l.borrow_mut().push(line.to_string()));
}

/// The error lines logged on this thread so far.
pub fn logs() -> Vec<String> {
    LOGS.with(|l| l.borrow().clone())
}

// === FakeHttp ===

/// One call a host received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Set(HeaderKind, String, String),
    Add(HeaderKind, String, String),
    Remove(HeaderKind, String),
    Reply {
        status: u16,
        body: String,
        details: String,
        headers: Vec<(String, String)>,
    },
    /// The route was told to name this cluster (`route_to_cluster`).
    RouteTo(String),
    Metadata(String, String, String),
    FilterState(String, String),
    OverrideHost(String),
    SchedulerNew,
    Commit(u64),
    SchedulerDelete,
    ContinueDecoding,
    ReplaceBody(Vec<u8>),
    ReplaceResponseBody(Vec<u8>),
}

/// A recording [`HttpHost`] with scripted headers, body chunks and scheduler.
pub struct FakeHttp {
    pub request: Vec<(String, String)>,
    pub request_trailers: Vec<(String, String)>,
    pub response: Vec<(String, String)>,
    /// Chunks served as Envoy's buffered request body.
    pub buffered: Vec<Vec<u8>>,
    /// The chunk of the current body hook.
    pub received: Vec<u8>,
    /// Chunks served as Envoy's buffered response body.
    pub response_body: Vec<Vec<u8>>,
    pub received_is_buffered: bool,
    pub filter_state: HashMap<String, String>,
    /// `scheduler_new` returns `None`.
    pub no_scheduler: bool,
    /// What Envoy reports as the client's address (`source.address`).
    pub source_address: Option<String>,
    /// `response_code` answers the response's `:status` (Envoy records it before the
    /// encoder filters run); false: it answers nothing (the adapter reads the headers).
    pub records_response_code: bool,
    /// Every call, in order (shared with the scheduler, which commits from other threads).
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// The cluster the route names now (`route_to_cluster`).
    pub routed: Option<String>,
    /// The route is not this module's cluster specifier: `route_to_cluster` is not taken.
    pub route_without_specifier: bool,
    /// The host the router's first attempt goes to (`set_upstream_override_host`).
    pub override_host: Option<String>,
    /// `set_upstream_override_host` is refused.
    pub refuse_override_host: bool,
}

impl FakeHttp {
    /// A host whose request has these headers.
    pub fn new(request: &[(&str, &str)]) -> FakeHttp {
        FakeHttp {
            request: request.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            request_trailers: Vec::new(),
            response: Vec::new(),
            buffered: Vec::new(),
            received: Vec::new(),
            response_body: Vec::new(),
            received_is_buffered: false,
            filter_state: HashMap::new(),
            no_scheduler: false,
            source_address: Some("127.0.0.1:40000".into()),
            records_response_code: true,
            calls: Arc::new(Mutex::new(Vec::new())),
            routed: None,
            route_without_specifier: false,
            override_host: None,
            refuse_override_host: false,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn clear_calls(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// The local replies sent, as `(status, details)`.
    pub fn replies(&self) -> Vec<(u16, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Reply { status, details, .. } => Some((status, details)),
                _ => None,
            })
            .collect()
    }

    /// Every value of a request header, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.request.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    /// Every value of a response header.
    pub fn response_values(&self, name: &str) -> Vec<String> {
        self.response.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    fn record(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }

    fn map(&mut self, kind: HeaderKind) -> &mut Vec<(String, String)> {
        match kind {
            HeaderKind::Request => &mut self.request,
            HeaderKind::RequestTrailers => &mut self.request_trailers,
            HeaderKind::Response => &mut self.response,
        }
    }

    fn map_ref(&self, kind: HeaderKind) -> &Vec<(String, String)> {
        match kind {
            HeaderKind::Request => &self.request,
            HeaderKind::RequestTrailers => &self.request_trailers,
            HeaderKind::Response => &self.response,
        }
    }
}

impl HttpHost for FakeHttp {
    fn header(&self, kind: HeaderKind, name: &str) -> Lookup<'_> {
        headers::lookup(self.map_ref(kind).iter().map(|(k, v)| Header { name: k.as_bytes(), value: v.as_bytes() }), name)
    }
    fn for_each_header(&self, kind: HeaderKind, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in self.map_ref(kind) {
            f(k.as_bytes(), v.as_bytes())
        }
    }
    fn read_headers<'s>(&'s self, kind: HeaderKind, out: &mut crate::host::HeaderList<'s>) {
        out.extend(self.map_ref(kind).iter().map(|(k, v)| Header { name: k.as_bytes(), value: v.as_bytes() }));
    }
    fn set_header(&mut self, kind: HeaderKind, name: &str, value: &str) {
        self.record(Call::Set(kind, name.into(), value.into()));
        let map = self.map(kind);
        map.retain(|(k, _)| k != name);
        map.push((name.into(), value.into()));
    }
    fn add_header(&mut self, kind: HeaderKind, name: &str, value: &str) {
        self.record(Call::Add(kind, name.into(), value.into()));
        self.map(kind).push((name.into(), value.into()));
    }
    fn remove_header(&mut self, kind: HeaderKind, name: &str) {
        self.record(Call::Remove(kind, name.into()));
        self.map(kind).retain(|(k, _)| k != name);
    }
    fn send_local_reply(&mut self, r: &LocalReply) {
        self.record(Call::Reply {
            status: r.status,
            body: r.body.to_string(),
            details: r.details.to_string(),
            headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        });
    }
    fn route_to_cluster(&mut self, cluster: &str) -> bool {
        self.record(Call::RouteTo(cluster.into()));
        if self.route_without_specifier {
            return false;
        }
        self.routed = Some(cluster.into());
        true
    }
    fn set_dynamic_metadata(&mut self, namespace: &str, key: &str, value: &str) {
        self.record(Call::Metadata(namespace.into(), key.into(), value.into()));
    }
    fn set_filter_state(&mut self, key: &str, value: &str) -> bool {
        self.record(Call::FilterState(key.into(), value.into()));
        self.filter_state.insert(key.into(), value.into());
        true
    }
    fn set_upstream_override_host(&mut self, address: &str) -> bool {
        self.record(Call::OverrideHost(address.into()));
        if self.refuse_override_host {
            return false;
        }
        self.override_host = Some(address.into());
        true
    }
    fn filter_state(&self, key: &str) -> Option<&[u8]> {
        self.filter_state.get(key).map(|v| v.as_bytes())
    }
    fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>> {
        self.record(Call::SchedulerNew);
        if self.no_scheduler {
            return None;
        }
        Some(Arc::new(FakeScheduler { calls: self.calls.clone() }))
    }
    fn continue_decoding(&mut self) {
        self.record(Call::ContinueDecoding);
    }
    fn request_body(&self, kind: BodyKind, out: &mut Vec<u8>) {
        match kind {
            BodyKind::Buffered => self.buffered.iter().for_each(|c| out.extend_from_slice(c)),
            BodyKind::Received => out.extend_from_slice(&self.received),
            BodyKind::ResponseBuffered => self.response_body.iter().for_each(|c| out.extend_from_slice(c)),
            BodyKind::ResponseReceived => {}
        }
    }
    fn received_body_is_buffered(&self) -> bool {
        self.received_is_buffered
    }
    fn received_response_body_is_buffered(&self) -> bool {
        false
    }
    fn replace_response_body(&mut self, body: &[u8]) {
        self.record(Call::ReplaceResponseBody(body.to_vec()));
        self.response_body = vec![body.to_vec()];
    }
    fn replace_request_body(&mut self, body: &[u8]) {
        self.record(Call::ReplaceBody(body.to_vec()));
        let chunk = !self.received.is_empty() && !self.received_is_buffered;
        self.received.clear();
        self.buffered.clear();
        if chunk {
            self.received = body.to_vec();
        } else {
            self.buffered.push(body.to_vec());
        }
    }
    fn buffer_limit(&self) -> u64 {
        1 << 20
    }
    fn source_address(&self) -> Option<&[u8]> {
        self.source_address.as_deref().map(str::as_bytes)
    }
    fn response_code(&self) -> Option<u16> {
        let status = self.response.iter().find(|(k, _)| k == ":status")?;
        self.records_response_code.then(|| status.1.parse().ok()).flatten()
    }
}

/// Records commits and the delete into its host's call list.
struct FakeScheduler {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Scheduler for FakeScheduler {
    fn commit(&self, event_id: u64) {
        self.calls.lock().unwrap().push(Call::Commit(event_id));
    }
    fn delete(&self) {
        self.calls.lock().unwrap().push(Call::SchedulerDelete);
    }
}

// === FakeCluster / FakeLb ===

/// One host as [`FakeCluster`] saw it: address, weight, `(filter, key, value)` triples.
pub type AddedHost = (String, u32, Vec<(String, String, String)>);

/// A recording [`ClusterHost`]: the i-th host ever added gets handle `base + i`.
#[derive(Default)]
pub struct FakeCluster {
    pub base: usize,
    /// `add_hosts` fails (Envoy refused an address).
    pub refuse: bool,
    /// An address the cluster already has gets no host of its own (newer Envoys).
    pub dedup: bool,
    /// Every host `add_hosts` was given, in order.
    pub added: Vec<AddedHost>,
    /// The hosts Envoy has now: address and handle.
    pub live: Vec<(String, HostHandle)>,
    /// The host changes, in order: `add <address> -> <handle or none>`, `remove <handle>`,
    /// `health <handle> <healthy>`.
    pub ops: Vec<String>,
    pub pre_init_completed: usize,
    /// Envoy runs as `--mode validate`.
    pub validation: bool,
    /// `scheduler_new` returns `None`.
    pub no_scheduler: bool,
    /// `update_host_health` calls, in order.
    pub health: Vec<(HostHandle, bool)>,
    /// The cluster scheduler's calls (`SchedulerNew`, `Commit`, `SchedulerDelete`); shared
    /// with the scheduler, which the checker thread commits.
    pub sched: Arc<Mutex<Vec<Call>>>,
}

impl FakeCluster {
    pub fn sched_calls(&self) -> Vec<Call> {
        self.sched.lock().unwrap().clone()
    }
    /// Commits made so far.
    pub fn commits(&self) -> usize {
        self.sched_calls().iter().filter(|c| matches!(c, Call::Commit(_))).count()
    }
    /// The addresses Envoy has now, in the order they were added.
    pub fn live_addresses(&self) -> Vec<&str> {
        self.live.iter().map(|(a, _)| a.as_str()).collect()
    }
    /// What a worker's LB finds by address once it applied every update so far.
    pub fn worker_view(&self) -> HashMap<String, HostHandle> {
        let mut m = HashMap::new();
        for (a, h) in &self.live {
            m.entry(a.clone()).or_insert(*h);
        }
        m
    }
}

impl ClusterHost for FakeCluster {
    fn add_hosts(&mut self, hosts: &[HostSpec<'_>], metadata_filter: &str) -> Option<Vec<Option<HostHandle>>> {
        if self.refuse {
            return None;
        }
        let mut out = Vec::with_capacity(hosts.len());
        for h in hosts {
            let md = h.metadata.iter().map(|(k, v)| (metadata_filter.to_string(), k.clone(), v.clone())).collect();
            self.added.push((h.address.to_string(), h.weight, md));
            let handle = HostHandle(self.base + self.added.len() - 1);
            let known = self.live.iter().any(|(a, _)| a == h.address);
            let got = (!(self.dedup && known)).then_some(handle);
            if let Some(handle) = got {
                self.live.push((h.address.to_string(), handle));
            }
            self.ops.push(format!("add {} -> {}", h.address, got.map_or("none".to_string(), |h| format!("{:#x}", h.0))));
            out.push(got);
        }
        Some(out)
    }
    fn remove_hosts(&mut self, hosts: &[HostHandle]) -> usize {
        let before = self.live.len();
        for h in hosts {
            self.ops.push(format!("remove {:#x}", h.0));
            self.live.retain(|(_, l)| l != h);
        }
        before - self.live.len()
    }
    fn pre_init_complete(&mut self) {
        self.pre_init_completed += 1;
    }
    fn is_validation_mode(&self) -> bool {
        self.validation
    }
    fn scheduler_new(&mut self) -> Option<Arc<dyn Scheduler>> {
        self.sched.lock().unwrap().push(Call::SchedulerNew);
        if self.no_scheduler {
            return None;
        }
        Some(Arc::new(FakeScheduler { calls: self.sched.clone() }))
    }
    fn update_host_health(&mut self, host: HostHandle, healthy: bool) -> bool {
        self.health.push((host, healthy));
        self.ops.push(format!("health {:#x} {healthy}", host.0));
        self.live.iter().any(|(_, h)| *h == host)
    }
}

/// A scripted [`LbHost`]: Envoy's healthy hosts, the hosts it finds by address, the
/// request's filter state, and the hosts Envoy's retry predicate rejects.
#[derive(Default)]
pub struct FakeLb {
    pub healthy: Vec<HostHandle>,
    /// The worker's hosts by `ip:port` (see [`FakeCluster::worker_view`]).
    pub by_address: HashMap<String, HostHandle>,
    /// The addresses looked up, in order.
    pub lookups: RefCell<Vec<String>>,
    pub context: bool,
    pub filter_state: HashMap<String, Vec<u8>>,
    /// The request headers the context shows (`downstream_header`).
    pub headers: HashMap<String, String>,
    pub rejected: Vec<HostHandle>,
    /// `healthy_host_count` panics (a bug in the LB path).
    pub panic: bool,
    /// Healthy indexes the predicate was asked about.
    pub asked: RefCell<Vec<usize>>,
    /// The details of `end_without_host` calls.
    pub ended: RefCell<Vec<&'static str>>,
    pub count_calls: Cell<usize>,
}

impl FakeLb {
    /// An LB with these healthy hosts and a context carrying `filter_state`.
    pub fn new(healthy: Vec<HostHandle>, filter_state: &HashMap<String, String>) -> FakeLb {
        FakeLb {
            healthy,
            context: true,
            filter_state: filter_state.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect(),
            ..FakeLb::default()
        }
    }
}

impl LbHost for FakeLb {
    fn healthy_host_count(&self) -> usize {
        assert!(!self.panic, "fake LB panics on purpose");
        self.count_calls.set(self.count_calls.get() + 1);
        self.healthy.len()
    }
    fn healthy_host(&self, index: usize) -> Option<HostHandle> {
        self.healthy.get(index).copied()
    }
    fn find_host_by_address(&self, address: &str) -> Option<HostHandle> {
        self.lookups.borrow_mut().push(address.to_string());
        self.by_address.get(address).copied()
    }
    fn has_context(&self) -> bool {
        self.context
    }
    fn filter_state(&self, key: &str) -> Option<&[u8]> {
        if !self.context {
            return None;
        }
        self.filter_state.get(key).map(Vec::as_slice)
    }
    fn downstream_header(&self, name: &str) -> Option<&[u8]> {
        if !self.context {
            return None;
        }
        self.headers.get(name).map(|v| v.as_bytes())
    }
    fn should_select_another_host(&self, index: usize) -> bool {
        self.asked.borrow_mut().push(index);
        self.context && self.rejected.contains(&self.healthy[index])
    }
    fn end_without_host(&self, details: &'static str) -> bool {
        self.ended.borrow_mut().push(details);
        self.context
    }
}

// === FakeConfig ===

/// One HTTP callout a [`FakeConfig`] was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Callout {
    /// Every value of a header, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A recording [`ConfigHost`]: callouts are numbered from 1; clusters in `missing` are
/// refused (`ClusterNotFound`).
#[derive(Default)]
pub struct FakeConfig {
    pub callouts: Vec<Callout>,
    pub missing: Vec<String>,
    /// The refused callouts' clusters.
    pub refused: Vec<String>,
}

impl ConfigHost for FakeConfig {
    fn http_callout(&mut self, cluster: &str, headers: &[(&[u8], &[u8])], body: &[u8], timeout_ms: u64) -> Result<u64, CalloutRefused> {
        if self.missing.iter().any(|m| m == cluster) {
            self.refused.push(cluster.to_string());
            return Err(CalloutRefused::ClusterNotFound);
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.callouts.push(Callout {
            cluster: cluster.to_string(),
            headers: headers.iter().map(|(k, v)| (text(k), text(v))).collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        Ok(self.callouts.len() as u64)
    }
}

/// A scheduler that records into a call list of its own (a config's).
pub fn recording_scheduler() -> (Arc<dyn Scheduler>, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    (Arc::new(FakeScheduler { calls: calls.clone() }), calls)
}

// === A scripted core filter ===

/// A receive + send filter driven by request headers (tests only):
/// - `x-test-panic: now` panics; `x-test-panic: resume` panics when resumed;
/// - `x-test-wait` waits once (the waker goes to [`ScriptFilter::waker`]);
/// - `x-test-reply` answers 418 with a header;
/// - `x-test-ops` records SET a=1, ADD a=2, REMOVE b, SET c=3, and SET x-mosn-cluster /
///   x-envoy-max-retries (which the adapter must override);
/// - with `needs_body`, a body containing `reject` is answered 403, others get
///   `x-body-len`; a body starting with `replace` becomes `replaced!`; trailer `x-trailer`
///   is copied to header `x-seen-trailer`;
/// - on the response, an `x-test-panic` response header panics, otherwise `x-sent: 1`.
pub struct ScriptFilter {
    pub needs_body: bool,
    pub waker: Arc<Mutex<Option<Waker>>>,
}

impl StreamFilter for ScriptFilter {
    fn name(&self) -> &'static str {
        "test_script"
    }
    fn needs_body(&self) -> bool {
        self.needs_body
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        match cx.header("x-test-panic").first() {
            Some(b"now") => panic!("script filter panics on purpose"),
            Some(b"resume") if cx.resumed() => panic!("script filter panics on resume"),
            _ => {}
        }
        if cx.header("x-test-wait") != Lookup::Missing && !cx.resumed() {
            *self.waker.lock().unwrap() = Some(cx.waker());
            return FilterStatus::Wait;
        }
        if cx.header("x-test-reply") != Lookup::Missing {
            let mut r = LocalReply::new(418, "teapot", "test_reply");
            r.headers.push(("x-why".into(), "test".into()));
            cx.local_reply(r);
            return FilterStatus::LocalReply;
        }
        if cx.header("x-test-ops") != Lookup::Missing {
            cx.set_header("a".into(), "1".into());
            cx.add_header("a".into(), "2".into());
            cx.remove_header("b".into());
            cx.set_header("c".into(), "3".into());
            cx.set_header("x-mosn-cluster".into(), "forged".into());
            cx.set_header("x-envoy-max-retries".into(), "99".into());
        }
        if self.needs_body {
            let body = cx.body().unwrap_or_default().to_vec();
            if body.windows(6).any(|w| w == b"reject") {
                cx.local_reply(LocalReply::new(403, "rejected", "test_body_reject"));
                return FilterStatus::LocalReply;
            }
            cx.set_header("x-body-len".into(), body.len().to_string().into());
            if body.starts_with(b"replace") {
                cx.set_body(b"replaced!".to_vec());
            }
            if let Some(t) = cx.trailers().and_then(|t| t.get("x-trailer").first().map(<[u8]>::to_vec)) {
                cx.set_header("x-seen-trailer".into(), String::from_utf8_lossy(&t).into_owned().into());
            }
        }
        FilterStatus::Continue
    }
    fn sends(&self) -> bool {
        true
    }
    fn on_send(&self, cx: &mut SendContext<'_>) -> FilterStatus {
        if cx.header("x-test-panic") != Lookup::Missing {
            panic!("script filter panics on the response");
        }
        cx.set_header("x-sent".into(), "1".into());
        FilterStatus::Continue
    }
}

/// Routes: `x-route: b` → cluster `b` (one host, no retry policy); `/direct` → 403;
/// anything else → cluster `a` (three hosts, 3s timeout, 2 retries, 1s per try). The
/// `metadata` filter maps header `uid` to the unit.
pub const CONFIG: &str = r#"{
  "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
      {"match": {"prefix": "/", "headers": [{"name": "x-route", "value": "b"}]}, "route": {"cluster_name": "b"}},
      {"match": {"prefix": "/direct"}, "direct_response": {"status": 403, "body": "no"}},
      {"match": {"prefix": "/"}, "route": {"cluster_name": "a", "timeout": "3s",
        "retry_policy": {"retry_on": true, "num_retries": 2, "retry_timeout": "1s"}}}]}]}],
    "listeners": [{"name": "l", "address": "127.0.0.1:1", "bind_port": true,
      "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}],
      "stream_filters": [{"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}}]}]}],
  "cluster_manager": {"clusters": [
    {"name": "a", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
     "hosts": [{"address": "127.0.0.1:11"}, {"address": "127.0.0.1:12"}, {"address": "127.0.0.1:13"}]},
    {"name": "b", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": "127.0.0.1:21"}]}]}
}"#;

/// [`CONFIG`] with a [`ScriptFilter`] after the `metadata` filter (so replies carry the
/// unit); returns the engine and the filter's waker slot.
pub fn engine(needs_body: bool) -> (Arc<Engine>, Arc<Mutex<Option<Waker>>>) {
    let mut e = Engine::load(CONFIG).unwrap_or_else(|errs| panic!("test config: {errs:?}"));
    let waker = Arc::new(Mutex::new(None));
    e.listener_mut(0).unwrap().insert_filter(1, Arc::new(ScriptFilter { needs_body, waker: waker.clone() }));
    (Arc::new(e), waker)
}
