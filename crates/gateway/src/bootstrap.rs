//! What start-up and a reload both do: read and check routes.toml, build the clients,
//! the routes and the gateway. There is one way to make each, and it is here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcp_edge_certwatch::Watcher;
use mcp_edge_config::model::{Config, Credential};
use mcp_edge_config::{Severity, Source};
use mcp_edge_core::session::Sessions;
use mcp_edge_core::{ClientCredential, ClientRt, Gateway, RouteEvent};
use mcp_edge_protocol::Message;
use mcp_edge_route::assemble::{build_route, remember};
use mcp_edge_router::Plan;
use mcp_edge_transport::{ServerInfo, Sink};
use tokio::sync::mpsc;
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
            session: None,
            message,
        });
    }

    fn request(&self, route: &str, message: Message) -> bool {
        self.0
            .try_send(RouteEvent::Request {
                route: route.to_owned(),
                session: None,
                message,
            })
            .is_ok()
    }

    fn notification_for(&self, route: &str, session: &Arc<str>, message: Message) {
        let _ = self.0.try_send(RouteEvent::Notification {
            route: route.to_owned(),
            session: Some(session.clone()),
            message,
        });
    }

    fn request_for(&self, route: &str, session: &Arc<str>, message: Message) -> bool {
        self.0
            .try_send(RouteEvent::Request {
                route: route.to_owned(),
                session: Some(session.clone()),
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
            tools: client.tools.clone().map(Arc::from),
        });
    }
    Ok(clients)
}

/// Builds the gateway and starts every route. Must run inside a tokio runtime.
pub fn build(config: &Config, plan: &Plan) -> Result<Arc<Gateway>, String> {
    // Refused before any tool server starts.
    let sealer = mcp_edge_core::seal::Sealer::from_env()?;
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
            mcp_edge_core::session::Quotas {
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
    gateway.set_allow_anonymous(config.gateway.allow_anonymous);
    gateway.set_servers(&config.servers);
    gateway.sink = Some(sink);
    gateway.certs = certs;
    let gateway = Arc::new(gateway);
    // A client session that ends takes its own upstream sessions with it.
    let ending = Arc::downgrade(&gateway);
    gateway.sessions.on_end(move |id| {
        if let Some(gw) = ending.upgrade() {
            for route in gw.table().routes.iter().filter(|r| r.per_client) {
                route.end_session(id);
            }
        }
    });
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

/// `sha256:` and the hex SHA-256 of the routes file, to tell configurations apart.
pub fn digest(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
    format!("sha256:{}", hex::encode(hash))
}
