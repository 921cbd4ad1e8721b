//! The SSRF guard for requests the server makes to addresses its users give it (webhook
//! endpoints; monitors' targets): no request may reach this machine, its network or a cloud's
//! metadata service on a user's say-so.
//!
//! A URL is checked twice. [`Guard::check_url`] at creation: the scheme (`https` only in
//! production), no credentials in it, a host, and a literal IP address must be public. Then at
//! every delivery, [`GuardedResolver`] is the HTTP client's resolver: each address a name
//! resolves to must be public, checked on the very addresses the connection will use — a name
//! that resolved public when the endpoint was made and private now (DNS rebinding) is refused at
//! delivery. (Literal addresses never reach a resolver; `check_url` runs before each delivery
//! too.) Not public: loopback, private (RFC 1918, unique local), link-local (where the cloud
//! metadata services live: 169.254.169.254, fd00:ec2::254), CGNAT, multicast, broadcast,
//! unspecified, documentation, benchmarking and reserved ranges, and IPv6 forms that embed an
//! IPv4 address (mapped, compatible, NAT64, 6to4), judged by that address.
//!
//! `AIRWAVE_WEBHOOK_ALLOW_HOSTS` names exceptions for development and tests: host names
//! (`receiver.test`, `*.internal.example`) whose addresses are not checked, and networks
//! (`127.0.0.1/32`, `::1`) whose addresses are allowed.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// One exception of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A host name, lower case; `*.example.com` matches every name under `example.com`.
    Host(String),
    /// Addresses in this network are allowed.
    Net(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{entry}` is neither a host name, an IP address nor a CIDR network")]
pub struct BadAllowEntry {
    pub entry: String,
}

/// Parses a comma-separated allow-list (blank: none).
pub fn parse_allow_list(text: &str) -> Result<Vec<Allowed>, BadAllowEntry> {
    let mut out = Vec::new();
    for raw in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Ok(net) = raw.parse::<IpNet>() {
            out.push(Allowed::Net(net));
        } else if let Ok(ip) = raw.parse::<IpAddr>() {
            out.push(Allowed::Net(IpNet::from(ip)));
        } else {
            let name = raw.to_ascii_lowercase();
            let bare = name.strip_prefix("*.").unwrap_or(&name);
            let ok = !bare.is_empty()
                && bare.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(BadAllowEntry {
                    entry: raw.to_owned(),
                });
            }
            out.push(Allowed::Host(name));
        }
    }
    Ok(out)
}

/// Why an outgoing request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("only http:// and https:// URLs are allowed")]
    Scheme,
    #[error("only https:// URLs are allowed in production")]
    HttpsOnly,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("the URL has no host")]
    NoHost,
    #[error("`{host}` is {why} ({ip}): requests there are not allowed")]
    NotPublic {
        host: String,
        ip: IpAddr,
        why: &'static str,
    },
    #[error("`{host}` does not resolve: {reason}")]
    Unresolved { host: String, reason: String },
}

/// Why `ip` is not a public address, or `None` when it is.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let why = match o {
        [0, ..] => "an unspecified address",
        [127, ..] => "a loopback address",
        [10, ..] | [192, 168, ..] => "a private address",
        [172, b, ..] if (16..32).contains(&b) => "a private address",
        [100, b, ..] if (64..128).contains(&b) => "a shared (CGNAT) address",
        [169, 254, ..] => "a link-local address (cloud metadata lives here)",
        [192, 0, 0, _] => "an IETF protocol address",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [198, 18 | 19, ..] => "a benchmarking address",
        [224..=239, ..] => "a multicast address",
        [255, 255, 255, 255] => "the broadcast address",
        [240..=255, ..] => "a reserved address",
        _ => return None,
    };
    Some(why)
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // IPv4 inside IPv6: judged by the IPv4 address.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return not_public_v4(v4);
    }
    match s {
        // ::a.b.c.d (IPv4-compatible, deprecated) and 64:ff9b::a.b.c.d (NAT64).
        [0, 0, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return not_public_v4(embedded(hi, lo));
        }
        // 6to4: 2002:aabb:ccdd::/48 carries a.b.c.d.
        [0x2002, hi, lo, ..] => {
            if let Some(why) = not_public_v4(embedded(hi, lo)) {
                return Some(why);
            }
        }
        _ => {}
    }
    let why = match s[0] {
        x if x & 0xfe00 == 0xfc00 => "a unique local (private) address",
        x if x & 0xffc0 == 0xfe80 => "a link-local address",
        x if x & 0xffc0 == 0xfec0 => "a site-local address",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        0x2001 if s[1] == 0x0db8 => "a documentation address",
        0x0100 if s[1..4] == [0, 0, 0] => "a discard address",
        _ => return None,
    };
    Some(why)
}

/// The guard, as configured.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Vec<Allowed>,
    production: bool,
}

impl Guard {
    pub fn new(allowed: Vec<Allowed>, production: bool) -> Self {
        Self {
            allowed,
            production,
        }
    }

    /// Whether `host` (a name) is on the allow-list.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed.iter().any(|a| match a {
            Allowed::Host(h) => match h.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => *h == host,
            },
            Allowed::Net(_) => false,
        })
    }

    /// Whether `host`'s address `ip` may be reached.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let ip = match ip {
            // An IPv4-mapped address is the IPv4 address, for the allow-list too.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let allowed = self
            .allowed
            .iter()
            .any(|a| matches!(a, Allowed::Net(n) if n.contains(&ip)));
        match not_public(ip) {
            Some(why) if !allowed => Err(Refused::NotPublic {
                host: host.to_owned(),
                ip,
                why,
            }),
            _ => Ok(()),
        }
    }

    /// What can be told from the URL alone.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        match url.scheme() {
            "https" => {}
            "http" if !self.production => {}
            "http" => return Err(Refused::HttpsOnly),
            _ => return Err(Refused::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        match url.host() {
            None => Err(Refused::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// `addrs`, the addresses `host` resolved to, each checked (all must pass: one private
    /// answer among public ones is refused, not skipped).
    pub fn check_resolved(&self, host: &str, addrs: &[IpAddr]) -> Result<(), Refused> {
        if self.host_allowed(host) {
            return Ok(());
        }
        if addrs.is_empty() {
            return Err(Refused::Unresolved {
                host: host.to_owned(),
                reason: "no address".into(),
            });
        }
        addrs.iter().try_for_each(|ip| self.check_ip(host, *ip))
    }
}

/// The HTTP client's resolver: names resolved with `hickory-resolver`, every answer through the
/// guard before a connection is made.
pub struct GuardedResolver {
    guard: Arc<Guard>,
    resolver: hickory_resolver::TokioResolver,
}

impl GuardedResolver {
    pub fn new(guard: Arc<Guard>, resolver: hickory_resolver::TokioResolver) -> Self {
        Self { guard, resolver }
    }

    /// With one name server alone (tests, or a resolver of one's own).
    pub fn at(
        guard: Arc<Guard>,
        server: SocketAddr,
    ) -> Result<Self, crate::email::domain::DnsError> {
        Ok(Self::new(
            guard,
            crate::email::domain::HickoryDns::at(server)?.into_resolver(),
        ))
    }
}

/// An HTTP client for guarded requests: every name resolved through `resolver`, no proxy from
/// the environment (a proxy would connect where the guard never looked), no redirect followed
/// (a redirect is an answer like any other: the caller decides), `timeout` for the whole
/// request.
pub fn client(
    resolver: GuardedResolver,
    timeout: std::time::Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(resolver))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (guard, resolver) = (self.guard.clone(), self.resolver.clone());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips: Vec<IpAddr> = match resolver.lookup_ip(host.as_str()).await {
                Ok(l) => l.iter().collect(),
                Err(e) => {
                    return Err(Box::new(Refused::Unresolved {
                        host,
                        reason: e.to_string(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>)
                }
            };
            guard
                .check_resolved(&host, &ips)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_is_not_public() {
        for s in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(not_public(ip(s)).is_some(), "{s} passed as public");
        }
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.0.1",
            "172.32.0.1",
            "100.63.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(not_public(ip(s)), None, "{s} refused");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_addresses() {
        let dev = Guard::new(Vec::new(), false);
        let prod = Guard::new(Vec::new(), true);
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(dev.check_url(&u("https://hooks.example.com/x")), Ok(()));
        assert_eq!(dev.check_url(&u("http://hooks.example.com/x")), Ok(()));
        assert_eq!(
            prod.check_url(&u("http://hooks.example.com/x")),
            Err(Refused::HttpsOnly)
        );
        assert_eq!(
            dev.check_url(&u("ftp://hooks.example.com/x")),
            Err(Refused::Scheme)
        );
        assert_eq!(
            dev.check_url(&u("https://me:pw@hooks.example.com/")),
            Err(Refused::Credentials)
        );
        for s in [
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0:8080/",
            "https://169.254.169.254/latest/meta-data/",
            // The URL parser reads these forms as IPv4 addresses.
            "https://2130706433/",
            "https://0x7f.1/",
        ] {
            assert!(
                matches!(dev.check_url(&u(s)), Err(Refused::NotPublic { .. })),
                "{s} passed"
            );
        }
    }

    #[test]
    fn the_allow_list_exempts_names_and_networks() {
        let allowed =
            parse_allow_list(" 127.0.0.1/32, ::1 , receiver.test, *.internal.example ").unwrap();
        assert_eq!(allowed.len(), 4);
        let g = Guard::new(allowed, false);
        assert_eq!(g.check_ip("x", ip("127.0.0.1")), Ok(()));
        assert_eq!(g.check_ip("x", ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(g.check_ip("x", ip("::1")), Ok(()));
        assert!(g.check_ip("x", ip("127.0.0.2")).is_err());
        assert!(g.host_allowed("receiver.test") && g.host_allowed("RECEIVER.test."));
        assert!(g.host_allowed("a.b.internal.example") && !g.host_allowed("internal.example"));
        assert_eq!(g.check_resolved("receiver.test", &[ip("10.0.0.1")]), Ok(()));
        // One private answer among public ones refuses the name.
        assert!(g
            .check_resolved("mixed.example.com", &[ip("8.8.8.8"), ip("10.0.0.1")])
            .is_err());
        assert!(g.check_resolved("nothing.example.com", &[]).is_err());
        assert!(parse_allow_list("bad host!").is_err());
        assert!(parse_allow_list("*.").is_err());
        assert_eq!(parse_allow_list("").unwrap(), Vec::new());
    }
}
