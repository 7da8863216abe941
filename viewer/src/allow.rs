//! `--allow CIDR`: which peer addresses may connect.
//!
//! A peer that reaches a dual-stack `[::]` listener over IPv4 shows up as an
//! IPv4-mapped IPv6 address (`::ffff:10.0.0.5`); it is matched as the IPv4
//! address it really is, so `--allow 10.0.0.0/8` works on either listener.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network written as `ADDR/PREFIX`, e.g. `192.168.1.0/24` or `fd00::/8`.
/// A bare address means just that host (`/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address with its host bits cleared.
    network: IpAddr,
    prefix_len: u8,
}

/// Why a `--allow` value is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress { input: String },
    /// The part after `/` is not a number in range for the address family.
    BadPrefix { input: String, max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::BadAddress { input } => write!(
                f,
                "`{input}` is not an IP network (write e.g. 192.168.1.0/24, 10.1.2.3 or fd00::/8)"
            ),
            CidrError::BadPrefix { input, max } => write!(
                f,
                "`{input}` has a bad prefix length (it must be a number from 0 to {max})"
            ),
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// True when `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix_len);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix_len);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_u128(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let bad_address = || CidrError::BadAddress {
            input: input.to_owned(),
        };
        let addr = addr.parse::<IpAddr>().map_err(|_| bad_address())?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(CidrError::BadPrefix {
                        input: input.to_owned(),
                        max,
                    })
                }
            },
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) means the IPv4
        // network, which is how peers are matched.
        let (addr, prefix_len) = match addr {
            IpAddr::V6(v6) if prefix_len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix_len - 96),
                None => (addr, prefix_len),
            },
            _ => (addr, prefix_len),
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::from((u32::from(a) & mask_u32(prefix_len)).to_be_bytes()),
            IpAddr::V6(a) => IpAddr::from((u128::from(a) & mask_u128(prefix_len)).to_be_bytes()),
        };
        Ok(Cidr {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The `--allow` list: empty allows everyone.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    networks: Vec<Cidr>,
}

impl AllowList {
    pub fn new(networks: Vec<Cidr>) -> AllowList {
        AllowList { networks }
    }

    /// True without `--allow`.
    pub fn allows_all(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(ip))
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_prefix_matches_inside_only() {
        let net = cidr("192.168.1.0/24");
        assert!(net.contains(ip("192.168.1.0")));
        assert!(net.contains(ip("192.168.1.255")));
        assert!(!net.contains(ip("192.168.2.1")));
        assert!(!net.contains(ip("10.0.0.1")));
    }

    #[test]
    fn host_bits_are_cleared_and_bare_address_is_one_host() {
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        let host = cidr("10.1.2.3");
        assert!(host.contains(ip("10.1.2.3")));
        assert!(!host.contains(ip("10.1.2.4")));
    }

    #[test]
    fn zero_prefix_matches_its_whole_family() {
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_prefix_matches() {
        let net = cidr("fd00::/8");
        assert!(net.contains(ip("fd12:3456::1")));
        assert!(!net.contains(ip("fe80::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(!cidr("::1/128").contains(ip("::2")));
    }

    #[test]
    fn ipv4_mapped_peer_matches_ipv4_network() {
        // What a dual-stack [::] listener reports for an IPv4 client.
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.0.0.7")));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "/",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn empty_list_allows_all_and_list_filters() {
        assert!(AllowList::default().allows(ip("198.51.100.1")));
        let list = AllowList::new(vec![cidr("10.0.0.0/8"), cidr("::1")]);
        assert!(list.allows(ip("10.9.9.9")));
        assert!(list.allows(ip("::1")));
        assert!(!list.allows(ip("127.0.0.1")));
    }
}
