//! `abi`: the C ABI (`ffi/src/lib.rs`, `include/mosn_extension.h`) driven by arbitrary call
//! sequences on streams of one config (`seeds/full.json`: every filter, a 1 ms fault delay
//! on `x-fault: delay`, body buffering, retries, mirrors): any order of calls, with what the
//! header allows as arguments (valid pointers to arbitrary bytes, NULL with length 0, NULL
//! handles and out parameters, out-of-range indexes and enum values).
//!
//! Properties: no call panics (under libFuzzer a panic aborts even when the ABI would catch
//! it; the stable replay counts caught panics); every returned pointer can be read (the
//! fuzz build runs under AddressSanitizer); a stream answers once: after its request ended
//! in CONTINUE or LOCAL_REPLY, later request calls give the same answer, and a locally
//! answered request gets no upstream host; the wake function is called at most once per
//! WAIT and never after destroy; `mosn_ext_live_streams` is 0 once every stream is
//! destroyed, and no request, retry or attempt is left counted in any cluster or host.

use arbitrary::{Arbitrary, Unstructured};
use mosn_extension_ffi::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};

const NAMES: &[&str] = &[
    ":path",
    ":method",
    ":authority",
    "host",
    "uid",
    "x-fault",
    "x-teapot",
    "x-cluster",
    "service",
    "x-user",
    "cookie",
    "x-real-ip",
    "x-unit",
    "content-length",
    "x-mosn-global-timeout",
    "x-mosn-try-timeout",
    "x-v",
    "x-host",
    ":status",
    "Content-Type",
];
const VALUES: &[&str] = &[
    "/",
    "/v1/x",
    "/items/7",
    "/Exact",
    "/old",
    "/w",
    "/limited",
    "/%2e%2e/x",
    "/var",
    "GET",
    "POST",
    "api.example.com",
    "delay",
    "abort",
    "1",
    "rr",
    "maglev",
    "10.1.1.1",
    "200",
    "sid=1",
    "u1",
    "100",
    "",
    "yes",
    "text/html",
];

/// Bytes as the host may pass them.
#[derive(Arbitrary, Debug)]
enum B {
    /// NULL, length 0.
    Null,
    /// A valid pointer, length 0.
    Empty,
    Name(u8),
    Value(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Msg {
    null: bool,
    headers: Option<Vec<(B, B)>>,
    body: Option<B>,
    trailers: Option<Vec<(B, B)>>,
}

#[derive(Arbitrary, Debug)]
enum Listener {
    First,
    Named,
    Other(B),
}

#[derive(Arbitrary, Debug)]
enum Op {
    New { listener: Listener, wake: bool },
    RequestHeaders { s: u8, m: Msg, eos: bool, null_out: bool },
    RequestBody { s: u8, m: Msg, eos: bool, null_out: bool },
    RequestTrailers { s: u8, m: Msg },
    Resume { s: u8, m: Msg },
    AwaitWake { s: u8 },
    Route { s: u8, null_out: bool },
    SetDownstream { s: u8, addr: B },
    ChooseHost { s: u8, null_out: bool },
    Mirrors { s: u8, index: u32 },
    UpstreamResult { s: u8, outcome: u32, status: u32 },
    ResponseHeaders { s: u8, status: u32, m: Msg, eos: bool },
    ResponseBody { s: u8, m: Msg, eos: bool },
    ResponseTrailers { s: u8, m: Msg },
    Info { s: u8, what: u32, key: B },
    Counters { s: u8 },
    Destroy { s: u8 },
    Stats { cluster: u8, host: u8 },
    FreeConfig,
}

/// Keeps what a call's pointers point to alive for the call.
#[derive(Default)]
struct Arena {
    bytes: Vec<Vec<u8>>,
    headers: Vec<Vec<mosn_ext_header>>,
}

impl Arena {
    fn bytes(&mut self, b: &B) -> mosn_ext_bytes {
        let v: Vec<u8> = match b {
            B::Null => return mosn_ext_bytes { ptr: std::ptr::null(), len: 0 },
            B::Empty => return mosn_ext_bytes { ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(), len: 0 },
            B::Name(i) => NAMES[usize::from(*i) % NAMES.len()].as_bytes().to_vec(),
            B::Value(i) => VALUES[usize::from(*i) % VALUES.len()].as_bytes().to_vec(),
            B::Raw(v) => v.clone(),
        };
        self.bytes.push(v);
        let v = self.bytes.last().expect("just pushed");
        mosn_ext_bytes { ptr: v.as_ptr(), len: v.len() }
    }

    fn headers(&mut self, hs: &Option<Vec<(B, B)>>) -> (*const mosn_ext_header, usize) {
        let Some(hs) = hs else { return (std::ptr::null(), 0) };
        let list: Vec<mosn_ext_header> =
            hs.iter().take(12).map(|(n, v)| mosn_ext_header { name: self.bytes(n), value: self.bytes(v) }).collect();
        self.headers.push(list);
        let l = self.headers.last().expect("just pushed");
        (if l.is_empty() { std::ptr::NonNull::dangling().as_ptr() } else { l.as_ptr() }, l.len())
    }

    fn message(&mut self, m: &Msg) -> mosn_ext_message {
        let (headers, headers_len) = self.headers(&m.headers);
        let (trailers, trailers_len) = self.headers(&m.trailers);
        let body = match &m.body {
            None => mosn_ext_bytes { ptr: std::ptr::null(), len: 0 },
            Some(b) => self.bytes(b),
        };
        mosn_ext_message { headers, headers_len, body, trailers, trailers_len }
    }
}

fn no_bytes() -> mosn_ext_bytes {
    mosn_ext_bytes { ptr: std::ptr::null(), len: 0 }
}

fn empty_action() -> mosn_ext_action {
    mosn_ext_action {
        kind: u32::MAX,
        status: 0,
        mutations: std::ptr::null(),
        mutations_len: 0,
        reply_headers: std::ptr::null(),
        reply_headers_len: 0,
        reply_body: no_bytes(),
        details: no_bytes(),
    }
}

fn empty_upstream() -> mosn_ext_upstream {
    mosn_ext_upstream {
        cluster: no_bytes(),
        address: no_bytes(),
        sockaddr: mosn_ext_sockaddr { len: 0, bytes: [0; 28] },
        host_index: 0,
        attempt: 0,
        idle_timeout_ms: 0,
    }
}

/// Reads every byte of a returned byte range (ASan checks it is live memory).
fn touch(b: mosn_ext_bytes) -> u64 {
    if b.ptr.is_null() || b.len == 0 {
        return 0;
    }
    // SAFETY: the library returned this range; the header says it is valid until the next
    // call on the stream (or while the config lives): that is what this target checks.
    let s = unsafe { std::slice::from_raw_parts(b.ptr, b.len) };
    s.iter().map(|&x| u64::from(x)).sum()
}

fn touch_action(a: &mosn_ext_action) -> u64 {
    let mut sum = touch(a.reply_body) + touch(a.details);
    if !a.mutations.is_null() && a.mutations_len > 0 {
        // SAFETY: as in `touch`: the action's array is valid until the next call.
        let ms = unsafe { std::slice::from_raw_parts(a.mutations, a.mutations_len) };
        for m in ms {
            assert!(m.op <= MOSN_EXT_HEADER_REMOVE, "mutation op {}", m.op);
            sum += touch(m.name) + touch(m.value);
        }
    }
    if !a.reply_headers.is_null() && a.reply_headers_len > 0 {
        // SAFETY: as above.
        let hs = unsafe { std::slice::from_raw_parts(a.reply_headers, a.reply_headers_len) };
        for h in hs {
            sum += touch(h.name) + touch(h.value);
        }
    }
    sum
}

unsafe extern "C" fn wake(ctx: *mut c_void) {
    // SAFETY: `ctx` is the stream's counter, alive until after its destroy returned (and
    // the library calls no wake function after that).
    let counter = unsafe { &*(ctx as *const AtomicU32) };
    counter.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn discard_log(_level: u32, _msg: *const u8, _len: usize, _ctx: *mut c_void) {}

/// One stream and what it said so far.
struct Tracked {
    ptr: *mut mosn_ext_stream,
    wakes: Box<AtomicU32>,
    has_wake: bool,
    /// WAITs answered (a WAIT repeated while still waiting counts once).
    waits: u32,
    waiting: bool,
    /// The request left its start (headers or the whole body were given).
    started: bool,
    /// The request's answer: CONTINUE or LOCAL_REPLY, with its status when known.
    answer: Option<(u32, Option<u32>)>,
}

impl Tracked {
    fn check_wakes(&self) {
        let w = self.wakes.load(Ordering::SeqCst);
        assert!(w <= self.waits, "wake function called {w} times for {} WAITs", self.waits);
        assert!(self.has_wake || w == 0);
    }

    /// Records a request-side answer (`a`: the filled action, or `None` when the host passed
    /// no out parameter); `starts` when the call can take the request past its start.
    fn answered(&mut self, kind: u32, a: Option<&mosn_ext_action>, starts: bool) {
        assert!(kind <= MOSN_EXT_BUFFER_BODY, "kind {kind}");
        if let Some(a) = a {
            assert_eq!(kind, a.kind, "the return value is out->kind");
            if kind == MOSN_EXT_LOCAL_REPLY {
                assert!((100..=999).contains(&a.status), "local reply status {}", a.status);
            }
            let _ = touch_action(a);
        }
        if kind == MOSN_EXT_WAIT {
            assert!(self.has_wake, "WAIT on a stream without a wake function");
            if !self.waiting {
                self.waits += 1;
            }
            self.waiting = true;
        } else {
            self.waiting = false;
        }
        if starts && kind != MOSN_EXT_BUFFER_BODY {
            self.started = true;
        }
        if self.started && (kind == MOSN_EXT_CONTINUE || kind == MOSN_EXT_LOCAL_REPLY) {
            let status = a.map(|a| if kind == MOSN_EXT_LOCAL_REPLY { a.status } else { 0 });
            match self.answer {
                None => self.answer = Some((kind, status)),
                Some((k, st)) => {
                    assert_eq!(k, kind, "the stream answered twice");
                    if let (Some(before), Some(now)) = (st, status) {
                        assert_eq!(before, now, "the stream answered twice (another status)");
                    }
                    if st.is_none() {
                        self.answer = Some((k, status));
                    }
                }
            }
        }
        self.check_wakes();
    }
}

struct Run {
    cfg: *mut mosn_ext_config,
    streams: Vec<Tracked>,
    arena: Arena,
}

impl Run {
    /// The stream `s` names (NULL for some values, to pass a NULL handle).
    fn pick(&self, s: u8) -> Option<usize> {
        (!self.streams.is_empty() && s < 240).then(|| usize::from(s) % self.streams.len())
    }

    fn ptr(&self, s: u8) -> *mut mosn_ext_stream {
        self.pick(s).map_or(std::ptr::null_mut(), |i| self.streams[i].ptr)
    }

    fn request(
        &mut self,
        s: u8,
        m: &Msg,
        starts: bool,
        call: impl FnOnce(*mut mosn_ext_stream, *const mosn_ext_message, *mut mosn_ext_action) -> u32,
        null_out: bool,
    ) {
        let msg = self.arena.message(m);
        let mp: *const mosn_ext_message = if m.null { std::ptr::null() } else { &msg };
        let mut out = empty_action();
        let op: *mut mosn_ext_action = if null_out { std::ptr::null_mut() } else { &mut out };
        let kind = call(self.ptr(s), mp, op);
        match self.pick(s) {
            Some(i) => self.streams[i].answered(kind, (!null_out).then_some(&out), starts),
            None => {
                // A NULL stream: a 500 local reply, never a crash.
                assert_eq!(kind, MOSN_EXT_LOCAL_REPLY);
                if !null_out {
                    assert_eq!(out.status, 500);
                }
            }
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::New { listener, wake: with_wake } => {
                if self.cfg.is_null() || self.streams.len() >= 8 {
                    return;
                }
                let name = match listener {
                    Listener::First => no_bytes(),
                    Listener::Named => self.arena.bytes(&B::Raw(b"l1".to_vec())),
                    Listener::Other(b) => self.arena.bytes(b),
                };
                let wakes = Box::new(AtomicU32::new(0));
                let ctx = &*wakes as *const AtomicU32 as *mut c_void;
                let f: Option<unsafe extern "C" fn(*mut c_void)> = if *with_wake { Some(wake) } else { None };
                let before = mosn_ext_live_streams();
                let s = mosn_ext_stream_new(self.cfg, name.ptr, name.len, f, ctx);
                let name_bytes = if name.ptr.is_null() || name.len == 0 {
                    &[][..]
                } else {
                    // SAFETY: the arena keeps these bytes alive for this run.
                    unsafe { std::slice::from_raw_parts(name.ptr, name.len) }
                };
                let known = name_bytes.is_empty() || name_bytes == b"l1";
                assert_eq!(s.is_null(), !known, "stream_new on listener {name_bytes:?}");
                if !s.is_null() {
                    assert_eq!(mosn_ext_live_streams(), before + 1);
                    self.streams.push(Tracked {
                        ptr: s,
                        wakes,
                        has_wake: *with_wake,
                        waits: 0,
                        waiting: false,
                        started: false,
                        answer: None,
                    });
                }
            }
            Op::RequestHeaders { s, m, eos, null_out } => {
                let eos = *eos;
                self.request(*s, m, true, |s, r, o| mosn_ext_stream_request_headers(s, r, eos, o), *null_out)
            }
            Op::RequestBody { s, m, eos, null_out } => {
                let eos = *eos;
                self.request(*s, m, eos, |s, r, o| mosn_ext_stream_request_body(s, r, eos, o), *null_out)
            }
            Op::RequestTrailers { s, m } => self.request(*s, m, true, |s, r, o| mosn_ext_stream_request_trailers(s, r, o), false),
            Op::Resume { s, m } => self.request(*s, m, false, |s, r, o| mosn_ext_stream_resume(s, r, o), false),
            Op::AwaitWake { s } => {
                let Some(i) = self.pick(*s) else { return };
                let t = &self.streams[i];
                // The fault delay is 1 ms; give it up to 50 ms.
                for _ in 0..50 {
                    if !t.waiting || t.wakes.load(Ordering::SeqCst) >= t.waits {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                t.check_wakes();
            }
            Op::Route { s, null_out } => {
                let mut r = mosn_ext_route {
                    cluster: no_bytes(),
                    max_attempts: 0,
                    timeout_ms: 0,
                    per_try_timeout_ms: 0,
                    connect_timeout_ms: 0,
                    retry_on: false,
                    retry_status_codes: std::ptr::null(),
                    retry_status_codes_len: 0,
                };
                let out: *mut mosn_ext_route = if *null_out { std::ptr::null_mut() } else { &mut r };
                if mosn_ext_stream_route(self.ptr(*s), out) && !*null_out {
                    assert!(r.max_attempts >= 1);
                    let _ = touch(r.cluster);
                    if r.retry_status_codes_len > 0 {
                        // SAFETY: points into the config (valid while the stream lives).
                        let _ = unsafe { std::slice::from_raw_parts(r.retry_status_codes, r.retry_status_codes_len) }.iter().sum::<u16>();
                    }
                }
            }
            Op::SetDownstream { s, addr } => {
                let a = self.arena.bytes(addr);
                mosn_ext_stream_set_downstream_address(self.ptr(*s), a.ptr, a.len);
            }
            Op::ChooseHost { s, null_out } => {
                let mut u = empty_upstream();
                let out: *mut mosn_ext_upstream = if *null_out { std::ptr::null_mut() } else { &mut u };
                let r = mosn_ext_stream_choose_host(self.ptr(*s), out);
                assert!((-1..=3).contains(&r), "choose_host returned {r}");
                if let Some(i) = self.pick(*s) {
                    if r == MOSN_EXT_HOST_OK {
                        let t = &self.streams[i];
                        assert!(
                            !matches!(t.answer, Some((MOSN_EXT_LOCAL_REPLY, _))),
                            "a request answered locally got an upstream host too"
                        );
                        if !*null_out {
                            assert!(u.attempt >= 1);
                            let _ = touch(u.cluster) + touch(u.address);
                        }
                    }
                } else {
                    assert_eq!(r, MOSN_EXT_HOST_ERROR);
                }
            }
            Op::Mirrors { s, index } => {
                let p = self.ptr(*s);
                let n = mosn_ext_stream_mirror_count(p);
                let mut u = empty_upstream();
                let idx = if n > 0 && *index < 1000 { index % n } else { *index };
                if mosn_ext_stream_mirror(p, idx, &mut u) {
                    assert!(idx < n);
                    let _ = touch(u.cluster) + touch(u.address);
                }
            }
            Op::UpstreamResult { s, outcome, status } => {
                let _ = mosn_ext_stream_upstream_result(self.ptr(*s), outcome % 6, *status);
            }
            Op::ResponseHeaders { s, status, m, eos } => {
                let msg = self.arena.message(m);
                let mp: *const mosn_ext_message = if m.null { std::ptr::null() } else { &msg };
                let mut out = empty_action();
                let k = mosn_ext_stream_response_headers(self.ptr(*s), *status, mp, *eos, &mut out);
                assert_eq!(k, out.kind);
                let _ = touch_action(&out);
            }
            Op::ResponseBody { s, m, eos } => {
                let msg = self.arena.message(m);
                let mut out = empty_action();
                let k = mosn_ext_stream_response_body(self.ptr(*s), &msg, *eos, &mut out);
                assert_eq!(k, out.kind);
                let _ = touch_action(&out);
            }
            Op::ResponseTrailers { s, m } => {
                let msg = self.arena.message(m);
                let mut out = empty_action();
                let k = mosn_ext_stream_response_trailers(self.ptr(*s), &msg, &mut out);
                assert_eq!(k, out.kind);
                let _ = touch_action(&out);
            }
            Op::Info { s, what, key } => {
                let k = self.arena.bytes(key);
                let mut out = no_bytes();
                if mosn_ext_stream_info(self.ptr(*s), what % 4, k.ptr, k.len, &mut out) {
                    let _ = touch(out);
                }
            }
            Op::Counters { s } => {
                let p = self.ptr(*s);
                let _ = (mosn_ext_stream_attempts(p), mosn_ext_stream_flags(p));
            }
            Op::Destroy { s } => {
                let Some(i) = self.pick(*s) else {
                    mosn_ext_stream_destroy(std::ptr::null_mut());
                    return;
                };
                let t = self.streams.swap_remove(i);
                let before = mosn_ext_live_streams();
                mosn_ext_stream_destroy(t.ptr);
                assert_eq!(mosn_ext_live_streams(), before - 1);
                t.check_wakes();
                // `t.wakes` is freed here: a wake after destroy would be a use after free.
            }
            Op::Stats { cluster, host } => {
                // SAFETY: all-zero is a valid value of these plain structs (integers and a NULL pointer).
                let mut cs: mosn_ext_cluster_stats = unsafe { std::mem::zeroed() };
                if mosn_ext_config_cluster_stats(self.cfg, usize::from(*cluster % 10), &mut cs) {
                    let _ = touch(cs.name);
                }
                // SAFETY: as above.
                let mut hs: mosn_ext_host_stats = unsafe { std::mem::zeroed() };
                if mosn_ext_config_host_stats(self.cfg, usize::from(*cluster % 10), usize::from(*host % 4), &mut hs) {
                    let _ = touch(hs.address);
                }
            }
            Op::FreeConfig => {
                // Streams keep working on a freed config (they hold their own reference).
                mosn_ext_config_free(self.cfg);
                self.cfg = std::ptr::null_mut();
            }
        }
    }
}

fn load() -> *mut mosn_ext_config {
    let text = super::SEEDS[0].as_bytes();
    let mut cfg: *mut mosn_ext_config = std::ptr::null_mut();
    let rc = mosn_ext_config_load_json(text.as_ptr(), text.len(), &mut cfg, std::ptr::null_mut());
    assert_eq!(rc, 0, "the seed config loads");
    cfg
}

pub fn run(data: &[u8]) {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| mosn_ext_set_log_callback(Some(discard_log), std::ptr::null_mut()));
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else { return };
    assert_eq!(mosn_ext_live_streams(), 0, "streams left from an earlier run");
    let mut run = Run { cfg: load(), streams: Vec::new(), arena: Arena::default() };
    for op in ops.iter().take(64) {
        run.step(op);
        run.arena = Arena::default();
    }
    for t in std::mem::take(&mut run.streams) {
        mosn_ext_stream_destroy(t.ptr);
        t.check_wakes();
    }
    assert_eq!(mosn_ext_live_streams(), 0, "a stream leaked");
    if !run.cfg.is_null() {
        for c in 0..mosn_ext_config_cluster_count(run.cfg) {
            // SAFETY: all-zero is a valid value of this plain struct.
            let mut cs: mosn_ext_cluster_stats = unsafe { std::mem::zeroed() };
            assert!(mosn_ext_config_cluster_stats(run.cfg, c, &mut cs));
            assert_eq!((cs.rq_active, cs.retry_active), (0, 0), "cluster {c} keeps a request or retry active");
            for h in 0..cs.hosts as usize {
                // SAFETY: as above.
                let mut hs: mosn_ext_host_stats = unsafe { std::mem::zeroed() };
                assert!(mosn_ext_config_host_stats(run.cfg, c, h, &mut hs));
                assert_eq!(hs.rq_active, 0, "host {h} of cluster {c} keeps an attempt active");
            }
        }
        mosn_ext_config_free(run.cfg);
    }
    // Errors of a bad config come back as a string the host frees.
    let mut cfg = std::ptr::null_mut();
    let mut err = std::ptr::null_mut();
    let rest = u.take_rest();
    if !super::resolves_names(rest) && mosn_ext_config_load_json(rest.as_ptr(), rest.len(), &mut cfg, &mut err) == 0 {
        mosn_ext_config_free(cfg);
    }
    mosn_ext_string_free(err);
}
