//! Network groups: which peers are "the same place" for diversity rules.
//!
//! A group is an IPv4 /16 or an IPv6 /48 (an IPv4-mapped IPv6 address counts as its IPv4
//! address). Placement ([`warren_storage_mesh::placement`]) puts no two copies of a block in one
//! group while another group has room, and the onion guard set ([`crate::onion::guard`]) takes
//! its guards from distinct groups.
//!
//! Which address defines a peer's group ([`peer_ip`]): the address it is connected from when that
//! is a public (globally routable) address, since it cannot be chosen freely; otherwise the first
//! IP address its signed node record announces that is not loopback or unspecified (a node's
//! record lists its external addresses first); otherwise the address it is connected from, or the
//! record's first address. A peer without any IP address has no group
//! ([`warren_storage_mesh::placement`] puts all such peers in one shared group).
//!
//! [`warren_storage_mesh::placement`]: https://docs.rs/warren-storage-mesh

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Serialize};

/// A network group: an IPv4 /16 or an IPv6 /48.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NetGroup {
    /// The first two octets of an IPv4 address.
    V4([u8; 2]),
    /// The first six octets of an IPv6 address.
    V6([u8; 6]),
}

impl NetGroup {
    /// The group of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => v4_group(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4_group(v4),
                None => {
                    let o = v6.octets();
                    NetGroup::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
                }
            },
        }
    }
}

impl std::fmt::Display for NetGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetGroup::V4([a, b]) => write!(f, "{a}.{b}.0.0/16"),
            NetGroup::V6(o) => {
                let seg = |i: usize| u16::from_be_bytes([o[i], o[i + 1]]);
                write!(f, "{:x}:{:x}:{:x}::/48", seg(0), seg(2), seg(4))
            }
        }
    }
}

fn v4_group(v4: Ipv4Addr) -> NetGroup {
    let o = v4.octets();
    NetGroup::V4([o[0], o[1]])
}

/// Whether `ip` is a public, globally routable address: not loopback, unspecified, private,
/// shared (100.64/10), link-local, broadcast, documentation, or IPv6 unique-local.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_unspecified()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_documentation()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || o[0] == 0)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    !(v6.is_loopback()
        || v6.is_unspecified()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0x2001 && s[1] == 0x0db8))
}

/// The IP address in `addr`, if it has one.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// The address that defines a peer's group (see the module documentation): `observed` (an
/// address the peer is connected from) when it is public, else the first announced address of
/// `record_addrs` that is neither loopback nor unspecified, else `observed`, else the first
/// announced IP address.
pub fn peer_ip<'a>(
    observed: Option<IpAddr>,
    record_addrs: impl IntoIterator<Item = &'a Multiaddr>,
) -> Option<IpAddr> {
    if let Some(ip) = observed.filter(|ip| is_public(*ip)) {
        return Some(ip);
    }
    let announced: Vec<IpAddr> = record_addrs
        .into_iter()
        .filter_map(ip_of)
        .filter(|ip| !ip.is_unspecified())
        .collect();
    announced
        .iter()
        .find(|ip| !ip.is_loopback())
        .copied()
        .or(observed)
        .or_else(|| announced.first().copied())
}

/// The group of a peer: [`NetGroup::of`] its [`peer_ip`].
pub fn peer_group<'a>(
    observed: Option<IpAddr>,
    record_addrs: impl IntoIterator<Item = &'a Multiaddr>,
) -> Option<NetGroup> {
    peer_ip(observed, record_addrs).map(NetGroup::of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn groups_are_v4_sixteens_and_v6_fortyeights() {
        assert_eq!(NetGroup::of(ip("10.1.2.3")), NetGroup::of(ip("10.1.200.9")));
        assert_ne!(NetGroup::of(ip("10.1.2.3")), NetGroup::of(ip("10.2.2.3")));
        assert_eq!(
            NetGroup::of(ip("2001:db8:1::1")),
            NetGroup::of(ip("2001:db8:1:ffff::2"))
        );
        assert_ne!(
            NetGroup::of(ip("2001:db8:1::1")),
            NetGroup::of(ip("2001:db8:2::1"))
        );
        // An IPv4-mapped IPv6 address is its IPv4 address.
        assert_eq!(
            NetGroup::of(ip("::ffff:10.1.2.3")),
            NetGroup::of(ip("10.1.9.9"))
        );
        assert_eq!(NetGroup::of(ip("10.1.2.3")).to_string(), "10.1.0.0/16");
        assert_eq!(
            NetGroup::of(ip("2001:db8:1::1")).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn public_addresses() {
        for p in ["1.2.3.4", "8.8.8.8", "2a00:1450::1"] {
            assert!(is_public(ip(p)), "{p}");
        }
        for p in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip(p)), "{p}");
        }
    }

    #[test]
    fn a_public_connection_address_wins_over_what_the_record_claims() {
        let record = [ma("/ip4/5.6.7.8/tcp/1")];
        assert_eq!(peer_ip(Some(ip("1.2.3.4")), &record), Some(ip("1.2.3.4")));
        // A private or loopback connection: the record's first non-loopback address.
        let record = [
            ma("/ip4/127.0.0.1/tcp/1"),
            ma("/ip4/0.0.0.0/tcp/1"),
            ma("/ip4/10.9.0.1/tcp/1"),
        ];
        assert_eq!(
            peer_ip(Some(ip("127.0.0.1")), &record),
            Some(ip("10.9.0.1"))
        );
        // Nothing better announced: the connection, then the record's loopback address.
        let record = [ma("/ip4/127.0.0.1/tcp/1")];
        assert_eq!(
            peer_ip(Some(ip("192.168.0.2")), &record),
            Some(ip("192.168.0.2"))
        );
        assert_eq!(peer_ip(None, &record), Some(ip("127.0.0.1")));
        assert_eq!(peer_ip(None, &[ma("/dns4/example.com/tcp/1")]), None);
        assert_eq!(
            peer_group(None, &[ma("/ip6/2001:db8:5::1/tcp/1")]),
            Some(NetGroup::V6([0x20, 0x01, 0x0d, 0xb8, 0, 5]))
        );
    }
}
