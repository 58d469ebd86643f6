//! The WebSocket front door: `GET /ws`, and an `Upgrade: websocket` on `/mcp` or
//! `/mcp/{route}`.
//!
//! The MCP WebSocket transport the SDKs ship (Python `mcp.client.websocket`, the
//! TypeScript `WebSocketClientTransport`) carries one JSON-RPC message per text frame,
//! under the subprotocol `mcp`. A connection is one session, held by this process like
//! a legacy SSE stream: the same admission (Host, Origin, credentials, route grants) as
//! the HTTP doors, the same `initialize`, aggregation, limits and policies, and every
//! answer, notification and tool-server request goes back on the socket. The session
//! ends with the socket.

// The checks here return the refusal itself as their error: a cold path, so the size of
// `Response` in a `Result` costs nothing that matters.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL};
use http::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::{Message, version};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Role, WebSocketConfig, frame::coding::CloseCode,
};

use crate::http::{Body, Peer, admit, empty, refuse};
use hyper::upgrade::OnUpgrade;
use mcp_edge_core::Gateway;
use mcp_edge_core::session::{Session, short_id};

/// The subprotocol the MCP SDKs ask for.
const SUBPROTOCOL: &str = "mcp";

/// The next ping's tick; never, with pings off.
async fn next_ping(ping: Option<&mut tokio::time::Interval>) {
    match ping {
        Some(ping) => {
            ping.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Whether a request asks to upgrade to WebSocket.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    let connection = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    upgrade && connection
}

/// Answers a WebSocket upgrade on `/ws` (`target` none) or `/mcp/{target}`.
pub(crate) fn upgrade(
    gw: &Arc<Gateway>,
    peer: &Peer,
    mut req: Request<Incoming>,
    target: Option<&str>,
) -> Response<Body> {
    let handshake = match check_handshake(&req) {
        Ok(handshake) => handshake,
        Err(refusal) => return refusal,
    };
    let (principal, scope) = match admit(gw, peer, req.headers(), target) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    // A socket's session lives on the socket, in this process, like a legacy SSE one.
    let owner = peer.owner(principal.as_ref());
    let session = match gw
        .sessions
        .open(version::LATEST_SESSION, scope, principal, &owner, true)
    {
        Ok(session) => session,
        Err(full) => return crate::http::session_refused(full),
    };
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(serve_upgraded(
        gw.clone(),
        session,
        upgraded,
        peer.front.limits.keepalive,
    ));
    let mut response = empty(StatusCode::SWITCHING_PROTOCOLS);
    let headers = response.headers_mut();
    headers.insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, http::HeaderValue::from_static("websocket"));
    if let Ok(accept) = handshake.accept.parse() {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if handshake.agreed {
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    response
}

/// What a valid upgrade request agreed to.
struct Handshake {
    /// `Sec-WebSocket-Accept`.
    accept: String,
    /// The client offered the `mcp` subprotocol (it is named back).
    agreed: bool,
}

/// Checks an upgrade request (RFC 6455: GET over HTTP/1.1, version 13, a key, the
/// `mcp` subprotocol if any is offered); each refusal says what to send instead.
fn check_handshake(req: &Request<Incoming>) -> Result<Handshake, Response<Body>> {
    if req.method() != Method::GET || !is_upgrade(req.headers()) {
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            code::INVALID_REQUEST,
            "this endpoint speaks WebSocket: send GET with Connection: Upgrade and Upgrade: websocket (subprotocol `mcp`)",
        );
        response
            .headers_mut()
            .insert(UPGRADE, http::HeaderValue::from_static("websocket"));
        return Err(response);
    }
    if req.version() != http::Version::HTTP_11 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "WebSocket needs HTTP/1.1 (connect without HTTP/2 for /ws)",
        ));
    }
    let headers = req.headers();
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(http::HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            code::INVALID_REQUEST,
            "only WebSocket version 13 is spoken",
        );
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, http::HeaderValue::from_static("13"));
        return Err(response);
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "the WebSocket upgrade has no Sec-WebSocket-Key",
        ));
    };
    let offered: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !offered.is_empty() && !offered.contains(&SUBPROTOCOL) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "the WebSocket subprotocol must be `mcp`",
        ));
    }
    Ok(Handshake {
        accept: derive_accept_key(key.as_bytes()),
        agreed: !offered.is_empty(),
    })
}

/// Serves the session on the upgraded connection, then ends it (calls in flight get
/// ten seconds to finish).
async fn serve_upgraded(
    gw: Arc<Gateway>,
    session: Arc<Session>,
    upgraded: OnUpgrade,
    keepalive: Option<Duration>,
) {
    let io = match upgraded.await {
        Ok(io) => TokioIo::new(io),
        Err(e) => {
            tracing::debug!("WebSocket upgrade failed: {e}");
            gw.sessions.end(&session.id);
            return;
        }
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(gw.max_message_bytes);
    config.max_frame_size = Some(gw.max_message_bytes);
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    tracing::info!(session = %short_id(&session.id), "WebSocket session opened");
    serve_socket(&gw, &session, socket, keepalive).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while session.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.sessions.end(&session.id);
    tracing::info!(session = %short_id(&session.id), "WebSocket session closed");
}

/// Reads messages from the socket into the session and writes what the session sends,
/// until either side closes or the client stops answering pings.
async fn serve_socket<S>(
    gw: &Arc<Gateway>,
    session: &Arc<Session>,
    socket: WebSocketStream<S>,
    keepalive: Option<Duration>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut frames) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Vec<u8>>(256);
    session.attach_stream(out.clone());
    // A ping every `keepalive` keeps load balancers from cutting an idle socket, and
    // a client that answers none for three of them is gone.
    let mut ping = keepalive.map(tokio::time::interval);
    if let Some(ping) = ping.as_mut() {
        ping.tick().await;
    }
    let pong_within = keepalive.map_or(Duration::MAX, |k| k * 3);
    let mut heard = tokio::time::Instant::now();
    let close = |code: CloseCode, reason: &'static str| {
        Frame::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        tokio::select! {
            frame = frames.next() => {
                heard = tokio::time::Instant::now();
                let text = match frame {
                    Some(Ok(Frame::Text(text))) => Bytes::from(text),
                    Some(Ok(Frame::Binary(_))) => {
                        let _ = sink.send(close(CloseCode::Unsupported, "MCP over WebSocket is text frames")).await;
                        break;
                    }
                    Some(Ok(Frame::Close(_))) | None => break,
                    Some(Ok(_)) => continue, // ping, pong: tungstenite answers pings itself
                    Some(Err(e)) => {
                        tracing::debug!(session = %short_id(&session.id), "WebSocket read failed: {e}");
                        let _ = sink.send(close(CloseCode::Size, "message too large or malformed")).await;
                        break;
                    }
                };
                match Message::parse(&text) {
                    Ok(message) => gw.receive_on_stream(session, message, out.clone()).await,
                    Err(e) => {
                        let _ = out.send(jsonrpc::error(e.id(), e.code(), &e.to_string(), None)).await;
                    }
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                let Ok(text) = String::from_utf8(message) else { continue };
                if sink.send(Frame::text(text)).await.is_err() {
                    break;
                }
            }
            () = next_ping(ping.as_mut()) => {
                if heard.elapsed() > pong_within {
                    tracing::info!(session = %short_id(&session.id), "WebSocket client answered no ping; closing");
                    break;
                }
                if sink.send(Frame::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
}
