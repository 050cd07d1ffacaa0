//! The two names every Lars part shares: a route's key, [`RouteKey`] (`(modid, cmdid)`), and
//! one server of a route, [`HostAddr`] (`ip:port`).
//!
//! Owns the one conversion of a host between its wire form (the `int32` address of [`ip`] and
//! an `int32` port in a [`HostInfo`]) and its typed form, including the check that a port from
//! the wire is a port. The agent, lars-dns, lars-reporter, the store and the tools all use these
//! types; none of them has its own. Plain data: no I/O.
//!
//! [`ip`]: crate::ip

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::ip::{ip_from_wire, ip_to_wire};
use crate::messages::{GetRouteRequest, HostInfo};

/// The name of a service: `(modid, cmdid)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// The business area.
    pub modid: i32,
    /// The command inside it.
    pub cmdid: i32,
}

impl RouteKey {
    /// `(modid, cmdid)`.
    pub const fn new(modid: i32, cmdid: i32) -> RouteKey {
        RouteKey { modid, cmdid }
    }

    /// Whether a route can have this key: `modid` and `cmdid` are both in `0..=i32::MAX`.
    ///
    /// The wire carries any `int32`, but no route has a negative id: route edits refuse one
    /// ([`RouteKey::checked`]), so the agent answers NOEXIST for such a key without holding it,
    /// lars-dns answers it empty without subscribing, and lars-reporter drops statistics for it.
    pub const fn is_route(self) -> bool {
        self.modid >= 0 && self.cmdid >= 0
    }

    /// This key, if a route can have it ([`RouteKey::is_route`]).
    pub const fn checked(self) -> Result<RouteKey, NotARoute> {
        if self.is_route() {
            Ok(self)
        } else {
            Err(NotARoute { key: self })
        }
    }

    /// The `GetRouteRequest` that asks for this route.
    pub const fn request(self) -> GetRouteRequest {
        GetRouteRequest {
            modid: self.modid,
            cmdid: self.cmdid,
        }
    }
}

impl fmt::Display for RouteKey {
    /// `modid=M cmdid=C`, as the logs name a route.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "modid={} cmdid={}", self.modid, self.cmdid)
    }
}

impl From<&GetRouteRequest> for RouteKey {
    fn from(request: &GetRouteRequest) -> RouteKey {
        RouteKey::new(request.modid, request.cmdid)
    }
}

/// A key with a negative `modid` or `cmdid`, which no route has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{key} cannot name a route: modid and cmdid must be in 0..=2147483647")]
pub struct NotARoute {
    /// The key as given.
    pub key: RouteKey,
}

/// One `ip:port` server of a route, as Lars identifies it.
///
/// Six bytes; ordered and hashed by address, then port (the order of the address as a
/// host-order `u32`, which is how Lars sorts and stores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostAddr {
    /// The server's IPv4 address.
    pub ip: Ipv4Addr,
    /// The server's port.
    pub port: u16,
}

/// A port from the wire that is not in `0..=65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("host {ip} has port {port}, which is not in 0..=65535")]
pub struct BadPort {
    /// The host's address.
    pub ip: Ipv4Addr,
    /// The port as it was on the wire.
    pub port: i32,
}

impl HostAddr {
    /// The host at `ip:port`.
    pub const fn new(ip: Ipv4Addr, port: u16) -> HostAddr {
        HostAddr { ip, port }
    }

    /// The host named by a wire `int32` address and `int32` port; the port must be in
    /// `0..=65535`.
    pub fn from_wire(ip: i32, port: i32) -> Result<HostAddr, BadPort> {
        let ip = ip_from_wire(ip);
        match u16::try_from(port) {
            Ok(port) => Ok(HostAddr { ip, port }),
            Err(_) => Err(BadPort { ip, port }),
        }
    }

    /// The address in its wire form (an `int32`, negative from 128.0.0.0 up).
    pub fn wire_ip(self) -> i32 {
        ip_to_wire(self.ip)
    }

    /// The port in its wire form.
    pub fn wire_port(self) -> i32 {
        i32::from(self.port)
    }

    /// The address as a host-order `u32` (`a.b.c.d` is `a<<24 | b<<16 | c<<8 | d`), as Lars
    /// stores it in the database.
    pub const fn ip_bits(self) -> u32 {
        self.ip.to_bits()
    }
}

impl fmt::Display for HostAddr {
    /// `a.b.c.d:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

impl From<SocketAddrV4> for HostAddr {
    fn from(addr: SocketAddrV4) -> HostAddr {
        HostAddr::new(*addr.ip(), addr.port())
    }
}

impl From<HostAddr> for SocketAddrV4 {
    fn from(host: HostAddr) -> SocketAddrV4 {
        SocketAddrV4::new(host.ip, host.port)
    }
}

impl From<HostAddr> for SocketAddr {
    fn from(host: HostAddr) -> SocketAddr {
        SocketAddr::V4(host.into())
    }
}

impl From<HostAddr> for HostInfo {
    fn from(host: HostAddr) -> HostInfo {
        HostInfo {
            ip: host.wire_ip(),
            port: host.wire_port(),
        }
    }
}

impl TryFrom<&HostInfo> for HostAddr {
    type Error = BadPort;

    fn try_from(info: &HostInfo) -> Result<HostAddr, BadPort> {
        HostAddr::from_wire(info.ip, info.port)
    }
}

impl TryFrom<HostInfo> for HostAddr {
    type Error = BadPort;

    fn try_from(info: HostInfo) -> Result<HostAddr, BadPort> {
        HostAddr::from_wire(info.ip, info.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_round_trip_through_the_wire_form() {
        let host = HostAddr::new(Ipv4Addr::new(192, 168, 1, 10), 65535);
        let info = HostInfo::from(host);
        assert!(info.ip < 0, "addresses from 128.0.0.0 up are negative");
        assert_eq!(info.ip, 0xC0A8_010Au32 as i32);
        assert_eq!(info.port, 65535);
        assert_eq!(HostAddr::try_from(&info), Ok(host));
        assert_eq!(HostAddr::from_wire(info.ip, 0).map(|h| h.port), Ok(0));
    }

    #[test]
    fn a_wire_port_outside_0_to_65535_is_refused_with_the_host_named() {
        for port in [-1, 65536, i32::MIN, i32::MAX] {
            let err = HostAddr::from_wire(0x0A00_0001, port).unwrap_err();
            assert_eq!(
                err,
                BadPort {
                    ip: Ipv4Addr::new(10, 0, 0, 1),
                    port
                }
            );
            assert_eq!(
                err.to_string(),
                format!("host 10.0.0.1 has port {port}, which is not in 0..=65535")
            );
        }
    }

    #[test]
    fn hosts_print_as_ip_colon_port_and_convert_to_socket_addresses() {
        let host = HostAddr::new(Ipv4Addr::new(200, 1, 2, 3), 8080);
        assert_eq!(host.to_string(), "200.1.2.3:8080");
        let addr = SocketAddrV4::from(host);
        assert_eq!(addr, "200.1.2.3:8080".parse().unwrap());
        assert_eq!(HostAddr::from(addr), host);
        assert_eq!(SocketAddr::from(host), SocketAddr::V4(addr));
        assert_eq!(host.ip_bits(), 0xC801_0203);
    }

    #[test]
    fn hosts_order_by_address_as_a_number_then_port() {
        let a = HostAddr::new(Ipv4Addr::new(9, 255, 255, 255), 9);
        let b = HostAddr::new(Ipv4Addr::new(10, 0, 0, 0), 1);
        let c = HostAddr::new(Ipv4Addr::new(10, 0, 0, 0), 2);
        assert!(a < b && b < c);
        assert!(a.ip_bits() < b.ip_bits());
    }

    #[test]
    fn only_keys_with_both_ids_non_negative_can_name_a_route() {
        for (modid, cmdid) in [(0, 0), (1, 2), (i32::MAX, i32::MAX)] {
            assert!(RouteKey::new(modid, cmdid).is_route());
            assert_eq!(
                RouteKey::new(modid, cmdid).checked(),
                Ok(RouteKey::new(modid, cmdid))
            );
        }
        for (modid, cmdid) in [(-1, 0), (0, -1), (i32::MIN, 5), (-3, -3)] {
            let key = RouteKey::new(modid, cmdid);
            assert!(!key.is_route());
            let err = key.checked().unwrap_err();
            assert_eq!(err, NotARoute { key });
            assert_eq!(
                err.to_string(),
                format!(
                    "modid={modid} cmdid={cmdid} cannot name a route: modid and cmdid must be in \
                     0..=2147483647"
                )
            );
        }
    }

    #[test]
    fn route_keys_print_as_the_logs_name_them_and_build_their_request() {
        let key = RouteKey::new(1, -2);
        assert_eq!(key.to_string(), "modid=1 cmdid=-2");
        let request = key.request();
        assert_eq!((request.modid, request.cmdid), (1, -2));
        assert_eq!(RouteKey::from(&request), key);
    }
}
