//! `mcp-edge serve`: load the routes file, start every route, open the front door.
//!
//! A routes file `check` refuses is refused here with the same diagnostics; so is one
//! whose secrets cannot be read. Routes start in the background: a tool server that
//! fails to start is retried with backoff and reported, while the rest serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use mcp_edge_certwatch::{Origin, Thresholds, Watcher};
use mcp_edge_config::Protocol;
use mcp_edge_config::model::{Config, Credential, Endpoint};
use mcp_edge_config::{MaybeSecret, Severity, Source};
use mcp_edge_protocol::Message;
use mcp_edge_router::{Plan, Transport};
use mcp_edge_transport::http::{OnHandshake, PeerTls};
use mcp_edge_transport::{
    Connector, Http, HttpConfig, Link, LinkConfig, LinkKind, ServerInfo, Sink, Stdio, StdioConfig,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::balance::{Balanced, Replica};
use crate::core::{ClientCredential, ClientRt, Gateway, RouteEvent};
use crate::policy::{RoutePolicy, breaker_config};
use crate::session::Sessions;
use crate::stats::RouteStats;
use crate::upstream::{RouteRt, Upstream};
use mcp_edge_breaker::Breaker;

/// A session with no activity and no open stream for this long is ended.
const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// Loads and validates a routes file for running: every diagnostic is printed, and
/// errors (including secrets and files missing on this machine) refuse it.
pub fn load(path: &Path) -> Result<(Config, Plan), String> {
    let (loaded, diags) = analyze(path)?;
    let errors = diags.iter().filter(|(s, _)| *s == Severity::Error).count();
    for (severity, located) in &diags {
        match severity {
            Severity::Error => eprintln!("{located}\n"),
            Severity::Warning => tracing::warn!("{located}"),
        }
    }
    loaded.ok_or_else(|| {
        format!(
            "{}: refused: {errors} error{} (shown above; `mcp-edge check` shows the classification too)",
            path.display(),
            if errors == 1 { "" } else { "s" }
        )
    })
}

/// A routes file read: the configuration when it has no error, and its diagnostics.
pub type Analysis = (Option<(Config, Plan)>, Vec<(Severity, String)>);

/// Reads, validates and plans a routes file: the configuration when it has no error,
/// and every diagnostic located (`file:line:col`, the line, a caret, the fix).
pub fn analyze(path: &Path) -> Result<Analysis, String> {
    let source: Source = mcp_edge_config::read(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (pass the routes file, or set {})",
            path.display(),
            mcp_edge_config::ROUTES_ENV
        )
    })?;
    // Every stage runs on what could be validated, as `check` does, so that a file
    // with many problems shows them all at once, not one stage's at a time.
    let (config, mut diags) = mcp_edge_config::parse_partial(&source);
    let mut plan = None;
    if let Some(config) = &config {
        let (p, more) = mcp_edge_router::plan(config);
        diags.extend(more);
        if let Some(p) = &p {
            diags.extend(mcp_edge_router::admission(config, p));
        }
        plan = p;
        diags.extend(mcp_edge_config::environment_diagnostics(config));
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let located = diags
        .iter()
        .map(|d| (d.severity, source.locate(d).to_string()))
        .collect();
    let loaded = match (config, plan) {
        (Some(config), Some(plan)) if errors == 0 => Some((config, plan)),
        _ => None,
    };
    Ok((loaded, located))
}

/// Forwards what routes report outside calls to the gateway's event loop.
struct ChannelSink(mpsc::Sender<RouteEvent>);

impl Sink for ChannelSink {
    fn notification(&self, route: &str, message: Message) {
        let _ = self.0.try_send(RouteEvent::Notification {
            route: route.to_owned(),
            message,
        });
    }

    fn request(&self, route: &str, message: Message) -> bool {
        self.0
            .try_send(RouteEvent::Request {
                route: route.to_owned(),
                message,
            })
            .is_ok()
    }

    fn availability(&self, route: &str, info: Option<Arc<ServerInfo>>) {
        let _ = self.0.try_send(RouteEvent::Availability {
            route: route.to_owned(),
            up: info.is_some(),
        });
    }
}

/// The program a route launches; `mcp-edge` means this very binary.
fn program(name: &str) -> PathBuf {
    if name == "mcp-edge"
        && let Ok(me) = std::env::current_exe()
    {
        return me;
    }
    PathBuf::from(name)
}

/// The headers a route sends upstream: its bearer token and extra headers, secrets
/// resolved and marked sensitive (hyper never prints them).
fn route_headers(
    route: &mcp_edge_config::Route,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let mut headers = Vec::new();
    let value = |text: &str, what: &str| {
        let mut v = http::HeaderValue::from_str(text)
            .map_err(|_| format!("route `{}` {what}: not a valid header value", route.name))?;
        v.set_sensitive(true);
        Ok::<_, String>(v)
    };
    if let Some(bearer) = &route.auth.bearer {
        let secret = bearer
            .resolve()
            .inspect(remember)
            .map_err(|e| format!("route `{}` auth.bearer: {e}", route.name))?;
        headers.push((
            http::header::AUTHORIZATION,
            value(&format!("Bearer {}", secret.expose()), "auth.bearer")?,
        ));
    }
    for (name, text) in &route.auth.headers {
        let text = match text {
            MaybeSecret::Plain(t) => t.clone(),
            MaybeSecret::Secret(reference) => reference
                .resolve()
                .inspect(remember)
                .map_err(|e| format!("route `{}` header {name}: {e}", route.name))?
                .expose()
                .to_owned(),
        };
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("route `{}`: bad header name {name}", route.name))?;
        headers.push((name, value(&text, "header")?));
    }
    Ok(headers)
}

/// The TLS config a route uses, offering `alpn`.
fn route_tls(
    route: &mcp_edge_config::Route,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let tls = route.tls.as_ref();
    let client_tls = mcp_edge_tls::ClientTls {
        ca: tls.and_then(|t| t.ca.clone()),
        client_identity: tls.and_then(|t| t.client_identity.clone()),
        insecure_skip_verify: tls.is_some_and(|t| t.insecure_skip_verify),
    };
    mcp_edge_tls::client_config(&client_tls, alpn)
        .map_err(|e| format!("route `{}` TLS: {e}", route.name))
}

/// Tracks a route's CA bundle and client certificate.
fn track_route_files(certs: &Watcher, route: &mcp_edge_config::Route) {
    let Some(tls) = &route.tls else { return };
    let thresholds = thresholds(route);
    let origin = |kind, path: &Path| Origin {
        kind,
        route: Some(route.name.clone()),
        from: path.display().to_string(),
    };
    if let Some(ca) = &tls.ca {
        certs.observe_file(&origin("route_ca", ca), ca, thresholds);
    }
    if let Some((cert, _)) = &tls.client_identity {
        certs.observe_file(&origin("route_client_cert", cert), cert, thresholds);
    }
}

fn thresholds(route: &mcp_edge_config::Route) -> Thresholds {
    Thresholds {
        warn: route.cert_expiry.warn,
        critical: route.cert_expiry.critical,
    }
}

/// Tracks the chain each TLS tool server of the route presents, at every handshake.
fn handshake_hook(certs: &Arc<Watcher>, route: &mcp_edge_config::Route) -> OnHandshake {
    let certs = Arc::downgrade(certs);
    let name = route.name.clone();
    let thresholds = thresholds(route);
    Arc::new(move |peer: &PeerTls| {
        if let Some(certs) = certs.upgrade() {
            let origin = Origin {
                kind: "upstream",
                route: Some(name.clone()),
                from: peer.server_name.clone(),
            };
            certs.observe_der(&origin, &peer.chain, thresholds);
        }
    })
}

fn http_config(
    config: &Config,
    route: &mcp_edge_config::Route,
    url: &url::Url,
    hook: &OnHandshake,
) -> Result<HttpConfig, String> {
    let uri: http::Uri = url
        .as_str()
        .parse()
        .map_err(|e| format!("route `{}`: {e}", route.name))?;
    let mut cfg = HttpConfig::new(&route.name, uri);
    cfg.fallback_to_sse = route.protocol == Protocol::Auto;
    cfg.headers = route_headers(route)?;
    cfg.max_message_bytes = config.gateway.max_message_bytes;
    if url.scheme() == "https" {
        cfg.tls = Some(route_tls(route, &[b"h2", b"http/1.1"])?);
        cfg.server_name = route.tls.as_ref().and_then(|t| t.server_name.clone());
        cfg.on_handshake = Some(hook.clone());
    }
    Ok(cfg)
}

/// A route's replicas, each its own Streamable HTTP connector and breaker.
fn balanced_upstream(
    config: &Config,
    route: &mcp_edge_config::Route,
    first: &url::Url,
    more: &[url::Url],
    sink: &Arc<dyn Sink>,
    hook: &OnHandshake,
) -> Result<Balanced, String> {
    let mut replicas = Vec::new();
    for url in std::iter::once(first).chain(more) {
        let mut cfg = http_config(config, route, url, hook)?;
        // Replicas are Streamable HTTP: no falling back to legacy SSE per replica.
        cfg.fallback_to_sse = false;
        let http = Http::new(cfg, sink.clone());
        let shown = mcp_edge_router::redact(url);
        let breaker = Breaker::new(
            &format!("{}@{shown}", route.name),
            breaker_config(&route.policies),
        );
        replicas.push(Replica::new(http, breaker, shown));
    }
    Ok(Balanced { replicas })
}

fn link_upstream(
    config: &Config,
    route: &mcp_edge_config::Route,
    url: &url::Url,
    kind: LinkKind,
    sink: Arc<dyn Sink>,
    hook: &OnHandshake,
) -> Result<Link, String> {
    let uri: http::Uri = url
        .as_str()
        .parse()
        .map_err(|e| format!("route `{}`: {e}", route.name))?;
    let mut cfg = LinkConfig::new(&route.name, kind, uri);
    cfg.headers = route_headers(route)?;
    cfg.max_message_bytes = config.gateway.max_message_bytes;
    if matches!(url.scheme(), "https" | "wss") {
        // A WebSocket upgrade is HTTP/1.1: offer nothing else.
        cfg.tls = Some(route_tls(route, &[b"http/1.1"])?);
        cfg.server_name = route.tls.as_ref().and_then(|t| t.server_name.clone());
        cfg.on_handshake = Some(hook.clone());
    }
    Ok(Link::spawn(cfg, sink))
}

/// Starts one route: its connector and its policies. Must run inside tokio.
pub fn build_route(
    config: &Config,
    route: &mcp_edge_config::Route,
    planned: &mcp_edge_router::RoutePlan,
    sink: &Arc<dyn Sink>,
    certs: &Arc<Watcher>,
) -> Result<Arc<RouteRt>, String> {
    track_route_files(certs, route);
    let hook = handshake_hook(certs, route);
    let upstream = match (&planned.transport, &route.endpoint) {
        (Transport::Stdio(command), Endpoint::Command(_)) => {
            let resolve = |value: &MaybeSecret, what: &dyn std::fmt::Display| match value {
                MaybeSecret::Plain(v) => Ok(v.clone()),
                MaybeSecret::Secret(reference) => reference
                    .resolve()
                    .inspect(remember)
                    .map(|secret| secret.expose().to_owned())
                    .map_err(|e| format!("route `{}` {what}: {e}", route.name)),
            };
            let mut env = Vec::new();
            for (key, value) in &command.env {
                env.push((key.clone(), resolve(value, &format_args!("env {key}"))?));
            }
            let mut args = Vec::with_capacity(command.args.len());
            for (i, arg) in command.args.iter().enumerate() {
                args.push(resolve(arg, &format_args!("argument {}", i + 1))?);
            }
            let mut cfg = StdioConfig::new(&route.name, program(&command.program), args);
            cfg.env = env;
            cfg.cwd = command.cwd.clone();
            cfg.max_message_bytes = config.gateway.max_message_bytes;
            Upstream::One(Connector::Stdio(Stdio::spawn(cfg, sink.clone())))
        }
        (Transport::Network { url, .. }, _) if !planned.more_urls.is_empty() => {
            match balanced_upstream(config, route, url, &planned.more_urls, sink, &hook) {
                Ok(balanced) => Upstream::Balanced(Arc::new(balanced)),
                Err(why) => {
                    tracing::error!(route = %route.name, "{why}");
                    Upstream::One(Connector::Unserved(why.into()))
                }
            }
        }
        (Transport::Network { url, protocol, .. }, _)
            if matches!(protocol, Protocol::Auto | Protocol::StreamableHttp)
                && matches!(url.scheme(), "http" | "https") =>
        {
            match http_config(config, route, url, &hook) {
                Ok(cfg) => Upstream::One(Connector::Http(Http::new(cfg, sink.clone()))),
                Err(why) => {
                    tracing::error!(route = %route.name, "{why}");
                    Upstream::One(Connector::Unserved(why.into()))
                }
            }
        }
        (Transport::Network { url, protocol, .. }, _) => {
            let kind = if *protocol == Protocol::Websocket {
                LinkKind::WebSocket
            } else {
                LinkKind::Sse
            };
            match link_upstream(config, route, url, kind, sink.clone(), &hook) {
                Ok(link) => Upstream::One(Connector::Link(link)),
                Err(why) => {
                    tracing::error!(route = %route.name, "{why}");
                    Upstream::One(Connector::Unserved(why.into()))
                }
            }
        }
        (Transport::Stdio(_), _) => Upstream::One(Connector::Unserved(
            "a command route without a command".into(),
        )),
    };
    let policy = RoutePolicy::new(&route.name, &route.policies, upstream.clone());
    Ok(Arc::new(RouteRt {
        name: route.name.clone(),
        prefix: route.naming.prefix.clone(),
        naming: route.naming.clone(),
        boundary: planned.boundary,
        transport: planned.transport.label(),
        endpoint: planned.endpoint(),
        timeout: route.policies.timeout,
        max_timeout: route.policies.max_timeout,
        upstream,
        policy,
        stats: RouteStats::default(),
        required: route.required,
        probe_interval: route.probe_interval,
        fingerprint: fingerprint(route, planned),
    }))
}

/// What decides how a route runs (its configuration and its classification, not its
/// place in the file): equal fingerprints need no restart on reload.
pub fn fingerprint(route: &mcp_edge_config::Route, planned: &mcp_edge_router::RoutePlan) -> String {
    format!("{}{planned:?}", route.fingerprint())
}

/// The clients of a configuration, their tokens read.
pub fn build_clients(config: &Config) -> Result<Vec<ClientRt>, String> {
    let mut clients = Vec::new();
    for client in &config.clients {
        let credential = match &client.credential {
            Credential::Token(reference) => ClientCredential::Token(
                reference
                    .resolve()
                    .inspect(remember)
                    .map_err(|e| format!("client `{}` token: {e}", client.name))?,
            ),
            Credential::Identity(id) => ClientCredential::Identity(id.clone()),
        };
        clients.push(ClientRt {
            name: client.name.as_str().into(),
            credential,
            grant: client.routes.clone(),
        });
    }
    Ok(clients)
}

/// Builds the gateway and starts every route. Must run inside a tokio runtime.
pub fn build(config: &Config, plan: &Plan) -> Result<Arc<Gateway>, String> {
    // Refused before any tool server starts.
    let sealer = crate::seal::Sealer::from_env()?;
    let (events_tx, mut events_rx) = mpsc::channel::<RouteEvent>(1024);
    let sink: Arc<dyn Sink> = Arc::new(ChannelSink(events_tx));
    let certs = match &config.alerts.webhook {
        Some(url) => {
            let webhook = mcp_edge_certwatch::Webhook::new(url.as_str())
                .map_err(|e| format!("[alerts] webhook: {e}"))?;
            let (tx, rx) = mpsc::unbounded_channel();
            webhook.spawn(rx);
            Watcher::new(Some(tx))
        }
        None => Watcher::new(None),
    };
    mcp_edge_certwatch::spawn_evaluation(&certs);
    let mut routes = Vec::new();
    for (route, planned) in config.routes.iter().zip(&plan.routes) {
        routes.push(build_route(config, route, planned, &sink, &certs)?);
    }
    let clients = build_clients(config)?;
    let mut gateway = Gateway::new(
        routes,
        &config.gateway.name_separator,
        clients,
        config.gateway.allowed_origins.clone(),
        config.gateway.max_message_bytes,
        Sessions::with_sealer(
            crate::session::Quotas {
                max: config.gateway.limits.max_sessions,
                per_client: config.gateway.limits.max_sessions_per_client,
                per_second: f64::from(config.gateway.limits.new_sessions_per_second),
                burst: f64::from(config.gateway.limits.new_sessions_burst),
                handshake: config.gateway.limits.handshake_timeout,
            },
            SESSION_IDLE,
            sealer,
        ),
    );
    gateway.loopback_listener = config.gateway.listen.addr.ip().is_loopback();
    gateway.front = crate::front::Front::new(config.gateway.limits.clone());
    gateway.set_allow_anonymous(config.gateway.allow_anonymous);
    gateway.sink = Some(sink);
    gateway.certs = certs;
    let gateway = Arc::new(gateway);
    let gw = Arc::downgrade(&gateway);
    tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            let Some(gw) = gw.upgrade() else { break };
            gw.route_event(event);
        }
    });
    let gw = Arc::downgrade(&gateway);
    tokio::spawn(async move {
        let every = gw
            .upgrade()
            .map_or(Duration::from_secs(60), |gw| gw.sessions.sweep_every());
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(gw) = gw.upgrade() else { break };
            let swept = gw.sessions.sweep();
            if swept > 0 {
                tracing::info!(swept, "ended idle sessions");
            }
            gw.reconcile_subscriptions();
        }
    });
    Ok(gateway)
}

/// Logs a connection refused at a cap, at most once a second (a flood must not
/// become a flood of log lines).
fn refused_connection(full: crate::front::Full, ip: std::net::IpAddr) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    let which = match full {
        crate::front::Full::Listener => "[gateway.limits] max_connections",
        crate::front::Full::Client => "[gateway.limits] max_connections_per_client",
    };
    tracing::warn!(client = %ip, "connection refused: {which} reached (further refusals this second not logged)");
}

/// Every secret resolved is remembered, so that text from tool servers (their stderr)
/// is scrubbed of it before it is logged or shown ([`mcp_edge_transport::redact`]).
fn remember(secret: &mcp_edge_config::Secret) {
    mcp_edge_transport::redact::remember(secret.expose());
}

/// How long start-up (and a reload, for the routes it adds) waits for routes to connect.
pub const FIRST_ATTEMPT: Duration = Duration::from_secs(10);

/// Gives every route its first start attempt (bounded), so that the first clients see
/// every route that can start rather than whichever won the race.
pub async fn wait_for_routes(gw: &Gateway) {
    let deadline = tokio::time::Instant::now() + FIRST_ATTEMPT;
    futures_util::future::join_all(gw.table().routes.iter().map(|r| r.first_attempt(deadline)))
        .await;
}

/// Stops every route's tool server as the spec says.
pub async fn shutdown_routes(gw: &Gateway) {
    let table = gw.table();
    let stops = table.routes.iter().map(|r| r.shutdown());
    futures_util::future::join_all(stops).await;
}

async fn signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Tracks the listener's certificate chain and client CA bundle, and serves a rotated
/// certificate (its files' content changed) to new connections without a restart;
/// connections already open keep theirs.
fn watch_listener_certificate(
    certs: &Arc<Watcher>,
    tls: &mcp_edge_config::model::ListenerTls,
    cert: Arc<mcp_edge_tls::SwappableCert>,
) {
    let chain = Origin {
        kind: "listener",
        route: None,
        from: tls.cert.display().to_string(),
    };
    let thresholds = Thresholds::default();
    certs.observe_file(&chain, &tls.cert, thresholds);
    if let Some(ca) = &tls.client_ca {
        let origin = Origin {
            kind: "listener_client_ca",
            route: None,
            from: ca.display().to_string(),
        };
        certs.observe_file(&origin, ca, thresholds);
    }
    let files = [tls.cert.clone(), tls.key.clone()];
    let certs = Arc::downgrade(certs);
    let read = move || files.iter().map(|f| digest(f)).collect::<Vec<_>>();
    tokio::spawn(async move {
        let mut seen = read();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(certs) = certs.upgrade() else { return };
            let now = read();
            if now == seen {
                continue;
            }
            // A rotation writes two files; a half-written pair is tried again next tick.
            match cert.reload() {
                Ok(()) => {
                    seen = now;
                    tracing::info!(file = %chain.from, "listener certificate rotated: new connections get the new one");
                    certs.observe_file(&chain, Path::new(&chain.from), thresholds);
                }
                Err(e) => {
                    tracing::warn!(file = %chain.from, "listener certificate changed but cannot be loaded yet (kept the old one): {e}");
                }
            }
        }
    });
}

/// `sha256:` and the hex SHA-256 of the routes file, to tell configurations apart.
pub fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `mcp-edge serve`.
pub async fn serve(path: &Path) -> Result<(), String> {
    let (config, plan) = load(path)?;
    let gw = build(&config, &plan)?;
    let acceptor = match &config.gateway.listen.tls {
        Some(tls) => {
            let (server, cert) = mcp_edge_tls::server_config(&mcp_edge_tls::ServerTls {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                client_ca: tls.client_ca.clone(),
            })
            .map_err(|e| format!("[gateway] tls: {e}"))?;
            watch_listener_certificate(&gw.certs, tls, cert);
            Some(tokio_rustls::TlsAcceptor::from(server))
        }
        None => None,
    };
    wait_for_routes(&gw).await;
    let addr: SocketAddr = config.gateway.listen.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (change [gateway] listen)"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if gw.sessions.shared() {
        tracing::info!(
            "session ids are sealed with the configured key: every replica with it serves them"
        );
    } else {
        tracing::info!(
            "session ids are sealed with a key of this process (set MCP_EDGE_SESSION_KEY to share sessions between replicas)"
        );
    }
    for route in gw.table().routes.iter() {
        tracing::info!(route = %route.name, boundary = %route.boundary, transport = %route.transport, endpoint = %route.endpoint, "route");
    }
    let admin_addr = config.gateway.admin;
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .map_err(|e| format!("cannot listen on {admin_addr}: {e} (change [gateway] admin)"))?;
    let admin = crate::admin::Admin::new(gw.clone(), path.display().to_string(), digest(path));
    admin.fail_readiness_on_certs.store(
        config.alerts.fail_readiness,
        std::sync::atomic::Ordering::Relaxed,
    );
    let admin_local = admin_listener.local_addr().map_err(|e| e.to_string())?;
    crate::admin::spawn(admin_listener, admin.clone(), &config.gateway.limits);
    crate::admin::spawn_probes_for(&gw, |_| true);
    crate::reload::Reloader::new(path.to_owned(), gw.clone(), admin.clone(), &config).watch();
    admin
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    crate::admin::announce(admin_local);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!("mcp-edge listening on {scheme}://{local}/mcp (and /mcp/{{route}}, /sse)");
    // Tests and scripts read this line to learn the port when listen uses port 0.
    eprintln!("mcp-edge: listening on {scheme}://{local}/mcp");

    // Each connection holds a receiver; shutdown says so, then waits for them all to go.
    let (graceful, _) = tokio::sync::watch::channel(false);
    let shutdown = signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, from) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: the connections already open
                        // keep being served while this loop waits a moment.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over a cap the connection is closed as it comes: the clients already
                // served are not slowed by the ones that cannot be.
                let permit = match gw.front.admit(from.ip()) {
                    Ok(permit) => permit,
                    Err(full) => {
                        refused_connection(full, from.ip());
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                match &acceptor {
                    None => {
                        let peer = Arc::new(crate::http::Peer {
                            addr: Some(from.ip()),
                            ..crate::http::Peer::default()
                        });
                        let front = gw.front.clone();
                        let service = service_fn(move |req| crate::http::handle(gw.clone(), peer.clone(), req));
                        let stop = graceful.subscribe();
                        tokio::spawn(async move {
                            let _permit = permit;
                            crate::front::serve_connection(stream, service, &front, stop).await;
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's own task (a slow client
                        // must not hold up the accept loop); its identity comes from the
                        // certificate it presented, verified against client_ca.
                        let acceptor = acceptor.clone();
                        let stop = graceful.subscribe();
                        tokio::spawn(async move {
                            let _permit = permit;
                            let handshake = gw.front.limits.header_timeout;
                            let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(e)) => {
                                    tracing::info!("TLS handshake with a client failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    tracing::info!("TLS handshake with a client timed out");
                                    return;
                                }
                            };
                            let identity = tls.get_ref().1.peer_certificates().map(mcp_edge_tls::peer_identities).unwrap_or_default();
                            let peer = Arc::new(crate::http::Peer { identity, addr: Some(from.ip()) });
                            let front = gw.front.clone();
                            let service = service_fn(move |req| crate::http::handle(gw.clone(), peer.clone(), req));
                            crate::front::serve_connection(tls, service, &front, stop).await;
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    admin
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    drop(listener);
    // Long-lived streams end now; requests in flight get time to finish.
    for session in gw.sessions.all() {
        session.close_stream();
    }
    let grace = config.gateway.shutdown_grace;
    let _ = graceful.send(true);
    if tokio::time::timeout(grace, graceful.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            "calls still in flight after shutdown_grace ({}ms): ending them",
            grace.as_millis()
        );
    }
    for session in gw.sessions.all() {
        gw.sessions.end(&session.id);
    }
    shutdown_routes(&gw).await;
    tracing::info!("stopped");
    Ok(())
}
