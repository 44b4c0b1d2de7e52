/// What the host does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    /// Apply the header mutations and go on (to the upstream on the request path).
    Continue = 0,
    /// Park the request; the library calls the host's wake function once, then the host
    /// calls `resume`.
    Wait = 1,
    /// Answer with the stream's local reply (after applying nothing else).
    LocalReply = 2,
    /// Buffer the whole request body, then call `request_body` with `end_of_stream`.
    BufferBody = 3,
}

/// How one upstream attempt ended, as reported by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// Response headers arrived with this status.
    Response(u16),
    /// Connecting failed: refused, unreachable or the connect timeout fired.
    ConnectFailure,
    /// The upstream did not answer within the (per-try) timeout.
    Timeout,
    /// The connection was reset or closed before a complete response.
    Reset,
    /// A limit (circuit breaker, pending queue) refused the attempt.
    Overflow,
}

/// Why no host could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoHost {
    /// The request has no cluster (not routed, or answered locally).
    NotRouted,
    /// The cluster has no healthy host.
    NoHealthyHost,
    /// A circuit breaker is full (`max_requests`, or every host at `max_connections`).
    Overflow,
}
