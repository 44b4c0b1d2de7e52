//! The vocabulary shared by filters, router, upstream, streams and hosts (MOSN's `mosn/api`):
//! response flags, the verdicts a host acts on, local replies and per-request metadata.
//!
//! A leaf module: it depends on nothing else in the crate but [`crate::headers`]'s string type.

mod action;
pub mod flags;
mod reply;

pub use action::{Action, NoHost, UpstreamOutcome};
pub use reply::LocalReply;

use crate::headers::SharedStr;

/// Values filters recorded for logs, hosts and subset criteria (e.g. `unit` → `s1`).
pub type Metadata = smallvec::SmallVec<[(SharedStr, SharedStr); 2]>;

/// The client's address as the host gave it (`ip`, `ip:port`, `[v6]:port`), kept inline
/// (no allocation per request); parsed only when something asks for the IP.
#[derive(Clone, Copy)]
pub struct ClientAddr {
    buf: [u8; 64],
    len: u8,
}

impl ClientAddr {
    /// `None` for an empty or over-long value.
    pub fn new(addr: &[u8]) -> Option<ClientAddr> {
        if addr.is_empty() || addr.len() > 64 {
            return None;
        }
        let mut buf = [0; 64];
        buf[..addr.len()].copy_from_slice(addr);
        Some(ClientAddr { buf, len: addr.len() as u8 })
    }

    /// The IP (so `ip` and `ip:port` are the same client).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        let text = std::str::from_utf8(&self.buf[..self.len as usize]).ok()?;
        text.parse::<std::net::SocketAddr>().map(|a| a.ip()).or_else(|_| text.parse::<std::net::IpAddr>()).ok()
    }
}

impl std::fmt::Debug for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAddr({})", String::from_utf8_lossy(&self.buf[..self.len as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::ClientAddr;

    /// Only an `ip`, `ip:port` or `[v6]:port` is a client IP: anything else a host may report
    /// (a pipe's path, a name) is kept but never an IP, so it can never steer a hash.
    #[test]
    fn only_ip_addresses_are_client_ips() {
        for (ok, ip) in [
            ("127.0.0.1:40000", "127.0.0.1"),
            ("10.1.2.3", "10.1.2.3"),
            ("[::1]:8080", "::1"),
            ("::1", "::1"),
            ("2001:db8::7", "2001:db8::7"),
        ] {
            assert_eq!(ClientAddr::new(ok.as_bytes()).and_then(|a| a.ip()).map(|i| i.to_string()).as_deref(), Some(ip), "{ok}");
        }
        for bad in ["-", "/tmp/envoy.sock", "@abstract", "HTTP/1.1", "localhost:80", "127.0.0.1:99999", "10.0.0.1:"] {
            assert_eq!(ClientAddr::new(bad.as_bytes()).and_then(|a| a.ip()), None, "{bad}");
        }
        assert!(ClientAddr::new(b"").is_none());
        assert_eq!(ClientAddr::new(b"\xff\xfe").and_then(|a| a.ip()), None);
    }
}
