//! A tool server over one long-lived message stream: legacy HTTP+SSE (2024-11-05) or
//! WebSocket (JSON-RPC in text frames, subprotocol `mcp`).
//!
//! Both are supervised like a child process: dial, `initialize`, serve until the stream
//! drops, fail the calls in flight at once, reconnect with jittered exponential
//! backoff. A call made while disconnected waits only for a reconnection due before
//! its deadline and fails fast otherwise, so nothing queues without bound.
//!
//! Legacy SSE: `GET` the URL for an event stream whose first `endpoint` event names
//! where to POST (a relative URL is resolved against the stream's; its query is opaque);
//! answers come back on the stream as `message` events.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use mcp_edge_protocol::{Message, mcp, sse};
use rustls::ClientConfig;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Call, Phase, Reply, ServerInfo, Sink, UpstreamError};
use mcp_edge_client::dial::{self, Connection, Dialer, TlsTarget};
use mcp_edge_client::pool::{Pool, PoolBody, read_bounded};
use mcp_edge_upstream::conn::Conn;

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Legacy HTTP+SSE.
    Sse,
    /// WebSocket.
    WebSocket,
}

/// How to reach one stream tool server.
#[derive(Clone)]
pub struct LinkConfig {
    /// The route's name.
    pub route: String,
    /// Which stream.
    pub kind: LinkKind,
    /// The SSE endpoint (`http(s)://…/sse`) or the WebSocket URL (`ws(s)://…`).
    pub url: Uri,
    /// Headers sent when connecting and on every POST: the route's credentials.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// TLS for `https://` and `wss://` (offer `http/1.1` only for WebSocket).
    pub tls: Option<Arc<ClientConfig>>,
    /// The name the certificate must show, when not the URL's host (`tls.server_name`).
    pub server_name: Option<String>,
    /// Called with what each TLS handshake showed (certificate tracking).
    pub on_handshake: Option<dial::OnHandshake>,
    /// The largest message accepted.
    pub max_message_bytes: usize,
    /// How long connecting and `initialize` may take.
    pub init_timeout: Duration,
    /// First reconnection delay; doubles, with jitter.
    pub backoff_base: Duration,
    /// Largest reconnection delay.
    pub backoff_max: Duration,
}

impl LinkConfig {
    /// mcp-edge's defaults for everything but the route, kind and URL.
    pub fn new(route: impl Into<String>, kind: LinkKind, url: Uri) -> Self {
        LinkConfig {
            route: route.into(),
            kind,
            url,
            headers: Vec::new(),
            tls: None,
            server_name: None,
            on_handshake: None,
            max_message_bytes: 4 * 1024 * 1024,
            init_timeout: Duration::from_secs(20),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for LinkConfig {
    /// Header values may be credentials: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("LinkConfig")
            .field("route", &self.route)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("headers", &headers)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    info: Option<Arc<ServerInfo>>,
    restarts: u64,
    last_error: Option<(SystemTime, String)>,
    shutting_down: bool,
}

struct Shared {
    cfg: LinkConfig,
    /// HTTP connections to the legacy server (the stream's GET, the messages' POSTs).
    pool: Arc<Pool>,
    sink: Arc<dyn Sink>,
    state: Mutex<State>,
    phase: watch::Sender<Phase>,
    shutdown: Notify,
    stopped: watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A supervised stream tool server. Cheap to clone.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
}

/// A snapshot for health reporting.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    /// What the supervisor is doing.
    pub phase: Phase,
    /// What the server said about itself, while connected.
    pub info: Option<Arc<ServerInfo>>,
    /// Reconnections after the first connection.
    pub restarts: u64,
    /// The last failure and when.
    pub last_error: Option<(SystemTime, String)>,
}

impl Link {
    /// Starts supervising the stream. Must run inside tokio.
    pub fn spawn(cfg: LinkConfig, sink: Arc<dyn Sink>) -> Link {
        let connector = Dialer::new(
            cfg.tls.clone(),
            server_name(&cfg),
            cfg.on_handshake.clone(),
            Duration::from_secs(10),
        );
        let pool = Pool::new(connector, cfg.url.clone(), 4, Duration::from_secs(90));
        let shared = Arc::new(Shared {
            cfg,
            pool,
            sink,
            state: Mutex::new(State::default()),
            phase: watch::Sender::new(Phase::Starting),
            shutdown: Notify::new(),
            stopped: watch::Sender::new(false),
        });
        tokio::spawn(run(shared.clone()));
        Link { shared }
    }

    /// Makes one call.
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        let conn = mcp_edge_upstream::conn::ready(
            &self.shared.phase,
            || self.shared.state().conn.clone(),
            || self.last_error(),
            call.deadline,
        )
        .await?;
        conn.call(call).await
    }

    /// Answers a request the tool server made.
    pub async fn respond(&self, id: &mcp_edge_protocol::Id, reply: Reply) {
        let conn = self.shared.state().conn.clone();
        if let Some(conn) = conn {
            conn.respond(id, reply).await;
        }
    }

    /// Sends a notification to the tool server.
    pub async fn notify(&self, method: &str, params: Option<&serde_json::value::RawValue>) {
        let conn = self.shared.state().conn.clone();
        if let Some(conn) = conn {
            let message = mcp_edge_protocol::jsonrpc::notification(method, params);
            conn.send_within(message, Duration::from_secs(5)).await;
        }
    }

    /// Waits for the first connection attempt to finish, or `deadline`.
    pub async fn first_attempt(&self, deadline: Instant) {
        let mut phase = self.shared.phase.subscribe();
        let _ = tokio::time::timeout_at(deadline, phase.wait_for(|p| *p != Phase::Starting)).await;
    }

    /// A snapshot for health reporting.
    pub fn status(&self) -> LinkStatus {
        let phase = self.shared.phase.borrow().clone();
        let state = self.shared.state();
        LinkStatus {
            phase,
            info: state.info.clone(),
            restarts: state.restarts,
            last_error: state.last_error.clone(),
        }
    }

    /// Closes the stream and stops reconnecting.
    pub async fn shutdown(&self) {
        self.shared.state().shutting_down = true;
        self.shared.shutdown.notify_one();
        let mut stopped = self.shared.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }

    fn last_error(&self) -> String {
        self.shared
            .state()
            .last_error
            .as_ref()
            .map_or_else(|| "not connected yet".to_owned(), |(_, e)| e.clone())
    }
}

/// One dialed stream: its connection, and the tasks that read and write it.
struct Dialed {
    conn: Arc<Conn>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Dialed {
    fn abort(&self) {
        self.reader.abort();
        self.writer.abort();
    }
}

async fn run(shared: Arc<Shared>) {
    let route = shared.cfg.route.clone();
    let mut failures: u32 = 0;
    loop {
        if shared.state().shutting_down {
            break;
        }
        shared.phase.send_replace(Phase::Starting);
        let started = Instant::now();
        let failure = match connect(&shared).await {
            Err(e) => e,
            Ok((dialed, info)) => {
                failures = 0;
                match serve_link(&shared, dialed, info).await {
                    Some(reason) => reason,
                    None => break,
                }
            }
        };
        if shared.state().shutting_down {
            break;
        }
        if started.elapsed() >= Duration::from_secs(30) {
            failures = 0;
        }
        let delay =
            mcp_edge_upstream::backoff(shared.cfg.backoff_base, shared.cfg.backoff_max, failures);
        failures = failures.saturating_add(1);
        tracing::warn!(route = %route, retry_in_ms = delay.as_millis() as u64, "tool server link failed: {failure}");
        {
            let mut state = shared.state();
            state.restarts += 1;
            state.last_error = Some((SystemTime::now(), failure));
        }
        if mcp_edge_upstream::wait_backoff(&shared.phase, &shared.shutdown, Instant::now() + delay)
            .await
        {
            break;
        }
    }
    shared.phase.send_replace(Phase::Stopped);
    shared.stopped.send_replace(true);
}

/// Dials the link and opens the MCP session on it, within `init_timeout`.
async fn connect(shared: &Arc<Shared>) -> Result<(Dialed, Arc<ServerInfo>), String> {
    let dialing = async {
        let mut dialed = match shared.cfg.kind {
            LinkKind::Sse => dial_sse(shared).await?,
            LinkKind::WebSocket => dial_websocket(shared).await?,
        };
        match open(&dialed.conn, &shared.cfg).await {
            Ok(info) => Ok((dialed, info)),
            Err(e) => {
                dialed.abort();
                let _ = (&mut dialed.reader).await;
                Err(e)
            }
        }
    };
    match tokio::time::timeout(shared.cfg.init_timeout, dialing).await {
        Ok(outcome) => outcome,
        Err(_) => Err("no answer to initialize in time".to_owned()),
    }
}

/// Serves calls on an open link until it drops (why, to report) or is shut down
/// (`None`).
async fn serve_link(
    shared: &Arc<Shared>,
    mut dialed: Dialed,
    info: Arc<ServerInfo>,
) -> Option<String> {
    let route = &shared.cfg.route;
    {
        let mut state = shared.state();
        state.conn = Some(dialed.conn.clone());
        state.info = Some(info.clone());
    }
    tracing::info!(route = %route, version = %info.protocol_version, "tool server connected");
    shared.phase.send_replace(Phase::Ready);
    shared.sink.availability(route, Some(info));
    let shutdown = tokio::select! {
        _ = &mut dialed.reader => false,
        () = shared.shutdown.notified() => true,
    };
    {
        let mut state = shared.state();
        state.conn = None;
        state.info = None;
    }
    shared.sink.availability(route, None);
    dialed.abort();
    if shutdown {
        dialed.conn.fail_all(&UpstreamError::Closed);
        return None;
    }
    let reason = "the connection to the tool server dropped".to_owned();
    dialed
        .conn
        .fail_all(&UpstreamError::Crashed(reason.clone()));
    Some(reason)
}

/// `initialize`, then `notifications/initialized`.
async fn open(conn: &Arc<Conn>, cfg: &LinkConfig) -> Result<Arc<ServerInfo>, String> {
    let reply = conn
        .call(Call {
            method: mcp::INITIALIZE.to_owned(),
            params: Some(mcp_edge_upstream::handshake::initialize_params()),
            deadline: Instant::now() + cfg.init_timeout,
            events: None,
            traceparent: None,
            name: None,
            session: None,
        })
        .await
        .map_err(|e| format!("initialize failed: {e}"))?;
    match reply {
        Reply::Result(result) => {
            let info = mcp_edge_upstream::handshake::session_info(&result)?;
            conn.send(mcp_edge_protocol::jsonrpc::notification(
                mcp::INITIALIZED,
                None,
            ))
            .await;
            Ok(Arc::new(info))
        }
        Reply::Error(error) => Err(format!(
            "the tool server refused initialize: {}",
            error.get()
        )),
    }
}

/// Resolves the `endpoint` event's URL against the stream's. An absolute URL must
/// name the stream's own origin: the POSTs carry the route's credentials and were
/// classified by the route's URL, so a server that names another host (or scheme, or
/// port) is refused rather than followed.
fn resolve(base: &Uri, endpoint: &str) -> Result<Uri, String> {
    if endpoint.contains("://") || endpoint.starts_with("//") {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| format!("bad endpoint `{endpoint}`: {e}"))?;
        let same = uri.scheme() == base.scheme()
            && uri
                .authority()
                .zip(base.authority())
                .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()));
        if !same {
            return Err(format!(
                "the endpoint event names another origin ({}); only the stream's own origin is followed",
                uri.authority().map_or("none", |a| a.as_str())
            ));
        }
        return Ok(uri);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    let path = if endpoint.starts_with('/') {
        endpoint.to_owned()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{endpoint}")
    };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|e| format!("bad endpoint `{endpoint}`: {e}"))
}

fn request(cfg: &LinkConfig, method: Method, uri: Uri) -> http::request::Builder {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in &cfg.headers {
        request = request.header(k, v);
    }
    request
}

/// Opens a legacy HTTP+SSE link: the GET stream, its `endpoint` event, then a task
/// reading the stream into the call table and one posting each message.
async fn dial_sse(shared: &Arc<Shared>) -> Result<Dialed, String> {
    let cfg = &shared.cfg;
    let get = request(cfg, Method::GET, cfg.url.clone())
        .header(ACCEPT, "text/event-stream")
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let response = shared.pool.request(get).await.map_err(|e| {
        format!(
            "GET {}: {}",
            cfg.url,
            dial::describe_error(&e, cfg.url.scheme_str() == Some("https"))
        )
    })?;
    if response.status() != StatusCode::OK {
        return Err(format!(
            "GET {} answered {}: no legacy HTTP+SSE stream there",
            cfg.url,
            response.status()
        ));
    }
    let mut body = response.into_body();
    let mut parser = sse::Parser::new(cfg.max_message_bytes);
    let (endpoint, early) = endpoint_event(cfg, &mut body, &mut parser).await?;
    tracing::debug!(route = %cfg.route, endpoint = %endpoint, "legacy SSE endpoint");
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let conn = Arc::new(Conn::new(
        cfg.route.as_str().into(),
        tx,
        shared.sink.clone(),
    ));
    let dispatch = {
        let conn = conn.clone();
        let route = cfg.route.clone();
        move |event: sse::Event| {
            if event.kind() != "message" || event.data.is_empty() {
                return;
            }
            match Message::parse(event.data.as_bytes()) {
                Ok(message) => conn.dispatch(message),
                Err(e) => {
                    tracing::warn!(route = %route, "skipped an event that is not JSON-RPC: {e}");
                }
            }
        }
    };
    let reader = tokio::spawn(async move {
        for event in early {
            dispatch(event);
        }
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let Ok(events) = parser.feed(&data) else {
                break;
            };
            for event in events {
                dispatch(event);
            }
        }
    });
    let writer = tokio::spawn(post_messages(shared.clone(), endpoint, rx));
    Ok(Dialed {
        conn,
        reader,
        writer,
    })
}

/// Reads the stream up to its `endpoint` event: where messages are posted (same origin
/// only), and the events that came before it.
async fn endpoint_event(
    cfg: &LinkConfig,
    body: &mut PoolBody,
    parser: &mut sse::Parser,
) -> Result<(Uri, Vec<sse::Event>), String> {
    let mut early = Vec::new();
    loop {
        let Some(frame) = body.frame().await else {
            return Err("the event stream ended before the endpoint event".into());
        };
        let frame = frame.map_err(|e| format!("the event stream broke: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let mut found = None;
        for event in parser.feed(&data).map_err(|e| e.to_string())? {
            if found.is_none() && event.kind() == "endpoint" {
                found = Some(resolve(&cfg.url, event.data.trim())?);
            } else {
                early.push(event);
            }
        }
        if let Some(endpoint) = found {
            return Ok((endpoint, early));
        }
    }
}

/// Posts each outgoing message to the endpoint, until the link closes or the server
/// says the endpoint is gone (404).
async fn post_messages(shared: Arc<Shared>, endpoint: Uri, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        let body = frame
            .strip_suffix(b"\n")
            .map_or(frame.clone(), |b| frame.slice(..b.len()));
        let Ok(post) = request(&shared.cfg, Method::POST, endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
        else {
            continue;
        };
        match shared.pool.request(post).await {
            Ok(response) if response.status().is_success() => {
                // An acknowledgement: bounded, so that a server answering endlessly
                // cannot stall the messages behind it.
                let acked = read_bounded(response.into_body(), 64 * 1024, Duration::from_secs(10));
                if let Err(e) = acked.await {
                    tracing::warn!(route = %shared.cfg.route, "the tool server's acknowledgement: {e}");
                }
            }
            Ok(response) => {
                tracing::warn!(route = %shared.cfg.route, status = %response.status(), "the tool server refused a message");
                if response.status() == StatusCode::NOT_FOUND {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(route = %shared.cfg.route, "POST to the tool server failed: {e}");
            }
        }
    }
}

/// The TLS name from the route, when it overrides the URL's host.
fn server_name(cfg: &LinkConfig) -> Option<rustls_pki_types::ServerName<'static>> {
    cfg.server_name
        .as_ref()
        .and_then(|n| rustls_pki_types::ServerName::try_from(n.clone()).ok())
}

/// The connection under a WebSocket: TCP, and for `wss://` TLS verified against
/// `tls.server_name` or the URL's host.
async fn dial_tcp_tls(
    cfg: &LinkConfig,
) -> Result<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>, String> {
    let host = cfg
        .url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let secure = cfg.url.scheme_str() == Some("wss");
    let port = cfg.url.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tls = match (secure, cfg.tls.clone()) {
        (false, _) => None,
        (true, None) => return Err(format!("{}: wss:// without a TLS configuration", cfg.url)),
        (true, Some(config)) => Some(TlsTarget {
            config,
            name: server_name(cfg),
            on_handshake: cfg.on_handshake.clone(),
        }),
    };
    match dial::connect(&host, port, tls.as_ref(), Duration::from_secs(10)).await {
        Ok(Connection::Plain(tcp)) => Ok(tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
        Ok(Connection::Tls(tls)) => Ok(tokio_tungstenite::MaybeTlsStream::Rustls(*tls)),
        Err(e) => Err(format!("{}: {e}", cfg.url)),
    }
}

async fn dial_websocket(shared: &Arc<Shared>) -> Result<Dialed, String> {
    use tokio_tungstenite::tungstenite::Message as Frame;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let cfg = &shared.cfg;
    let mut request = cfg
        .url
        .to_string()
        .into_client_request()
        .map_err(|e| format!("{}: {e}", cfg.url))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
    for (k, v) in &cfg.headers {
        request.headers_mut().insert(k.clone(), v.clone());
    }
    let mut ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    ws_config.max_message_size = Some(cfg.max_message_bytes);
    ws_config.max_frame_size = Some(cfg.max_message_bytes);
    let stream = dial_tcp_tls(cfg).await?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
        .await
        .map_err(|e| format!("cannot open a WebSocket to {}: {e}", cfg.url))?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let conn = Arc::new(Conn::new(
        cfg.route.as_str().into(),
        tx,
        shared.sink.clone(),
    ));
    let reader = {
        let conn = conn.clone();
        let route = cfg.route.clone();
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                let bytes = match frame {
                    Ok(Frame::Text(text)) => Bytes::copy_from_slice(text.as_bytes()),
                    Ok(Frame::Binary(bytes)) => bytes,
                    Ok(Frame::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                match Message::parse(&bytes) {
                    Ok(message) => conn.dispatch(message),
                    Err(e) => {
                        tracing::warn!(route = %route, "skipped a frame that is not JSON-RPC: {e}");
                    }
                }
            }
        })
    };
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let text =
                String::from_utf8_lossy(frame.strip_suffix(b"\n").unwrap_or(&frame)).into_owned();
            if sink.send(Frame::text(text)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    Ok(Dialed {
        conn,
        reader,
        writer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_against_the_stream_url() {
        let base: Uri = "http://127.0.0.1:9000/sse".parse().unwrap_or_default();
        let got = |e: &str| resolve(&base, e).map(|u| u.to_string()).unwrap_or_default();
        assert_eq!(
            got("/messages/?session_id=ab12"),
            "http://127.0.0.1:9000/messages/?session_id=ab12"
        );
        assert_eq!(
            got("/message?sessionId=9f"),
            "http://127.0.0.1:9000/message?sessionId=9f"
        );
        assert_eq!(got("messages?x=1"), "http://127.0.0.1:9000/messages?x=1");
        assert_eq!(
            got("http://127.0.0.1:9000/m?s=1"),
            "http://127.0.0.1:9000/m?s=1"
        );
        for elsewhere in [
            "https://other.example/m",
            "http://127.0.0.1:9001/m",
            "https://127.0.0.1:9000/m",
            "//evil.example/m",
        ] {
            assert!(resolve(&base, elsewhere).is_err(), "{elsewhere}");
        }
    }
}
