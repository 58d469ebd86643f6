//! A tool server over Streamable HTTP, in either protocol era.
//!
//! One [`Http`] per route owns one connection pool (keep-alive, HTTP/2 when the
//! server offers it over ALPN, bounded idle pool) and one upstream MCP connection that
//! every client session of the route shares, ids and progress tokens remapped as for
//! stdio. The connection is opened on first use and after failures (with jittered
//! backoff): `server/discover` first (2026-07-28), `initialize` when the server answers
//! anything else. In the session era a 404 means the upstream session ended: it is
//! re-initialized once and the call retried; a GET stream carries what the server
//! sends outside calls.
//!
//! Headers are mcp-edge's own: `Host` from the URL, the route's credentials, never the
//! client's `Authorization` or `Origin`.

/// The HTTP/1.1 response parser, driven over a real loopback connection, for the fuzz
/// target under `fuzz/` (not an API).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::version::{self, Era};
use mcp_edge_protocol::{Id, Kind, Message, mcp, sse};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::{Call, CallEvent, Reply, ServerInfo, Sink, UpstreamError};
pub use mcp_edge_client::dial::{ConnectError, OnHandshake, PeerTls};
use mcp_edge_client::dial::{Dialer, connect_error};
use mcp_edge_client::pool::{Pool, PoolBody};
use mcp_edge_upstream::Taker;

// Header names built once: a name parsed from a string that is not one of HTTP's own
// is allocated anew on every request.
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
const METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
const NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
// Values too: one from a `&str` is checked and copied on every request.
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const JSON_OR_EVENTS: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
/// How many times one request's event stream is resumed before the call fails.
const MAX_RESUMES: u32 = 5;

/// How to reach one Streamable HTTP tool server.
#[derive(Clone)]
pub struct HttpConfig {
    /// The route's name, for logs and errors.
    pub route: String,
    /// The endpoint.
    pub url: Uri,
    /// Headers sent on every request: the route's credentials and extras.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// TLS for `https://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// The name to verify instead of the URL's host.
    pub server_name: Option<String>,
    /// Called on every new TLS connection with what the server presented.
    pub on_handshake: Option<OnHandshake>,
    /// The largest message accepted from the server.
    pub max_message_bytes: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long opening the MCP connection may take.
    pub init_timeout: Duration,
    /// First delay after a failed connection attempt; doubles, with jitter.
    pub backoff_base: Duration,
    /// Largest delay between attempts.
    pub backoff_max: Duration,
    /// Idle keep-alive connections kept per host. Each call holds a connection of its
    /// own for its exchange, so this should cover the calls in flight at a peak: a
    /// connection returned to a full pool is closed, and the next call past the cap
    /// opens a new one (a handshake per call at that concurrency). An idle one costs
    /// about 10 KB.
    pub max_idle_connections: usize,
    /// When `initialize` is answered 400, 404 or 405, try the legacy HTTP+SSE
    /// transport at the same URL (the spec's back-compatibility rule; `protocol = "auto"`).
    pub fallback_to_sse: bool,
    /// A session of its own for each client session a call names ([`Call::session`]),
    /// opened at its first call and ended (DELETE) with the client's.
    pub per_client: bool,
    /// The most client sessions held at once; past it a new client's call is refused.
    pub max_client_sessions: usize,
}

impl std::fmt::Debug for HttpConfig {
    /// Header values may be credentials: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpConfig")
            .field("route", &self.route)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    /// mcp-edge's defaults for everything but the route and URL.
    pub fn new(route: impl Into<String>, url: Uri) -> Self {
        HttpConfig {
            route: route.into(),
            url,
            headers: Vec::new(),
            tls: None,
            server_name: None,
            on_handshake: None,
            max_message_bytes: 4 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            init_timeout: Duration::from_secs(20),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_idle_connections: 256,
            fallback_to_sse: false,
            per_client: false,
            max_client_sessions: MAX_CLIENT_SESSIONS,
        }
    }
}

/// The default of [`HttpConfig::max_client_sessions`].
pub const MAX_CLIENT_SESSIONS: usize = 1024;

/// A client's own upstream session, once opened (see [`Http::client_remote`]).
type ClientSlot = Arc<tokio::sync::Mutex<Option<Arc<Remote>>>>;

/// The upstream MCP connection: era, session and what the server said.
struct Remote {
    /// The client session it serves alone (a route with a session per client).
    owner: Option<Arc<str>>,
    stateless: bool,
    session: Option<HeaderValue>,
    version: HeaderValue,
    info: Arc<ServerInfo>,
    listener: Mutex<Option<AbortHandle>>,
    /// The calls in flight on this session whose clients can answer the tool server's
    /// requests: their upstream ids and event channels.
    takers: Mutex<Vec<(i64, mpsc::Sender<CallEvent>)>>,
}

impl Remote {
    /// The events channel of the one call in flight that can take the tool server's
    /// requests, if exactly one can. A request on the GET stream (a server that sends
    /// `roots/list` with no related request, as the Python SDK does) names no call:
    /// with one candidate it is surely that call's; with several, guessing could hand
    /// one client's question to another, so nothing is guessed.
    fn only_taker(&self) -> Taker {
        let takers = self.takers.lock().unwrap_or_else(PoisonError::into_inner);
        match takers.as_slice() {
            [] => Taker::None,
            [(_, only)] => Taker::One(only.clone()),
            _ => Taker::Several,
        }
    }
}

/// A call's place among its session's [`Remote::takers`], given up however the call
/// ends (answered, failed, or dropped by its caller).
struct Taking {
    remote: Arc<Remote>,
    id: i64,
}

impl Taking {
    fn new(remote: &Arc<Remote>, id: i64, events: &mpsc::Sender<CallEvent>) -> Taking {
        remote
            .takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, events.clone()));
        Taking {
            remote: remote.clone(),
            id,
        }
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        self.remote
            .takers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            listener.abort();
        }
    }
}

#[derive(Default)]
struct State {
    remote: Option<Arc<Remote>>,
    last_error: Option<(SystemTime, String)>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Shared {
    cfg: HttpConfig,
    pool: Arc<Pool>,
    sink: Arc<dyn Sink>,
    next_id: AtomicI64,
    state: Mutex<State>,
    connecting: tokio::sync::Mutex<()>,
    attempted: watch::Sender<bool>,
    closed: AtomicBool,
    /// The legacy HTTP+SSE link this server turned out to need, once it did.
    legacy: std::sync::OnceLock<crate::link::Link>,
    /// Per client session, its own upstream session (see [`HttpConfig::per_client`]):
    /// each slot is opened once, by its first call.
    clients: Mutex<HashMap<Arc<str>, ClientSlot>>,
}

/// A Streamable HTTP tool server. Cheap to clone.
#[derive(Clone)]
pub struct Http {
    shared: Arc<Shared>,
}

/// A snapshot for health reporting.
#[derive(Debug, Clone)]
pub struct HttpStatus {
    /// Whether an MCP connection is open.
    pub connected: bool,
    /// What the server said about itself, while connected.
    pub info: Option<Arc<ServerInfo>>,
    /// The last failure and when.
    pub last_error: Option<(SystemTime, String)>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Not connected, and a connection (with its `initialize`) is under way.
    pub connecting: bool,
}

/// How one exchange went wrong, before it becomes an [`UpstreamError`].
enum Failure {
    /// 404 to the session: `made` when the request had been accepted before (a resumed
    /// stream), so that it may have run.
    SessionGone {
        made: bool,
    },
    Upstream(UpstreamError),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Failure::Upstream(e)
    }
}

/// A connection's state before anything is in flight on it (`info`: what the server
/// said, or a placeholder while connecting).
fn remote(
    stateless: bool,
    session: Option<HeaderValue>,
    version: HeaderValue,
    info: Option<ServerInfo>,
) -> Remote {
    Remote {
        owner: None,
        stateless,
        session,
        version,
        info: Arc::new(info.unwrap_or_else(placeholder_info)),
        listener: Mutex::new(None),
        takers: Mutex::new(Vec::new()),
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A header value for `Mcp-Name`: as is when it is plain, else `=?base64?…?=`.
fn name_header(name: &str) -> Option<HeaderValue> {
    let plain = !name.is_empty()
        && name.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && !name.starts_with("=?");
    if plain {
        return HeaderValue::from_str(name).ok();
    }
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(name);
    HeaderValue::from_str(&format!("=?base64?{encoded}?=")).ok()
}

impl Http {
    /// A connector for one route. Connects on first use; must run inside tokio.
    pub fn new(cfg: HttpConfig, sink: Arc<dyn Sink>) -> Http {
        let server_name = cfg
            .server_name
            .as_ref()
            .and_then(|n| ServerName::try_from(n.clone()).ok());
        let connector = Dialer::new(
            cfg.tls.clone(),
            server_name,
            cfg.on_handshake.clone(),
            cfg.connect_timeout,
        );
        let pool = Pool::new(
            connector,
            cfg.url.clone(),
            cfg.max_idle_connections,
            Duration::from_secs(90),
        );
        Http {
            shared: Arc::new(Shared {
                cfg,
                pool,
                sink,
                next_id: AtomicI64::new(1),
                state: Mutex::new(State::default()),
                connecting: tokio::sync::Mutex::new(()),
                attempted: watch::Sender::new(false),
                closed: AtomicBool::new(false),
                legacy: std::sync::OnceLock::new(),
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The route this serves.
    pub fn route(&self) -> &str {
        &self.shared.cfg.route
    }

    /// Opens the connection now (the first attempt), without waiting past `deadline`.
    pub async fn first_attempt(&self, deadline: Instant) {
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this
                .remote(Instant::now() + this.shared.cfg.init_timeout)
                .await;
            this.shared.attempted.send_replace(true);
        });
        let mut attempted = self.shared.attempted.subscribe();
        let _ = tokio::time::timeout_at(deadline, attempted.wait_for(|a| *a)).await;
        if let Some(link) = self.shared.legacy.get() {
            link.first_attempt(deadline).await;
        }
    }

    /// A snapshot for health reporting.
    pub fn status(&self) -> HttpStatus {
        if let Some(link) = self.shared.legacy.get() {
            let status = link.status();
            return HttpStatus {
                connected: status.info.is_some(),
                connecting: status.phase == crate::Phase::Starting,
                info: status.info,
                last_error: status.last_error,
                failures: u32::try_from(status.restarts).unwrap_or(u32::MAX),
            };
        }
        // A connection under way holds `connecting` (see `remote`).
        let connecting = self.shared.connecting.try_lock().is_err();
        let state = lock(&self.shared.state);
        HttpStatus {
            connected: state.remote.is_some(),
            connecting: connecting && state.remote.is_none(),
            info: state.remote.as_ref().map(|r| r.info.clone()),
            last_error: state.last_error.clone(),
            failures: state.failures,
        }
    }

    /// Makes one call.
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        if let Some(link) = self.shared.legacy.get() {
            return Box::pin(link.call(call)).await;
        }
        let started = Instant::now();
        let deadline = call.deadline;
        match tokio::time::timeout_at(deadline, self.call_inner(call)).await {
            Ok(reply) => reply,
            Err(_) => Err(UpstreamError::Timeout(started.elapsed())),
        }
    }

    async fn call_inner(&self, call: Call) -> Result<Reply, UpstreamError> {
        // `Mcp-Name`: the name the gateway already read, or read here once.
        let routed = match &call.name {
            Some(_) => None,
            None => mcp::routing_name(&call.method, call.params.as_deref()),
        };
        let name = call.name.as_deref().or(routed.as_deref());
        let remote = match &call.session {
            Some(key) if self.shared.cfg.per_client => self.client_remote(key, call.deadline).await,
            _ => self.remote(call.deadline).await,
        };
        let remote = match remote {
            Ok(remote) => remote,
            Err(e) => {
                if let Some(link) = self.shared.legacy.get() {
                    return Box::pin(link.call(call)).await;
                }
                return Err(e);
            }
        };
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        // While it is in flight, the call can take requests that come on the GET
        // stream (see `Remote::only_taker`).
        let _taking = call
            .events
            .as_ref()
            .filter(|_| !remote.stateless)
            .map(|events| Taking::new(&remote, id, events));
        let (body, token) = mcp_edge_upstream::params::request(
            id,
            &call.method,
            call.params.as_deref(),
            remote.stateless,
        )?;
        // Leaving before the answer cancels upstream: in the session era with a
        // notification, in the stateless era by closing the stream (dropping it).
        let mut guard = CancelOnDrop {
            http: self.clone(),
            remote: remote.clone(),
            id,
            armed: !remote.stateless,
        };
        let outcome = async {
            let response = self
                .send_traced(
                    &remote,
                    body,
                    Some(&call.method),
                    name,
                    call.traceparent.as_deref(),
                )
                .await?;
            self.read_reply(&remote, response, id, token, call.events.as_ref())
                .await
        }
        .await;
        guard.armed = false;
        match outcome {
            Ok(reply) => Ok(reply),
            Err(Failure::SessionGone { made }) => {
                // The next call opens a new session; this one is not made again here:
                // the retry policy repeats only what is safe to (the new session has
                // none of the old one's state), and says why otherwise.
                tracing::info!(route = %self.shared.cfg.route, made, "upstream session ended (404); the next call opens a new one");
                self.forget(&remote);
                Err(if made {
                    UpstreamError::Interrupted(
                        "the tool server ended its session while the call was in flight (404 when resuming its stream): it may have run".into(),
                    )
                } else {
                    UpstreamError::SessionGone(
                        "it answered 404, so the call was not made; the next call opens a new session".into(),
                    )
                })
            }
            Err(Failure::Upstream(e)) => Err(e),
        }
    }

    /// Answers a request the tool server made, in the session it came from: the
    /// client's own for a route with a session per client, else the shared one.
    pub async fn respond(&self, session: Option<&Arc<str>>, id: &Id, reply: Reply) {
        if let Some(link) = self.shared.legacy.get() {
            return link.respond(id, reply).await;
        }
        let Some(remote) = self.current(session) else {
            return;
        };
        let message = reply.to_message(id);
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.send(&remote, message, None, None),
        )
        .await;
    }

    /// Sends a notification to the tool server, in the client's own session when it
    /// has one.
    pub async fn notify(
        &self,
        session: Option<&Arc<str>>,
        method: &str,
        params: Option<&serde_json::value::RawValue>,
    ) {
        if let Some(link) = self.shared.legacy.get() {
            return link.notify(method, params).await;
        }
        let Some(remote) = self.current(session) else {
            return;
        };
        let message = jsonrpc::notification(method, params);
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.send(&remote, message, Some(method), None),
        )
        .await;
    }

    /// The session in force for a client: its own (a route with a session per client,
    /// once its first call opened one), else the shared one.
    fn current(&self, session: Option<&Arc<str>>) -> Option<Arc<Remote>> {
        let own = session
            .filter(|_| self.shared.cfg.per_client)
            .and_then(|key| self.clients().get(key).cloned())
            .and_then(|slot| slot.try_lock().ok().and_then(|held| held.clone()));
        own.or_else(|| lock(&self.shared.state).remote.clone())
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<Arc<str>, ClientSlot>> {
        self.shared
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A client session ended: its own upstream session, if it had one, is ended too
    /// (DELETE), in the background.
    pub fn end_session(&self, session: &str) {
        let Some(slot) = self.clients().remove(session) else {
            return;
        };
        let http = self.clone();
        tokio::spawn(async move {
            let remote = slot.lock().await.take();
            if let Some(remote) = remote {
                tracing::debug!(route = %http.shared.cfg.route, "client session ended: ending its upstream session");
                http.delete(&remote).await;
            }
        });
    }

    /// Whether `session` holds an upstream session of its own here.
    pub fn holds(&self, session: &str) -> bool {
        self.clients().contains_key(session)
    }

    /// How many client sessions hold an upstream session of their own.
    pub fn client_sessions(&self) -> usize {
        self.clients().len()
    }

    /// Ends every upstream session (DELETE, as the spec asks) and stops.
    pub async fn shutdown(&self) {
        if let Some(link) = self.shared.legacy.get() {
            link.shutdown().await;
        }
        self.shared.closed.store(true, Ordering::Release);
        let slots: Vec<ClientSlot> = self.clients().drain().map(|(_, slot)| slot).collect();
        let mut remotes: Vec<Arc<Remote>> =
            lock(&self.shared.state).remote.take().into_iter().collect();
        for slot in slots {
            if let Some(remote) = slot.lock().await.take() {
                remotes.push(remote);
            }
        }
        futures_util::future::join_all(remotes.iter().map(|r| self.delete(r))).await;
    }

    /// DELETEs a session, waiting at most 2 s.
    async fn delete(&self, remote: &Remote) {
        let Some(session) = &remote.session else {
            return;
        };
        let mut request = Request::builder()
            .method(Method::DELETE)
            .uri(self.shared.cfg.url.clone());
        for (k, v) in &self.shared.cfg.headers {
            request = request.header(k, v);
        }
        if let Ok(request) = request.header(SESSION_HEADER, session).body(Bytes::new()) {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.shared.pool.request(request))
                .await;
        }
    }

    fn forget(&self, remote: &Arc<Remote>) {
        if let Some(owner) = &remote.owner {
            // A client's own session: the next call of that client opens a new one.
            let mut clients = self.clients();
            let same = clients.get(owner).is_some_and(|slot| {
                slot.try_lock()
                    .ok()
                    .is_some_and(|held| held.as_ref().is_some_and(|r| Arc::ptr_eq(r, remote)))
            });
            if same {
                clients.remove(owner);
            }
            return;
        }
        let mut state = lock(&self.shared.state);
        if state
            .remote
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, remote))
        {
            state.remote = None;
        }
        drop(state);
        self.shared.sink.availability(&self.shared.cfg.route, None);
    }

    /// A client's own upstream session, opened by its first call (after the shared one:
    /// a server without sessions needs none per client).
    async fn client_remote(
        &self,
        key: &Arc<str>,
        deadline: Instant,
    ) -> Result<Arc<Remote>, UpstreamError> {
        let shared = self.remote(deadline).await?;
        if shared.stateless || shared.session.is_none() {
            return Ok(shared);
        }
        let slot = {
            let mut clients = self.clients();
            match clients.get(key) {
                Some(slot) => slot.clone(),
                None => {
                    let max = self.shared.cfg.max_client_sessions;
                    if clients.len() >= max {
                        return Err(UpstreamError::Unavailable {
                            reason: format!(
                                "the route holds {max} upstream sessions, one per client, its most; a new client's opens when one ends"
                            ),
                            retry_in: Some(Duration::from_secs(1)),
                        });
                    }
                    let slot: ClientSlot = Arc::new(tokio::sync::Mutex::new(None));
                    clients.insert(key.clone(), slot.clone());
                    slot
                }
            }
        };
        let mut held = slot.lock().await;
        if let Some(remote) = held.as_ref() {
            return Ok(remote.clone());
        }
        let limit = deadline.min(Instant::now() + self.shared.cfg.init_timeout);
        let opened = match tokio::time::timeout_at(limit, self.initialize(Some(key.clone()))).await
        {
            Ok(opened) => opened,
            Err(_) => Err(UpstreamError::Unavailable {
                reason: "no answer to initialize in time".into(),
                retry_in: None,
            }),
        };
        match opened {
            Ok(remote) => {
                *held = Some(remote.clone());
                Ok(remote)
            }
            Err(e) => {
                drop(held);
                let mut clients = self.clients();
                if clients.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    clients.remove(key);
                }
                Err(e)
            }
        }
    }

    /// The open connection, opening one if needed (one attempt at a time, with backoff
    /// after failures: a call made while the next attempt is far off fails at once).
    async fn remote(&self, deadline: Instant) -> Result<Arc<Remote>, UpstreamError> {
        // The connection is open on every call but the first: opening one is boxed, so
        // every call's future does not carry its state.
        if let Some(remote) = lock(&self.shared.state).remote.clone() {
            return Ok(remote);
        }
        Box::pin(self.open_remote(deadline)).await
    }

    async fn open_remote(&self, deadline: Instant) -> Result<Arc<Remote>, UpstreamError> {
        enum Next {
            Ready(Arc<Remote>),
            Wait(Instant),
            Fail(UpstreamError),
            Connect,
        }
        loop {
            let next = {
                let state = lock(&self.shared.state);
                match (&state.remote, state.retry_at) {
                    (Some(remote), _) => Next::Ready(remote.clone()),
                    (None, Some(at)) if at > Instant::now() && at > deadline => {
                        Next::Fail(UpstreamError::Unavailable {
                            reason: state
                                .last_error
                                .as_ref()
                                .map_or_else(|| "not connected".to_owned(), |(_, e)| e.clone()),
                            retry_in: Some(at.saturating_duration_since(Instant::now())),
                        })
                    }
                    (None, Some(at)) if at > Instant::now() => Next::Wait(at),
                    (None, _) => Next::Connect,
                }
            };
            match next {
                Next::Ready(remote) => return Ok(remote),
                Next::Fail(e) => return Err(e),
                Next::Wait(at) => {
                    tokio::time::sleep_until(at).await;
                    continue;
                }
                Next::Connect => {}
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(UpstreamError::Closed);
            }
            let _one = self.shared.connecting.lock().await;
            if let Some(remote) = lock(&self.shared.state).remote.clone() {
                return Ok(remote);
            }
            return self.connect_and_record(deadline).await;
        }
    }

    /// Connects (within `deadline` and `init_timeout`) and records the outcome: the
    /// connection in force, or the failure with when to try again.
    async fn connect_and_record(&self, deadline: Instant) -> Result<Arc<Remote>, UpstreamError> {
        let limit = deadline.min(Instant::now() + self.shared.cfg.init_timeout);
        let outcome = match tokio::time::timeout_at(limit, self.connect()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(UpstreamError::Unavailable {
                reason: "no answer to initialize in time".into(),
                retry_in: None,
            }),
        };
        match outcome {
            Ok(remote) => {
                {
                    let mut state = lock(&self.shared.state);
                    state.remote = Some(remote.clone());
                    state.failures = 0;
                    state.retry_at = None;
                }
                tracing::info!(route = %self.shared.cfg.route, version = %remote.info.protocol_version, "tool server connected");
                self.shared
                    .sink
                    .availability(&self.shared.cfg.route, Some(remote.info.clone()));
                Ok(remote)
            }
            Err(e) => {
                let delay = {
                    let mut state = lock(&self.shared.state);
                    let delay = mcp_edge_upstream::backoff(
                        self.shared.cfg.backoff_base,
                        self.shared.cfg.backoff_max,
                        state.failures,
                    );
                    state.failures = state.failures.saturating_add(1);
                    state.retry_at = Some(Instant::now() + delay);
                    state.last_error = Some((SystemTime::now(), e.to_string()));
                    delay
                };
                tracing::warn!(route = %self.shared.cfg.route, retry_in_ms = delay.as_millis() as u64, "cannot connect to the tool server: {e}");
                Err(e)
            }
        }
    }

    /// Opens the MCP connection: 2026-07-28 first, the session era when the server
    /// answers `server/discover` with anything but a result.
    async fn connect(&self) -> Result<Arc<Remote>, UpstreamError> {
        if let Some(remote) = self.discover().await? {
            return Ok(remote);
        }
        self.initialize(None).await
    }

    /// `server/discover`: the connection, when the server speaks 2026-07-28; `None`
    /// when it answers otherwise (a session-era server); an error when it cannot be
    /// reached at all.
    async fn discover(&self) -> Result<Option<Arc<Remote>>, UpstreamError> {
        let probe = remote(
            true,
            None,
            HeaderValue::from_static(version::V2026_07_28),
            None,
        );
        let body = jsonrpc::request(
            &Id::Num(0),
            mcp::DISCOVER,
            Some(&mcp_edge_upstream::handshake::discover_params()),
        );
        match self.exchange(&probe, body, mcp::DISCOVER).await {
            Ok((Reply::Result(result), _)) => {
                Ok(mcp_edge_upstream::handshake::stateless_info(&result)
                    .ok()
                    .map(|info| {
                        Arc::new(remote(
                            true,
                            None,
                            HeaderValue::from_static(version::V2026_07_28),
                            Some(info),
                        ))
                    }))
            }
            Err(
                e @ (UpstreamError::Tls(..)
                | UpstreamError::Unavailable { .. }
                | UpstreamError::Interrupted(_)),
            ) => Err(e),
            _ => Ok(None),
        }
    }

    /// `initialize` and `notifications/initialized` (the session era), then the
    /// session's GET stream in a task of its own.
    async fn initialize(&self, owner: Option<Arc<str>>) -> Result<Arc<Remote>, UpstreamError> {
        let start = remote(
            false,
            None,
            HeaderValue::from_static(version::LATEST_SESSION),
            None,
        );
        let body = jsonrpc::request(
            &Id::Num(0),
            mcp::INITIALIZE,
            Some(&mcp_edge_upstream::handshake::initialize_params()),
        );
        let (reply, session) = match self.exchange(&start, body, mcp::INITIALIZE).await {
            Err(UpstreamError::Status {
                status: status @ (400 | 404 | 405),
                ..
            }) if self.shared.cfg.fallback_to_sse => {
                return Err(self.switch_to_sse(status));
            }
            other => other?,
        };
        let result = match reply {
            Reply::Result(result) => result,
            Reply::Error(error) => {
                return Err(UpstreamError::Protocol(format!(
                    "the tool server refused initialize: {}",
                    error.get()
                )));
            }
        };
        let info =
            mcp_edge_upstream::handshake::session_info(&result).map_err(UpstreamError::Protocol)?;
        let version = HeaderValue::from_str(&info.protocol_version)
            .map_err(|_| UpstreamError::Protocol("bad protocol version".into()))?;
        let mut opened = remote(false, session, version, Some(info));
        opened.owner = owner;
        let remote = Arc::new(opened);
        let initialized = jsonrpc::notification(mcp::INITIALIZED, None);
        if let Err(Failure::Upstream(e)) = self
            .send(&remote, initialized, Some(mcp::INITIALIZED), None)
            .await
            .map(drop)
        {
            return Err(e);
        }
        let listener = tokio::spawn(listen(
            Arc::downgrade(&self.shared),
            Arc::downgrade(&remote),
        ));
        *remote
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(listener.abort_handle());
        Ok(remote)
    }

    /// The server refused Streamable HTTP: from now on every call goes to a legacy
    /// HTTP+SSE link at the same URL (the spec's back-compatibility rule).
    fn switch_to_sse(&self, status: u16) -> UpstreamError {
        let cfg = &self.shared.cfg;
        tracing::info!(route = %cfg.route, status, "initialize refused: trying the legacy HTTP+SSE transport");
        let mut link =
            crate::link::LinkConfig::new(&cfg.route, crate::link::LinkKind::Sse, cfg.url.clone());
        link.headers = cfg.headers.clone();
        link.tls = cfg.tls.clone();
        link.max_message_bytes = cfg.max_message_bytes;
        link.init_timeout = cfg.init_timeout;
        let _ = self
            .shared
            .legacy
            .set(crate::link::Link::spawn(link, self.shared.sink.clone()));
        UpstreamError::Unavailable {
            reason: format!(
                "the server answered initialize with HTTP {status}; switched to the legacy HTTP+SSE transport"
            ),
            retry_in: Some(Duration::ZERO),
        }
    }

    /// One request of mcp-edge's own (discover, initialize); the answer and the
    /// session id the response named.
    async fn exchange(
        &self,
        remote: &Remote,
        body: Vec<u8>,
        method: &str,
    ) -> Result<(Reply, Option<HeaderValue>), UpstreamError> {
        let response = match self.send(remote, body, Some(method), None).await {
            Ok(response) => response,
            Err(Failure::Upstream(e)) => return Err(e),
            Err(Failure::SessionGone { .. }) => {
                return Err(UpstreamError::Protocol("session refused".into()));
            }
        };
        let session = response.headers().get(&SESSION_HEADER).cloned();
        match self.read_reply(remote, response, 0, None, None).await {
            Ok(reply) => Ok((reply, session)),
            Err(Failure::Upstream(e)) => Err(e),
            Err(Failure::SessionGone { .. }) => {
                Err(UpstreamError::Protocol("session refused".into()))
            }
        }
    }

    /// POSTs one message with the headers the era asks for.
    async fn send(
        &self,
        remote: &Remote,
        body: Vec<u8>,
        method: Option<&str>,
        name: Option<&str>,
    ) -> Result<Response<PoolBody>, Failure> {
        self.send_traced(remote, body, method, name, None).await
    }

    /// [`Http::send`] with a W3C `traceparent`.
    async fn send_traced(
        &self,
        remote: &Remote,
        body: Vec<u8>,
        method: Option<&str>,
        name: Option<&str>,
        traceparent: Option<&str>,
    ) -> Result<Response<PoolBody>, Failure> {
        let mut request = Request::new(Bytes::from(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.shared.cfg.url.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(ACCEPT, JSON_OR_EVENTS);
        for (k, v) in &self.shared.cfg.headers {
            headers.append(k.clone(), v.clone());
        }
        if method != Some(mcp::INITIALIZE) {
            headers.insert(VERSION_HEADER, remote.version.clone());
        }
        if let Some(session) = &remote.session {
            headers.insert(SESSION_HEADER, session.clone());
        }
        if let Some(tp) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(TRACEPARENT, tp);
        }
        if remote.stateless {
            if let Some(method) = method.and_then(|m| HeaderValue::from_str(m).ok()) {
                headers.insert(METHOD_HEADER, method);
            }
            if let Some(name) = name.and_then(name_header) {
                headers.insert(NAME_HEADER, name);
            }
        }
        let response =
            self.shared.pool.request(request).await.map_err(|e| {
                connect_error(&e, self.shared.cfg.url.scheme_str() == Some("https"))
            })?;
        if response.status() == StatusCode::NOT_FOUND && remote.session.is_some() {
            return Err(Failure::SessionGone { made: false });
        }
        Ok(response)
    }

    /// Reads the answer to request `id`: JSON, or an event stream whose notifications
    /// and requests go to the caller's events before the answer.
    async fn read_reply(
        &self,
        remote: &Remote,
        response: Response<PoolBody>,
        id: i64,
        token: Option<Box<serde_json::value::RawValue>>,
        events: Option<&mpsc::Sender<CallEvent>>,
    ) -> Result<Reply, Failure> {
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let max = self.shared.cfg.max_message_bytes;
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status == StatusCode::OK && content_type.starts_with("text/event-stream") {
            // Boxed: an event stream's state is large, and most answers are plain JSON.
            return Box::pin(self.read_stream(
                remote,
                response.into_body(),
                id,
                token.as_deref(),
                events,
            ))
            .await;
        }
        let bytes = Limited::new(response.into_body(), max)
            .collect()
            .await
            .map_err(|e| UpstreamError::Protocol(format!("could not read the answer: {e}")))?
            .to_bytes();
        if status == StatusCode::OK || status == StatusCode::ACCEPTED && bytes.is_empty() {
            if bytes.is_empty() {
                return Ok(Reply::Result(jsonrpc::empty_object()));
            }
            let message = Message::parse(&bytes)
                .map_err(|e| UpstreamError::Protocol(format!("the answer is not JSON-RPC: {e}")))?;
            return match (message.result, message.error) {
                (Some(result), _) => Ok(Reply::Result(result)),
                (None, Some(error)) => Ok(Reply::Error(error)),
                _ => Err(Failure::Upstream(UpstreamError::Protocol(
                    "the answer has no result".into(),
                ))),
            };
        }
        // A JSON-RPC error body on a 4xx is an answer too (2026-07-28 uses 400 and 404).
        if status.is_client_error()
            && let Ok(message) = Message::parse(&bytes)
            && let Some(error) = message.error
        {
            return Ok(Reply::Error(error));
        }
        let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        Err(Failure::Upstream(UpstreamError::Status {
            status: status.as_u16(),
            body: text,
            retry_after,
        }))
    }

    /// Reads a request's event stream up to the answer. A stream that ends or breaks
    /// first, after the server named an event id, is resumed: a GET with
    /// `Last-Event-ID` after the server's `retry` (the 2025-11-25 polling pattern, and
    /// plain redelivery after a dropped connection), a bounded number of times.
    async fn read_stream(
        &self,
        remote: &Remote,
        mut body: PoolBody,
        id: i64,
        token: Option<&serde_json::value::RawValue>,
        events: Option<&mpsc::Sender<CallEvent>>,
    ) -> Result<Reply, Failure> {
        let mut last_event: Option<String> = None;
        let mut retry = Duration::from_millis(500);
        let mut resumes = 0;
        loop {
            let mut parser = sse::Parser::new(self.shared.cfg.max_message_bytes);
            let ended = loop {
                let frame = match body.frame().await {
                    None => break "the event stream ended before the answer".to_owned(),
                    Some(Err(e)) => break format!("the event stream broke: {e}"),
                    Some(Ok(frame)) => frame,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let parsed = parser.feed(&data).map_err(|e| {
                    UpstreamError::Protocol(format!("the event stream is unreadable: {e}"))
                })?;
                for event in parsed {
                    if let Some(event_id) = event.id {
                        last_event = Some(event_id);
                    }
                    if let Some(ms) = event.retry {
                        retry = Duration::from_millis(ms.clamp(10, 30_000));
                    }
                    if event.data.is_empty() {
                        continue;
                    }
                    let message = match Message::parse(event.data.as_bytes()) {
                        Ok(message) => message,
                        Err(e) => {
                            tracing::warn!(route = %self.shared.cfg.route, "skipped an event that is not JSON-RPC: {e}");
                            continue;
                        }
                    };
                    if let Some(reply) = self.on_stream_message(remote, message, id, token, events)
                    {
                        return Ok(reply);
                    }
                }
            };
            let Some(resume_from) = last_event.as_deref() else {
                return Err(Failure::Upstream(UpstreamError::Protocol(ended)));
            };
            if resumes == MAX_RESUMES {
                return Err(Failure::Upstream(UpstreamError::Protocol(format!(
                    "{ended}; resumed {MAX_RESUMES} times without it"
                ))));
            }
            resumes += 1;
            tracing::debug!(route = %self.shared.cfg.route, last_event = resume_from, "resuming a request's event stream");
            tokio::time::sleep(retry).await;
            let response = self.get_stream(remote, Some(resume_from)).await?;
            let sse = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
            match response.status() {
                StatusCode::OK if sse => body = response.into_body(),
                StatusCode::NOT_FOUND if remote.session.is_some() => {
                    return Err(Failure::SessionGone { made: true });
                }
                status => {
                    return Err(Failure::Upstream(UpstreamError::Protocol(format!(
                        "{ended}, and resuming it with Last-Event-ID was refused ({status})"
                    ))));
                }
            }
        }
    }

    /// Opens a GET event stream: the session's own, or with `last_event` the
    /// continuation of the stream that named that event.
    async fn get_stream(
        &self,
        remote: &Remote,
        last_event: Option<&str>,
    ) -> Result<Response<PoolBody>, UpstreamError> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(self.shared.cfg.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(VERSION_HEADER, remote.version.clone());
        for (k, v) in &self.shared.cfg.headers {
            request = request.header(k, v);
        }
        if let Some(session) = &remote.session {
            request = request.header(SESSION_HEADER, session.clone());
        }
        if let Some(id) = last_event.and_then(|v| HeaderValue::from_str(v).ok()) {
            request = request.header(LAST_EVENT_ID, id);
        }
        let request = request
            .body(Bytes::new())
            .map_err(|e| UpstreamError::Protocol(format!("could not build the request: {e}")))?;
        self.shared
            .pool
            .request(request)
            .await
            .map_err(|e| connect_error(&e, self.shared.cfg.url.scheme_str() == Some("https")))
    }

    /// A notification no call takes: to the client whose own session it came on, or to
    /// the route.
    fn hand_on(&self, remote: &Remote, message: Message) {
        match &remote.owner {
            Some(owner) => {
                self.shared
                    .sink
                    .notification_for(&self.shared.cfg.route, owner, message);
            }
            None => self
                .shared
                .sink
                .notification(&self.shared.cfg.route, message),
        }
    }

    /// Handles one message on a request's stream; the answer, when it is the answer.
    fn on_stream_message(
        &self,
        remote: &Remote,
        mut message: Message,
        id: i64,
        token: Option<&serde_json::value::RawValue>,
        events: Option<&mpsc::Sender<CallEvent>>,
    ) -> Option<Reply> {
        match message.kind() {
            Kind::Result | Kind::Error => {
                if message.id != Some(Id::Num(id)) {
                    tracing::warn!(route = %self.shared.cfg.route, got = ?message.id, "an answer to another request on this stream; dropped");
                    return None;
                }
                Some(match (message.result, message.error) {
                    (Some(result), _) => Reply::Result(result),
                    (None, error) => Reply::Error(error.unwrap_or_else(jsonrpc::empty_object)),
                })
            }
            Kind::Notification => {
                if message.method() == mcp::PROGRESS {
                    let params = message.params.as_deref().zip(token).and_then(|(p, t)| {
                        mcp_edge_upstream::params::restore_token(p, t.to_owned())
                    });
                    match params {
                        Some(params) => message.params = Some(params),
                        None => return None,
                    }
                }
                // A list or a resource changed: news for every client of the route, not
                // only for the call whose stream it came on.
                let route_wide = mcp::is_route_wide(message.method());
                match events {
                    Some(events) if !route_wide => {
                        let _ = events.try_send(CallEvent::Notification(Box::new(message)));
                    }
                    _ => self.hand_on(remote, message),
                }
                None
            }
            Kind::Request => {
                match events {
                    Some(events)
                        if events
                            .try_send(CallEvent::Request(Box::new(message.clone())))
                            .is_ok() => {}
                    _ => self.refuse(remote, message.id),
                }
                None
            }
        }
    }

    fn refuse(&self, remote: &Remote, id: Option<Id>) {
        let Some(id) = id else { return };
        let refusal = jsonrpc::error(
            Some(&id),
            code::METHOD_NOT_FOUND,
            "no client of mcp-edge can answer this request here",
            None,
        );
        let this = self.clone();
        let remote = Remote {
            owner: None,
            stateless: remote.stateless,
            session: remote.session.clone(),
            version: remote.version.clone(),
            info: remote.info.clone(),
            listener: Mutex::new(None),
            takers: Mutex::new(Vec::new()),
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                this.send(&remote, refusal, None, None),
            )
            .await;
        });
    }
}

fn placeholder_info() -> ServerInfo {
    ServerInfo {
        protocol_version: String::new(),
        era: Era::Session,
        capabilities: jsonrpc::empty_object(),
        server_info: jsonrpc::empty_object(),
        instructions: None,
    }
}

/// The GET stream of a session-era connection: what the server sends outside calls.
/// Reconnects with `Last-Event-ID`; stops when the server has none (405) or the
/// session is gone.
async fn listen(shared: Weak<Shared>, remote: Weak<Remote>) {
    let mut last_event: Option<String> = None;
    let mut delay = Duration::from_secs(1);
    loop {
        let (Some(shared), Some(remote)) = (shared.upgrade(), remote.upgrade()) else {
            return;
        };
        let http = Http { shared };
        match http.get_stream(&remote, last_event.as_deref()).await {
            Ok(response) if response.status() == StatusCode::OK => {
                delay = Duration::from_secs(1);
                let mut body = response.into_body();
                let mut parser = sse::Parser::new(http.shared.cfg.max_message_bytes);
                while let Some(Ok(frame)) = body.frame().await {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let Ok(parsed) = parser.feed(&data) else {
                        break;
                    };
                    for event in parsed {
                        if let Some(id) = &event.id {
                            last_event = Some(id.clone());
                        }
                        if let Some(retry) = event.retry {
                            delay = Duration::from_millis(retry.clamp(100, 60_000));
                        }
                        let Ok(message) = Message::parse(event.data.as_bytes()) else {
                            continue;
                        };
                        match message.kind() {
                            Kind::Notification => http.hand_on(&remote, message),
                            Kind::Request => {
                                let id = message.id.clone();
                                let relayed = match remote.only_taker() {
                                    Taker::One(taker) => taker
                                        .try_send(CallEvent::Request(Box::new(message)))
                                        .is_ok(),
                                    // No call to tie it to: a client of the route may
                                    // still answer it.
                                    Taker::None => match &remote.owner {
                                        Some(owner) => http.shared.sink.request_for(
                                            &http.shared.cfg.route,
                                            owner,
                                            message,
                                        ),
                                        None => http
                                            .shared
                                            .sink
                                            .request(&http.shared.cfg.route, message),
                                    },
                                    Taker::Several => false,
                                };
                                if !relayed {
                                    http.refuse(&remote, id);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => return,
            Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                http.forget(&remote);
                return;
            }
            _ => delay = (delay * 2).min(Duration::from_secs(30)),
        }
        drop(remote);
        drop(http);
        tokio::time::sleep(delay).await;
    }
}

/// Sends `notifications/cancelled` upstream when a session-era call is abandoned.
struct CancelOnDrop {
    http: Http,
    remote: Arc<Remote>,
    id: i64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let http = self.http.clone();
        let remote = self.remote.clone();
        let params = jsonrpc::raw(
            &serde_json::json!({ "requestId": self.id, "reason": "mcp-edge: the caller timed out or went away" }),
        );
        let message = jsonrpc::notification(mcp::CANCELLED, Some(&params));
        runtime.spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                http.send(&remote, message, Some(mcp::CANCELLED), None),
            )
            .await;
        });
    }
}
