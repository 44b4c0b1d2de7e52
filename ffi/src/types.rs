//! Plain data exchanged over the C ABI.

/// Bytes owned by someone else: `len` bytes at `ptr` (not NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_bytes {
    pub ptr: *const u8,
    pub len: usize,
}

/// One header. Names are matched case-insensitively. Pseudo-headers carry the request
/// line: `:method`, `:path` (with query), `:authority` (else `host` is used).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_header {
    pub name: mosn_ext_bytes,
    pub value: mosn_ext_bytes,
}

/// A request or response as the host has it so far. Every pointer is read during the
/// call only. `body.ptr == NULL` means no body was buffered.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_message {
    pub headers: *const mosn_ext_header,
    pub headers_len: usize,
    pub body: mosn_ext_bytes,
    pub trailers: *const mosn_ext_header,
    pub trailers_len: usize,
}

/// `mosn_ext_action.kind`: go on (apply `mutations`).
pub const MOSN_EXT_CONTINUE: u32 = 0;
/// Park the request; the wake function will be called once; then `mosn_ext_stream_resume`.
pub const MOSN_EXT_WAIT: u32 = 1;
/// Answer with `status`, `reply_headers`, `reply_body`; do not contact an upstream.
pub const MOSN_EXT_LOCAL_REPLY: u32 = 2;
/// Buffer the whole request body, then call `mosn_ext_stream_request_body` with end_of_stream.
pub const MOSN_EXT_BUFFER_BODY: u32 = 3;

/// Header mutation: replace every value (add if absent).
pub const MOSN_EXT_HEADER_SET: u32 = 0;
/// Header mutation: append one value.
pub const MOSN_EXT_HEADER_ADD: u32 = 1;
/// Header mutation: remove every value (`value` is empty).
pub const MOSN_EXT_HEADER_REMOVE: u32 = 2;

/// One header change, applied in order. A `:status` name on the response side sets the
/// status code.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_header_mutation {
    pub op: u32,
    pub name: mosn_ext_bytes,
    pub value: mosn_ext_bytes,
}

/// What the host does next. Every pointer points into the stream and is valid until
/// the next call on that stream or its destruction.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_action {
    /// `MOSN_EXT_CONTINUE`, `MOSN_EXT_WAIT`, `MOSN_EXT_LOCAL_REPLY` or `MOSN_EXT_BUFFER_BODY`.
    pub kind: u32,
    /// Local reply status (`MOSN_EXT_LOCAL_REPLY`), else 0.
    pub status: u32,
    /// Header changes to apply in order (request side for request calls, response side
    /// for response calls).
    pub mutations: *const mosn_ext_header_mutation,
    pub mutations_len: usize,
    /// Local reply headers.
    pub reply_headers: *const mosn_ext_header,
    pub reply_headers_len: usize,
    /// Local reply body.
    pub reply_body: mosn_ext_bytes,
    /// Short reason for access logs (e.g. `route_not_found`, `fault_abort`).
    pub details: mosn_ext_bytes,
}

impl mosn_ext_action {
    pub(crate) fn empty() -> mosn_ext_action {
        let none = mosn_ext_bytes { ptr: std::ptr::null(), len: 0 };
        mosn_ext_action {
            kind: MOSN_EXT_CONTINUE,
            status: 0,
            mutations: std::ptr::null(),
            mutations_len: 0,
            reply_headers: std::ptr::null(),
            reply_headers_len: 0,
            reply_body: none,
            details: none,
        }
    }
}

/// The routed request's upstream settings (`mosn_ext_stream_route`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_route {
    pub cluster: mosn_ext_bytes,
    /// 1 + the route's retries.
    pub max_attempts: u32,
    /// Route timeout in ms; 0 = unset (host default).
    pub timeout_ms: u64,
    /// Per-try timeout in ms; 0 = unset.
    pub per_try_timeout_ms: u64,
    /// The cluster's connect timeout in ms; 0 = unset.
    pub connect_timeout_ms: u64,
    /// MOSN's `retry_on`: true retries responses with `retry_status_codes` (any 5xx when
    /// empty), resets and per-try timeouts; false retries connect failures only.
    pub retry_on: bool,
    /// Response statuses that are retried when `retry_on` (points into the config).
    pub retry_status_codes: *const u16,
    pub retry_status_codes_len: usize,
}

/// A host's address as the `struct sockaddr` connect(2) takes: a `sockaddr_in` or a
/// `sockaddr_in6` in the first `len` bytes of `bytes` (copy it; it is not aligned for the
/// struct). Made from the address the config parsed, so hosts need not parse `address`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_sockaddr {
    pub len: u32,
    pub bytes: [u8; 28],
}

/// The host chosen for one attempt (`mosn_ext_stream_choose_host`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mosn_ext_upstream {
    /// The cluster's name (lives as long as the config).
    pub cluster: mosn_ext_bytes,
    /// `ip:port` (IPv6 as `[ip]:port`; lives as long as the config).
    pub address: mosn_ext_bytes,
    /// `address` as a socket address.
    pub sockaddr: mosn_ext_sockaddr,
    /// The host's index in its cluster's `hosts[]`.
    pub host_index: u32,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// The cluster's `idle_timeout` in ms (an idle kept-alive connection to the host is
    /// closed after it); 0 = unset (host default).
    pub idle_timeout_ms: u64,
}

pub const MOSN_EXT_HOST_OK: i32 = 0;
pub const MOSN_EXT_HOST_NOT_ROUTED: i32 = 1;
pub const MOSN_EXT_HOST_NONE_HEALTHY: i32 = 2;
/// A circuit breaker is full (`max_requests`, or every host at `max_connections`); the
/// request's failure status is 503.
pub const MOSN_EXT_HOST_OVERFLOW: i32 = 3;
pub const MOSN_EXT_HOST_ERROR: i32 = -1;

pub const MOSN_EXT_OUTCOME_RESPONSE: u32 = 0;
pub const MOSN_EXT_OUTCOME_CONNECT_FAILURE: u32 = 1;
pub const MOSN_EXT_OUTCOME_TIMEOUT: u32 = 2;
pub const MOSN_EXT_OUTCOME_RESET: u32 = 3;
pub const MOSN_EXT_OUTCOME_OVERFLOW: u32 = 4;

pub const MOSN_EXT_INFO_CLUSTER: u32 = 0;
pub const MOSN_EXT_INFO_UPSTREAM_HOST: u32 = 1;
pub const MOSN_EXT_INFO_METADATA: u32 = 2;
/// `https` when the request's cluster speaks TLS to its hosts (`tls_context`), else `http`.
pub const MOSN_EXT_INFO_UPSTREAM_SCHEME: u32 = 3;
/// The TLS server name (SNI) of the request's cluster; unset without one.
pub const MOSN_EXT_INFO_UPSTREAM_SNI: u32 = 4;

/// MOSN response flags (`mosn_ext_stream_flags`), as in MOSN's `api.ResponseFlag`
/// (the same values as `mosn_extension::api::flags`; a test checks that they agree).
pub const MOSN_EXT_FLAG_NO_HEALTHY_UPSTREAM: u32 = 0x2;
pub const MOSN_EXT_FLAG_UPSTREAM_REQUEST_TIMEOUT: u32 = 0x4;
pub const MOSN_EXT_FLAG_UPSTREAM_REMOTE_RESET: u32 = 0x10;
pub const MOSN_EXT_FLAG_UPSTREAM_CONNECTION_FAILURE: u32 = 0x20;
pub const MOSN_EXT_FLAG_UPSTREAM_OVERFLOW: u32 = 0x80;
pub const MOSN_EXT_FLAG_NO_ROUTE_FOUND: u32 = 0x100;
pub const MOSN_EXT_FLAG_DELAY_INJECTED: u32 = 0x200;
pub const MOSN_EXT_FLAG_FAULT_INJECTED: u32 = 0x400;

/// A cluster's counters, summed over every worker (`mosn_ext_config_cluster_stats`).
/// MOSN's metric names in the comments.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mosn_ext_cluster_stats {
    /// The cluster's name (points into the config).
    pub name: mosn_ext_bytes,
    /// Hosts in the cluster.
    pub hosts: u64,
    /// Hosts healthy now.
    pub healthy_hosts: u64,
    /// Requests in flight (`upstream_request_active`).
    pub rq_active: u64,
    /// Requests started (`upstream_request_total`).
    pub rq_total: u64,
    /// Retries in flight.
    pub retry_active: u64,
    /// Retries started (`upstream_request_retry`).
    pub retry_total: u64,
    /// Requests refused by `max_requests` (`upstream_request_pending_overflow`).
    pub rq_overflow: u64,
    /// Retries refused by `max_retries` (`upstream_request_retry_overflow`).
    pub retry_overflow: u64,
    /// Host choices refused because every host was at `max_connections`.
    pub cx_overflow: u64,
    /// Host choices that found no healthy host.
    pub no_healthy: u64,
    /// Requests whose subset had no usable host (`lb_subsets_fallback`).
    pub subsets_fallback: u64,
    /// Subsets built (`lb_subsets_created`).
    pub subsets_created: u64,
}

/// One host's counters, summed over every worker (`mosn_ext_config_host_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct mosn_ext_host_stats {
    /// `ip:port` (points into the config).
    pub address: mosn_ext_bytes,
    /// MOSN's health flags: 0 healthy, `MOSN_EXT_HEALTH_FAILED_ACTIVE_HC`,
    /// `MOSN_EXT_HEALTH_FAILED_OUTLIER_CHECK`.
    pub health_flags: u64,
    /// Attempts in flight.
    pub rq_active: u64,
    /// Attempts started.
    pub rq_total: u64,
    /// Attempts that failed to connect, timed out or were reset.
    pub rq_failed: u64,
    /// Responses with a 5xx status.
    pub rq_error_response: u64,
    /// Passive-health ejections.
    pub ejections: u64,
    /// Changes between healthy and unhealthy.
    pub health_changes: u64,
}

pub const MOSN_EXT_HEALTH_FAILED_ACTIVE_HC: u64 = 0x1;
pub const MOSN_EXT_HEALTH_FAILED_OUTLIER_CHECK: u64 = 0x2;
