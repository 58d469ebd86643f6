//! What mcp-edge does with one MCP message, whichever door it came in by.
//!
//! The front ends (Streamable HTTP, legacy HTTP+SSE, stdio) parse, authenticate and
//! find the session; then [`Gateway::request`] answers: lists are merged across the
//! routes the client may use, names are mapped back to their route, calls are
//! forwarded with their notifications relayed, and every failure becomes a JSON-RPC
//! error that names the route and the reason ([`upstream_error`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::join_all;
use mcp_edge_config::Secret;
use mcp_edge_config::model::{AnnotationValue, Grant, VirtualServer};
use mcp_edge_policy::{Activity, Request};
use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::version::{self, Era};
use mcp_edge_protocol::{Id, Kind, Message, RawObject, mcp};
use mcp_edge_transport::{Call, CallEvent, Connector, Reply, UpstreamError};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::session::{Ask, Session, Sessions};
use mcp_edge_route::RouteRt;
use mcp_edge_route::scope::Scope;
use mcp_edge_route::stack::IDEMPOTENCY_KEY;

/// How long a list may wait for one route before that route's items are left out.
const LIST_DEADLINE: Duration = Duration::from_secs(10);

/// A client and how it proves who it is.
pub struct ClientRt {
    /// The client's name: its principal.
    pub name: Arc<str>,
    /// Its credential.
    pub credential: ClientCredential,
    /// The routes it may use.
    pub grant: Grant,
    /// Of their tools, only these (`route__tool` globs); `None`: all.
    pub tools: Option<Arc<[mcp_edge_config::model::Glob]>>,
}

/// A client's credential, resolved.
pub enum ClientCredential {
    /// A bearer token.
    Token(Secret),
    /// An identity its verified client certificate carries, of one kind.
    Identity(mcp_edge_config::model::Identity),
}

/// Whether a verified client certificate carries `id`, matched by kind.
fn carries(peer: &mcp_edge_tls::PeerIdentity, id: &mcp_edge_config::model::Identity) -> bool {
    use mcp_edge_config::model::Identity;
    match id {
        Identity::Uri(uri) => peer.uris.iter().any(|u| u == uri),
        Identity::Dns(name) => peer.dns.iter().any(|d| d == name),
        Identity::CommonName(cn) => peer.common_name.as_deref() == Some(cn.as_str()),
    }
}

/// The gateway's shared state.
pub struct Gateway {
    /// The routes and clients in force; a reload swaps them at once.
    table: ArcSwap<Table>,
    /// Between a route prefix and a name.
    pub separator: Arc<str>,
    /// Open sessions.
    pub sessions: Sessions,
    /// Where routes report what happens outside calls (kept for routes a reload starts).
    pub sink: Option<Arc<dyn mcp_edge_transport::Sink>>,
    /// Every certificate in play.
    pub certs: Arc<mcp_edge_certwatch::Watcher>,
    /// Browser origins allowed besides loopback.
    pub allowed_origins: Vec<String>,
    /// The largest message accepted.
    pub max_message_bytes: usize,
    /// The agents' listener is on loopback: `Host` must name loopback too.
    pub loopback_listener: bool,
    resources: Mutex<ResourceIndex>,
    /// The resource subscriptions mcp-edge holds upstream: (route, URI).
    upstream_subs: Mutex<HashSet<(String, String)>>,
}

/// What a reload replaces: the routes and who may use them.
pub struct Table {
    /// Every route, in routes.toml order.
    pub routes: Vec<Arc<RouteRt>>,
    /// Clients.
    pub clients: Arc<[ClientRt]>,
    /// Virtual servers (`[[server]]`).
    pub servers: Arc<[Arc<VirtualServer>]>,
    /// Requests without credentials are admitted (with every route).
    pub allow_anonymous: bool,
}

/// Which route serves which resource URI, learned from the routes' lists.
#[derive(Default)]
struct ResourceIndex {
    /// When an unknown URI last made the gateway list every route's resources: at most
    /// once per [`RELEARN_EVERY`], so that reads of unknown URIs cannot be turned into a
    /// flood of list fan-outs. A route's `list_changed` (or its coming and going) clears it.
    learned: Option<Instant>,
    /// Each URI and the routes that list it, in the order they were learned: a URI
    /// two routes list stays with both (read from the first in the client's scope).
    uris: HashMap<String, Vec<String>>,
    /// The literal part of a URI template before its first `{`, and the route.
    templates: Vec<(String, String)>,
}

/// One client request's context.
pub struct Ctx {
    /// What the client sees.
    pub scope: Scope,
    /// The session, in the session era.
    pub session: Option<Arc<Session>>,
    /// The protocol version in force.
    pub version: &'static str,
    /// Who asks: the client's name, or `anonymous` (rate limits are kept per principal).
    pub principal: Arc<str>,
    /// The client's W3C `traceparent`, if it sent one.
    pub traceparent: Option<String>,
}

/// The protocol version a request names in its `_meta` (the stateless era's way).
pub fn meta_version(message: &Message) -> Option<String> {
    let params = RawObject::parse(message.params.as_deref()?.get()).ok()?;
    let meta = RawObject::parse(params.get("_meta")?.get()).ok()?;
    meta.get_str(version::META_PROTOCOL_VERSION)
}

/// A tool server's result without the `_meta` keys that describe its hop to mcp-edge
/// (its version, its info): the client's hop is mcp-edge's to describe. Results that
/// hold no reserved key at all pass without a parse.
fn without_hop_meta(result: Box<RawValue>) -> Box<RawValue> {
    static NEEDLE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"io.modelcontextprotocol/"));
    if NEEDLE.find(result.get().as_bytes()).is_none() {
        return result;
    }
    let Ok(mut object) = RawObject::parse(result.get()) else {
        return result;
    };
    let Some(mut meta) = object
        .get("_meta")
        .and_then(|m| RawObject::parse(m.get()).ok())
    else {
        return result;
    };
    let mut removed = false;
    for key in version::HOP_META_KEYS {
        removed |= meta.remove(key);
    }
    if !removed {
        return result;
    }
    if meta.keys().next().is_some() {
        object.set("_meta", meta.to_raw());
    } else {
        object.remove("_meta");
    }
    object.to_raw()
}

/// A client's text as echoed in an error: at most 64 characters (a 1 MB method name
/// is not sent back whole).
pub fn shown(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

/// Resource URIs the gateway remembers the routes of, all routes together.
const MAX_INDEXED_URIS: usize = 100_000;

/// Resources one session may be subscribed to at once.
const MAX_SUBSCRIPTIONS: usize = 1_000;

/// How often at most an unknown resource URI sends the gateway listing every route.
const RELEARN_EVERY: Duration = Duration::from_secs(10);

/// How long a client has to answer a tool server's request that came outside calls.
const UNRELATED_ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// The principal of a request that presented no credential.
pub fn anonymous() -> Arc<str> {
    static ANONYMOUS: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    ANONYMOUS.get_or_init(|| Arc::from("anonymous")).clone()
}

impl Ctx {
    /// The context of a request on `session`.
    pub fn of(session: &Arc<Session>) -> Ctx {
        Ctx {
            scope: session.scope(),
            version: session.version(),
            principal: session.principal.clone().unwrap_or_else(anonymous),
            traceparent: None,
            session: Some(session.clone()),
        }
    }

    /// Whether the client speaks the stateless era.
    pub fn stateless(&self) -> bool {
        version::era(self.version) == Some(Era::Stateless)
    }
}

/// No valid bearer token was presented (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized;

/// Why a client may not use an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeError {
    /// No such route.
    NotFound,
    /// The principal is not granted the route.
    Forbidden,
}

/// An error answer: a JSON-RPC error object, raw.
pub type ErrorObject = Box<RawValue>;

/// What the gateway answers a request, typed until a front door writes it in its own
/// framing ([`Answer::to_bytes`]): nothing that reads an answer parses bytes back.
#[derive(Debug)]
pub struct Answer {
    /// The request's id.
    pub id: Id,
    /// The result (with what the client's era requires of it), or the error object.
    pub outcome: Result<Box<RawValue>, ErrorObject>,
}

/// What an error answer says, for headers, traces and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSummary {
    /// The JSON-RPC error code.
    pub code: i64,
    /// `data.reason` (mcp-edge's own refusals), else the code in words.
    pub reason: String,
    /// `data.retry_after_ms`, when the refusal says when to try again.
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The response message.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.outcome {
            Ok(result) => jsonrpc::result(&self.id, result),
            Err(error) => jsonrpc::error_response(&self.id, error),
        }
    }

    /// What the error says, when the answer is one (only an error object is read,
    /// never a result).
    pub fn error(&self) -> Option<ErrorSummary> {
        let error = self.outcome.as_ref().err()?;
        let error: Value = serde_json::from_str(error.get()).unwrap_or_default();
        let code = error["code"].as_i64().unwrap_or(0);
        Some(ErrorSummary {
            code,
            reason: error["data"]["reason"]
                .as_str()
                .map_or_else(|| code.to_string(), str::to_owned),
            retry_after: error["data"]["retry_after_ms"]
                .as_u64()
                .map(Duration::from_millis),
        })
    }
}

/// A gateway-made error object.
pub fn error_object(code: i32, message: &str, data: Option<&Value>) -> ErrorObject {
    jsonrpc::error_object(code, message, data)
}

/// The one place an upstream failure becomes what a client sees: a JSON-RPC error in
/// the server range naming the route and the reason, with `retry_after_ms` when known.
pub fn upstream_error(route: &str, error: &UpstreamError) -> ErrorObject {
    let code = match error {
        UpstreamError::Timeout(_) => code::TIMEOUT,
        UpstreamError::Busy { .. } => code::BUSY,
        UpstreamError::Protocol(_) => code::UPSTREAM_PROTOCOL,
        UpstreamError::RateLimited { .. } => code::RATE_LIMITED,
        UpstreamError::CircuitOpen { .. } => code::CIRCUIT_OPEN,
        UpstreamError::Refused(_) => code::INVALID_PARAMS,
        _ => code::UPSTREAM_UNAVAILABLE,
    };
    let mut data = json!({ "route": route, "reason": error.reason() });
    match error {
        UpstreamError::CircuitOpen { retry_in, .. } => {
            data["state"] = json!(if retry_in.is_zero() {
                "half_open"
            } else {
                "open"
            });
        }
        UpstreamError::RateLimited { scope, .. } => data["limit"] = json!(scope),
        _ => {}
    }
    if let Some(after) = error.retry_after() {
        data["retry_after_ms"] = json!(after.as_millis() as u64);
    }
    error_object(code, &format!("route `{route}`: {error}"), Some(&data))
}

/// Fills a request span's name and attributes (only when the span is recorded).
fn describe_request(span: &tracing::Span, ctx: &Ctx, message: &Message) {
    let method = message.method();
    let params = message
        .params
        .as_deref()
        .and_then(|p| RawObject::parse(p.get()).ok());
    let target = match method {
        mcp::TOOLS_CALL => params
            .as_ref()
            .and_then(|p| p.get_str("name"))
            .inspect(|name| {
                span.record("gen_ai.tool.name", name.as_str());
            }),
        mcp::PROMPTS_GET => params
            .as_ref()
            .and_then(|p| p.get_str("name"))
            .inspect(|name| {
                span.record("gen_ai.prompt.name", name.as_str());
            }),
        mcp::RESOURCES_READ | mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE => params
            .as_ref()
            .and_then(|p| p.get_str("uri"))
            .inspect(|uri| {
                span.record("mcp.resource.uri", uri.as_str());
            }),
        _ => None,
    };
    let name = match target {
        Some(target) => format!("{method} {target}"),
        None => method.to_owned(),
    };
    span.record("otel.name", name.as_str());
    if let Some(session) = &ctx.session {
        span.record("mcp.session.id", crate::session::short_id(&session.id));
    }
    if let Some(id) = &message.id {
        span.record("jsonrpc.request.id", id.to_string().as_str());
    }
}

/// Tells the call's policies what reached the client: anything stops retries, and
/// progress moves the deadline on.
fn note(activity: &Activity, event: &CallEvent) {
    match event {
        CallEvent::Notification(message) if message.method() == mcp::PROGRESS => {
            activity.progressed();
        }
        _ => activity.relayed(),
    }
}

/// Adds an idempotency key to a repeatable tool call's `_meta` (kept if the client
/// sent one), so every attempt carries the same.
fn with_idempotency_key(params: Box<RawValue>) -> Box<RawValue> {
    let Ok(mut object) = RawObject::parse(params.get()) else {
        return params;
    };
    let mut meta: serde_json::Map<String, Value> = object
        .get("_meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    if meta.contains_key(IDEMPOTENCY_KEY) {
        return params;
    }
    let key: u128 = rand::random();
    meta.insert(IDEMPOTENCY_KEY.into(), json!(format!("{key:032x}")));
    object.set_value("_meta", &meta);
    object.to_raw()
}

fn invalid_params(message: &str) -> ErrorObject {
    error_object(code::INVALID_PARAMS, message, None)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one route contributed to a merged list page.
struct Page {
    items: Vec<Box<RawValue>>,
    next: Option<String>,
}

/// Whether `session` may hold one more subscription (to `uri`).
fn may_subscribe(session: &Session, uri: &str) -> Result<(), ErrorObject> {
    if !session.subscribed(uri) && session.subscriptions() >= MAX_SUBSCRIPTIONS {
        return Err(error_object(
            code::INVALID_REQUEST,
            &format!("this session holds {MAX_SUBSCRIPTIONS} subscriptions already"),
            None,
        ));
    }
    Ok(())
}

/// The items and `nextCursor` of a list's result; learns the tools' hints.
fn list_page(route: &RouteRt, method: &str, key: &str, result: &RawValue) -> Option<Page> {
    let object = RawObject::parse(result.get()).ok()?;
    let items = object
        .get(key)
        .and_then(|v| serde_json::from_str::<Vec<Box<RawValue>>>(v.get()).ok())
        .unwrap_or_default();
    let items = if method == mcp::TOOLS_LIST {
        curate(route, items)
    } else {
        items
    };
    Some(Page {
        items,
        next: object.get_str("nextCursor"),
    })
}

/// A route's tools as its clients see them: those its `tools.include`/`exclude` expose,
/// with its overrides (description, annotations, then name) applied. The retry policy
/// learns the hints from the tools as overridden, by their names at the tool server.
fn curate(route: &RouteRt, items: Vec<Box<RawValue>>) -> Vec<Box<RawValue>> {
    let naming = &route.naming;
    let mut renames = Vec::new();
    let kept: Vec<Box<RawValue>> = items
        .into_iter()
        .filter_map(|item| {
            let mut object = RawObject::parse(item.get()).ok()?;
            let name = object.get_str("name")?;
            if !naming.exposes(&name) {
                return None;
            }
            let Some(over) = naming.overrides.get(&name) else {
                renames.push(None);
                return Some(item);
            };
            if let Some(description) = &over.description {
                object.set_value("description", description);
            }
            if !over.annotations.is_empty() {
                let mut annotations: serde_json::Map<String, Value> = object
                    .get("annotations")
                    .and_then(|a| serde_json::from_str(a.get()).ok())
                    .unwrap_or_default();
                for (key, value) in &over.annotations {
                    let value = match value {
                        AnnotationValue::Text(text) => json!(text),
                        AnnotationValue::Flag(flag) => json!(flag),
                    };
                    annotations.insert((*key).to_owned(), value);
                }
                object.set_value("annotations", &annotations);
            }
            renames.push(over.name.clone());
            Some(object.to_raw())
        })
        .collect();
    route.policy.learn_tools(&kept);
    kept.into_iter()
        .zip(renames)
        .map(|(item, rename)| match rename {
            Some(name) => match RawObject::parse(item.get()) {
                Ok(mut object) => {
                    object.set_value("name", &name);
                    object.to_raw()
                }
                Err(_) => item,
            },
            None => item,
        })
        .collect()
}

/// The key a list's result holds its items under.
fn list_key(method: &str) -> &'static str {
    match method {
        mcp::TOOLS_LIST => "tools",
        mcp::PROMPTS_LIST => "prompts",
        mcp::RESOURCES_LIST => "resources",
        _ => "resourceTemplates",
    }
}

/// A list's items as text, to compare two lists by (both already curated).
fn exposed(items: &[Box<RawValue>]) -> Vec<&str> {
    items.iter().map(|item| item.get()).collect()
}

impl Gateway {
    /// A gateway over these routes.
    pub fn new(
        routes: Vec<Arc<RouteRt>>,
        separator: &str,
        clients: Vec<ClientRt>,
        allowed_origins: Vec<String>,
        max_message_bytes: usize,
        sessions: Sessions,
    ) -> Self {
        Gateway {
            table: ArcSwap::from_pointee(Table {
                routes,
                clients: clients.into(),
                servers: Arc::from(Vec::new()),
                allow_anonymous: false,
            }),
            separator: separator.into(),
            sessions,
            sink: None,
            certs: mcp_edge_certwatch::Watcher::new(None),
            allowed_origins,
            max_message_bytes,
            loopback_listener: false,
            resources: Mutex::new(ResourceIndex::default()),
            upstream_subs: Mutex::new(HashSet::new()),
        }
    }

    /// The routes and clients in force.
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }

    /// Puts a new table in force; the old one is returned (to drain its routes).
    pub fn swap_table(&self, table: Table) -> Arc<Table> {
        self.table.swap(Arc::new(table))
    }

    /// Lets clients without credentials in (set from routes.toml at start).
    pub fn set_allow_anonymous(&self, allow: bool) {
        let old = self.table();
        self.table.store(Arc::new(Table {
            routes: old.routes.clone(),
            clients: old.clients.clone(),
            servers: old.servers.clone(),
            allow_anonymous: allow,
        }));
    }

    /// Puts the virtual servers in force (from routes.toml at start).
    pub fn set_servers(&self, servers: &[VirtualServer]) {
        let old = self.table();
        self.table.store(Arc::new(Table {
            routes: old.routes.clone(),
            clients: old.clients.clone(),
            servers: servers.iter().cloned().map(Arc::new).collect(),
            allow_anonymous: old.allow_anonymous,
        }));
    }

    /// The principal behind a request: its bearer token if it sent one, else the
    /// identity of its verified client certificate (matched by kind: URI SAN, DNS SAN,
    /// or the common name where configured as `cn:`), else anonymous when allowed.
    /// `Ok(None)` is anonymous; `Err` means 401.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        identity: &mcp_edge_tls::PeerIdentity,
    ) -> Result<Option<Arc<str>>, Unauthorized> {
        if let Some(header) = authorization {
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or(Unauthorized)?;
            // Every token is compared, each in constant time.
            let mut found = None;
            for client in self.table().clients.iter() {
                if let ClientCredential::Token(secret) = &client.credential
                    && bool::from(secret.expose().as_bytes().ct_eq(token.as_bytes()))
                {
                    found = Some(client.name.clone());
                }
            }
            return found.map(Some).ok_or(Unauthorized);
        }
        if !identity.is_empty() {
            let table = self.table();
            let client = table.clients.iter().find(|c| match &c.credential {
                ClientCredential::Identity(id) => carries(identity, id),
                ClientCredential::Token(_) => false,
            });
            if let Some(client) = client {
                return Ok(Some(client.name.clone()));
            }
        }
        if self.table().allow_anonymous {
            return Ok(None);
        }
        Err(Unauthorized)
    }

    /// The scope of a principal on `/mcp` (`target` None) or `/mcp/{target}`.
    pub fn scope(
        &self,
        principal: Option<&str>,
        target: Option<&str>,
    ) -> Result<Scope, ScopeError> {
        let table = self.table();
        let client = principal.and_then(|p| table.clients.iter().find(|c| &*c.name == p));
        let grant = client.map(|c| &c.grant);
        let allowed = |r: &RouteRt| grant.is_none_or(|g| g.allows(&r.name));
        let tools = client.and_then(|c| c.tools.clone());
        let mut scope = Scope {
            routes: Arc::from(Vec::new()),
            single: false,
            separator: self.separator.clone(),
            tools,
            server: None,
        };
        match target {
            None => {
                scope.routes = table
                    .routes
                    .iter()
                    .filter(|r| allowed(r))
                    .cloned()
                    .collect();
            }
            Some(name) => {
                if let Some(route) = table.routes.iter().find(|r| r.name == name) {
                    if !allowed(route) {
                        return Err(ScopeError::Forbidden);
                    }
                    scope.routes = Arc::from(vec![route.clone()]);
                    scope.single = true;
                } else {
                    let server = table
                        .servers
                        .iter()
                        .find(|s| s.name == name)
                        .ok_or(ScopeError::NotFound)?;
                    scope.server = Some(server.clone());
                    let routes: Vec<Arc<RouteRt>> = table
                        .routes
                        .iter()
                        .filter(|r| allowed(r) && scope.relevant(r))
                        .cloned()
                        .collect();
                    scope.routes = routes.into();
                }
            }
        }
        Ok(scope)
    }

    /// What the client may use: for one route, what its tool server offers; for the
    /// merged server, the union of what the routes offer (all of it while none is up,
    /// so clients still ask and get clear errors). The stateless era has no list-change
    /// notifications, subscriptions or log levels; `tasks` is not relayed yet.
    fn capabilities(&self, scope: &Scope, stateless: bool) -> Value {
        let infos: Vec<_> = scope.routes.iter().filter_map(|r| r.info()).collect();
        let mut caps = if scope.single && !infos.is_empty() {
            serde_json::from_str::<Value>(infos[0].capabilities.get()).unwrap_or_else(|_| json!({}))
        } else if infos.is_empty() {
            json!({ "tools": {}, "resources": {}, "prompts": {}, "logging": {}, "completions": {} })
        } else {
            let mut union = json!({});
            for info in &infos {
                let offered: Value =
                    serde_json::from_str(info.capabilities.get()).unwrap_or_default();
                for key in ["tools", "resources", "prompts", "logging", "completions"] {
                    if offered.get(key).is_some_and(|v| !v.is_null()) {
                        union[key] = json!({});
                    }
                }
                if offered["resources"]["subscribe"] == true {
                    union["resources"]["subscribe"] = json!(true);
                }
            }
            union
        };
        if let Some(map) = caps.as_object_mut() {
            map.remove("tasks");
            map.remove("experimental");
        }
        for key in ["tools", "resources", "prompts"] {
            if let Some(cap) = caps.get_mut(key).and_then(Value::as_object_mut) {
                if stateless {
                    cap.remove("listChanged");
                    cap.remove("subscribe");
                } else if !scope.single {
                    // The gateway tells clients when a route comes or goes.
                    cap.insert("listChanged".into(), json!(true));
                }
            }
        }
        if stateless && let Some(map) = caps.as_object_mut() {
            map.remove("logging");
        }
        caps
    }

    fn instructions(scope: &Scope) -> Option<String> {
        if let Some(instructions) = scope.server.as_ref().and_then(|s| s.instructions.clone()) {
            return Some(instructions);
        }
        let parts: Vec<String> = scope
            .routes
            .iter()
            .filter_map(|r| {
                let text = r.info()?.instructions.clone()?;
                Some(if scope.single {
                    text
                } else {
                    let names = if r.prefix.is_empty() {
                        "unprefixed".to_owned()
                    } else {
                        format!("`{}{}*`", r.prefix, scope.separator)
                    };
                    format!("## {} ({names})\n{text}", r.name)
                })
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    fn server_info() -> Value {
        json!({ "name": "mcp-edge", "title": "mcp-edge gateway", "version": env!("CARGO_PKG_VERSION") })
    }

    /// Answers `initialize` for a client that asked for `requested`: the version to
    /// use and the result.
    pub fn initialize(
        &self,
        scope: &Scope,
        params: Option<&RawValue>,
    ) -> (&'static str, Box<RawValue>) {
        let requested = params
            .and_then(|p| RawObject::parse(p.get()).ok())
            .and_then(|p| p.get_str("protocolVersion"))
            .unwrap_or_default();
        let version = version::negotiate(&requested);
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": self.capabilities(scope, false),
            "serverInfo": Self::server_info(),
        });
        if let Some(instructions) = Self::instructions(scope) {
            result["instructions"] = json!(instructions);
        }
        (version, jsonrpc::raw(&result))
    }

    fn discover(&self, scope: &Scope) -> Box<RawValue> {
        let mut result = json!({
            "resultType": "complete",
            "supportedVersions": version::supported().collect::<Vec<_>>(),
            "capabilities": self.capabilities(scope, true),
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": { "io.modelcontextprotocol/serverInfo": Self::server_info() },
        });
        if let Some(instructions) = Self::instructions(scope) {
            result["instructions"] = json!(instructions);
        }
        jsonrpc::raw(&result)
    }

    /// Answers one request. Notifications and tool-server requests that belong to it
    /// are sent on `events` before the answer is returned.
    pub async fn request(
        &self,
        ctx: &Ctx,
        message: &Message,
        events: &mpsc::Sender<Vec<u8>>,
    ) -> Answer {
        use tracing::Instrument as _;
        let method = message.method();
        let span = tracing::debug_span!(
            "mcp.request",
            otel.name = tracing::field::Empty,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            mcp.method.name = method,
            mcp.protocol.version = ctx.version,
            mcp.session.id = tracing::field::Empty,
            jsonrpc.request.id = tracing::field::Empty,
            gen_ai.tool.name = tracing::field::Empty,
            gen_ai.prompt.name = tracing::field::Empty,
            mcp.resource.uri = tracing::field::Empty,
            error.type = tracing::field::Empty,
            rpc.response.status_code = tracing::field::Empty,
        );
        if span.is_disabled() {
            return self.request_inner(ctx, message, events).await;
        }
        describe_request(&span, ctx, message);
        mcp_edge_route::trace::continue_trace(&span, ctx.traceparent.as_deref());
        let answer = self
            .request_inner(ctx, message, events)
            .instrument(span.clone())
            .await;
        if let Some(error) = answer.error() {
            span.record("otel.status_code", "ERROR");
            span.record("rpc.response.status_code", error.code);
            span.record("error.type", error.reason.as_str());
        }
        answer
    }

    async fn request_inner(
        &self,
        ctx: &Ctx,
        message: &Message,
        events: &mpsc::Sender<Vec<u8>>,
    ) -> Answer {
        let id = message.id.clone().unwrap_or(Id::Num(0));
        let method = message.method();
        let params = message.params.as_deref();
        let outcome = match method {
            mcp::INITIALIZE => Err(error_object(
                code::INVALID_REQUEST,
                "this session is already initialized; start a new session to initialize again",
                None,
            )),
            mcp::DISCOVER => Ok(self.discover(&ctx.scope)),
            mcp::PING => Ok(jsonrpc::empty_object()),
            // Only calls are inline: every other method's state is boxed, so the future
            // every request carries is as large as a call's, not as the largest method's.
            mcp::TOOLS_CALL | mcp::PROMPTS_GET => self.named(ctx, method, params, events).await,
            mcp::TOOLS_LIST
            | mcp::PROMPTS_LIST
            | mcp::RESOURCES_LIST
            | mcp::RESOURCE_TEMPLATES_LIST => Box::pin(self.list(ctx, method, params)).await,
            mcp::RESOURCES_READ | mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE => {
                Box::pin(self.resource(ctx, method, params, events)).await
            }
            mcp::COMPLETE => Box::pin(self.complete(ctx, params, events)).await,
            mcp::SET_LEVEL => {
                Box::pin(async {
                    let calls = ctx
                        .scope
                        .routes
                        .iter()
                        .filter(|r| r.offers("logging"))
                        .map(|r| {
                            let deadline = Instant::now() + r.timeout.min(LIST_DEADLINE);
                            self.forward(
                                ctx,
                                r,
                                method,
                                params.map(RawValue::to_owned),
                                None,
                                deadline,
                                None,
                            )
                        });
                    join_all(calls).await;
                    Ok(jsonrpc::empty_object())
                })
                .await
            }
            other => Err(error_object(
                code::METHOD_NOT_FOUND,
                &format!("Method not found: {}", shown(other)),
                None,
            )),
        };
        Answer {
            outcome: self.finish(ctx, method, outcome),
            id,
        }
    }

    /// Handles one message of a session whose answers all travel on one stream
    /// (legacy SSE, stdio): `initialize` is answered there, requests run in tasks of
    /// their own, notifications and responses are taken in.
    pub async fn receive_on_stream(
        self: &Arc<Self>,
        session: &Arc<Session>,
        message: Message,
        out: mpsc::Sender<Vec<u8>>,
    ) {
        let ctx = Ctx::of(session);
        match message.kind() {
            Kind::Request if message.method() == mcp::INITIALIZE => {
                let (version, result) =
                    self.initialize(&session.scope(), message.params.as_deref());
                session.set_version(version);
                let id = message.id.clone().unwrap_or(Id::Num(0));
                let _ = out.send(jsonrpc::result(&id, &result)).await;
            }
            Kind::Request => {
                let mut ctx = ctx;
                // A 2026-07-28 client on a stream (stdio, WebSocket) never initializes:
                // each request names its version in `_meta`, and is answered in that era.
                if !session.is_initialized()
                    && let Some(named) = meta_version(&message)
                    && let Some(stateless) =
                        version::STATELESS_VERSIONS.iter().find(|v| **v == named)
                {
                    ctx.version = stateless;
                }
                self.spawn_request(ctx, message, out);
            }
            Kind::Notification => self.notification(&ctx, &message).await,
            Kind::Result | Kind::Error => self.client_response(&ctx, message).await,
        }
    }

    /// Answers a request in a task of its own whose notifications and answer go to
    /// `out` (a legacy SSE stream, stdout), registered with the session until it ends so
    /// that `notifications/cancelled` can stop it.
    pub fn spawn_request(self: &Arc<Self>, ctx: Ctx, message: Message, out: mpsc::Sender<Vec<u8>>) {
        let session = ctx.session.clone();
        let id = message.id.clone();
        let gw = self.clone();
        let task = tokio::spawn(async move {
            let answer = gw.request(&ctx, &message, &out).await;
            let _ = out.send(answer.to_bytes()).await;
        });
        if let (Some(session), Some(id)) = (session, id) {
            session.start(id.clone(), crate::session::Stop::Task(task.abort_handle()));
            tokio::spawn(async move {
                let _ = task.await;
                session.finish(&id);
            });
        }
    }

    /// The outcome, with what the client's era requires of a result.
    fn finish(
        &self,
        ctx: &Ctx,
        method: &str,
        outcome: Result<Box<RawValue>, ErrorObject>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        match outcome {
            Ok(result) if ctx.stateless() => {
                let cacheable = mcp::is_list(method) || method == mcp::RESOURCES_READ;
                let needs = !result.get().contains("\"resultType\"") || cacheable;
                if !needs {
                    return Ok(result);
                }
                let Ok(mut object) = RawObject::parse(result.get()) else {
                    return Ok(result);
                };
                if object.get("resultType").is_none() {
                    object.set_value("resultType", "complete");
                }
                if cacheable {
                    if object.get("ttlMs").is_none() {
                        object.set_value("ttlMs", &0);
                    }
                    if object.get("cacheScope").is_none() {
                        object.set_value("cacheScope", "private");
                    }
                }
                Ok(object.to_raw())
            }
            other => other,
        }
    }

    /// Handles a notification from the client.
    pub async fn notification(&self, ctx: &Ctx, message: &Message) {
        match message.method() {
            mcp::INITIALIZED => {
                if let Some(session) = &ctx.session {
                    session.set_initialized();
                }
            }
            mcp::CANCELLED => {
                let request = message
                    .params
                    .as_ref()
                    .and_then(|p| RawObject::parse(p.get()).ok())
                    .and_then(|p| {
                        p.get("requestId")
                            .and_then(|v| serde_json::from_str::<Id>(v.get()).ok())
                    });
                if let (Some(session), Some(request)) = (&ctx.session, request)
                    && session.cancel(&request)
                {
                    tracing::debug!(session = %crate::session::short_id(&session.id), request = %request, "cancelled at the client's request");
                }
            }
            "notifications/roots/list_changed" => {
                for route in ctx.scope.routes.iter() {
                    if let mcp_edge_route::Upstream::One(Connector::Stdio(stdio)) = &route.upstream
                    {
                        stdio
                            .notify(message.method(), message.params.as_deref())
                            .await;
                    } else if route.per_client
                        && let Some(session) = &ctx.session
                    {
                        // The client's own upstream session: its roots are its own.
                        let key: Arc<str> = Arc::from(session.id.as_str());
                        route
                            .notify(Some(&key), message.method(), message.params.as_deref())
                            .await;
                    }
                }
            }
            other => tracing::debug!(method = other, "client notification ignored"),
        }
    }

    /// Handles the client's answer to a tool server's request.
    pub async fn client_response(&self, ctx: &Ctx, message: Message) {
        let (Some(session), Some(id)) = (&ctx.session, &message.id) else {
            return;
        };
        let Some(ask) = session.answer(id) else {
            tracing::warn!(session = %crate::session::short_id(&session.id), id = %id, "answer to a request mcp-edge did not send; dropped");
            return;
        };
        let reply = match (message.result, message.error) {
            (Some(result), _) => Reply::Result(result),
            (None, Some(error)) => Reply::Error(error),
            (None, None) => return,
        };
        let key = ask.route.per_client.then(|| Arc::from(session.id.as_str()));
        ask.route
            .respond(key.as_ref(), &ask.upstream_id, reply)
            .await;
    }

    /// Forwards one call to a route, relaying its events to the client.
    #[expect(
        clippy::too_many_arguments,
        reason = "the tool's name comes parsed from `named`, so it is not parsed again here"
    )]
    async fn forward(
        &self,
        ctx: &Ctx,
        route: &Arc<RouteRt>,
        method: &str,
        params: Option<Box<RawValue>>,
        tool: Option<&str>,
        deadline: Instant,
        events: Option<&mpsc::Sender<Vec<u8>>>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let (tx, mut rx) = mpsc::channel(32);
        let repeatable = route.policy.repeatable(method, tool);
        let params = match params {
            Some(p) if repeatable && tool.is_some() && route.policy.retries() => {
                Some(with_idempotency_key(p))
            }
            other => other,
        };
        let activity = Activity::new();
        let started = Instant::now();
        // Only a call whose client can hear events asks for them: the connector hands a
        // tool server's requests only to a call that can take them.
        let call = route.call(Request {
            call: Call {
                method: method.to_owned(),
                params,
                deadline,
                events: events.is_some().then_some(tx),
                traceparent: ctx.traceparent.clone(),
                name: tool.map(str::to_owned),
                session: ctx
                    .session
                    .as_ref()
                    .filter(|_| route.per_client)
                    .map(|s| Arc::from(s.id.as_str())),
            },
            principal: ctx.principal.clone(),
            repeatable,
            activity: activity.clone(),
            attempt: 1,
        });
        tokio::pin!(call);
        // The tool server's requests relayed during this call: (client's id, its id).
        let mut asked: Vec<(Id, Id)> = Vec::new();
        let reply = loop {
            tokio::select! {
                reply = &mut call => break reply,
                Some(event) = rx.recv() => {
                    note(&activity, &event);
                    self.relay(ctx, route, event, events, &mut asked).await;
                }
            }
        };
        while let Ok(event) = rx.try_recv() {
            self.relay(ctx, route, event, events, &mut asked).await;
        }
        // The call is over: its questions can no longer be answered.
        if let Some(session) = &ctx.session {
            for (client_id, _) in &asked {
                session.answer(client_id);
            }
        }
        let outcome = match &reply {
            Ok(Reply::Result(_)) => "ok",
            Ok(Reply::Error(_)) => "error",
            Err(e) => e.reason(),
        };
        route.stats.record(method, outcome, started.elapsed());
        match reply {
            Ok(Reply::Result(result)) => Ok(without_hop_meta(result)),
            Ok(Reply::Error(error)) => Err(error),
            Err(e) => {
                tracing::warn!(route = %route.name, method, reason = e.reason(), "call failed: {e}");
                route.stats.failed(e.to_string());
                Err(upstream_error(&route.name, &e))
            }
        }
    }

    async fn relay(
        &self,
        ctx: &Ctx,
        route: &Arc<RouteRt>,
        event: CallEvent,
        events: Option<&mpsc::Sender<Vec<u8>>>,
        asked: &mut Vec<(Id, Id)>,
    ) {
        match event {
            CallEvent::Notification(mut message) => {
                if message.method() == mcp::CANCELLED {
                    // The tool server withdrew one of its own requests: say so with the
                    // id the client knows.
                    let Some(mut params) = message
                        .params
                        .as_ref()
                        .and_then(|p| RawObject::parse(p.get()).ok())
                    else {
                        return;
                    };
                    let upstream = params
                        .get("requestId")
                        .and_then(|v| serde_json::from_str::<Id>(v.get()).ok());
                    let Some(position) =
                        asked.iter().position(|(_, u)| Some(u) == upstream.as_ref())
                    else {
                        return;
                    };
                    let (client_id, _) = asked.remove(position);
                    if let Some(session) = &ctx.session {
                        session.answer(&client_id);
                    }
                    params.set_value("requestId", &client_id);
                    message.params = Some(params.to_raw());
                }
                if let Some(events) = events {
                    let _ = events.send(message.to_bytes()).await;
                }
            }
            CallEvent::Request(mut message) => {
                let upstream_id = message.id.clone().unwrap_or(Id::Num(0));
                match (&ctx.session, events) {
                    (Some(session), Some(events)) if !ctx.stateless() => {
                        let client_id = session.ask(Ask {
                            route: route.clone(),
                            upstream_id: upstream_id.clone(),
                        });
                        asked.push((client_id.clone(), upstream_id));
                        message.id = Some(client_id);
                        let _ = events.send(message.to_bytes()).await;
                    }
                    _ => {
                        let refusal = error_object(
                            code::METHOD_NOT_FOUND,
                            "the client cannot answer requests from the tool server on this connection",
                            None,
                        );
                        let key = ctx
                            .session
                            .as_ref()
                            .filter(|_| route.per_client)
                            .map(|s| Arc::from(s.id.as_str()));
                        route
                            .respond(key.as_ref(), &upstream_id, Reply::Error(refusal))
                            .await;
                    }
                }
            }
        }
    }

    /// `tools/call` and `prompts/get`: find the route by the name's prefix.
    async fn named(
        &self,
        ctx: &Ctx,
        method: &str,
        params: Option<&RawValue>,
        events: &mpsc::Sender<Vec<u8>>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let params = params.ok_or_else(|| invalid_params("params with a name are required"))?;
        let mut object = RawObject::parse(params.get())
            .map_err(|_| invalid_params("params must be an object"))?;
        let name = object
            .get_str("name")
            .ok_or_else(|| invalid_params("params.name must be a string"))?;
        let kind = if method == mcp::TOOLS_CALL {
            "tool"
        } else {
            "prompt"
        };
        let unknown = || invalid_params(&format!("Unknown {kind}: {name}"));
        let (route, shown) = ctx.scope.resolve(&name).ok_or_else(unknown)?;
        let upstream_name = if method == mcp::TOOLS_CALL {
            let upstream_name = route.naming.upstream(shown).ok_or_else(unknown)?;
            if !ctx.scope.serves_tool(route, shown) {
                return Err(unknown());
            }
            if !ctx.scope.grants_tool(route, shown) {
                return Err(invalid_params(&format!(
                    "Tool {name} is not granted to client {}: its `tools` in routes.toml do not include it",
                    ctx.principal
                )));
            }
            upstream_name
        } else {
            if !ctx.scope.allows_prompt(route, shown) {
                return Err(unknown());
            }
            shown
        };
        // Forwarded as it came unless the name is the route's own, not the client's.
        let params = if upstream_name == name {
            params.to_owned()
        } else {
            object.set_value("name", upstream_name);
            object.to_raw()
        };
        let deadline = route.deadline();
        let route = route.clone();
        let tool = (method == mcp::TOOLS_CALL).then_some(upstream_name);
        self.forward(
            ctx,
            &route,
            method,
            Some(params),
            tool,
            deadline,
            Some(events),
        )
        .await
    }

    /// `resources/read`, `subscribe` and `unsubscribe`: find the route by URI.
    async fn resource(
        &self,
        ctx: &Ctx,
        method: &str,
        params: Option<&RawValue>,
        events: &mpsc::Sender<Vec<u8>>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let params = params.ok_or_else(|| invalid_params("params with a uri are required"))?;
        let uri = RawObject::parse(params.get())
            .ok()
            .and_then(|p| p.get_str("uri"))
            .ok_or_else(|| invalid_params("params.uri must be a string"))?;
        let route = self
            .resource_route(ctx, &uri)
            .await
            .filter(|route| ctx.scope.shows(route, mcp::RESOURCES_LIST))
            .ok_or_else(|| {
                error_object(
                    code::RESOURCE_NOT_FOUND,
                    &format!("Resource not found: {uri}"),
                    Some(&json!({ "uri": uri })),
                )
            })?;
        let deadline = route.deadline();
        let forward = |method| {
            self.forward(
                ctx,
                &route,
                method,
                Some(params.to_owned()),
                None,
                deadline,
                Some(events),
            )
        };
        let Some(session) = ctx
            .session
            .as_ref()
            .filter(|_| method != mcp::RESOURCES_READ)
        else {
            return forward(method).await;
        };
        if route.per_client {
            // The client's own upstream session holds its own subscriptions.
            if method == mcp::RESOURCES_SUBSCRIBE {
                may_subscribe(session, &uri)?;
            }
            let result = forward(method).await?;
            session.subscribe(&uri, method == mcp::RESOURCES_SUBSCRIBE);
            return Ok(result);
        }
        // One upstream subscription per route and URI, however many clients hold it:
        // the first subscriber makes it, the last one to leave ends it, and one client's
        // unsubscribe never ends another's.
        let key = (route.name.clone(), uri.clone());
        if method == mcp::RESOURCES_SUBSCRIBE {
            may_subscribe(session, &uri)?;
            if lock(&self.upstream_subs).contains(&key) {
                session.subscribe(&uri, true);
                return Ok(jsonrpc::empty_object());
            }
            let result = forward(method).await?;
            lock(&self.upstream_subs).insert(key);
            session.subscribe(&uri, true);
            return Ok(result);
        }
        if !session.subscribed(&uri) {
            return Ok(jsonrpc::empty_object());
        }
        session.subscribe(&uri, false);
        if self.subscribers(&route.name, &uri) > 0 || !lock(&self.upstream_subs).remove(&key) {
            return Ok(jsonrpc::empty_object());
        }
        forward(method).await
    }

    /// Sessions subscribed to `uri` on `route`.
    fn subscribers(&self, route: &str, uri: &str) -> usize {
        self.sessions
            .all()
            .iter()
            .filter(|s| s.subscribed(uri) && s.scope().contains(route))
            .count()
    }

    /// Ends the upstream subscriptions no session holds any more (their sessions
    /// ended or expired without unsubscribing). Run by the session sweep.
    pub fn reconcile_subscriptions(&self) {
        let orphans: Vec<(String, String)> = lock(&self.upstream_subs)
            .iter()
            .filter(|(route, uri)| self.subscribers(route, uri) == 0)
            .cloned()
            .collect();
        for (route, uri) in orphans {
            lock(&self.upstream_subs).remove(&(route.clone(), uri.clone()));
            let Some(rt) = self.route_named(&route) else {
                continue;
            };
            let params = jsonrpc::raw(&json!({ "uri": uri }));
            tokio::spawn(async move {
                let call = Call {
                    method: mcp::RESOURCES_UNSUBSCRIBE.to_owned(),
                    params: Some(params),
                    deadline: Instant::now() + LIST_DEADLINE,
                    events: None,
                    traceparent: None,
                    name: None,
                    session: None,
                };
                if let Err(e) = rt.upstream.call(call).await {
                    tracing::debug!(route = %rt.name, "unsubscribing an orphaned subscription failed: {e}");
                }
            });
        }
    }

    /// `completion/complete`: by the prompt's name or the resource's URI.
    async fn complete(
        &self,
        ctx: &Ctx,
        params: Option<&RawValue>,
        events: &mpsc::Sender<Vec<u8>>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let params = params.ok_or_else(|| invalid_params("params with a ref are required"))?;
        let mut object = RawObject::parse(params.get())
            .map_err(|_| invalid_params("params must be an object"))?;
        let reference = object
            .get("ref")
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
            .ok_or_else(|| invalid_params("params.ref is required"))?;
        let route = match reference["type"].as_str() {
            Some("ref/prompt") => {
                let name = reference["name"]
                    .as_str()
                    .ok_or_else(|| invalid_params("ref.name is required"))?;
                let (route, upstream_name) = ctx
                    .scope
                    .resolve(name)
                    .ok_or_else(|| invalid_params(&format!("Unknown prompt: {name}")))?;
                let mut rewritten = reference.clone();
                rewritten["name"] = json!(upstream_name);
                object.set_value("ref", &rewritten);
                route.clone()
            }
            Some("ref/resource") => {
                let uri = reference["uri"]
                    .as_str()
                    .ok_or_else(|| invalid_params("ref.uri is required"))?;
                self.resource_route(ctx, uri)
                    .await
                    .ok_or_else(|| invalid_params(&format!("no route serves {uri}")))?
            }
            _ => {
                return Err(invalid_params(
                    "ref.type must be ref/prompt or ref/resource",
                ));
            }
        };
        let deadline = route.deadline();
        self.forward(
            ctx,
            &route,
            mcp::COMPLETE,
            Some(object.to_raw()),
            None,
            deadline,
            Some(events),
        )
        .await
    }

    /// The route serving a resource URI: learned from lists (refreshed once if unknown),
    /// matched against templates, or the only route that has resources.
    async fn resource_route(&self, ctx: &Ctx, uri: &str) -> Option<Arc<RouteRt>> {
        if ctx.scope.single {
            return ctx.scope.routes.first().cloned();
        }
        if let Some(route) = self.lookup_resource(ctx, uri) {
            return Some(route);
        }
        let with_resources: Vec<&Arc<RouteRt>> = ctx
            .scope
            .routes
            .iter()
            .filter(|r| r.offers("resources"))
            .collect();
        if let [only] = with_resources.as_slice() {
            return Some((*only).clone());
        }
        // Learn what the routes serve, then look again (not more often than
        // RELEARN_EVERY, however many unknown URIs are asked for).
        {
            let mut index = lock(&self.resources);
            if index.learned.is_some_and(|at| at.elapsed() < RELEARN_EVERY) {
                return None;
            }
            index.learned = Some(Instant::now());
        }
        for method in [mcp::RESOURCES_LIST, mcp::RESOURCE_TEMPLATES_LIST] {
            let mut cursor = None;
            for _ in 0..10 {
                match self.list(ctx, method, cursor.as_deref()).await {
                    Ok(result) => {
                        let next = RawObject::parse(result.get())
                            .ok()
                            .and_then(|o| o.get_str("nextCursor"));
                        match next {
                            Some(next) => cursor = Some(jsonrpc::raw(&json!({ "cursor": next }))),
                            None => break,
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        self.lookup_resource(ctx, uri)
    }

    fn lookup_resource(&self, ctx: &Ctx, uri: &str) -> Option<Arc<RouteRt>> {
        let index = lock(&self.resources);
        let by_name = |name: &str| ctx.scope.routes.iter().find(|r| r.name == name).cloned();
        if let Some(listed) = index.uris.get(uri) {
            // The first route of the client's scope (routes.toml order) that lists it.
            if let Some(route) = ctx.scope.routes.iter().find(|r| listed.contains(&r.name)) {
                return Some(route.clone());
            }
        }
        index
            .templates
            .iter()
            .filter(|(prefix, _)| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .and_then(|(_, name)| by_name(name))
    }

    /// Merges a list across the scope's routes. The cursor the client sees encodes the
    /// route to continue with and that route's own cursor, so pages work across routes.
    async fn list(
        &self,
        ctx: &Ctx,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<Box<RawValue>, ErrorObject> {
        let (key, capability) = match method {
            mcp::TOOLS_LIST => ("tools", "tools"),
            mcp::PROMPTS_LIST => ("prompts", "prompts"),
            mcp::RESOURCES_LIST => ("resources", "resources"),
            _ => ("resourceTemplates", "resources"),
        };
        let cursor = params
            .and_then(|p| RawObject::parse(p.get()).ok())
            .and_then(|p| p.get_str("cursor"));
        let (start, upstream_cursor) = match cursor {
            None => (0, None),
            Some(c) => decode_cursor(&c).ok_or_else(|| invalid_params("invalid cursor"))?,
        };
        let routes: Vec<(usize, Arc<RouteRt>)> = ctx
            .scope
            .routes
            .iter()
            .cloned()
            .enumerate()
            .skip(start)
            .filter(|(_, r)| r.offers(capability) && ctx.scope.shows(r, method))
            // A tool server still being initialized is not waited for: the list holds
            // what is up now, and the route says `list_changed` once it is up.
            .filter(|(_, r)| !r.upstream.state().starting)
            .collect();
        let fetches = routes.iter().map(|(i, route)| {
            let cursor = if *i == start {
                upstream_cursor.clone()
            } else {
                None
            };
            self.page(ctx, route, method, key, cursor)
        });
        let pages = join_all(fetches).await;
        let mut items = Vec::new();
        let mut next = None;
        for ((i, route), page) in routes.iter().zip(pages) {
            let Some(page) = page else { continue };
            items.extend(self.adopt(ctx, route, method, page.items));
            if let Some(upstream_next) = page.next {
                next = Some(encode_cursor(*i, Some(&upstream_next)));
                break;
            }
        }
        let mut result = json!({ key: items });
        if let Some(next) = next {
            result["nextCursor"] = json!(next);
        }
        Ok(jsonrpc::raw(&result))
    }

    /// One page of one route's list; `None` (logged) when the route fails. A first page
    /// comes from the route's kept lists when they have it (see
    /// [`mcp_edge_route::lists`]).
    async fn page(
        &self,
        ctx: &Ctx,
        route: &Arc<RouteRt>,
        method: &str,
        key: &str,
        cursor: Option<String>,
    ) -> Option<Page> {
        let generation = match cursor {
            Some(_) => None,
            None => match route.lists.get(method) {
                Ok(kept) => {
                    return Some(Page {
                        items: kept.items.as_ref().clone(),
                        next: kept.next,
                    });
                }
                Err(generation) => Some(generation),
            },
        };
        let params = cursor.map(|c| jsonrpc::raw(&json!({ "cursor": c })));
        let deadline = Instant::now() + route.timeout.min(LIST_DEADLINE);
        let result = match self
            .forward(ctx, route, method, params, None, deadline, None)
            .await
        {
            Ok(result) => result,
            Err(error) => {
                tracing::debug!(route = %route.name, method, "left out of the merged list: {}", error.get());
                return None;
            }
        };
        let page = list_page(route, method, key, &result)?;
        if let Some(generation) = generation {
            route.lists.put(
                method,
                generation,
                mcp_edge_route::lists::Page {
                    items: Arc::new(page.items.clone()),
                    next: page.next.clone(),
                },
            );
        }
        Some(page)
    }

    /// The route called `name` in the table in force.
    fn route_named(&self, name: &str) -> Option<Arc<RouteRt>> {
        self.table().routes.iter().find(|r| r.name == name).cloned()
    }

    /// After a tool server's `list_changed`: its first page of `method` is asked again,
    /// and clients are told only when what they would see changed (or when nothing was
    /// kept to compare with).
    fn list_changed(self: &Arc<Self>, route: &str, method: &'static str, changed: &'static str) {
        let Some(rt) = self.route_named(route) else {
            return;
        };
        let before = rt.lists.invalidate(method);
        let gw = self.clone();
        let route = route.to_owned();
        tokio::spawn(async move {
            let generation = rt.lists.get(method).err().unwrap_or_default();
            let call = Call {
                method: method.to_owned(),
                params: None,
                deadline: Instant::now() + rt.timeout.min(LIST_DEADLINE),
                events: None,
                traceparent: None,
                name: None,
                session: None,
            };
            let after = match rt.upstream.call(call).await {
                Ok(Reply::Result(result)) => list_page(&rt, method, list_key(method), &result),
                _ => None,
            };
            let same = match (&before, &after) {
                (Some(before), Some(after)) => {
                    exposed(before.items.as_ref()) == exposed(&after.items)
                        && before.next == after.next
                }
                _ => false,
            };
            if let Some(after) = after {
                rt.lists.put(
                    method,
                    generation,
                    mcp_edge_route::lists::Page {
                        items: Arc::new(after.items),
                        next: after.next,
                    },
                );
            }
            if same {
                tracing::debug!(route = %route, method, "list_changed, but the list is the same: clients not told");
                return;
            }
            gw.broadcast(&route, &jsonrpc::notification(changed, None), |_| true);
        });
    }

    /// Renames and filters one route's items for the client, and learns resource URIs.
    fn adopt(
        &self,
        ctx: &Ctx,
        route: &RouteRt,
        method: &str,
        items: Vec<Box<RawValue>>,
    ) -> Vec<Box<RawValue>> {
        match method {
            mcp::TOOLS_LIST | mcp::PROMPTS_LIST => items
                .into_iter()
                .filter_map(|item| {
                    let mut object = RawObject::parse(item.get()).ok()?;
                    let name = object.get_str("name")?;
                    if method == mcp::TOOLS_LIST && !ctx.scope.allows_tool(route, &name)
                        || method == mcp::PROMPTS_LIST && !ctx.scope.allows_prompt(route, &name)
                    {
                        return None;
                    }
                    let exposed = ctx.scope.exposed(route, &name);
                    if exposed == name {
                        return Some(item);
                    }
                    object.set_value("name", &exposed);
                    Some(object.to_raw())
                })
                .collect(),
            mcp::RESOURCES_LIST => {
                let mut index = lock(&self.resources);
                for item in &items {
                    if let Some(uri) = RawObject::parse(item.get())
                        .ok()
                        .and_then(|o| o.get_str("uri"))
                    {
                        // Bounded: a tool server listing without end does not grow
                        // the gateway without end (past the cap, reads fall back to
                        // the templates and the one-route shortcut).
                        if index.uris.len() >= MAX_INDEXED_URIS && !index.uris.contains_key(&uri) {
                            continue;
                        }
                        let routes = index.uris.entry(uri).or_default();
                        if !routes.contains(&route.name) {
                            routes.push(route.name.clone());
                        }
                    }
                }
                items
            }
            _ => {
                let mut index = lock(&self.resources);
                for item in &items {
                    if let Some(template) = RawObject::parse(item.get())
                        .ok()
                        .and_then(|o| o.get_str("uriTemplate"))
                    {
                        let prefix = template.split('{').next().unwrap_or_default().to_owned();
                        if !index
                            .templates
                            .iter()
                            .any(|(p, r)| *p == prefix && *r == route.name)
                        {
                            index.templates.push((prefix, route.name.clone()));
                        }
                    }
                }
                items
            }
        }
    }

    /// Handles what a route reports outside any call.
    pub fn route_event(self: &Arc<Self>, event: RouteEvent) {
        match event {
            RouteEvent::Request {
                route,
                session,
                message,
            } => self.unrelated_request(&route, session.as_deref(), message),
            RouteEvent::Availability { route, up } => {
                self.forget_resources(&route);
                if let Some(rt) = self.route_named(&route) {
                    rt.lists.invalidate_all();
                }
                tracing::info!(route = %route, up, "route availability changed; telling clients their lists changed");
                for method in [
                    mcp::TOOLS_LIST_CHANGED,
                    mcp::PROMPTS_LIST_CHANGED,
                    mcp::RESOURCES_LIST_CHANGED,
                ] {
                    self.broadcast(&route, &jsonrpc::notification(method, None), |_| true);
                }
            }
            RouteEvent::Notification {
                route,
                session: Some(session),
                message,
            } if !mcp::is_route_wide(message.method())
                || message.method() == mcp::RESOURCES_UPDATED =>
            {
                self.to_owner(&route, &session, &message);
            }
            RouteEvent::Notification { route, message, .. } => match message.method() {
                mcp::TOOLS_LIST_CHANGED => {
                    self.list_changed(&route, mcp::TOOLS_LIST, mcp::TOOLS_LIST_CHANGED);
                }
                mcp::PROMPTS_LIST_CHANGED => {
                    self.list_changed(&route, mcp::PROMPTS_LIST, mcp::PROMPTS_LIST_CHANGED);
                }
                mcp::RESOURCES_LIST_CHANGED => {
                    self.forget_resources(&route);
                    if let Some(rt) = self.route_named(&route) {
                        rt.lists.invalidate(mcp::RESOURCE_TEMPLATES_LIST);
                    }
                    self.list_changed(&route, mcp::RESOURCES_LIST, mcp::RESOURCES_LIST_CHANGED);
                }
                mcp::RESOURCES_UPDATED => {
                    let uri = message
                        .params
                        .as_ref()
                        .and_then(|p| RawObject::parse(p.get()).ok())
                        .and_then(|p| p.get_str("uri"))
                        .unwrap_or_default();
                    self.broadcast(&route, &message.to_bytes(), |s| s.subscribed(&uri));
                }
                // A log the connector could not tie to one call may concern any client's
                // work: it stays in the gateway's log rather than going to every client.
                mcp::LOG_MESSAGE => {
                    let params = message.params.as_ref().map_or("", |p| p.get());
                    tracing::info!(route = %route, "tool server log: {params}");
                }
                other => {
                    tracing::debug!(route = %route, method = other, "notification from the tool server dropped");
                }
            },
        }
    }

    /// A notification from one client's own upstream session: to that client alone
    /// (a resource update only if it subscribed; a log message, which on a shared
    /// session could be anyone's, is surely its own).
    fn to_owner(&self, route: &str, session: &str, message: &Message) {
        let Some(owner) = self.sessions.by_id(session) else {
            return;
        };
        if !owner.is_initialized() || !owner.scope().contains(route) {
            return;
        }
        let wanted = match message.method() {
            mcp::RESOURCES_UPDATED => message
                .params
                .as_ref()
                .and_then(|p| RawObject::parse(p.get()).ok())
                .and_then(|p| p.get_str("uri"))
                .is_some_and(|uri| owner.subscribed(&uri)),
            mcp::LOG_MESSAGE | mcp::CANCELLED => true,
            _ => false,
        };
        if wanted {
            owner.push(message.to_bytes());
        }
    }

    /// A tool server's request that names no call (or that several calls could take):
    /// asked of one client of the route that can hear it (session era, initialized, a
    /// stream open: the GET stream, a legacy SSE or WebSocket stream, stdout), the one
    /// heard from last; refused when there is none. The answer goes back through
    /// [`Gateway::client_response`] like any other; unanswered, it is withdrawn after
    /// [`UNRELATED_ASK_TIMEOUT`] so that the ask does not outlive its use.
    fn unrelated_request(&self, route: &str, owner: Option<&str>, mut message: Message) {
        let Some(upstream_id) = message.id.clone() else {
            return;
        };
        let Some(rt) = self
            .table()
            .routes
            .iter()
            .find(|r| *r.name == *route)
            .cloned()
        else {
            return;
        };
        // From a client's own upstream session: that client, or no one.
        let candidates = match owner {
            Some(owner) => self.sessions.by_id(owner).into_iter().collect(),
            None => self.sessions.all(),
        };
        let client = candidates
            .into_iter()
            .filter(|s| {
                s.is_initialized()
                    && s.has_stream()
                    && version::era(s.version()) == Some(Era::Session)
                    && s.scope().contains(route)
            })
            .max_by_key(|s| s.last_seen());
        let key: Option<Arc<str>> = owner.map(Arc::from);
        let Some(session) = client else {
            tracing::warn!(
                route,
                method = message.method(),
                "tool server request that no client can answer; refused"
            );
            let refusal = error_object(
                code::METHOD_NOT_FOUND,
                "no client of mcp-edge can answer this request: none has a call in flight on this route that can take it, nor an open stream",
                None,
            );
            tokio::spawn(async move {
                rt.respond(key.as_ref(), &upstream_id, Reply::Error(refusal))
                    .await;
            });
            return;
        };
        let client_id = session.ask(Ask {
            route: rt,
            upstream_id,
        });
        message.id = Some(client_id.clone());
        if !session.push(message.to_bytes()) {
            session.answer(&client_id);
            return;
        }
        tracing::debug!(route, session = %crate::session::short_id(&session.id), "tool server request relayed to a client of the route");
        tokio::spawn(async move {
            tokio::time::sleep(UNRELATED_ASK_TIMEOUT).await;
            if let Some(ask) = session.answer(&client_id) {
                let refusal =
                    error_object(code::TIMEOUT, "the client did not answer in time", None);
                let key = ask.route.per_client.then(|| Arc::from(session.id.as_str()));
                ask.route
                    .respond(key.as_ref(), &ask.upstream_id, Reply::Error(refusal))
                    .await;
            }
        });
    }

    /// Tells every session that its lists may have changed (after a reload).
    pub fn lists_changed(&self) {
        for session in self.sessions.all() {
            if session.is_initialized() {
                for method in [
                    mcp::TOOLS_LIST_CHANGED,
                    mcp::PROMPTS_LIST_CHANGED,
                    mcp::RESOURCES_LIST_CHANGED,
                ] {
                    session.push(jsonrpc::notification(method, None));
                }
            }
        }
    }

    fn broadcast(&self, route: &str, message: &[u8], want: impl Fn(&Session) -> bool) {
        for session in self.sessions.all() {
            if session.is_initialized() && session.scope().contains(route) && want(&session) {
                session.push(message.to_vec());
            }
        }
    }

    fn forget_resources(&self, route: &str) {
        let mut index = lock(&self.resources);
        index.uris.retain(|_, routes| {
            routes.retain(|r| r != route);
            !routes.is_empty()
        });
        index.templates.retain(|(_, r)| r != route);
        index.learned = None;
    }
}

/// What a route reports outside any call, delivered to [`Gateway::route_event`].
#[derive(Debug)]
pub enum RouteEvent {
    /// The route came up or went down.
    Availability {
        /// The route.
        route: String,
        /// Up or down.
        up: bool,
    },
    /// A notification not tied to a call.
    Notification {
        /// The route.
        route: String,
        /// The client session whose own upstream session it came on, if any.
        session: Option<Arc<str>>,
        /// The notification.
        message: Message,
    },
    /// A request from the tool server that no call in flight could take.
    Request {
        /// The route.
        route: String,
        /// The client session whose own upstream session it came on, if any.
        session: Option<Arc<str>>,
        /// The request.
        message: Message,
    },
}

fn encode_cursor(route: usize, upstream: Option<&str>) -> String {
    URL_SAFE_NO_PAD.encode(json!([route, upstream]).to_string())
}

fn decode_cursor(cursor: &str) -> Option<(usize, Option<String>)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (route, upstream): (usize, Option<String>) = serde_json::from_slice(&bytes).ok()?;
    Some((route, upstream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_servers_hop_meta_stays_on_its_hop() {
        let raw = |t: &str| RawValue::from_string(t.to_owned()).unwrap();
        let result = without_hop_meta(raw(
            r#"{"content":[],"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"up"},"io.modelcontextprotocol/related-task":{"taskId":"t"}}}"#,
        ));
        assert_eq!(
            result.get(),
            r#"{"content":[],"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"t"}}}"#
        );
        let only = without_hop_meta(raw(
            r#"{"content":[],"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        ));
        assert_eq!(only.get(), r#"{"content":[]}"#);
        let plain = r#"{"content":[{"type":"text","text":"io.modelcontextprotocol/x"}]}"#;
        assert_eq!(without_hop_meta(raw(plain)).get(), plain);
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(
            decode_cursor(&encode_cursor(3, Some("abc"))),
            Some((3, Some("abc".into())))
        );
        assert_eq!(decode_cursor(&encode_cursor(0, None)), Some((0, None)));
        assert_eq!(decode_cursor("not a cursor"), None);
    }

    #[test]
    fn upstream_errors_name_the_route_and_reason() {
        let e = upstream_error(
            "docs",
            &UpstreamError::Unavailable {
                reason: "crashed".into(),
                retry_in: Some(Duration::from_millis(400)),
            },
        );
        let v: Value = serde_json::from_str(e.get()).unwrap();
        assert_eq!(v["code"], code::UPSTREAM_UNAVAILABLE);
        assert_eq!(v["data"]["route"], "docs");
        assert_eq!(v["data"]["reason"], "upstream_unavailable");
        assert_eq!(v["data"]["retry_after_ms"], 400);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("route `docs`: tool server unavailable: crashed")
        );
    }
}
