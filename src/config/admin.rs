//! MOSN's `admin` object: where its admin API listens
//! (`{"address": {"socket_address": {"address", "port_value"}}}`).

use super::fields::object;
use super::reader::{Diagnostics, Obj};
use std::net::SocketAddr;

/// Reads `admin`; `None` (after an error) when the address is not an `ip` and a port.
pub fn parse(mut a: Obj<'_>, d: &mut Diagnostics) -> Option<SocketAddr> {
    let mut out = None;
    match a.object("address", object::ADMIN_ADDRESS, d) {
        Some(mut addr) => {
            if let Some(mut sa) = addr.object("socket_address", object::SOCKET_ADDRESS, d) {
                let ip_path = sa.field_path("address");
                let ip = sa.string("address", d).unwrap_or("127.0.0.1");
                let port = sa.uint("port_value", 1, 65535, d);
                match (ip.parse::<std::net::IpAddr>(), port) {
                    (Ok(ip), Some(p)) => out = Some(SocketAddr::new(ip, p as u16)),
                    (Err(_), _) => d.error(ip_path, format!("\"{ip}\" is not an IP address")),
                    (_, None) => d.error(sa.field_path("port_value"), "the admin API needs a port"),
                }
                sa.finish(d);
            } else {
                d.error(addr.field_path("socket_address"), "the admin API needs a socket_address");
            }
            addr.finish(d);
        }
        None => d.error(a.field_path("address"), "the admin API needs an address"),
    }
    a.finish(d);
    out
}
