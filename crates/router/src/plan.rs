//! The plan: every listener and route with its boundary, reason and transport, or the
//! refusals that keep an untrusted boundary from being crossed in plaintext.

use std::fmt;
use std::net::SocketAddr;

use mcp_edge_config::model::{Command, Config, Declared, Endpoint, Policies, Route, Trust};
use mcp_edge_config::secret::MaybeSecret;
use mcp_edge_config::{Boundary, Diagnostic, Protocol};
use url::Url;

use crate::classify::{Classification, Reason, classify_host, classify_listener, strictness};

/// Where the path goes when a route gives only `address = "host:port"`.
pub const DEFAULT_PATH: &str = "/mcp";

/// Every listener and route, classified.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The agents' listener and the admin listener.
    pub listeners: Vec<ListenerPlan>,
    /// The routes, in file order.
    pub routes: Vec<RoutePlan>,
}

/// A listener, classified.
#[derive(Debug, Clone)]
pub struct ListenerPlan {
    /// `gateway` or `admin`.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Who can reach it.
    pub boundary: Boundary,
    /// Why.
    pub reason: Reason,
    /// What it serves.
    pub security: ListenerSecurity,
}

/// How a listener protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerSecurity {
    /// Plain HTTP.
    Plaintext,
    /// HTTPS.
    Tls,
    /// HTTPS, and clients must present a certificate.
    MutualTls,
}

impl fmt::Display for ListenerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerSecurity::Plaintext => "http",
            ListenerSecurity::Tls => "https",
            ListenerSecurity::MutualTls => "https+mtls",
        })
    }
}

/// A route, classified, with the transport chosen for it.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The route's name.
    pub name: String,
    /// The boundary the call crosses.
    pub boundary: Boundary,
    /// Why.
    pub reason: Reason,
    /// How mcp-edge reaches the tool server.
    pub transport: Transport,
    /// The other replicas (`urls`), reached the same way, each classified on its own.
    pub more_urls: Vec<Url>,
    /// Effective policies.
    pub policies: Policies,
}

/// How mcp-edge reaches a tool server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A supervised child process, newline-delimited JSON-RPC on stdin/stdout.
    Stdio(Command),
    /// A network connection.
    Network {
        /// The final URL (for an `address`, with the scheme the boundary calls for).
        url: Url,
        /// Which MCP transport to speak; `Auto` detects it.
        protocol: Protocol,
        /// Plaintext or TLS.
        security: Security,
    },
}

/// Transport security to a network tool server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// No TLS. Only ever chosen for host and trusted boundaries.
    Plaintext,
    /// TLS.
    Tls {
        /// Whether the server's certificate and name are verified.
        verified: bool,
        /// Whether a client certificate is presented.
        mutual: bool,
    },
}

impl Transport {
    /// A short label: `stdio`, `https streamable-http`, `wss websocket`, `http auto`.
    pub fn label(&self) -> String {
        match self {
            Transport::Stdio(_) => "stdio".to_owned(),
            Transport::Network {
                url,
                protocol,
                security,
            } => {
                let mut label = format!("{} {}", url.scheme(), protocol.as_str());
                if let Security::Tls { verified, mutual } = security {
                    if *mutual {
                        label.push_str(" mtls");
                    }
                    if !verified {
                        label.push_str(" UNVERIFIED");
                    }
                }
                label
            }
        }
    }

    /// The endpoint, safe to print: a command line, or a URL with query values redacted.
    pub fn endpoint(&self) -> String {
        match self {
            Transport::Stdio(command) => {
                let mut words = vec![redact_word(&command.program)];
                let mut after_secret_flag = false;
                for arg in &command.args {
                    words.push(match arg {
                        MaybeSecret::Secret(reference) => format!("<secret {reference}>"),
                        MaybeSecret::Plain(_) if after_secret_flag => "<redacted>".to_owned(),
                        MaybeSecret::Plain(word) => redact_word(word),
                    });
                    after_secret_flag =
                        matches!(arg, MaybeSecret::Plain(word) if is_secret_flag(word));
                }
                words.join(" ")
            }
            Transport::Network { url, .. } => redact(url),
        }
    }
}

impl RoutePlan {
    /// The endpoint, safe to print, with its replicas: `url`, or `url (+ url, url)`.
    pub fn endpoint(&self) -> String {
        let first = self.transport.endpoint();
        if self.more_urls.is_empty() {
            return first;
        }
        let more: Vec<String> = self.more_urls.iter().map(redact).collect();
        format!("{first} (+ {})", more.join(", "))
    }
}

/// A URL with every query value replaced by `<redacted>` (API keys travel there).
pub fn redact(url: &Url) -> String {
    let mut base = url.clone();
    if !base.username().is_empty() || base.password().is_some() {
        // Userinfo is a credential (`postgres://app:pw@db/x`), the user name included.
        let _ = base.set_username("redacted");
        let _ = base.set_password(None);
    }
    if url.query().is_none() {
        return base.to_string();
    }
    let pairs: Vec<String> = url
        .query_pairs()
        .map(|(k, _)| format!("{k}=<redacted>"))
        .collect();
    base.set_query(None);
    format!("{base}?{}", pairs.join("&"))
}

/// Words in a name that say its value is a credential.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "key",
    "credential",
    "auth",
    "bearer",
    "private",
];

fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| name.contains(w))
}

/// Whether `word` is a flag whose value follows as the next word and is a credential
/// (`--password`, `--api-key`, `-token`).
fn is_secret_flag(word: &str) -> bool {
    word.starts_with('-') && !word.contains('=') && names_a_secret(word.trim_start_matches('-'))
}

/// One command-line word, safe to print: a URL loses its userinfo and query values,
/// `NAME=value` and `--flag=value` lose the value when the name says it is a
/// credential. A value passed as the word after such a flag is redacted by the caller.
pub fn redact_word(word: &str) -> String {
    if word.contains("://")
        && let Ok(url) = Url::parse(word)
    {
        return redact(&url);
    }
    if let Some((name, _)) = word.split_once('=')
        && names_a_secret(name)
    {
        return format!("{name}=<redacted>");
    }
    // `user:password@host` without a scheme (some database flags take that).
    if let Some((userinfo, rest)) = word.split_once('@')
        && userinfo.contains(':')
        && !userinfo.contains('/')
    {
        return format!("<redacted>@{rest}");
    }
    word.to_owned()
}

/// Classifies every listener and route of a validated configuration.
///
/// Returns the plan when nothing is refused, with the warnings; or `None` and every
/// refusal. Refusals explain why and how to fix them.
pub fn plan(config: &Config) -> (Option<Plan>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let listeners = plan_listeners(config, &mut diags);
    let routes: Vec<RoutePlan> = config
        .routes
        .iter()
        .filter_map(|route| plan_route(route, &config.trust, &mut diags))
        .collect();
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags);
    }
    (Some(Plan { listeners, routes }), diags)
}

/// Applies a declared boundary to an inferred one.
///
/// Stricter (or equal) is always allowed. Looser needs `boundary_override`, and is then
/// reported as a warning so that it stays visible in every `check`.
fn settle(
    inferred: Classification,
    declared: Option<&Declared>,
    subject: &str,
    diags: &mut Vec<Diagnostic>,
) -> Classification {
    let Some(declared) = declared else {
        return inferred;
    };
    if declared.boundary == inferred.boundary {
        return inferred;
    }
    let looser = strictness(declared.boundary) < strictness(inferred.boundary);
    // Who can reach a wildcard listener is not a fact the file contradicts: the operator
    // knows the network it is exposed to.
    let facts_unknown = matches!(inferred.reason, Reason::EveryInterface(_));
    if looser && !facts_unknown {
        let Some(why) = &declared.override_reason else {
            diags.push(
                Diagnostic::error(
                    declared.span.clone(),
                    format!(
                        "{subject} is declared {} but {}, so it is {}",
                        declared.boundary, inferred.reason, inferred.boundary
                    ),
                    ).help(format!(
                    "add the network to [boundaries] trusted_networks or trusted_domains; or, if you are sure, opt in with boundary_override = \"<why {} is right>\"",
                    declared.boundary
                )),
            );
            return inferred;
        };
        diags.push(Diagnostic::warning(
            declared.span.clone(),
            format!(
                "{subject} is declared {} although {} ({} by the facts); allowed by boundary_override",
                declared.boundary, inferred.reason, inferred.boundary
            ),
        ));
        return Classification {
            boundary: declared.boundary,
            reason: Reason::Overridden {
                why: why.clone(),
                inferred: Box::new(inferred),
            },
        };
    }
    Classification {
        boundary: declared.boundary,
        reason: Reason::Declared {
            inferred: Box::new(inferred),
        },
    }
}

fn plan_listeners(config: &Config, diags: &mut Vec<Diagnostic>) -> Vec<ListenerPlan> {
    let listen = &config.gateway.listen;
    let class = settle(
        classify_listener(listen.addr, &config.trust),
        listen.declared.as_ref(),
        &format!("listener {}", listen.addr),
        diags,
    );
    let security = match &listen.tls {
        None => ListenerSecurity::Plaintext,
        Some(tls) if tls.client_ca.is_some() => ListenerSecurity::MutualTls,
        Some(_) => ListenerSecurity::Tls,
    };
    if class.boundary == Boundary::Untrusted && security == ListenerSecurity::Plaintext {
        let span = listen
            .declared
            .as_ref()
            .map(|d| d.span.span())
            .or(listen.span.clone());
        diags.push(
            Diagnostic::error(
                span,
                format!(
                    "listener {} faces an untrusted network ({}) without TLS",
                    listen.addr, class.reason
                ),
            )
            .help("add [gateway.tls] with cert and key (`mcp-edge certs init` makes development ones); or listen on 127.0.0.1; or, if only a trusted network can reach it, set boundary = \"trusted\""),
        );
    }
    let admin_class = classify_listener(config.gateway.admin, &config.trust);
    if admin_class.boundary != Boundary::Host {
        diags.push(
            Diagnostic::warning(
                config.gateway.admin_span.clone(),
                format!(
                    "the admin listener {} serves /health and /metrics without TLS or auth, and {}",
                    config.gateway.admin, admin_class.reason
                ),
            )
            .help("keep it on 127.0.0.1, or restrict who reaches it (a Kubernetes NetworkPolicy lets only the kubelet and Prometheus in)"),
        );
    }
    vec![
        ListenerPlan {
            name: "gateway",
            addr: listen.addr,
            boundary: class.boundary,
            reason: class.reason,
            security,
        },
        ListenerPlan {
            name: "admin",
            addr: config.gateway.admin,
            boundary: admin_class.boundary,
            reason: admin_class.reason,
            security: ListenerSecurity::Plaintext,
        },
    ]
}

fn plan_route(route: &Route, trust: &Trust, diags: &mut Vec<Diagnostic>) -> Option<RoutePlan> {
    let subject = format!("route `{}`", route.name);
    let (class, transport) = match &route.endpoint {
        Endpoint::Command(command) => {
            if let Some(declared) = route
                .declared
                .as_ref()
                .filter(|d| d.boundary != Boundary::Host)
            {
                diags.push(
                    Diagnostic::error(
                        declared.span.clone(),
                        format!("{subject} runs a command, which is always on this host; it cannot be {}", declared.boundary),
                    )
                    .help("remove `boundary`, or use `url` for a tool server elsewhere"),
                );
                return None;
            }
            let class = Classification {
                boundary: Boundary::Host,
                reason: Reason::ChildProcess,
            };
            (class, Transport::Stdio(command.clone()))
        }
        Endpoint::Url(url) => {
            let host = url.host()?.to_owned();
            let class = settle(
                classify_host(&host, trust),
                route.declared.as_ref(),
                &subject,
                diags,
            );
            let transport = network(route, url.clone(), &class, diags)?;
            (class, transport)
        }
        Endpoint::Address { host, port } => {
            let class = settle(
                classify_host(host, trust),
                route.declared.as_ref(),
                &subject,
                diags,
            );
            let websocket = route.protocol == Protocol::Websocket;
            let scheme = match (class.boundary, websocket) {
                (Boundary::Untrusted, false) => "https",
                (Boundary::Untrusted, true) => "wss",
                (_, false) => "http",
                (_, true) => "ws",
            };
            let host = match host {
                url::Host::Ipv6(ip) => format!("[{ip}]"),
                other => other.to_string(),
            };
            let url = Url::parse(&format!("{scheme}://{host}:{port}{DEFAULT_PATH}")).ok()?;
            let transport = network(route, url, &class, diags)?;
            (class, transport)
        }
    };
    let more_urls = replicas(route, &class, trust, &subject, diags)?;
    Some(RoutePlan {
        name: route.name.clone(),
        boundary: class.boundary,
        reason: class.reason,
        transport,
        more_urls,
        policies: route.policies.clone(),
    })
}

/// The other replicas of a route (`urls`): each classified on its own, and refused
/// when it sits behind another boundary than the first.
fn replicas(
    route: &Route,
    class: &Classification,
    trust: &Trust,
    subject: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Url>> {
    let mut more_urls = Vec::new();
    for url in &route.more_urls {
        let host = url.host()?.to_owned();
        let other = settle(
            classify_host(&host, trust),
            route.declared.as_ref(),
            subject,
            diags,
        );
        if other.boundary != class.boundary {
            diags.push(
                Diagnostic::error(
                    route.endpoint_span.clone(),
                    format!(
                        "{subject}'s replicas cross different boundaries: {} is {} ({}), the first is {} ({})",
                        redact(url),
                        other.boundary,
                        other.reason,
                        class.boundary,
                        class.reason
                    ),
                )
                .help("replicas of one tool server must sit behind the same boundary; make one route per boundary"),
            );
            continue;
        }
        if network(route, url.clone(), &other, diags).is_some() {
            more_urls.push(url.clone());
        }
    }
    Some(more_urls)
}

/// Chooses the network transport and refuses what would cross an untrusted boundary
/// unprotected.
fn network(
    route: &Route,
    url: Url,
    class: &Classification,
    diags: &mut Vec<Diagnostic>,
) -> Option<Transport> {
    let subject = format!("route `{}`", route.name);
    let plaintext = matches!(url.scheme(), "http" | "ws");
    let websocket = matches!(url.scheme(), "ws" | "wss");
    let before = diags.iter().filter(|d| d.is_error()).count();

    if plaintext && class.boundary == Boundary::Untrusted {
        let secure = if websocket { "wss" } else { "https" };
        diags.push(
            Diagnostic::error(
                route.endpoint_span.clone(),
                format!(
                    "{subject} would cross an untrusted boundary in plaintext ({}://): {}",
                    url.scheme(),
                    class.reason
                ),
            )
            .help(format!(
                "use {secure}:// (TLS is required across an untrusted boundary); or, if that network is trusted, add it to [boundaries] trusted_networks or trusted_domains"
            )),
        );
    }
    let protocol = protocol(route, &url, &subject, diags);
    let security = security(route, &url, class, &subject, diags);
    credential_warning(route, class, &subject, diags);
    if diags.iter().filter(|d| d.is_error()).count() > before {
        return None;
    }
    Some(Transport::Network {
        url,
        protocol,
        security,
    })
}

/// The MCP transport a network route speaks, refusing a `protocol` its URL contradicts.
fn protocol(route: &Route, url: &Url, subject: &str, diags: &mut Vec<Diagnostic>) -> Protocol {
    let websocket = matches!(url.scheme(), "ws" | "wss");
    match (route.protocol, websocket) {
        (Protocol::Auto | Protocol::Websocket, true) => Protocol::Websocket,
        (Protocol::Websocket, false) => {
            diags.push(
                Diagnostic::error(
                    route
                        .protocol_span
                        .0
                        .clone()
                        .unwrap_or_else(|| route.endpoint_span.span()),
                    format!(
                        "{subject} sets protocol = \"websocket\" but its URL is {}://",
                        url.scheme()
                    ),
                )
                .help("use a ws:// or wss:// URL for WebSocket"),
            );
            Protocol::Websocket
        }
        (other, true) => {
            diags.push(
                Diagnostic::error(
                    route
                        .protocol_span
                        .0
                        .clone()
                        .unwrap_or_else(|| route.endpoint_span.span()),
                    format!(
                        "{subject} sets protocol = \"{}\" but its URL is {}://",
                        other.as_str(),
                        url.scheme()
                    ),
                )
                .help(
                    "ws:// and wss:// speak WebSocket; use http(s):// for Streamable HTTP or SSE",
                ),
            );
            other
        }
        (other, false) => other,
    }
}

/// Plaintext or TLS, refusing TLS settings on a plaintext URL and verification
/// switched off across an untrusted boundary.
fn security(
    route: &Route,
    url: &Url,
    class: &Classification,
    subject: &str,
    diags: &mut Vec<Diagnostic>,
) -> Security {
    let plaintext = matches!(url.scheme(), "http" | "ws");
    let websocket = matches!(url.scheme(), "ws" | "wss");
    match (&route.tls, plaintext) {
        (Some(tls), true) => {
            diags.push(
                Diagnostic::error(tls.span.clone(), format!("{subject} has `tls` settings but a plaintext {}:// URL, so they would be ignored", url.scheme()))
                    .help(if websocket { "use wss://" } else { "use https://" }),
            );
            Security::Plaintext
        }
        (None, true) => Security::Plaintext,
        (None, false) => Security::Tls {
            verified: true,
            mutual: false,
        },
        (Some(tls), false) => {
            if tls.insecure_skip_verify {
                let span = tls
                    .insecure_span
                    .0
                    .clone()
                    .unwrap_or_else(|| tls.span.span());
                match class.boundary {
                    Boundary::Untrusted => diags.push(
                        Diagnostic::error(span, format!("{subject} switches TLS verification off across an untrusted boundary ({})", class.reason))
                            .help("remove insecure_skip_verify; if the server uses a private CA, set tls.ca to its bundle; if its certificate names another host, set tls.server_name"),
                    ),
                    Boundary::Trusted => diags.push(
                        Diagnostic::warning(span, format!("{subject} switches TLS verification off: anyone inside the trusted network could impersonate the server"))
                            .help("set tls.ca to the server's CA bundle instead"),
                    ),
                    Boundary::Host => {}
                }
            }
            Security::Tls {
                verified: !tls.insecure_skip_verify,
                mutual: tls.client_identity.is_some(),
            }
        }
    }
}

/// Warns about a trusted route that presents no service credential.
fn credential_warning(
    route: &Route,
    class: &Classification,
    subject: &str,
    diags: &mut Vec<Diagnostic>,
) {
    // Trusted routes insist on a service credential: a token, a header, or a client
    // certificate (mTLS). Inside the network is not the same as anyone may call.
    let credential = route.auth.bearer.is_some()
        || !route.auth.headers.is_empty()
        || route
            .tls
            .as_ref()
            .is_some_and(|t| t.client_identity.is_some());
    let warned_before = diags
        .iter()
        .any(|d| d.message.contains("with no service credential") && d.message.contains(subject));
    if class.boundary == Boundary::Trusted && !credential && !warned_before {
        diags.push(
            Diagnostic::warning(
                route.endpoint_span.clone(),
                format!("{subject} crosses into the trusted network with no service credential"),
            )
            .help("set auth = { bearer = { env = \"NAME\" } } (or auth.headers), or a client certificate in tls.client_cert/client_key"),
        );
    }
}

/// Who may come in at the front door, checked against where the listener faces:
/// anonymous access only when the file says so, only on a loopback listener, and never
/// beside `[[clients]]` (it would make their grants meaningless); certificate
/// identities only when the listener verifies client certificates.
pub fn admission(config: &Config, plan: &Plan) -> Vec<Diagnostic> {
    use mcp_edge_config::model::Credential;
    let mut diags = Vec::new();
    let gateway = &config.gateway;
    let listener = plan.listeners.iter().find(|l| l.name == "gateway");
    let span = gateway
        .allow_anonymous_span
        .clone()
        .or(gateway.listen.span.clone());
    if gateway.allow_anonymous {
        if let Some(l) = listener.filter(|l| l.boundary != Boundary::Host) {
            diags.push(
                Diagnostic::error(
                    span.clone(),
                    format!(
                        "allow_anonymous is for loopback listeners, and listener {} is {} ({})",
                        l.addr, l.boundary, l.reason
                    ),
                )
                .help("configure [[clients]] with tokens or certificate identities instead"),
            );
        }
        if !config.clients.is_empty() {
            diags.push(
                Diagnostic::error(span, "allow_anonymous is set beside [[clients]]: anonymous requests would get every route, making the clients' grants meaningless")
                    .help("remove allow_anonymous, or remove the [[clients]]"),
            );
        }
    } else if config.clients.is_empty() {
        diags.push(
            Diagnostic::error(span, "no [[clients]] are configured and allow_anonymous is not set, so every request would be refused")
                .help("add [[clients]] with a token or a certificate identity; or, on a loopback listener, set allow_anonymous = true in [gateway]"),
        );
    }
    let verifies_certificates = gateway
        .listen
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    for client in &config.clients {
        if matches!(client.credential, Credential::Identity(_)) && !verifies_certificates {
            diags.push(
                Diagnostic::error(client.token_span.clone(), format!("client `{}` is identified by its certificate, but the listener verifies no client certificates", client.name))
                    .help("set [gateway] tls = { cert = \"…\", key = \"…\", client_ca = \"…\" }"),
            );
        }
    }
    diags
}
