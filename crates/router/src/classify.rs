//! Which boundary an address or name sits behind, and why.
//!
//! The rule from the field: if the network is not fully trusted, it is untrusted. Names
//! are classified as written, never resolved: a DNS answer can change after `check` ran,
//! so a name is trusted only when it sits under a configured trusted domain.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use mcp_edge_config::Boundary;
use mcp_edge_config::model::Trust;

/// A boundary and the fact it was inferred from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The boundary.
    pub boundary: Boundary,
    /// Why.
    pub reason: Reason,
}

/// The fact behind a classification. `Display` prints it as a sentence fragment, e.g.
/// "10.4.0.7 is inside trusted network 10.0.0.0/8".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A command: a child process on this host.
    ChildProcess,
    /// A loopback address.
    Loopback(IpAddr),
    /// `localhost` or a name under `.localhost` (RFC 6761: always loopback).
    LocalhostName(String),
    /// An address inside a trusted network.
    TrustedNetwork(IpAddr, IpNet),
    /// A name under a trusted domain.
    TrustedDomain(String, String),
    /// An address in no trusted network.
    UntrustedAddress(IpAddr),
    /// A name under no trusted domain.
    UntrustedName(String),
    /// A listener on `0.0.0.0` or `::`: anyone who can route to the machine.
    EveryInterface(IpAddr),
    /// Declared in the file, stricter than or equal to what the facts say.
    Declared {
        /// The inferred classification.
        inferred: Box<Classification>,
    },
    /// Declared looser than the facts, with the file's opt-in reason.
    Overridden {
        /// The inferred classification.
        inferred: Box<Classification>,
        /// The `boundary_override` text.
        why: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ChildProcess => f.write_str("a command runs as a child process on this host"),
            Reason::Loopback(ip) => write!(f, "{ip} is a loopback address"),
            Reason::LocalhostName(name) => {
                write!(f, "{name} is a localhost name (always loopback)")
            }
            Reason::TrustedNetwork(ip, net) => write!(f, "{ip} is inside trusted network {net}"),
            Reason::TrustedDomain(name, domain) => {
                write!(f, "{name} is under trusted domain .{domain}")
            }
            Reason::UntrustedAddress(ip) => write!(f, "{ip} is in no trusted network"),
            Reason::UntrustedName(name) => write!(f, "{name} is under no trusted domain"),
            Reason::EveryInterface(ip) => {
                write!(
                    f,
                    "{ip} listens on every interface, so anyone who can reach the machine can connect"
                )
            }
            Reason::Declared { inferred } if inferred.boundary == Boundary::Untrusted => {
                write!(f, "declared; {}", inferred.reason)
            }
            Reason::Declared { inferred } => {
                write!(
                    f,
                    "declared, stricter than inferred {} ({})",
                    inferred.boundary, inferred.reason
                )
            }
            Reason::Overridden { inferred, why } => write!(
                f,
                "boundary_override \"{why}\"; inferred {} ({})",
                inferred.boundary, inferred.reason
            ),
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Classifies an IP address a tool server is reached at.
pub fn classify_ip(ip: IpAddr, trust: &Trust) -> Classification {
    let ip = canonical(ip);
    if is_loopback(ip) {
        return Classification {
            boundary: Boundary::Host,
            reason: Reason::Loopback(ip),
        };
    }
    match trust.networks.iter().find(|net| net.contains(&ip)) {
        Some(net) => Classification {
            boundary: Boundary::Trusted,
            reason: Reason::TrustedNetwork(ip, *net),
        },
        None => Classification {
            boundary: Boundary::Untrusted,
            reason: Reason::UntrustedAddress(ip),
        },
    }
}

/// Classifies a DNS name, matched on label boundaries: `.svc.cluster.local` covers
/// `a.svc.cluster.local` and `svc.cluster.local`, never `evilsvc.cluster.local` or
/// `a.svc.cluster.local.attacker.com`. The name must already be lowercase ASCII (as
/// `url` leaves it: IDNs in punycode); one trailing dot is ignored.
pub fn classify_name(name: &str, trust: &Trust) -> Classification {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare == "localhost" || bare.ends_with(".localhost") {
        return Classification {
            boundary: Boundary::Host,
            reason: Reason::LocalhostName(bare.to_owned()),
        };
    }
    let under = |domain: &String| {
        bare == domain
            || bare
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.ends_with('.'))
    };
    match trust.domains.iter().find(|d| under(d)) {
        Some(domain) => Classification {
            boundary: Boundary::Trusted,
            reason: Reason::TrustedDomain(bare.to_owned(), domain.clone()),
        },
        None => Classification {
            boundary: Boundary::Untrusted,
            reason: Reason::UntrustedName(bare.to_owned()),
        },
    }
}

/// Classifies the host of a URL or address.
pub fn classify_host(host: &url::Host, trust: &Trust) -> Classification {
    match host {
        url::Host::Ipv4(ip) => classify_ip(IpAddr::V4(*ip), trust),
        url::Host::Ipv6(ip) => classify_ip(IpAddr::V6(*ip), trust),
        url::Host::Domain(name) => classify_name(&name.to_ascii_lowercase(), trust),
    }
}

/// Classifies a listening address by who can reach it.
pub fn classify_listener(addr: SocketAddr, trust: &Trust) -> Classification {
    if addr.ip().is_unspecified() {
        return Classification {
            boundary: Boundary::Untrusted,
            reason: Reason::EveryInterface(addr.ip()),
        };
    }
    classify_ip(addr.ip(), trust)
}

/// How strict a boundary is: host < trusted < untrusted.
pub fn strictness(boundary: Boundary) -> u8 {
    match boundary {
        Boundary::Host => 0,
        Boundary::Trusted => 1,
        Boundary::Untrusted => 2,
    }
}
