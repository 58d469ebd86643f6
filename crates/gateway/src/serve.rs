//! `mcp-edge serve`: load the routes file, start every route, open the front door.
//!
//! A routes file `check` refuses is refused here with the same diagnostics; so is one
//! whose secrets cannot be read. Routes start in the background: a tool server that
//! fails to start is retried with backoff and reported, while the rest serve.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mcp_edge_admin::Admin;
use mcp_edge_certwatch::{Origin, Thresholds, Watcher};
use mcp_edge_config::model::Config;
use mcp_edge_core::Gateway;
use mcp_edge_front::conn::Front;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

use crate::bootstrap::{build, digest, load, shutdown_routes, wait_for_routes};

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

/// `mcp-edge serve`: start-up, serving until SIGTERM or Ctrl-C, then a graceful stop.
pub async fn serve(path: &Path) -> Result<(), String> {
    let (config, plan) = load(path)?;
    let gw = build(&config, &plan)?;
    let front = Front::new(config.gateway.limits.clone());
    let acceptor = tls_acceptor(&config, &gw)?;
    wait_for_routes(&gw).await;
    let addr: SocketAddr = config.gateway.listen.addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (change [gateway] listen)"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    log_start(&gw);
    let (admin, admin_local) = start_admin(path, &config, &gw, &front).await?;
    crate::reload::Reloader::new(path.to_owned(), gw.clone(), admin.clone(), &config).watch();
    admin.ready.store(true, Ordering::Release);
    mcp_edge_admin::announce(admin_local);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!("mcp-edge listening on {scheme}://{local}/mcp (and /mcp/{{route}}, /sse)");
    // Tests and scripts read this line to learn the port when listen uses port 0.
    eprintln!("mcp-edge: listening on {scheme}://{local}/mcp");

    // Each connection holds a receiver; shutdown says so, then waits for them all to go.
    let (graceful, _) = tokio::sync::watch::channel(false);
    let door = mcp_edge_front::listener::Door {
        gw: gw.clone(),
        front,
        tls: acceptor,
    };
    door.accept_until(&listener, &graceful, signal()).await;
    admin.draining.store(true, Ordering::Release);
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    drop(listener);
    stop(&gw, graceful, config.gateway.shutdown_grace).await;
    tracing::info!("stopped");
    Ok(())
}

/// The listener's TLS acceptor, with its certificate watched for rotation.
fn tls_acceptor(
    config: &Config,
    gw: &Gateway,
) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let Some(tls) = &config.gateway.listen.tls else {
        return Ok(None);
    };
    let (server, cert) = mcp_edge_tls::server_config(&mcp_edge_tls::ServerTls {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
        client_ca: tls.client_ca.clone(),
    })
    .map_err(|e| format!("[gateway] tls: {e}"))?;
    watch_listener_certificate(&gw.certs, tls, cert);
    Ok(Some(tokio_rustls::TlsAcceptor::from(server)))
}

/// What an operator wants to read at start: how sessions are sealed, and every route.
fn log_start(gw: &Gateway) {
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
}

/// Binds and serves the admin listener, and starts the routes' probes; returns the
/// admin state and its address (announced once the gateway is ready).
async fn start_admin(
    path: &Path,
    config: &Config,
    gw: &Arc<Gateway>,
    front: &Arc<Front>,
) -> Result<(Arc<Admin>, SocketAddr), String> {
    let admin_addr = config.gateway.admin;
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .map_err(|e| format!("cannot listen on {admin_addr}: {e} (change [gateway] admin)"))?;
    let admin = Admin::new(
        gw.clone(),
        front.clone(),
        path.display().to_string(),
        digest(path),
    );
    admin
        .fail_readiness_on_certs
        .store(config.alerts.fail_readiness, Ordering::Relaxed);
    let admin_local = admin_listener.local_addr().map_err(|e| e.to_string())?;
    mcp_edge_admin::spawn(admin_listener, admin.clone(), &config.gateway.limits);
    mcp_edge_admin::spawn_probes_for(gw, |_| true);
    Ok((admin, admin_local))
}

/// The graceful stop: long-lived streams end, requests in flight get `grace` to
/// finish, then sessions end and every tool server is stopped as the spec says.
async fn stop(gw: &Gateway, graceful: tokio::sync::watch::Sender<bool>, grace: Duration) {
    for session in gw.sessions.all() {
        session.close_stream();
    }
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
    shutdown_routes(gw).await;
}
