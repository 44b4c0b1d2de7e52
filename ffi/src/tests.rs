//! The C ABI from Rust: panic containment and pointer handling.

use super::*;
use mosn_extension::filter::{FilterStatus, ReceiveContext, StreamFilter};

const DEMO: &str = include_str!("../../examples/unit-routing/mosn.json");

/// Panics on requests carrying `x-panic`; passes the others.
struct PanicFilter;

impl StreamFilter for PanicFilter {
    fn name(&self) -> &'static str {
        "test_panic"
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if cx.header("x-panic") != mosn_extension::headers::Lookup::Missing {
            panic!("test filter panics on purpose");
        }
        FilterStatus::Continue
    }
}

fn config_with_panic_filter() -> *mut mosn_ext_config {
    let mut engine = Engine::load(DEMO).unwrap();
    engine.listener_mut(0).unwrap().insert_filter(0, Arc::new(PanicFilter));
    Box::into_raw(Box::new(mosn_ext_config { engine: Arc::new(engine) }))
}

fn hdr(n: &'static str, v: &'static str) -> mosn_ext_header {
    mosn_ext_header { name: out_bytes(n.as_bytes()), value: out_bytes(v.as_bytes()) }
}

fn msg(h: &[mosn_ext_header]) -> mosn_ext_message {
    mosn_ext_message {
        headers: h.as_ptr(),
        headers_len: h.len(),
        body: mosn_ext_bytes { ptr: std::ptr::null(), len: 0 },
        trailers: std::ptr::null(),
        trailers_len: 0,
    }
}

fn request(cfg: *mut mosn_ext_config, h: &[mosn_ext_header]) -> (u32, u32, Option<String>) {
    let s = mosn_ext_stream_new(cfg, std::ptr::null(), 0, None, std::ptr::null_mut());
    assert!(!s.is_null());
    let mut a = mosn_ext_action::empty();
    let m = msg(h);
    let kind = mosn_ext_stream_request_headers(s, &m, true, &mut a);
    let mut cluster = None;
    if kind == MOSN_EXT_CONTINUE {
        let mut out = mosn_ext_bytes { ptr: std::ptr::null(), len: 0 };
        if mosn_ext_stream_info(s, MOSN_EXT_INFO_CLUSTER, std::ptr::null(), 0, &mut out) {
            // SAFETY: valid until the next call on the stream.
            cluster = Some(String::from_utf8(unsafe { bytes(out) }.to_vec()).unwrap());
        }
    }
    mosn_ext_stream_destroy(s);
    (kind, a.status, cluster)
}

#[test]
fn a_panicking_filter_gives_500_and_the_next_request_works() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // keep test output quiet
    let cfg = config_with_panic_filter();
    let (kind, status, _) = request(cfg, &[hdr(":path", "/"), hdr("x-panic", "1"), hdr("uid", "2")]);
    std::panic::set_hook(prev);
    assert_eq!((kind, status), (MOSN_EXT_LOCAL_REPLY, 500));
    let (kind, _, cluster) = request(cfg, &[hdr(":path", "/"), hdr("uid", "2")]);
    assert_eq!(kind, MOSN_EXT_CONTINUE);
    assert_eq!(cluster.as_deref(), Some("s1"));
    mosn_ext_config_free(cfg);
}

#[test]
fn a_stream_that_panicked_stays_failed() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let cfg = config_with_panic_filter();
    let s = mosn_ext_stream_new(cfg, std::ptr::null(), 0, None, std::ptr::null_mut());
    let h = [hdr("x-panic", "1")];
    let m = msg(&h);
    let mut a = mosn_ext_action::empty();
    assert_eq!(mosn_ext_stream_request_headers(s, &m, true, &mut a), MOSN_EXT_LOCAL_REPLY);
    std::panic::set_hook(prev);
    let mut up = mosn_ext_upstream {
        cluster: out_bytes(b""),
        address: out_bytes(b""),
        sockaddr: mosn_ext_sockaddr { len: 0, bytes: [0; 28] },
        host_index: 0,
        attempt: 0,
        idle_timeout_ms: 0,
    };
    assert_eq!(mosn_ext_stream_choose_host(s, &mut up), MOSN_EXT_HOST_ERROR);
    assert_eq!(mosn_ext_stream_resume(s, &m, &mut a), MOSN_EXT_LOCAL_REPLY);
    assert_eq!(a.status, 500);
    mosn_ext_stream_destroy(s);
    mosn_ext_config_free(cfg);
}

#[test]
fn null_pointers_fail_closed() {
    let mut a = mosn_ext_action::empty();
    assert_eq!(mosn_ext_stream_request_headers(std::ptr::null_mut(), std::ptr::null(), true, &mut a), MOSN_EXT_LOCAL_REPLY);
    assert_eq!(a.status, 500);
    assert_eq!(mosn_ext_stream_choose_host(std::ptr::null_mut(), std::ptr::null_mut()), MOSN_EXT_HOST_ERROR);
    assert!(mosn_ext_stream_new(std::ptr::null(), std::ptr::null(), 0, None, std::ptr::null_mut()).is_null());
    let mut out = std::ptr::null_mut();
    assert_eq!(mosn_ext_config_load_file(std::ptr::null(), &mut out, std::ptr::null_mut()), -1);
    mosn_ext_stream_destroy(std::ptr::null_mut());
    mosn_ext_config_free(std::ptr::null_mut());
}

#[test]
fn header_values_may_hold_any_byte() {
    let mut out = std::ptr::null_mut();
    let mut err = std::ptr::null_mut();
    assert_eq!(mosn_ext_config_load_json(DEMO.as_ptr(), DEMO.len(), &mut out, &mut err), 0);
    let weird: &'static [u8] = b"\0\xff\r\n2";
    let h = [mosn_ext_header { name: out_bytes(b"uid"), value: out_bytes(weird) }];
    let (kind, _, cluster) = request(out, &h);
    assert_eq!((kind, cluster.as_deref()), (MOSN_EXT_CONTINUE, Some("all_sites")));
    mosn_ext_config_free(out);
}

#[test]
fn flags_match_the_core() {
    use mosn_extension::api::flags;
    let pairs = [
        (MOSN_EXT_FLAG_NO_HEALTHY_UPSTREAM, flags::NO_HEALTHY_UPSTREAM),
        (MOSN_EXT_FLAG_UPSTREAM_REQUEST_TIMEOUT, flags::UPSTREAM_REQUEST_TIMEOUT),
        (MOSN_EXT_FLAG_UPSTREAM_REMOTE_RESET, flags::UPSTREAM_REMOTE_RESET),
        (MOSN_EXT_FLAG_UPSTREAM_CONNECTION_FAILURE, flags::UPSTREAM_CONNECTION_FAILURE),
        (MOSN_EXT_FLAG_UPSTREAM_OVERFLOW, flags::UPSTREAM_OVERFLOW),
        (MOSN_EXT_FLAG_NO_ROUTE_FOUND, flags::NO_ROUTE_FOUND),
        (MOSN_EXT_FLAG_DELAY_INJECTED, flags::DELAY_INJECTED),
        (MOSN_EXT_FLAG_FAULT_INJECTED, flags::FAULT_INJECTED),
    ];
    for (c, core) in pairs {
        assert_eq!(c, core);
    }
}

/// Found by the `abi` fuzz target: a listener name that is not UTF-8 started a stream on
/// the first listener instead of naming no listener.
#[test]
fn a_listener_name_that_is_not_utf8_names_no_listener() {
    let mut cfg = std::ptr::null_mut();
    assert_eq!(mosn_ext_config_load_json(DEMO.as_ptr(), DEMO.len(), &mut cfg, std::ptr::null_mut()), 0);
    let bad = [0xe0u8, 0xc4, 0x23, 0x1a];
    assert!(mosn_ext_stream_new(cfg, bad.as_ptr(), bad.len(), None, std::ptr::null_mut()).is_null());
    let s = mosn_ext_stream_new(cfg, b"serverListener".as_ptr(), 14, None, std::ptr::null_mut());
    assert!(!s.is_null());
    mosn_ext_stream_destroy(s);
    mosn_ext_config_free(cfg);
}

/// The host is told to pass the response's headers only where the core reads them: here a
/// route's `response_headers_to_add` (and always for a NULL stream).
#[test]
fn response_headers_are_asked_for_only_where_read() {
    let with_edit = DEMO.replacen(
        r#""route": {"cluster_name": "s1","#,
        r#""route": {"cluster_name": "s1", "response_headers_to_add": [{"header": {"key": "x-a", "value": "1"}}],"#,
        1,
    );
    assert_ne!(with_edit, DEMO);
    for (json, uid, reads) in [(DEMO, "2", false), (with_edit.as_str(), "2", true), (with_edit.as_str(), "150", false)] {
        let cfg = Box::into_raw(Box::new(mosn_ext_config { engine: Arc::new(Engine::load(json).unwrap()) }));
        let s = mosn_ext_stream_new(cfg, std::ptr::null(), 0, None, std::ptr::null_mut());
        let h = [hdr(":method", "GET"), hdr(":path", "/"), hdr(":authority", "a"), hdr("uid", uid)];
        let mut a = mosn_ext_action::empty();
        assert_eq!(mosn_ext_stream_request_headers(s, &msg(&h), true, &mut a), MOSN_EXT_CONTINUE);
        assert_eq!(mosn_ext_stream_reads_response_headers(s), reads, "uid {uid}");
        mosn_ext_stream_destroy(s);
        mosn_ext_config_free(cfg);
    }
    assert!(mosn_ext_stream_reads_response_headers(std::ptr::null()));
}

/// The sockaddr handed with a chosen host is the address itself, as connect(2) reads it.
#[test]
fn sockaddr_is_the_address_as_connect_reads_it() {
    let v4 = sockaddr("127.0.0.1:2990".parse().unwrap());
    assert_eq!(v4.len as usize, std::mem::size_of::<libc::sockaddr_in>());
    assert_eq!(u16::from_ne_bytes([v4.bytes[0], v4.bytes[1]]), libc::AF_INET as u16);
    assert_eq!(&v4.bytes[2..4], &2990u16.to_be_bytes());
    assert_eq!(&v4.bytes[4..8], &[127, 0, 0, 1]);
    assert!(v4.bytes[8..].iter().all(|b| *b == 0));

    let v6 = sockaddr("[::1]:8080".parse().unwrap());
    assert_eq!(v6.len as usize, std::mem::size_of::<libc::sockaddr_in6>());
    assert_eq!(u16::from_ne_bytes([v6.bytes[0], v6.bytes[1]]), libc::AF_INET6 as u16);
    assert_eq!(&v6.bytes[2..4], &8080u16.to_be_bytes());
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    assert_eq!(&v6.bytes[8..24], &loopback);

    // And the kernel agrees: a listener's own address, connected to through the bytes.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sa = sockaddr(l.local_addr().unwrap());
    // SAFETY: a fresh socket, closed below; `sa.bytes` holds `sa.len` bytes of a
    // sockaddr_in (copied out, so alignment does not matter).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(sa.bytes.as_ptr(), (&mut sin as *mut libc::sockaddr_in).cast::<u8>(), sa.len as usize);
        let rc = libc::connect(fd, (&sin as *const libc::sockaddr_in).cast(), sa.len);
        libc::close(fd);
        assert_eq!(rc, 0, "connect through the sockaddr bytes");
    }
}

/// A stream is one allocation within glibc's per-thread cache (chunks up to 1032 bytes,
/// i.e. requests up to 1024): one byte more costs nginx ~400 instructions per request.
#[test]
fn a_stream_fits_the_allocators_fast_path() {
    assert!(std::mem::size_of::<mosn_ext_stream>() <= 1024, "mosn_ext_stream is {} bytes", std::mem::size_of::<mosn_ext_stream>());
}
