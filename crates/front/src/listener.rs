//! The agents' listener: accepts connections under the caps of [`crate::conn`], does the
//! TLS handshake (in the connection's own task, bounded by the header timeout) and
//! serves each connection, sending each request to its endpoint ([`handle`]):
//! Streamable HTTP and legacy SSE ([`crate::http`]) or WebSocket ([`crate::ws`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use mcp_edge_core::Gateway;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn::{ConnPermit, Front};
use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use mcp_edge_protocol::jsonrpc::code;

use crate::http::{Body, Peer};

/// What serves the agents' listener.
pub struct Door {
    /// The gateway behind it.
    pub gw: Arc<Gateway>,
    /// The listener's caps and what it holds now.
    pub front: Arc<Front>,
    /// The TLS acceptor, for an HTTPS listener.
    pub tls: Option<TlsAcceptor>,
}

impl Door {
    /// Accepts connections until `shutdown` completes. Each connection holds a
    /// receiver of `graceful`: when it says `true`, connections finish what they are
    /// doing and close.
    pub async fn accept_until(
        &self,
        listener: &TcpListener,
        graceful: &watch::Sender<bool>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, from)) => self.accept(stream, from, graceful.subscribe()),
                    Err(e) => {
                        // Out of file descriptors, say: the connections already open
                        // keep being served while this loop waits a moment.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
    }

    /// Serves one accepted connection in a task of its own.
    fn accept(&self, stream: TcpStream, from: SocketAddr, stop: watch::Receiver<bool>) {
        // Over a cap the connection is closed as it comes: the clients already served
        // are not slowed by the ones that cannot be.
        let permit = match self.front.admit(from.ip()) {
            Ok(permit) => permit,
            Err(full) => {
                refused_connection(full, from.ip());
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let gw = self.gw.clone();
        let front = self.front.clone();
        match &self.tls {
            None => {
                let peer = Peer {
                    identity: mcp_edge_tls::PeerIdentity::default(),
                    addr: Some(from.ip()),
                    front: front.clone(),
                };
                tokio::spawn(serve(gw, peer, stream, front, stop, permit));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake = front.limits.header_timeout;
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
                    // The client's identity is the certificate it presented, verified
                    // against client_ca.
                    let identity = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(mcp_edge_tls::peer_identities)
                        .unwrap_or_default();
                    let peer = Peer {
                        identity,
                        addr: Some(from.ip()),
                        front: front.clone(),
                    };
                    serve(gw, peer, tls, front, stop, permit).await;
                });
            }
        }
    }
}

/// Serves one HTTP request.
pub async fn handle(
    gw: Arc<Gateway>,
    peer: Arc<Peer>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    crate::http::host_from_authority(&mut req);
    let _in_flight = mcp_edge_busy_poll::call();
    enum Endpoint {
        Mcp(Option<String>),
        WebSocket(Option<String>),
        LegacyStream,
        LegacyPost,
    }
    let upgrade = crate::ws::is_upgrade(req.headers());
    let endpoint = match req.uri().path() {
        "/ws" | "/ws/" => Endpoint::WebSocket(None),
        "/mcp" | "/mcp/" if upgrade => Endpoint::WebSocket(None),
        "/mcp" | "/mcp/" => Endpoint::Mcp(None),
        p if p.starts_with("/mcp/") => {
            let route = Some(p["/mcp/".len()..].trim_end_matches('/').to_owned());
            if upgrade {
                Endpoint::WebSocket(route)
            } else {
                Endpoint::Mcp(route)
            }
        }
        path if upgrade => {
            return Ok(crate::http::refuse(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                &format!(
                    "no WebSocket endpoint at {path}: WebSocket is served at /ws, /mcp and /mcp/{{route}}"
                ),
            ));
        }
        "/sse" => Endpoint::LegacyStream,
        "/messages" | "/messages/" => Endpoint::LegacyPost,
        path => {
            let refusal = crate::http::refuse(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                &format!("no MCP endpoint at {path}; use /mcp, /mcp/{{route}}, /ws or /sse"),
            );
            return Ok(crate::http::refuse_unread(&gw, req.into_body(), refusal).await);
        }
    };
    Ok(match endpoint {
        Endpoint::Mcp(route) => crate::http::mcp_endpoint(gw, &peer, req, route).await,
        Endpoint::WebSocket(route) => crate::ws::upgrade(&gw, &peer, req, route.as_deref()),
        Endpoint::LegacyStream => crate::http::legacy_stream(gw, &peer, req).await,
        Endpoint::LegacyPost => crate::http::legacy_post(gw, &peer, req).await,
    })
}

/// Serves HTTP on one connection until it closes or `stop` says so.
async fn serve<T>(
    gw: Arc<Gateway>,
    peer: Peer,
    io: T,
    front: Arc<Front>,
    stop: watch::Receiver<bool>,
    permit: ConnPermit,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let peer = Arc::new(peer);
    let service = service_fn(move |req| handle(gw.clone(), peer.clone(), req));
    crate::conn::serve_connection(io, service, &front, stop).await;
}

/// Logs a connection refused at a cap, at most once a second (a flood must not
/// become a flood of log lines).
fn refused_connection(full: crate::conn::Full, ip: std::net::IpAddr) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    let which = match full {
        crate::conn::Full::Listener => "[gateway.limits] max_connections",
        crate::conn::Full::Client => "[gateway.limits] max_connections_per_client",
    };
    tracing::warn!(client = %ip, "connection refused: {which} reached (further refusals this second not logged)");
}
