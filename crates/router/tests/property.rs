//! Property: whatever a routes file says, no endpoint classified untrusted is ever
//! reached in plaintext or without verification, and no endpoint is classified looser
//! than its facts without an explicit override.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_config::{Boundary, Source, parse};
use mcp_edge_router::{Security, Transport, classify_host, plan};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>()).prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        Just("127.0.0.1".to_owned()),
        (0u8..=255).prop_map(|b| format!("10.{b}.0.1")),
        any::<u16>().prop_map(|s| format!("[fd00::{s:x}]")),
        any::<u128>().prop_map(|a| format!("[{}]", std::net::Ipv6Addr::from(a))),
        prop::sample::select(vec![
            "localhost",
            "docs.svc.cluster.local",
            "evil-svc.cluster.local.attacker.com",
            "mcp.partner.example",
            "SVC.CLUSTER.LOCAL.",
            "a.localhost",
            "localhost.evil.com",
            "xn--bcher-kva.example",
            "bücher.example",
        ])
        .prop_map(str::to_owned),
    ]
}

fn route() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https", "ws", "wss", "address"]),
        host(),
        1u16..,
        prop::option::of(prop::sample::select(vec!["host", "trusted", "untrusted"])),
        any::<bool>(),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec![
            "auto",
            "streamable-http",
            "sse",
            "websocket",
        ])),
    )
        .prop_map(
            |(scheme, host, port, boundary, override_, insecure, protocol)| {
                let mut r = String::from("[[route]]\nname = \"r\"\n");
                if scheme == "address" {
                    r += &format!("address = \"{host}:{port}\"\n");
                } else {
                    r += &format!("url = \"{scheme}://{host}:{port}/mcp\"\n");
                }
                if let Some(b) = boundary {
                    r += &format!("boundary = \"{b}\"\n");
                    if override_ {
                        r += "boundary_override = \"test\"\n";
                    }
                }
                if let Some(i) = insecure {
                    r += &format!("tls = {{ insecure_skip_verify = {i} }}\n");
                }
                if let Some(p) = protocol {
                    r += &format!("protocol = \"{p}\"\n");
                }
                r
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn untrusted_never_gets_plaintext(route in route()) {
        let text = format!("[boundaries]\ntrusted_networks = [\"10.0.0.0/8\", \"fd00::/8\"]\ntrusted_domains = [\".svc.cluster.local\"]\n{route}");
        let (config, _) = parse(&Source::new("routes.toml", text));
        let Some(config) = config else { return Ok(()) };
        let declared_looser_ok = route.contains("boundary_override");
        let (planned, _) = plan(&config);
        let Some(planned) = planned else { return Ok(()) };
        for r in &planned.routes {
            let Transport::Network { url, security, .. } = &r.transport else {
                prop_assert!(false, "a url route planned as stdio");
                continue;
            };
            if r.boundary == Boundary::Untrusted {
                prop_assert_eq!(*security, Security::Tls { verified: true, mutual: false }, "{}", route);
                prop_assert!(matches!(url.scheme(), "https" | "wss"), "{}", route);
            }
            let inferred = classify_host(&url.host().unwrap().to_owned(), &config.trust).boundary;
            if !declared_looser_ok {
                let rank = |b: Boundary| b as u8;
                prop_assert!(rank(r.boundary) >= rank(inferred), "{} classified looser than {:?}", route, inferred);
            }
            if *security == Security::Plaintext {
                prop_assert!(r.boundary != Boundary::Untrusted);
            }
        }
    }
}
