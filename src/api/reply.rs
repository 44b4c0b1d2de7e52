use crate::headers::SharedStr;

/// A response generated here instead of by an upstream (MOSN's hijack / direct response).
#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(SharedStr, SharedStr)>,
    pub body: SharedStr,
    /// Short machine-readable reason for access logs, e.g. `fault_abort`.
    pub details: &'static str,
}

impl LocalReply {
    /// A reply with no extra headers.
    pub fn new(status: u16, body: impl Into<SharedStr>, details: &'static str) -> LocalReply {
        LocalReply { status, headers: Vec::new(), body: body.into(), details }
    }
}
