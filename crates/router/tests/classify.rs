//! Table-driven classification: addresses, CIDR edges, names and their tricks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_config::Boundary::{self, Host, Trusted, Untrusted};
use mcp_edge_config::model::{Trust, normalize_domain};
use mcp_edge_router::classify_host;

fn trust() -> Trust {
    Trust {
        networks: [
            "10.0.0.0/8",
            "192.168.10.0/24",
            "fd00::/8",
            "2001:db8:1::/48",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect(),
        domains: [".svc.cluster.local", "Corp.Example.", ".bücher.example"]
            .iter()
            .map(|d| normalize_domain(d).unwrap())
            .collect(),
    }
}

/// Classifies the host of `url` as the gateway would see it (via the `url` crate, which
/// lowercases, IDNA-encodes and normalizes IPv4 forms).
fn class(url: &str) -> (Boundary, String) {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let c = classify_host(&parsed.host().unwrap().to_owned(), &trust());
    (c.boundary, c.reason.to_string())
}

#[test]
fn addresses() {
    let table: &[(&str, Boundary, &str)] = &[
        (
            "http://127.0.0.1:1/",
            Host,
            "127.0.0.1 is a loopback address",
        ),
        (
            "http://127.255.255.254/",
            Host,
            "127.255.255.254 is a loopback address",
        ),
        ("http://[::1]/", Host, "::1 is a loopback address"),
        (
            "http://[::ffff:127.0.0.1]/",
            Host,
            "127.0.0.1 is a loopback address",
        ),
        // WHATWG URL parsing turns these into 127.0.0.1; so does the HTTP client.
        ("http://0x7f.1/", Host, "127.0.0.1 is a loopback address"),
        (
            "http://2130706433/",
            Host,
            "127.0.0.1 is a loopback address",
        ),
        (
            "http://10.4.0.7/",
            Trusted,
            "10.4.0.7 is inside trusted network 10.0.0.0/8",
        ),
        (
            "http://10.0.0.0/",
            Trusted,
            "10.0.0.0 is inside trusted network 10.0.0.0/8",
        ),
        (
            "http://10.255.255.255/",
            Trusted,
            "10.255.255.255 is inside trusted network 10.0.0.0/8",
        ),
        (
            "http://11.0.0.0/",
            Untrusted,
            "11.0.0.0 is in no trusted network",
        ),
        (
            "http://9.255.255.255/",
            Untrusted,
            "9.255.255.255 is in no trusted network",
        ),
        (
            "http://192.168.10.255/",
            Trusted,
            "192.168.10.255 is inside trusted network 192.168.10.0/24",
        ),
        (
            "http://192.168.11.0/",
            Untrusted,
            "192.168.11.0 is in no trusted network",
        ),
        (
            "http://[::ffff:10.1.2.3]/",
            Trusted,
            "10.1.2.3 is inside trusted network 10.0.0.0/8",
        ),
        (
            "http://[fd12:3456::7]/",
            Trusted,
            "fd12:3456::7 is inside trusted network fd00::/8",
        ),
        (
            "http://[fe80::1]/",
            Untrusted,
            "fe80::1 is in no trusted network",
        ),
        (
            "http://[2001:db8:1:ffff::1]/",
            Trusted,
            "2001:db8:1:ffff::1 is inside trusted network 2001:db8:1::/48",
        ),
        (
            "http://[2001:db8:2::1]/",
            Untrusted,
            "2001:db8:2::1 is in no trusted network",
        ),
        (
            "http://203.0.113.9/",
            Untrusted,
            "203.0.113.9 is in no trusted network",
        ),
        (
            "http://169.254.169.254/",
            Untrusted,
            "169.254.169.254 is in no trusted network",
        ),
    ];
    for (url, boundary, reason) in table {
        assert_eq!(class(url), (*boundary, (*reason).to_owned()), "{url}");
    }
}

#[test]
fn names() {
    let table: &[(&str, Boundary, &str)] = &[
        (
            "http://localhost:8080/",
            Host,
            "localhost is a localhost name (always loopback)",
        ),
        (
            "http://LOCALHOST./",
            Host,
            "localhost is a localhost name (always loopback)",
        ),
        (
            "http://tools.localhost/",
            Host,
            "tools.localhost is a localhost name (always loopback)",
        ),
        (
            "http://localhost.attacker.com/",
            Untrusted,
            "localhost.attacker.com is under no trusted domain",
        ),
        (
            "http://docs.tools.svc.cluster.local/",
            Trusted,
            "docs.tools.svc.cluster.local is under trusted domain .svc.cluster.local",
        ),
        (
            "http://svc.cluster.local/",
            Trusted,
            "svc.cluster.local is under trusted domain .svc.cluster.local",
        ),
        (
            "http://DOCS.Tools.SVC.cluster.LOCAL/",
            Trusted,
            "docs.tools.svc.cluster.local is under trusted domain .svc.cluster.local",
        ),
        (
            "http://docs.tools.svc.cluster.local./",
            Trusted,
            "docs.tools.svc.cluster.local is under trusted domain .svc.cluster.local",
        ),
        (
            "http://evil-svc.cluster.local.attacker.com/",
            Untrusted,
            "evil-svc.cluster.local.attacker.com is under no trusted domain",
        ),
        (
            "http://evilsvc.cluster.local/",
            Untrusted,
            "evilsvc.cluster.local is under no trusted domain",
        ),
        (
            "http://svc.cluster.local.attacker.com/",
            Untrusted,
            "svc.cluster.local.attacker.com is under no trusted domain",
        ),
        (
            "http://cluster.local/",
            Untrusted,
            "cluster.local is under no trusted domain",
        ),
        (
            "http://wiki.corp.example/",
            Trusted,
            "wiki.corp.example is under trusted domain .corp.example",
        ),
        (
            "http://corp.example.evil/",
            Untrusted,
            "corp.example.evil is under no trusted domain",
        ),
        (
            "http://notcorp.example/",
            Untrusted,
            "notcorp.example is under no trusted domain",
        ),
        // IDNs: the config's `.bücher.example` and the URL's host meet in punycode.
        (
            "http://shop.bücher.example/",
            Trusted,
            "shop.xn--bcher-kva.example is under trusted domain .xn--bcher-kva.example",
        ),
        (
            "http://shop.BÜCHER.example/",
            Trusted,
            "shop.xn--bcher-kva.example is under trusted domain .xn--bcher-kva.example",
        ),
        (
            "http://shop.bucher.example/",
            Untrusted,
            "shop.bucher.example is under no trusted domain",
        ),
        (
            "http://10.0.0.1.nip.io/",
            Untrusted,
            "10.0.0.1.nip.io is under no trusted domain",
        ),
        (
            "https://mcp.partner.example/mcp",
            Untrusted,
            "mcp.partner.example is under no trusted domain",
        ),
    ];
    for (url, boundary, reason) in table {
        assert_eq!(class(url), (*boundary, (*reason).to_owned()), "{url}");
    }
}
