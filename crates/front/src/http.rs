//! The front door over HTTP: Streamable HTTP on `/mcp` (every route the client may
//! use) and `/mcp/{route}` (one route as its own server), both protocol eras, and the
//! legacy HTTP+SSE transport on `GET /sse` + `POST /messages`.
//!
//! Every refusal is an HTTP status with a JSON-RPC error body that says why; nothing a
//! client sends can crash a connection or another client's session.

// The checks here return the refusal itself as their error: a cold path, so the size of
// `Response` in a `Result` costs nothing that matters.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::version::{self, Era, META_PROTOCOL_VERSION};
use mcp_edge_protocol::{Id, Kind, Message, mcp, sse};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use mcp_edge_core::session::{Session, Stop};
use mcp_edge_core::{Answer, Ctx, Gateway, ScopeError};
use mcp_edge_route::scope::Scope;

/// The response body type.
pub type Body = BoxBody<Bytes, Infallible>;

// Looked up by `HeaderName`, not `&str`: a `&str` name is parsed again on every lookup.
const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
const METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
const NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Who is on the other end of a connection, as far as TLS could tell, and the
/// listener it came through.
pub struct Peer {
    /// The identities of the client's verified certificate (empty without mTLS).
    pub identity: mcp_edge_tls::PeerIdentity,
    /// The client's address.
    pub addr: Option<std::net::IpAddr>,
    /// The listener's caps, and what it holds now (its body budget, for one).
    pub front: Arc<crate::conn::Front>,
}

impl Peer {
    /// Whose session quota a request counts against: its principal, or, anonymous, its
    /// address.
    pub(crate) fn owner(&self, principal: Option<&Arc<str>>) -> Arc<str> {
        match (principal, self.addr) {
            (Some(principal), _) => principal.clone(),
            (None, Some(ip)) => Arc::from(format!("address {ip}")),
            (None, None) => mcp_edge_core::anonymous(),
        }
    }
}

/// The refusal of a session that could not be opened.
pub(crate) fn session_refused(full: mcp_edge_core::session::Full) -> Response<Body> {
    use mcp_edge_core::session::Full;
    let status = match full {
        Full::Process(_) | Full::NoRandom => StatusCode::SERVICE_UNAVAILABLE,
        Full::Client(_) | Full::TooFast(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut response = refuse(status, code::INTERNAL_ERROR, &full.to_string());
    if let Full::TooFast(after) = full {
        let seconds = after.as_millis().div_ceil(1000).max(1) as u64;
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, seconds.into());
    }
    response
}

// ---------- responses ----------

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Empty::new().boxed());
    *response.status_mut() = status;
    response
}

/// A refusal at the door: the status, and a JSON-RPC error (id null) saying why.
pub(crate) fn refuse(status: StatusCode, code: i32, message: &str) -> Response<Body> {
    json(status, jsonrpc::error(None, code, message, None))
}

fn refuse_with(
    status: StatusCode,
    id: Option<&Id>,
    code: i32,
    message: &str,
    data: Option<&Value>,
) -> Response<Body> {
    json(status, jsonrpc::error(id, code, message, data))
}

/// A refusal sent before the request's body was read: the body is read first (at most
/// `max_message_bytes`, for at most [`DRAIN_TIMEOUT`]) and thrown away. A response
/// that ends while the client is still sending is followed by a reset (of the stream
/// over HTTP/2, of the connection over HTTP/1.1), and clients (curl, the SDKs' HTTP
/// stacks) then drop the response with it: the refusal would never be read.
pub(crate) async fn refuse_unread(
    gw: &Gateway,
    body: Incoming,
    response: Response<Body>,
) -> Response<Body> {
    if !hyper::body::Body::is_end_stream(&body) {
        let drain = Limited::new(body, gw.max_message_bytes).collect();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    response
}

/// How long a refusal waits for the rest of a body it will not read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    // Reverse proxies must pass events on as they come.
    headers.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    response
}

fn sse_frame(message: &[u8]) -> Bytes {
    Bytes::from(sse::event_bytes(None, None, message))
}

fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `Accept` takes `mime` (itself, `type/*` or `*/*`; case does not matter).
fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    accepts_all(headers, &[mime])
}

/// Whether `Accept` takes every one of `mimes` (at most 32), read in one pass.
/// Read as bytes: it is on every request, and a value need not be valid text to be read.
pub(crate) fn accepts_all(headers: &HeaderMap, mimes: &[&str]) -> bool {
    let mut missing = u32::MAX >> (32 - mimes.len().min(32));
    for value in headers.get_all(ACCEPT) {
        for range in value.as_bytes().split(|&b| b == b',') {
            let range = range
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if range == b"*/*" {
                return true;
            }
            let wildcard = range.strip_suffix(b"/*");
            for (i, mime) in mimes.iter().enumerate().take(32) {
                let mime = mime.as_bytes();
                let taken = range.eq_ignore_ascii_case(mime)
                    || wildcard.is_some_and(|top| {
                        mime.len() > top.len()
                            && mime[top.len()] == b'/'
                            && mime[..top.len()].eq_ignore_ascii_case(top)
                    });
                if taken {
                    missing &= !(1 << i);
                }
            }
            if missing == 0 {
                return true;
            }
        }
    }
    missing == 0
}

// ---------- checks every endpoint makes ----------

/// `Origin` must be absent (not a browser), a loopback origin, or configured: a page
/// on another site must not drive a local gateway (DNS rebinding).
fn origin_ok(gw: &Gateway, headers: &HeaderMap) -> bool {
    origin_allowed(&gw.allowed_origins, headers)
}

/// `Origin` is absent, a loopback origin, or one of `allowed` (see [`origin_ok`]).
pub(crate) fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return true,
        (Some(origin), None) => origin,
        // Two Origins: a reader taking the other one would see another request.
        (Some(_), Some(_)) => return false,
    };
    let Some(url) = origin.to_str().ok().and_then(|o| url::Url::parse(o).ok()) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    loopback || allowed.contains(&url.origin().ascii_serialization())
}

/// On a loopback listener the `Host` must name a loopback host: a page whose DNS name
/// was rebound to 127.0.0.1 sends its own name and is refused (a same-origin request
/// carries no `Origin` to check).
fn host_ok(gw: &Gateway, headers: &HeaderMap) -> bool {
    !gw.loopback_listener || loopback_host(headers)
}

/// HTTP/2 carries the host as the `:authority` pseudo-header (the URI's), not as `Host`:
/// it is copied into `Host`, so that one check reads one place for both versions.
pub fn host_from_authority<B>(req: &mut Request<B>) {
    if req.headers().contains_key(HOST) {
        return;
    }
    if let Some(value) = req
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(HOST, value);
    }
}

/// Whether the request names a loopback host: `localhost`, a name under `.localhost`,
/// or a loopback address. A request with no `Host`, or two, names none.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let lowercase_suffix = |suffix: &str| {
        name.len() >= suffix.len()
            && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    name.eq_ignore_ascii_case("localhost")
        || lowercase_suffix(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Host, Origin, authentication and scope; the response to send when one fails.
pub(crate) fn admit(
    gw: &Gateway,
    peer: &Peer,
    headers: &HeaderMap,
    target: Option<&str>,
) -> Result<(Option<Arc<str>>, Scope), Response<Body>> {
    if !host_ok(gw, headers) {
        return Err(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            code::INVALID_REQUEST,
            "Misdirected Request: this loopback listener serves only loopback host names (DNS rebinding protection)",
        ));
    }
    if !origin_ok(gw, headers) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            code::INVALID_REQUEST,
            "Forbidden: this Origin is not allowed (add it to [gateway] allowed_origins)",
        ));
    }
    let principal = gw
        .authenticate(header(headers, AUTHORIZATION), &peer.identity)
        .map_err(|_| {
            let mut response = refuse(
                StatusCode::UNAUTHORIZED,
                code::INVALID_REQUEST,
                "Unauthorized: send Authorization: Bearer <token> of a client in routes.toml, or a client certificate it names",
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"mcp-edge\""),
            );
            response
        })?;
    let scope = gw
        .scope(principal.as_deref(), target)
        .map_err(|e| match e {
            ScopeError::NotFound => refuse(
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                &format!("no route or server named `{}`", target.unwrap_or_default()),
            ),
            ScopeError::Forbidden => refuse(
                StatusCode::FORBIDDEN,
                code::FORBIDDEN,
                &format!(
                    "Forbidden: this client may not use route `{}`",
                    target.unwrap_or_default()
                ),
            ),
        })?;
    Ok((principal, scope))
}

/// Reads a body of at most the configured size, within `[gateway.limits]
/// body_timeout` and the listener's budget for bodies being read.
async fn read_body(gw: &Gateway, peer: &Peer, body: Incoming) -> Result<Bytes, Response<Body>> {
    use crate::conn::BodyError;
    match peer.front.read_body(body, gw.max_message_bytes).await {
        Ok(bytes) => Ok(bytes),
        Err(BodyError::TooLarge) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            &format!(
                "the message is larger than {} bytes ([gateway] max_message_bytes)",
                gw.max_message_bytes
            ),
        )),
        Err(BodyError::TimedOut(after)) => {
            let mut response = refuse(
                StatusCode::REQUEST_TIMEOUT,
                code::INVALID_REQUEST,
                &format!(
                    "the body did not arrive within {}s ([gateway.limits] body_timeout)",
                    after.as_secs()
                ),
            );
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            Err(response)
        }
        Err(BodyError::Budget(max)) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            code::INTERNAL_ERROR,
            &format!(
                "the gateway is reading {max} bytes of request bodies already ([gateway.limits] max_buffered_bytes); try again"
            ),
        )),
        Err(BodyError::Broken(e)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            code::PARSE_ERROR,
            &format!("could not read the body: {e}"),
        )),
    }
}

fn parse(bytes: &[u8]) -> Result<Message, Response<Body>> {
    Message::parse(bytes).map_err(|e| {
        refuse_with(
            StatusCode::BAD_REQUEST,
            e.id(),
            e.code(),
            &e.to_string(),
            None,
        )
    })
}

// ---------- Streamable HTTP ----------

pub(crate) async fn mcp_endpoint(
    gw: Arc<Gateway>,
    peer: &Peer,
    req: Request<Incoming>,
    target: Option<String>,
) -> Response<Body> {
    let (principal, scope) = match admit(&gw, peer, req.headers(), target.as_deref()) {
        Ok(admitted) => admitted,
        Err(response) => return refuse_unread(&gw, req.into_body(), response).await,
    };
    match *req.method() {
        Method::POST => post(gw, peer, req, scope, principal).await,
        Method::GET => get(&gw, peer, req.headers(), &scope, principal.as_deref()),
        Method::DELETE => delete(&gw, req.headers(), &scope, principal.as_deref()),
        _ => {
            let mut response = refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                code::INVALID_REQUEST,
                "use POST, GET or DELETE",
            );
            response
                .headers_mut()
                .insert(ALLOW, http::HeaderValue::from_static("GET, POST, DELETE"));
            refuse_unread(&gw, req.into_body(), response).await
        }
    }
}

fn find_session(
    gw: &Gateway,
    headers: &HeaderMap,
    scope: &Scope,
    principal: Option<&str>,
) -> Result<Arc<Session>, Response<Body>> {
    let Some(id) = header(headers, SESSION_HEADER) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: no Mcp-Session-Id header; send initialize first (or speak 2026-07-28, which needs no session)",
        ));
    };
    let local = gw.sessions.get(id, principal);
    let session = local.or_else(|| {
        // Opened on another replica: the sealed id says by whom, for what.
        let claims = gw.sessions.revive(id, principal)?;
        let version = version::known(&claims.version)?;
        let revived = gw.scope(principal, claims.target.as_deref()).ok()?;
        gw.sessions
            .adopt(id, version, revived, principal.map(Arc::from))
            .ok()
    });
    session
        .filter(|s| s.scope().target() == scope.target())
        .ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                code::SESSION_NOT_FOUND,
                "Session not found: it ended or never existed; initialize a new one",
            )
        })
}

/// `POST /mcp`: one message, in a session, opening one, or stateless (2026-07-28).
async fn post(
    gw: Arc<Gateway>,
    peer: &Peer,
    req: Request<Incoming>,
    scope: Scope,
    principal: Option<Arc<str>>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // Only the headers are kept (the rest of the head is dropped here): hyper cut
    // them, like the body, from the connection's read buffer.
    let headers = { parts }.headers;
    let message = match read_message(&gw, peer, &headers, body).await {
        Ok(message) => message,
        Err(response) => return response,
    };
    if message.kind() == Kind::Request && message.method() == mcp::INITIALIZE {
        let owner = peer.owner(principal.as_ref());
        return open_session(&gw, &message, scope, principal, &owner);
    }
    if headers.contains_key(SESSION_HEADER) {
        return in_session(gw, peer, headers, message, &scope, principal.as_deref()).await;
    }
    stateless(gw, peer, headers, message, scope, principal).await
}

/// The message a POST carries, once its content type, `Accept` and size are right.
async fn read_message(
    gw: &Gateway,
    peer: &Peer,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Message, Response<Body>> {
    let is_json = header(headers, CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        let refusal = refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: send Content-Type: application/json",
        );
        return Err(refuse_unread(gw, body, refusal).await);
    }
    if !accepts_all(headers, &["application/json", "text/event-stream"]) {
        let refusal = refuse(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: send Accept: application/json, text/event-stream",
        );
        return Err(refuse_unread(gw, body, refusal).await);
    }
    let bytes = read_body(gw, peer, body).await?;
    // The message owns what it needs. Letting go of the body now, and of the headers
    // before the call is made, hands hyper back sole use of the read buffer they were
    // cut from, so the connection's next read (hyper reads ahead while the call runs)
    // reuses that buffer instead of allocating a new 8 KB one.
    parse(&bytes)
}

/// `initialize`: a new session, its id in `Mcp-Session-Id`.
fn open_session(
    gw: &Gateway,
    message: &Message,
    scope: Scope,
    principal: Option<Arc<str>>,
    owner: &Arc<str>,
) -> Response<Body> {
    let (version, result) = gw.initialize(&scope, message.params.as_deref());
    let session = match gw.sessions.open(version, scope, principal, owner, false) {
        Ok(session) => session,
        Err(full) => return session_refused(full),
    };
    tracing::info!(session = %mcp_edge_core::session::short_id(&session.id), version, "session opened");
    let id = message.id.clone().unwrap_or(Id::Num(0));
    let mut response = json(StatusCode::OK, jsonrpc::result(&id, &result));
    if let Ok(value) = session.id.parse() {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// A message in a session (the session era).
async fn in_session(
    gw: Arc<Gateway>,
    peer: &Peer,
    headers: HeaderMap,
    message: Message,
    scope: &Scope,
    principal: Option<&str>,
) -> Response<Body> {
    let session = match find_session(&gw, &headers, scope, principal) {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let Some(v) = header(&headers, VERSION_HEADER)
        && version::known(v).is_none()
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            &format!("Bad Request: unsupported MCP-Protocol-Version `{v}`"),
        );
    }
    let mut ctx = Ctx::of(&session);
    ctx.traceparent = header(&headers, TRACEPARENT).map(str::to_owned);
    drop(headers);
    dispatch(gw, ctx, message, peer.front.limits.keepalive).await
}

/// A message with no session: 2026-07-28 (stateless), or refused.
async fn stateless(
    gw: Arc<Gateway>,
    peer: &Peer,
    headers: HeaderMap,
    message: Message,
    scope: Scope,
    principal: Option<Arc<str>>,
) -> Response<Body> {
    let meta_version = mcp_edge_core::meta_version(&message);
    let header_version = header(&headers, VERSION_HEADER);
    let stateless = meta_version.is_some()
        || header_version.is_some_and(|v| version::era(v) == Some(Era::Stateless));
    if !stateless {
        return refuse(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "Bad Request: no Mcp-Session-Id header; send initialize first (or speak 2026-07-28, which needs no session)",
        );
    }
    if let Err(response) = check_stateless(&headers, &message, meta_version.as_deref()) {
        return response;
    }
    let ctx = Ctx {
        scope,
        session: None,
        version: version::V2026_07_28,
        principal: principal.unwrap_or_else(mcp_edge_core::anonymous),
        traceparent: header(&headers, TRACEPARENT).map(str::to_owned),
    };
    drop(headers);
    dispatch(gw, ctx, message, peer.front.limits.keepalive).await
}

/// Decodes a header value sent as `=?base64?…?=` (non-ASCII names in 2026-07-28).
fn header_value(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

/// The checks 2026-07-28 asks of an intermediary: the version in the header and in
/// `_meta` agree and are supported; `Mcp-Method` and `Mcp-Name` match the body.
fn check_stateless(
    headers: &HeaderMap,
    message: &Message,
    meta: Option<&str>,
) -> Result<(), Response<Body>> {
    let id = message.id.as_ref();
    let header_version = header(headers, VERSION_HEADER);
    let requested = meta.or(header_version).unwrap_or_default();
    if version::era(requested) != Some(Era::Stateless) {
        let supported: Vec<&str> = version::supported().collect();
        return Err(refuse_with(
            StatusCode::BAD_REQUEST,
            id,
            code::UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            Some(&json!({ "supported": supported, "requested": requested })),
        ));
    }
    let mismatch = |what: String| {
        Err(refuse_with(
            StatusCode::BAD_REQUEST,
            id,
            code::HEADER_MISMATCH,
            &format!("Header mismatch: {what}"),
            None,
        ))
    };
    if header_version != Some(requested) || meta.is_none() {
        return mismatch(format!(
            "MCP-Protocol-Version header {:?} and _meta {META_PROTOCOL_VERSION} {:?} must both be present and equal",
            header_version.map(mcp_edge_core::shown),
            meta.map(mcp_edge_core::shown)
        ));
    }
    if message.kind() != Kind::Request && message.kind() != Kind::Notification {
        return Ok(());
    }
    match header(headers, METHOD_HEADER) {
        Some(m) if m == message.method() => {}
        other => {
            return mismatch(format!(
                "Mcp-Method header {:?} does not match body method `{}`",
                other.map(mcp_edge_core::shown),
                mcp_edge_core::shown(message.method())
            ));
        }
    }
    if let Some(name) = mcp::routing_name(message.method(), message.params.as_deref())
        && matches!(
            message.method(),
            mcp::TOOLS_CALL | mcp::PROMPTS_GET | mcp::RESOURCES_READ
        )
    {
        let sent = header(headers, NAME_HEADER).and_then(header_value);
        if sent.as_deref() != Some(name.as_str()) {
            return mismatch(format!(
                "Mcp-Name header {:?} does not match body value `{}`",
                sent.as_deref().map(mcp_edge_core::shown),
                mcp_edge_core::shown(&name)
            ));
        }
    }
    Ok(())
}

const STATELESS_METHODS: &[&str] = &[
    mcp::DISCOVER,
    mcp::PING,
    mcp::TOOLS_LIST,
    mcp::TOOLS_CALL,
    mcp::RESOURCES_LIST,
    mcp::RESOURCE_TEMPLATES_LIST,
    mcp::RESOURCES_READ,
    mcp::PROMPTS_LIST,
    mcp::PROMPTS_GET,
    mcp::COMPLETE,
];

async fn dispatch(
    gw: Arc<Gateway>,
    ctx: Ctx,
    message: Message,
    keepalive: Option<Duration>,
) -> Response<Body> {
    match message.kind() {
        Kind::Notification => {
            gw.notification(&ctx, &message).await;
            empty(StatusCode::ACCEPTED)
        }
        Kind::Result | Kind::Error => {
            if ctx.session.is_none() {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    "Bad Request: a response without a session answers nothing",
                );
            }
            gw.client_response(&ctx, message).await;
            empty(StatusCode::ACCEPTED)
        }
        Kind::Request => {
            if ctx.stateless() && !STATELESS_METHODS.contains(&message.method()) {
                return refuse_with(
                    StatusCode::NOT_FOUND,
                    message.id.as_ref(),
                    code::METHOD_NOT_FOUND,
                    &format!(
                        "Method not found: {}",
                        mcp_edge_core::shown(message.method())
                    ),
                    None,
                );
            }
            respond(gw, ctx, message, keepalive).await
        }
    }
}

/// Answers a request: plain JSON when the answer comes first, an SSE stream when
/// notifications (progress, logs) or tool-server requests come before it, or when
/// `keepalive` passes with nothing to send (the stream then carries a keep-alive
/// comment every `keepalive`, so that a load balancer does not cut a long call).
///
/// The request is polled right here, in the client connection's task: no task of its
/// own and no hand-off to another thread on the way (see docs/PERFORMANCE.md).
async fn respond(
    gw: Arc<Gateway>,
    ctx: Ctx,
    message: Message,
    keepalive: Option<Duration>,
) -> Response<Body> {
    let (events_tx, mut events) = mpsc::channel::<Vec<u8>>(64);
    let session = ctx.session.clone();
    let id = message.id.clone();
    let stateless = ctx.stateless();
    // In the session era the request stays registered for `notifications/cancelled`
    // until it ends, whatever happens to this HTTP exchange.
    let (stop, stopped) = oneshot::channel::<()>();
    if let (Some(session), Some(id)) = (&session, &id) {
        session.start(id.clone(), Stop::Signal(stop));
    }
    let tracker = Inflight {
        session,
        id: id.clone(),
    };
    let request = async move {
        let _tracker = tracker;
        tokio::select! {
            biased;
            Ok(()) = stopped => None,
            answer = gw.request(&ctx, &message, &events_tx) => Some(answer),
        }
    };
    // In the stateless era a client that goes away cancels its request; in the session
    // era the request goes on, in a task of its own, when the exchange ends first.
    let mut work = Work {
        request: Some(Box::pin(request)),
        detach: !stateless,
        id: id.clone(),
    };
    tokio::select! {
        biased;
        answer = &mut work => {
            let Some(answer) = answer else {
                // Cancelled by the client: no answer, as the spec asks.
                return stream_response(mpsc::channel(1).1);
            };
            let mut queued = Vec::new();
            while let Ok(event) = events.try_recv() {
                queued.push(event);
            }
            if queued.is_empty() {
                // A refusal with a hint (over a rate limit, circuit open, tool server
                // restarting) gets `Retry-After` in whole seconds (rounded up, at least
                // 1). It still travels as `200` with the JSON-RPC error: the SDKs'
                // Streamable HTTP clients treat a `429` as the transport failing and end
                // the whole session, while a JSON-RPC error fails the one call.
                let hint = answer.error().and_then(|e| e.retry_after);
                let mut response = json(StatusCode::OK, answer.to_bytes());
                if let Some(after) = hint {
                    let seconds = (after.as_millis() as u64).div_ceil(1000).max(1);
                    response.headers_mut().insert(http::header::RETRY_AFTER, seconds.into());
                }
                return response;
            }
            let (tx, rx) = mpsc::channel(queued.len() + 1);
            for event in queued {
                let _ = tx.try_send(sse_frame(&event));
            }
            let _ = tx.try_send(sse_frame(&answer.to_bytes()));
            stream_response(rx)
        }
        Some(first) = events.recv() => {
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            tokio::spawn(pump(Some(first), events, work, tx, stateless, keepalive));
            stream_response(rx)
        }
        () = sleep_or_never(keepalive) => {
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            tokio::spawn(pump(None, events, work, tx, stateless, keepalive));
            stream_response(rx)
        }
    }
}

type Answering = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// A request being answered, polled by whoever holds it. Its output is the answer's
/// bytes, or `None` when the request was cancelled (it gets no answer). Dropped before
/// it is done, it cancels the request, or with `detach` hands it to a task of its own.
struct Work {
    request: Option<Answering>,
    detach: bool,
    id: Option<Id>,
}

impl Future for Work {
    type Output = Option<Answer>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(request) = self.request.as_mut() else {
            return Poll::Ready(None);
        };
        // A panic answers this request with an error; the connection and the gateway
        // go on.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| request.as_mut().poll(cx)));
        let answer = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(answer)) => answer,
            Err(_) => Some(Answer {
                id: self.id.clone().unwrap_or(Id::Num(0)),
                outcome: Err(jsonrpc::error_object(
                    code::INTERNAL_ERROR,
                    "mcp-edge failed while handling the request (see its log)",
                    None,
                )),
            }),
        };
        self.request = None;
        Poll::Ready(answer)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(request) = self.request.take()
            && self.detach
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = request.await;
            });
        }
    }
}

/// Waits `every`, or forever when there is none.
async fn sleep_or_never(every: Option<Duration>) {
    match every {
        Some(every) => tokio::time::sleep(every).await,
        None => std::future::pending().await,
    }
}

/// The SSE comment that keeps an idle stream open through load balancers.
const KEEPALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// Streams a request's events (after `first`, or a keep-alive comment when there is
/// none yet), then its answer, with a keep-alive comment every `keepalive` of silence.
/// In the stateless era closing the stream cancels the request; in the session era a
/// disconnect is not a cancel.
async fn pump(
    first: Option<Vec<u8>>,
    mut events: mpsc::Receiver<Vec<u8>>,
    mut work: Work,
    out: mpsc::Sender<Bytes>,
    stateless: bool,
    keepalive: Option<Duration>,
) {
    let first = first.map_or_else(|| Bytes::from_static(KEEPALIVE_COMMENT), |f| sse_frame(&f));
    let mut connected = out.send(first).await.is_ok();
    loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => {
                if connected {
                    connected = out.send(sse_frame(&event)).await.is_ok();
                }
            }
            answer = &mut work => {
                while let Ok(event) = events.try_recv() {
                    if connected {
                        connected = out.send(sse_frame(&event)).await.is_ok();
                    }
                }
                if connected && let Some(answer) = answer {
                    let _ = out.send(sse_frame(&answer.to_bytes())).await;
                }
                return;
            }
            () = out.closed(), if connected => connected = false,
            () = sleep_or_never(keepalive), if connected => {
                connected = out.send(Bytes::from_static(KEEPALIVE_COMMENT)).await.is_ok();
            }
        }
        if !connected && stateless {
            // Dropping `work` cancels the request.
            return;
        }
    }
}

/// Forgets a request in its session when dropped (the request's future holds it).
struct Inflight {
    session: Option<Arc<Session>>,
    id: Option<Id>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if let (Some(session), Some(id)) = (&self.session, &self.id) {
            session.finish(id);
        }
    }
}

/// `GET /mcp`: the session's stream for messages not tied to a request.
fn get(
    gw: &Gateway,
    peer: &Peer,
    headers: &HeaderMap,
    scope: &Scope,
    principal: Option<&str>,
) -> Response<Body> {
    if !accepts(headers, "text/event-stream") {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: send Accept: text/event-stream",
        );
    }
    if !headers.contains_key(SESSION_HEADER) {
        let mut response = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_REQUEST,
            "Method Not Allowed: GET needs a session (2026-07-28 has no GET stream; use subscriptions/listen)",
        );
        response
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    let session = match find_session(gw, headers, scope, principal) {
        Ok(session) => session,
        Err(response) => return response,
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    session.attach_stream(tx);
    let (out, body) = mpsc::channel::<Bytes>(256);
    tokio::spawn(stream_session(rx, out, None, peer.front.limits.keepalive));
    stream_response(body)
}

/// Copies a session's messages to an SSE body, with a keep-alive comment every
/// `keepalive` of silence, until either side goes away.
async fn stream_session(
    mut rx: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Bytes>,
    event: Option<&'static str>,
    keepalive: Option<Duration>,
) {
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(message) = message else { break };
                if out.send(Bytes::from(sse::event_bytes(None, event, &message))).await.is_err() {
                    break;
                }
            }
            () = sleep_or_never(keepalive) => {
                if out.send(Bytes::from_static(KEEPALIVE_COMMENT)).await.is_err() {
                    break;
                }
            }
            () = out.closed() => break,
        }
    }
}

/// `DELETE /mcp`: ends a session.
fn delete(
    gw: &Gateway,
    headers: &HeaderMap,
    scope: &Scope,
    principal: Option<&str>,
) -> Response<Body> {
    let session = match find_session(gw, headers, scope, principal) {
        Ok(session) => session,
        Err(response) => return response,
    };
    gw.sessions.end(&session.id);
    tracing::info!(session = %mcp_edge_core::session::short_id(&session.id), "session ended by the client");
    empty(StatusCode::OK)
}

// ---------- legacy HTTP+SSE (2024-11-05) ----------

/// `GET /sse`: opens a legacy session; the first event names where to POST.
pub(crate) async fn legacy_stream(
    gw: Arc<Gateway>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != Method::GET {
        let refusal = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_REQUEST,
            "use GET /sse, then POST to the endpoint it names",
        );
        return refuse_unread(&gw, req.into_body(), refusal).await;
    }
    let (principal, scope) = match admit(&gw, peer, req.headers(), None) {
        Ok(admitted) => admitted,
        Err(response) => return refuse_unread(&gw, req.into_body(), response).await,
    };
    let owner = peer.owner(principal.as_ref());
    let session = match gw
        .sessions
        .open(version::V2024_11_05, scope, principal, &owner, true)
    {
        Ok(session) => session,
        Err(full) => return session_refused(full),
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
    session.attach_stream(tx);
    let (out, body) = mpsc::channel::<Bytes>(256);
    let endpoint = format!("/messages?session_id={}", session.id);
    let _ = out.try_send(Bytes::from(sse::event_bytes(
        None,
        Some("endpoint"),
        endpoint.as_bytes(),
    )));
    tracing::info!(session = %mcp_edge_core::session::short_id(&session.id), "legacy SSE session opened");
    let keepalive = peer.front.limits.keepalive;
    tokio::spawn(async move {
        stream_session(rx, out, Some("message"), keepalive).await;
        // The stream is the session: when it goes, the session goes.
        gw.sessions.end(&session.id);
    });
    stream_response(body)
}

/// `POST /messages?session_id=…`: a legacy client's message; answers go on its stream.
pub(crate) async fn legacy_post(
    gw: Arc<Gateway>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != Method::POST {
        let refusal = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            code::INVALID_REQUEST,
            "POST messages here",
        );
        return refuse_unread(&gw, req.into_body(), refusal).await;
    }
    let (principal, _) = match admit(&gw, peer, req.headers(), None) {
        Ok(admitted) => admitted,
        Err(response) => return refuse_unread(&gw, req.into_body(), response).await,
    };
    let session_id = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            matches!(k, "session_id" | "sessionId").then(|| v.to_owned())
        });
    let Some(session) = session_id
        .and_then(|id| gw.sessions.get(&id, principal.as_deref()))
        .filter(|s| s.legacy)
    else {
        let refusal = refuse(
            StatusCode::NOT_FOUND,
            code::SESSION_NOT_FOUND,
            "Session not found: open GET /sse first",
        );
        return refuse_unread(&gw, req.into_body(), refusal).await;
    };
    let bytes = match read_body(&gw, peer, req.into_body()).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let message = match parse(&bytes) {
        Ok(message) => message,
        Err(response) => return response,
    };
    let Some(stream) = session.stream_sender() else {
        return refuse(
            StatusCode::NOT_FOUND,
            code::SESSION_NOT_FOUND,
            "Session not found: its stream is closed",
        );
    };
    gw.receive_on_stream(&session, message, stream).await;
    empty(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            "application/json, text/event-stream".parse().unwrap(),
        );
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert(ACCEPT, "application/json;q=0.9".parse().unwrap());
        assert!(!accepts(&h, "text/event-stream"));
        h.insert(ACCEPT, "*/*".parse().unwrap());
        assert!(accepts(&h, "text/event-stream"));
        h.insert(ACCEPT, "text/*".parse().unwrap());
        assert!(accepts(&h, "text/event-stream") && !accepts(&h, "application/json"));
        h.insert(ACCEPT, " Application/JSON ; q=1,TEXT/*".parse().unwrap());
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        h.insert(ACCEPT, "application/jsonx, text/event".parse().unwrap());
        assert!(!accepts(&h, "application/json") && !accepts(&h, "text/event-stream"));
        // Both at once, as a POST asks: in one value, across two, or not at all.
        let both = ["application/json", "text/event-stream"];
        h.insert(
            ACCEPT,
            "text/event-stream, application/json".parse().unwrap(),
        );
        assert!(accepts_all(&h, &both));
        h.insert(ACCEPT, "application/json".parse().unwrap());
        assert!(!accepts_all(&h, &both));
        h.append(ACCEPT, "text/event-stream".parse().unwrap());
        assert!(accepts_all(&h, &both));
        h.insert(ACCEPT, "text/*, application/*".parse().unwrap());
        assert!(accepts_all(&h, &both));
        h.insert(ACCEPT, "tex/*, application/json".parse().unwrap());
        assert!(!accepts_all(&h, &both));
        h.remove(ACCEPT);
        assert!(!accepts_all(&h, &both) && !accepts(&h, "text/event-stream"));
    }

    #[test]
    fn encoded_header_values() {
        assert_eq!(header_value("=?base64?w7xiZXI=?="), Some("über".into()));
        assert_eq!(header_value("plain"), Some("plain".into()));
    }
}
