//! MOSN's `ip_access` filter: allow or deny requests by client IP, like nginx's
//! `allow`/`deny`.
//!
//! The client IP is the host's remote address, or the value of the trusted request header
//! `header` when one is configured (its first comma-separated item, so an
//! `X-Forwarded-For` chain gives the original client). Rules (`ips[]`) are tried in order;
//! the first whose `addrs` contain the IP decides; none: `default_action` (allow by
//! default). A request whose IP is unknown (no header, an unparsable value) gets
//! `default_action`. Deny is a 403. Runs `BeforeRoute`, as in MOSN.

use super::registry::ParseContext;
use super::{FilterStatus, LocalReply, ReceiveContext, StreamFilter};
use crate::config::fields::object;
use crate::config::reader::{index, Diagnostics, Obj};
use crate::headers::SharedStr;
use std::net::IpAddr;
use std::sync::Arc;

/// The filter, built once per config.
pub struct IpAccess {
    default_allow: bool,
    header: Option<SharedStr>,
    rules: Vec<Rule>,
}

struct Rule {
    allow: bool,
    nets: Vec<Net>,
}

/// An address or CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

// === impl parse ===

/// Reads `{default_action, header, ips: [{action, addrs}]}`.
pub fn parse(config: Option<Obj<'_>>, _cx: &ParseContext<'_>, d: &mut Diagnostics) -> Option<Arc<dyn StreamFilter>> {
    let Some(mut c) = config else { return Some(Arc::new(IpAccess { default_allow: true, header: None, rules: Vec::new() })) };
    let errors = d.error_count();
    let default_allow = action(&mut c, "default_action", d).unwrap_or(true);
    let header = c.string("header", d).filter(|h| !h.is_empty()).map(|h| SharedStr::from(h.to_ascii_lowercase().as_str()));
    let mut rules = Vec::new();
    for mut r in c.objects("ips", object::IP_ACCESS_RULE, d) {
        let allow = action(&mut r, "action", d);
        if allow.is_none() && !r.has("action") {
            d.error(r.field_path("action"), "is required (allow or deny)");
        }
        let apath = r.field_path("addrs");
        let mut nets = Vec::new();
        for (i, v) in r.array("addrs", d).into_iter().flatten().enumerate() {
            match v.as_str().and_then(Net::parse) {
                Some(n) => nets.push(n),
                None => d.error(index(&apath, i), format!("expected an IP or CIDR block (10.0.0.0/8, ::1), found {v}")),
            }
        }
        r.finish(d);
        rules.push(Rule { allow: allow.unwrap_or(true), nets });
    }
    c.finish(d);
    (d.error_count() == errors).then(|| Arc::new(IpAccess { default_allow, header, rules }) as Arc<dyn StreamFilter>)
}

/// `"allow"` → true, `"deny"` → false (case-insensitive).
fn action(o: &mut Obj<'_>, key: &'static str, d: &mut Diagnostics) -> Option<bool> {
    let path = o.field_path(key);
    match o.string(key, d)?.to_ascii_lowercase().as_str() {
        "allow" => Some(true),
        "deny" => Some(false),
        "" => None,
        other => {
            d.error(path, format!("\"{other}\": expected allow or deny"));
            None
        }
    }
}

// === impl Net ===

impl Net {
    /// `ip` or `ip/prefix`.
    pub fn parse(s: &str) -> Option<Net> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr: ip, prefix })
    }

    /// True if `ip` is in this block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(u128::from(u32::from(n)), u128::from(u32::from(a)), 32, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), 128, self.prefix),
            _ => false,
        }
    }
}

/// True if the top `prefix` of `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let prefix = u32::from(prefix);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

// === impl IpAccess ===

impl IpAccess {
    fn client_ip(&self, cx: &ReceiveContext<'_>) -> Option<IpAddr> {
        match &self.header {
            None => cx.client_ip(),
            Some(h) => {
                let v = cx.header(h).first()?;
                let first = std::str::from_utf8(v).ok()?.split(',').next()?.trim();
                first.parse::<IpAddr>().ok().or_else(|| first.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
            }
        }
    }

    /// Allowed?
    pub(crate) fn allows(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else { return self.default_allow };
        self.rules.iter().find(|r| r.nets.iter().any(|n| n.contains(ip))).map_or(self.default_allow, |r| r.allow)
    }
}

impl StreamFilter for IpAccess {
    fn name(&self) -> &'static str {
        "ip_access"
    }
    fn may_wait(&self) -> bool {
        false
    }
    fn on_receive(&self, cx: &mut ReceiveContext<'_>) -> FilterStatus {
        if self.allows(self.client_ip(cx)) {
            return FilterStatus::Continue;
        }
        cx.local_reply(LocalReply::new(403, "", "ip_access_denied"));
        FilterStatus::LocalReply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.9.9".parse().unwrap()), "IPv4-mapped IPv6");
        assert!(Net::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Net::parse("2001:db8::/32").unwrap().contains("2001:db8:1::1".parse().unwrap()));
        assert!(!Net::parse("2001:db8::/32").unwrap().contains("2001:db9::1".parse().unwrap()));
        assert!(Net::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Net::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert_eq!(Net::parse("10.0.0.0/33"), None);
        assert_eq!(Net::parse("10.0.0/8"), None);
    }

    #[test]
    fn first_matching_rule_decides_then_the_default() {
        let f = IpAccess {
            default_allow: false,
            header: None,
            rules: vec![
                Rule { allow: false, nets: vec![Net::parse("10.0.0.1").unwrap()] },
                Rule { allow: true, nets: vec![Net::parse("10.0.0.0/8").unwrap()] },
            ],
        };
        assert!(!f.allows(Some("10.0.0.1".parse().unwrap())));
        assert!(f.allows(Some("10.9.9.9".parse().unwrap())));
        assert!(!f.allows(Some("192.168.1.1".parse().unwrap())));
        assert!(!f.allows(None));
    }
}
