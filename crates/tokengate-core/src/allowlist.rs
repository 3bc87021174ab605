//! IP allowlists: a list of CIDRs, v4 and v6. An empty list allows everyone.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist(Box<[IpNet]>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a CIDR (e.g. 203.0.113.0/24 or 2001:db8::/32) or an IP address")]
pub struct BadCidr(pub String);

impl IpAllowlist {
    /// Parses CIDRs; a bare address means just that address.
    pub fn parse<S: AsRef<str>>(cidrs: &[S]) -> Result<IpAllowlist, BadCidr> {
        cidrs
            .iter()
            .map(|c| {
                let c = c.as_ref().trim();
                c.parse::<IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| BadCidr(c.chars().take(64).collect()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| IpAllowlist(nets.into_boxed_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` may pass. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a
    /// dual-stack listener reports IPv4 clients) are matched as the IPv4 address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether `ip` is inside one of the listed networks (never, for an empty list):
    /// for deny lists, where empty means "nothing".
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn v4_v6_and_mapped_addresses() {
        let list = IpAllowlist::parse(&["203.0.113.0/24", "::1/128", "10.1.2.3"]).unwrap_or_default();
        assert!(list.allows(ip("203.0.113.9")));
        assert!(!list.allows(ip("203.0.114.9")));
        assert!(list.allows(ip("::1")));
        assert!(!list.allows(ip("::2")));
        assert!(list.allows(ip("::ffff:203.0.113.7")));
        assert!(list.allows(ip("10.1.2.3")));
        assert!(!list.allows(ip("10.1.2.4")));
    }

    #[test]
    fn empty_allows_all_and_garbage_is_refused() {
        assert!(IpAllowlist::default().allows(ip("192.0.2.1")));
        assert!(IpAllowlist::parse(&["300.1.1.1/8"]).is_err());
        assert!(IpAllowlist::parse(&["10.0.0.0/33"]).is_err());
        assert_eq!(IpAllowlist::parse(&["10.1.2.3/8"]).map(|l| l.to_strings()), Ok(vec!["10.0.0.0/8".to_string()]));
    }
}
