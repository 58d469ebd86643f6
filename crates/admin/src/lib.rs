//! The admin listener (`[gateway] admin`, loopback by default): how platform teams and
//! Kubernetes look at mcp-edge.
//!
//! | path | what |
//! |---|---|
//! | `/healthz` | the process is alive: always `200 ok` while it serves |
//! | `/readyz` | `200` once the listeners are bound and every `required` route is usable; `503` with the reasons otherwise (and while shutting down) |
//! | `/health` | JSON: version, uptime, config digest, and per route its boundary, transport, endpoint, status, breaker, in-flight, queue, restarts, pid, last error, latency, probe |
//! | `/metrics` | OpenMetrics text ([`metrics`]) |
//! | `/` | the status page ([`page`]): routes, broken ones first, with charts of their last 15 minutes |
//! | `/routes/{name}` | one route: charts, breaker history, recent errors, certificates, effective configuration |
//!
//! Nothing here shows a secret: endpoints are redacted (query values), errors are the
//! gateway's own words, and headers or tokens never appear.

pub mod history;
pub mod metrics;
pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use mcp_edge_breaker::State;
use mcp_edge_certwatch::Watcher;
use mcp_edge_config::model::FrontLimits;
use mcp_edge_protocol::mcp;
use mcp_edge_protocol::version::Era;
use mcp_edge_transport::Call;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use mcp_edge_core::Gateway;
use mcp_edge_front::conn::Front;
use mcp_edge_route::stats::Probe;
use mcp_edge_route::{RouteRt, Upstream};

/// What the admin endpoints know beyond the gateway itself.
pub struct Admin {
    /// The gateway.
    pub gw: Arc<Gateway>,
    /// The agents' listener: its caps and what it holds now.
    pub front: Arc<Front>,
    /// When the process started.
    pub started: Instant,
    /// The routes file in force, and its reloads.
    pub config: std::sync::Mutex<ConfigState>,
    /// Reloads that took effect.
    pub reloads_ok: std::sync::atomic::AtomicU64,
    /// Reloads refused (the file was invalid).
    pub reloads_failed: std::sync::atomic::AtomicU64,
    /// Both listeners are bound and the routes had their first start.
    pub ready: AtomicBool,
    /// SIGTERM arrived: `/readyz` fails so that traffic moves elsewhere.
    pub draining: AtomicBool,
    /// `/readyz` fails while a certificate in play is critical or expired.
    pub fail_readiness_on_certs: AtomicBool,
    /// The last fifteen minutes of each route, for the status page.
    pub history: history::History,
}

/// The routes file in force.
#[derive(Debug, Clone)]
pub struct ConfigState {
    /// Its path.
    pub path: String,
    /// `sha256:` and the hex digest of what was loaded.
    pub digest: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// The last reload: when, what triggered it, its result and what it changed or why
    /// it was refused.
    pub last_reload: Option<Value>,
}

impl Admin {
    /// The admin state of a gateway serving the file at `path` (digest `digest`).
    pub fn new(gw: Arc<Gateway>, front: Arc<Front>, path: String, digest: String) -> Arc<Admin> {
        Arc::new(Admin {
            gw,
            front,
            started: Instant::now(),
            config: std::sync::Mutex::new(ConfigState {
                path,
                digest,
                loaded_at: SystemTime::now(),
                last_reload: None,
            }),
            reloads_ok: std::sync::atomic::AtomicU64::new(0),
            reloads_failed: std::sync::atomic::AtomicU64::new(0),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            fail_readiness_on_certs: AtomicBool::new(false),
            history: history::History::default(),
        })
    }

    /// The routes file in force.
    pub fn config(&self) -> ConfigState {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A route's status in `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Serving.
    Healthy,
    /// Serving, with a problem worth a look (half-open breaker, a failed probe, a
    /// replica out).
    Degraded,
    /// Not serving.
    Down,
}

impl Status {
    /// `healthy`, `degraded` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }
}

/// How a route is doing.
pub fn route_status(route: &RouteRt, certs: &Watcher) -> Status {
    let state = route.upstream.state();
    let breaker = route.policy.breaker.snapshot().state;
    if !state.up || matches!(breaker, State::Open { .. }) {
        return Status::Down;
    }
    let probe_failed = route.stats.probe().is_some_and(|p| p.error.is_some());
    let cert_severe = certs.worst(Some(&route.name)).is_severe();
    let replica_out = match &route.upstream {
        Upstream::Balanced(b) => b.replicas.iter().any(|r| {
            !r.http.status().connected || !matches!(r.breaker.snapshot().state, State::Closed)
        }),
        _ => false,
    };
    if breaker == State::HalfOpen || probe_failed || replica_out || cert_severe {
        Status::Degraded
    } else {
        Status::Healthy
    }
}

/// `2026-11-21T23:59:01.123Z`.
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn breaker_json(state: State, trips: u32, total: u64) -> Value {
    let mut out = json!({ "state": state.as_str(), "trips": trips, "total_trips": total });
    if let State::Open { until } = state {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        out["retry_in_ms"] = json!(left.as_millis() as u64);
    }
    out
}

/// The failure to show for a route: while its tool server is down, why (for a child,
/// with the tail of its stderr, scrubbed of secrets); otherwise the newest failure.
fn last_error(route: &RouteRt) -> Option<(SystemTime, String)> {
    let state = route.upstream.state();
    match (state.last_error, state.up) {
        (Some(down), false) => Some(down),
        (connector, _) => route
            .stats
            .last_error()
            .into_iter()
            .chain(connector)
            .max_by_key(|(at, _)| *at),
    }
}

/// One route in `/health`.
fn route_json(route: &RouteRt, certs: &Watcher) -> Value {
    let now = mcp_edge_tls::inspect::now();
    let state = route.upstream.state();
    let breaker = route.policy.breaker.snapshot();
    let last_error =
        last_error(route).map(|(at, message)| json!({ "at": rfc3339(at), "message": message }));
    let latency = route.stats.percentiles().map(|(p50, p99)| {
        json!({ "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3 })
    });
    let probe = route.stats.probe().map(|Probe { at, took, error }| {
        json!({ "at": rfc3339(at), "ok": error.is_none(), "took_ms": took.as_secs_f64() * 1e3, "error": error })
    });
    let mut out = json!({
        "name": route.name,
        "boundary": route.boundary.to_string(),
        "transport": route.transport,
        "endpoint": route.endpoint,
        "status": route_status(route, certs).as_str(),
        "required": route.required,
        "breaker": breaker_json(breaker.state, breaker.trips, breaker.total_trips),
        "in_flight": route.policy.bulkhead.in_flight(),
        "queue": route.policy.bulkhead.waiting(),
        "restarts": state.restarts,
        "sessions": if route.per_client { "per-client" } else { "shared" },
        "client_sessions": route.client_sessions(),
        "pid": state.pid,
        "protocol_version": state.protocol_version,
        "last_error": last_error,
        "latency": latency,
        "probe": probe,
        "retries": route.policy.retried.load(Ordering::Relaxed),
        "rate_limited": route.policy.limits.refused(),
        "certificates": certs.of_route(Some(&route.name)).iter().map(|t| t.to_json(now)).collect::<Vec<_>>(),
    });
    if let Upstream::Balanced(balanced) = &route.upstream {
        out["replicas"] = balanced
            .replicas
            .iter()
            .map(|r| {
                let b = r.breaker.snapshot();
                json!({
                    "endpoint": r.url,
                    "up": r.http.status().connected,
                    "breaker": breaker_json(b.state, b.trips, b.total_trips),
                    "latency_ms": r.latency().as_secs_f64() * 1e3,
                    "in_flight": r.in_flight(),
                })
            })
            .collect();
    }
    out
}

impl Admin {
    /// The overall status: healthy when every route is; down when every route is;
    /// degraded in between.
    pub fn status(&self) -> Status {
        let statuses: Vec<Status> = self
            .gw
            .table()
            .routes
            .iter()
            .map(|r| route_status(r, &self.gw.certs))
            .collect();
        let own_certs_severe = self.gw.certs.worst(None).is_severe();
        if statuses.iter().all(|s| *s == Status::Healthy) && !own_certs_severe {
            Status::Healthy
        } else if statuses.iter().all(|s| *s == Status::Down) {
            Status::Down
        } else {
            Status::Degraded
        }
    }

    /// `/health`.
    pub fn health(&self) -> Value {
        let config = self.config();
        let config = json!({
            "path": config.path,
            "digest": config.digest,
            "loaded_at": rfc3339(config.loaded_at),
            "last_reload": config.last_reload,
        });
        json!({
            "status": self.status().as_str(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "ready": self.readiness().is_ok(),
            "config": config,
            "sessions": self.gw.sessions.len(),
            "certificates": self.gw.certs.of_route(None).iter().map(|t| t.to_json(mcp_edge_tls::inspect::now())).collect::<Vec<_>>(),
            "routes": self.gw.table().routes.iter().map(|r| route_json(r, &self.gw.certs)).collect::<Vec<_>>(),
        })
    }

    /// `/readyz`: `Ok`, or why not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            why.push("shutting down".to_owned());
        }
        if !self.ready.load(Ordering::Acquire) {
            why.push("starting".to_owned());
        }
        if self.fail_readiness_on_certs.load(Ordering::Relaxed) {
            for t in self.gw.certs.all().iter().filter(|t| t.level.is_severe()) {
                why.push(format!(
                    "certificate {} ({}) is {}",
                    t.cert.subject,
                    t.origin.from,
                    t.level.as_str()
                ));
            }
        }
        for route in self.gw.table().routes.iter().filter(|r| r.required) {
            if route_status(route, &self.gw.certs) == Status::Down {
                why.push(format!("required route `{}` is down", route.name));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// An HTML page, with a policy that allows only its own script and inline styles.
fn page_reply(page: String) -> Response<Full<Bytes>> {
    let mut response = reply(StatusCode::OK, "text/html; charset=utf-8", page);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(page::CSP),
    );
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn handle(
    admin: Arc<Admin>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n",
        ));
    }
    Ok(match req.uri().path() {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => match admin.readiness() {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {}\n", why.join("; ")),
            ),
        },
        "/health" => reply(
            StatusCode::OK,
            "application/json",
            admin.health().to_string(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            metrics::render(&admin),
        ),
        "/" => page_reply(page::status(&admin)),
        "/status.js" => reply(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            page::SCRIPT,
        ),
        path => match path
            .strip_prefix("/routes/")
            .and_then(|name| page::route(&admin, name))
        {
            Some(page) => page_reply(page),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /healthz, /readyz, /health, /metrics, / or /routes/{name}\n",
            ),
        },
    })
}

/// Serves the admin endpoints on `listener` until the process ends.
///
/// The admin listener has the agents' listener's timeouts and caps of its own, smaller
/// ones: it serves operators and scrapers, a few connections at a time.
pub fn spawn(listener: TcpListener, admin: Arc<Admin>, limits: &FrontLimits) {
    let front = Front::new(FrontLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        max_connections_per_client: ADMIN_MAX_CONNECTIONS / 4,
        max_streams_per_connection: 16,
        ..limits.clone()
    });
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let (_never, stop) = tokio::sync::watch::channel(false);
    history::spawn(Arc::downgrade(&admin));
    tokio::spawn(async move {
        let _never = _never;
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = front.admit(from.ip()) else {
                continue;
            };
            let admin = admin.clone();
            let front = front.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = service_fn(move |mut req: Request<Incoming>| {
                    mcp_edge_front::http::host_from_authority(&mut req);
                    // A page whose DNS name was rebound to 127.0.0.1 sends its own name:
                    // a loopback admin listener answers only loopback names.
                    let misdirected =
                        loopback && !mcp_edge_front::http::loopback_host(req.headers());
                    let admin = admin.clone();
                    async move {
                        if misdirected {
                            return Ok(reply(
                                StatusCode::MISDIRECTED_REQUEST,
                                "text/plain",
                                "this loopback admin listener serves only loopback host names (DNS rebinding protection)\n",
                            ));
                        }
                        handle(admin, req).await
                    }
                });
                mcp_edge_front::conn::serve_connection(stream, service, &front, stop).await;
            });
        }
    });
}

/// Connections the admin listener holds at once.
const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Probes every route with a probe interval: `ping` (or `server/discover` for a
/// 2026-07-28 server) straight to the connector, outside the route's policies, so a
/// dead route is known before a call fails. A change of result is logged.
pub fn spawn_probes_for(gw: &Arc<Gateway>, which: impl Fn(&RouteRt) -> bool) {
    for route in gw.table().routes.iter().filter(|r| which(r)) {
        let Some(interval) = route.probe_interval else {
            continue;
        };
        let route = Arc::downgrade(route);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(route) = route.upgrade() else { return };
                probe(&route).await;
            }
        });
    }
}

/// One probe of a route.
pub async fn probe(route: &RouteRt) {
    let stateless = route.upstream_info_era() == Some(Era::Stateless);
    let method = if stateless { mcp::DISCOVER } else { mcp::PING };
    let started = tokio::time::Instant::now();
    let outcome = route
        .upstream
        .call(Call {
            method: method.to_owned(),
            params: None,
            deadline: started + Duration::from_secs(5).min(route.timeout),
            events: None,
            traceparent: None,
            name: None,
            session: None,
        })
        .await;
    let error = outcome.err().map(|e| e.to_string());
    let was_ok = route.stats.probe().is_none_or(|p| p.error.is_none());
    match (&error, was_ok) {
        (Some(e), true) => tracing::warn!(route = %route.name, "probe failed: {e}"),
        (None, false) => tracing::info!(route = %route.name, "probe succeeded again"),
        _ => {}
    }
    route.stats.probed(Probe {
        at: SystemTime::now(),
        took: started.elapsed(),
        error,
    });
}

/// The address the admin listener took, announced like the main one.
pub fn announce(addr: SocketAddr) {
    tracing::info!("admin endpoints on http://{addr}/ (/healthz, /readyz, /health, /metrics)");
    eprintln!("mcp-edge: admin on http://{addr}/");
}
