//! CIDR blocks (IPv4 and IPv6) and the `ipBlock` peer: `cidr` minus every `except`.

use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::networking::v1::IPBlock;

/// An address block such as `10.0.0.0/24` or `2001:db8::/64`.
///
/// Host bits below the prefix are ignored, as Go's `net.ParseCIDR` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a string is not a CIDR block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/prefix` part.
    #[error("{0:?} has no /prefix")]
    MissingPrefix(String),
    /// The part before the slash is not an IP address.
    #[error("{0:?} does not start with an IP address")]
    InvalidAddress(String),
    /// The prefix is not a number within the address family's width.
    #[error("{0:?} has an invalid prefix length")]
    InvalidPrefix(String),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(text.to_string()))?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| CidrError::InvalidAddress(text.to_string()))?;
        let width = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix_len = prefix
            .parse::<u8>()
            .ok()
            .filter(|len| *len <= width && !prefix.starts_with('+'))
            .ok_or_else(|| CidrError::InvalidPrefix(text.to_string()))?;
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl Cidr {
    /// Whether `ip` lies in this block; an address of the other family never does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len));
                let mask = mask.unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len));
                let mask = mask.unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is in the block's `cidr` and in none of its `except` blocks.
///
/// A block with any unparsable CIDR (the API server rejects those) matches nothing.
pub(crate) fn ip_block_contains(block: &IPBlock, ip: IpAddr) -> bool {
    let Ok(cidr) = block.cidr.parse::<Cidr>() else {
        return false;
    };
    let except: Result<Vec<Cidr>, CidrError> = block
        .except
        .iter()
        .flatten()
        .map(|text| text.parse())
        .collect();
    let Ok(except) = except else {
        return false;
    };
    cidr.contains(ip) && !except.iter().any(|hole| hole.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a valid IP address")
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("a valid CIDR")
    }

    fn block(cidr: &str, except: &[&str]) -> IPBlock {
        IPBlock {
            cidr: cidr.to_string(),
            except: Some(except.iter().map(|hole| hole.to_string()).collect()),
        }
    }

    #[test]
    fn an_ipv4_block_contains_exactly_its_range() {
        let block = cidr("172.17.0.0/16");
        assert!(block.contains(ip("172.17.0.0")));
        assert!(block.contains(ip("172.17.255.255")));
        assert!(!block.contains(ip("172.18.0.0")));
        assert!(!block.contains(ip("172.16.255.255")));
    }

    #[test]
    fn an_ipv6_block_contains_exactly_its_range() {
        let block = cidr("2001:db8::/64");
        assert!(block.contains(ip("2001:db8::1")));
        assert!(block.contains(ip("2001:db8::ffff:ffff:ffff:ffff")));
        assert!(!block.contains(ip("2001:db8:0:1::1")));
    }

    #[test]
    fn a_block_never_contains_the_other_family() {
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(!cidr("::/0").contains(ip("10.0.0.1")));
    }

    #[test]
    fn zero_and_full_prefixes_are_everything_and_one_address() {
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("::/0").contains(ip("fd00::9")));
        assert!(cidr("10.1.2.3/32").contains(ip("10.1.2.3")));
        assert!(!cidr("10.1.2.3/32").contains(ip("10.1.2.4")));
        assert!(cidr("fd00::3/128").contains(ip("fd00::3")));
        assert!(!cidr("fd00::3/128").contains(ip("fd00::4")));
    }

    #[test]
    fn host_bits_below_the_prefix_are_ignored() {
        assert!(cidr("10.0.0.77/24").contains(ip("10.0.0.1")));
    }

    #[test]
    fn malformed_blocks_are_rejected() {
        assert_eq!(
            "10.0.0.0".parse::<Cidr>(),
            Err(CidrError::MissingPrefix("10.0.0.0".into()))
        );
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::InvalidAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::InvalidPrefix(_))
        ));
        assert!(matches!(
            "fd00::/129".parse::<Cidr>(),
            Err(CidrError::InvalidPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/+8".parse::<Cidr>(),
            Err(CidrError::InvalidPrefix(_))
        ));
    }

    #[test]
    fn except_carves_holes_out_of_the_block() {
        let block = block("172.17.0.0/16", &["172.17.1.0/24"]);
        assert!(ip_block_contains(&block, ip("172.17.0.255")));
        assert!(!ip_block_contains(&block, ip("172.17.1.0")));
        assert!(!ip_block_contains(&block, ip("172.17.1.255")));
        assert!(ip_block_contains(&block, ip("172.17.2.0")));
    }

    #[test]
    fn a_block_with_an_unparsable_cidr_matches_nothing() {
        assert!(!ip_block_contains(
            &block("not-a-cidr", &[]),
            ip("10.0.0.1")
        ));
        assert!(!ip_block_contains(
            &block("10.0.0.0/8", &["bogus"]),
            ip("10.0.0.1")
        ));
    }
}
