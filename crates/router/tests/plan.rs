//! The plan: transport choice, and every refusal with the message it gives.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_config::{Boundary, Diagnostic, Severity, Source, parse};
use mcp_edge_router::{Plan, Security, Transport, plan};

const TRUST: &str = r#"
[boundaries]
trusted_networks = ["10.0.0.0/8", "fd00::/8"]
trusted_domains = [".svc.cluster.local"]
"#;

/// Plans `routes` (TOML) after a standard `[boundaries]`; returns the plan and
/// every diagnostic rendered as `line:col: severity: message`.
fn run(routes: &str) -> (Option<Plan>, Vec<String>) {
    let text = format!("{TRUST}{routes}");
    let source = Source::new("routes.toml", text);
    let (config, mut diags) = parse(&source);
    let mut planned = None;
    if let Some(config) = config {
        let (p, more) = plan(&config);
        planned = p;
        diags.extend(more);
    }
    let rendered = diags
        .iter()
        .map(|d: &Diagnostic| render(&source, d))
        .collect();
    (planned, rendered)
}

fn render(source: &Source, d: &Diagnostic) -> String {
    let located = source.locate(d);
    format!(
        "{}:{}: {}: {}{}",
        located.line.unwrap_or(0),
        located.column.unwrap_or(0),
        d.severity.as_str(),
        d.message,
        d.help
            .as_ref()
            .map(|h| format!(" [help: {h}]"))
            .unwrap_or_default()
    )
}

/// Asserts that planning `routes` is refused with one error containing every fragment,
/// placed on `line`.
fn refused(routes: &str, line: usize, fragments: &[&str]) {
    let (planned, diags) = run(routes);
    assert!(planned.is_none(), "expected a refusal for {routes}");
    let errors: Vec<&String> = diags.iter().filter(|d| d.contains(": error: ")).collect();
    let matching: Vec<&&String> = errors
        .iter()
        .filter(|d| fragments.iter().all(|f| d.contains(f)))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "want one error with {fragments:?}, got {diags:#?}"
    );
    let expected = format!("{}:", line + TRUST.lines().count());
    assert!(
        matching[0].starts_with(&expected),
        "want line {expected} in {}",
        matching[0]
    );
}

fn only_route(routes: &str) -> mcp_edge_router::RoutePlan {
    let (planned, diags) = run(routes);
    let planned = planned.unwrap_or_else(|| panic!("refused: {diags:#?}"));
    planned.routes.into_iter().next().expect("one route")
}

#[test]
fn transports_follow_the_boundary() {
    let r = only_route(
        "[[route]]\nname = \"db\"\ncommand = [\"postgres-mcp\", \"--stdio\"]\nargs = [\"-v\"]\n",
    );
    assert_eq!(r.boundary, Boundary::Host);
    assert_eq!(r.transport.label(), "stdio");
    assert_eq!(r.transport.endpoint(), "postgres-mcp --stdio -v");

    let r = only_route("[[route]]\nname = \"local\"\nurl = \"http://127.0.0.1:3000/mcp\"\n");
    assert_eq!(
        (r.boundary, r.transport.label()),
        (Boundary::Host, "http auto".into())
    );

    let r =
        only_route("[[route]]\nname = \"docs\"\naddress = \"docs.tools.svc.cluster.local:8080\"\n");
    assert_eq!(r.boundary, Boundary::Trusted);
    assert_eq!(
        r.transport.endpoint(),
        "http://docs.tools.svc.cluster.local:8080/mcp"
    );

    let r = only_route("[[route]]\nname = \"partner\"\naddress = \"mcp.partner.example:443\"\n");
    assert_eq!(r.boundary, Boundary::Untrusted);
    assert_eq!(r.transport.endpoint(), "https://mcp.partner.example/mcp");
    assert!(matches!(
        r.transport,
        Transport::Network {
            security: Security::Tls { verified: true, .. },
            ..
        }
    ));

    let r = only_route(
        "[[route]]\nname = \"v6\"\naddress = \"[fd00::7]:9000\"\nprotocol = \"websocket\"\n",
    );
    assert_eq!(r.transport.endpoint(), "ws://[fd00::7]:9000/mcp");

    let r = only_route("[[route]]\nname = \"ws\"\nurl = \"wss://mcp.partner.example/ws\"\n");
    assert_eq!(r.transport.label(), "wss websocket");

    let r = only_route(
        "[[route]]\nname = \"q\"\nurl = \"https://mcp.partner.example/mcp?api_key=s3cret&team=x\"\n",
    );
    assert_eq!(
        r.transport.endpoint(),
        "https://mcp.partner.example/mcp?api_key=<redacted>&team=<redacted>"
    );
}

#[test]
fn declared_stricter_is_allowed_and_looser_needs_an_opt_in() {
    let r = only_route(
        "[[route]]\nname = \"s\"\nurl = \"https://10.1.1.1/mcp\"\nboundary = \"untrusted\"\n",
    );
    assert_eq!(r.boundary, Boundary::Untrusted);
    assert_eq!(
        r.reason.to_string(),
        "declared, stricter than inferred trusted (10.1.1.1 is inside trusted network 10.0.0.0/8)"
    );

    refused(
        "[[route]]\nname = \"p\"\nurl = \"http://203.0.113.9/mcp\"\nboundary = \"trusted\"\n",
        4,
        &[
            "route `p` is declared trusted but 203.0.113.9 is in no trusted network",
            "boundary_override",
        ],
    );

    let (planned, diags) = run(
        "[[route]]\nname = \"p\"\nurl = \"http://203.0.113.9/mcp\"\nboundary = \"trusted\"\nboundary_override = \"reached over the partner IPsec tunnel\"\nauth = { bearer = { env = \"P_TOKEN\" } }\n",
    );
    let r = &planned.expect("override accepted").routes[0];
    assert_eq!(r.boundary, Boundary::Trusted);
    assert!(
        r.reason
            .to_string()
            .starts_with("boundary_override \"reached over the partner IPsec tunnel\"")
    );
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].starts_with("8:")
            && diags[0].contains(": warning: ")
            && diags[0].contains("allowed by boundary_override")
    );
}

#[test]
fn refuses_plaintext_across_an_untrusted_boundary() {
    refused(
        "[[route]]\nname = \"partner\"\nurl = \"http://mcp.partner.example/mcp\"\n",
        3,
        &[
            "route `partner` would cross an untrusted boundary in plaintext",
            "mcp.partner.example is under no trusted domain",
            "use https://",
        ],
    );
    refused(
        "[[route]]\nname = \"partner\"\nurl = \"ws://mcp.partner.example/ws\"\n",
        3,
        &["in plaintext (ws://)", "use wss://"],
    );
    // Declaring a trusted address untrusted makes plaintext a refusal too.
    refused(
        "[[route]]\nname = \"s\"\nurl = \"http://10.1.1.1/mcp\"\nboundary = \"untrusted\"\n",
        3,
        &["in plaintext"],
    );
}

#[test]
fn refuses_switching_verification_off_across_an_untrusted_boundary() {
    refused(
        "[[route]]\nname = \"p\"\nurl = \"https://mcp.partner.example/mcp\"\ntls = { insecure_skip_verify = true }\n",
        4,
        &[
            "switches TLS verification off across an untrusted boundary",
            "set tls.ca",
        ],
    );
    let (planned, diags) = run(
        "[[route]]\nname = \"d\"\nurl = \"https://docs.svc.cluster.local/mcp\"\ntls = { insecure_skip_verify = true }\n",
    );
    assert!(planned.is_some());
    assert!(
        diags
            .iter()
            .any(|d| d.contains("warning: route `d` switches TLS verification off")),
        "{diags:?}"
    );
}

#[test]
fn refuses_an_untrusted_listener_without_tls() {
    refused(
        "[gateway]\nlisten = \"203.0.113.5:8443\"\n",
        2,
        &[
            "listener 203.0.113.5:8443 faces an untrusted network",
            "without TLS",
            "[gateway.tls]",
        ],
    );
    refused(
        "[gateway]\nlisten = \"0.0.0.0:8080\"\n",
        2,
        &["listens on every interface", "without TLS"],
    );
    refused(
        "[gateway]\nlisten = \"10.0.0.5:8080\"\nboundary = \"untrusted\"\n",
        3,
        &["faces an untrusted network", "without TLS"],
    );
    // A wildcard listener the operator declares trusted is accepted: the file knows the network.
    let (planned, _) = run("[gateway]\nlisten = \"0.0.0.0:8080\"\nboundary = \"trusted\"\n");
    let listener = &planned.expect("accepted").listeners[0];
    assert_eq!(listener.boundary, Boundary::Trusted);
}

#[test]
fn refuses_nonsense_combinations() {
    refused(
        "[[route]]\nname = \"c\"\ncommand = \"srv\"\nboundary = \"trusted\"\n",
        4,
        &["runs a command, which is always on this host"],
    );
    refused(
        "[[route]]\nname = \"t\"\nurl = \"http://10.0.0.9/mcp\"\ntls = { ca = \"ca.pem\" }\n",
        4,
        &["has `tls` settings but a plaintext http:// URL"],
    );
    refused(
        "[[route]]\nname = \"w\"\nurl = \"https://10.0.0.9/mcp\"\nprotocol = \"websocket\"\n",
        4,
        &["protocol = \"websocket\" but its URL is https://"],
    );
    refused(
        "[[route]]\nname = \"w\"\nurl = \"wss://10.0.0.9/mcp\"\nprotocol = \"sse\"\n",
        4,
        &["protocol = \"sse\" but its URL is wss://"],
    );
}

#[test]
fn warns_about_an_exposed_admin_listener() {
    let (planned, diags) = run("[gateway]\nadmin = \"0.0.0.0:9090\"\n");
    assert!(planned.is_some());
    assert!(diags.iter().any(|d| d.contains("warning: the admin listener 0.0.0.0:9090 serves /health and /metrics without TLS or auth")), "{diags:?}");
    let _ = Severity::Warning;
}

/// Runs `admission` on a file; the error messages.
fn admission_errors(text: &str) -> Vec<String> {
    let source = Source::new("routes.toml", text);
    let (config, diags) = parse(&source);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let config = config.unwrap();
    let (planned, _) = plan(&config);
    mcp_edge_router::admission(&config, &planned.expect("planned"))
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| d.message)
        .collect()
}

#[test]
fn anonymous_access_only_when_said_only_on_loopback_never_beside_clients() {
    let route = "[[route]]\nname = \"r\"\ncommand = \"s\"\n";
    let errors = admission_errors(route);
    assert!(
        errors[0].contains("no [[clients]] are configured and allow_anonymous is not set"),
        "{errors:?}"
    );
    assert!(admission_errors(&format!("[gateway]\nallow_anonymous = true\n{route}")).is_empty());
    let errors = admission_errors(&format!(
        "[gateway]\nlisten = \"0.0.0.0:8080\"\nboundary = \"trusted\"\nallow_anonymous = true\n{route}"
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("allow_anonymous is for loopback listeners")),
        "{errors:?}"
    );
    let errors = admission_errors(&format!(
        "[gateway]\nallow_anonymous = true\n{route}[[clients]]\nname = \"a\"\ntoken = {{ env = \"T\" }}\nroutes = [\"*\"]\n"
    ));
    assert!(
        errors.iter().any(|e| e.contains("beside [[clients]]")),
        "{errors:?}"
    );
    let errors = admission_errors(&format!(
        "{route}[[clients]]\nname = \"a\"\nidentity = \"spiffe://x\"\nroutes = [\"*\"]\n"
    ));
    assert!(
        errors.iter().any(|e| e.contains(
            "identified by its certificate, but the listener verifies no client certificates"
        )),
        "{errors:?}"
    );
}

#[test]
fn replicas_are_classified_one_by_one() {
    let r = only_route(
        "[[route]]\nname = \"pool\"\nurls = [\"http://10.0.0.1:8080/mcp\", \"http://10.0.0.2:8080/mcp?key=s3cret\"]\n",
    );
    assert_eq!(r.boundary, Boundary::Trusted);
    assert_eq!(r.more_urls.len(), 1);
    assert_eq!(
        r.endpoint(),
        "http://10.0.0.1:8080/mcp (+ http://10.0.0.2:8080/mcp?key=<redacted>)"
    );
    // One replica across the internet in plaintext: refused, as for `url`.
    refused(
        "[[route]]\nname = \"pool\"\nurls = [\"http://10.0.0.1:8080/mcp\", \"http://203.0.113.9:8080/mcp\"]\n",
        3,
        &[
            "replicas cross different boundaries",
            "203.0.113.9",
            "untrusted",
        ],
    );
    refused(
        "[[route]]\nname = \"pool\"\nurls = [\"http://10.0.0.1/mcp\", \"https://10.0.0.2/mcp\"]\n",
        3,
        &["is https:// but the first of `urls` is http://"],
    );
    refused(
        "[[route]]\nname = \"pool\"\nurls = [\"ws://10.0.0.1/mcp\", \"ws://10.0.0.2/mcp\"]\n",
        3,
        &["balanced for Streamable HTTP tool servers only"],
    );
    refused(
        "[[route]]\nname = \"pool\"\nurl = \"http://10.0.0.1/mcp\"\nurls = [\"http://10.0.0.2/mcp\"]\n",
        4,
        &["sets both `url` and `urls`"],
    );
}
