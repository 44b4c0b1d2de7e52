//! MOSN's response flag bits (`api.ResponseFlag`), for access logs. The same values are
//! `MOSN_EXT_FLAG_*` in the C header (the ffi crate checks that they agree).

/// No healthy host in the chosen cluster.
pub const NO_HEALTHY_UPSTREAM: u32 = 0x2;
/// The upstream did not answer in time.
pub const UPSTREAM_REQUEST_TIMEOUT: u32 = 0x4;
/// The upstream connection was reset by this side.
pub const UPSTREAM_LOCAL_RESET: u32 = 0x8;
/// The upstream reset or closed the connection before a complete response.
pub const UPSTREAM_REMOTE_RESET: u32 = 0x10;
/// Connecting to the upstream failed (refused, unreachable, connect timeout).
pub const UPSTREAM_CONNECTION_FAILURE: u32 = 0x20;
/// The upstream connection ended.
pub const UPSTREAM_CONNECTION_TERMINATION: u32 = 0x40;
/// A limit (circuit breaker) refused the request.
pub const UPSTREAM_OVERFLOW: u32 = 0x80;
/// No virtual host or route matched.
pub const NO_ROUTE_FOUND: u32 = 0x100;
/// The fault filter delayed the request.
pub const DELAY_INJECTED: u32 = 0x200;
/// The fault filter answered in place of the upstream.
pub const FAULT_INJECTED: u32 = 0x400;
/// A rate limit refused the request.
pub const RATE_LIMITED: u32 = 0x800;
/// The request body was over the limit.
pub const REQ_ENTITY_TOO_LARGE: u32 = 0x1000;
/// The downstream ended the stream.
pub const DOWNSTREAM_TERMINATE: u32 = 0x2000;
