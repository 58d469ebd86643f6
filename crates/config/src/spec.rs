//! The routes file as written: serde structs that mirror `routes.toml` key for key.
//!
//! Every table denies unknown keys, so a typo (`tiemout`) is an error with its position
//! rather than a silently ignored setting. Values that later checks may refuse carry
//! their [`Spanned`] position so those checks can point at them too. Nothing here
//! decides anything; [`crate::model`] turns a spec into the validated model.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use crate::duration::HumanDuration;
use crate::secret::{MaybeSecret, SecretRef};

/// Who can reach a listener, or which network a tool server sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Boundary {
    /// The same machine: a child process, or a loopback address.
    Host,
    /// Inside the networks and domains listed in `[boundaries]`.
    Trusted,
    /// Anything else. TLS is required.
    Untrusted,
}

impl Boundary {
    /// The name used in routes.toml and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::Host => "host",
            Boundary::Trusted => "trusted",
            Boundary::Untrusted => "untrusted",
        }
    }
}

impl fmt::Display for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which MCP transport to speak to a network tool server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Detect it: Streamable HTTP (both eras), then legacy HTTP+SSE; `ws(s)://` is WebSocket.
    #[default]
    Auto,
    /// Streamable HTTP (2025-03-26 and later, including stateless 2026-07-28).
    StreamableHttp,
    /// Legacy HTTP+SSE (2024-11-05): `GET` an event stream, `POST` to its endpoint.
    Sse,
    /// JSON-RPC over WebSocket text frames, subprotocol `mcp`.
    Websocket,
}

impl Protocol {
    /// The name used in routes.toml and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Auto => "auto",
            Protocol::StreamableHttp => "streamable-http",
            Protocol::Sse => "sse",
            Protocol::Websocket => "websocket",
        }
    }
}

/// The whole routes file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesSpec {
    /// The gateway's own listeners.
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// What counts as trusted.
    #[serde(default)]
    pub boundaries: BoundariesSpec,
    /// Agents and the routes each may use.
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    /// Policies for every route that does not override them.
    #[serde(default)]
    pub defaults: PoliciesSpec,
    /// The tool servers.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSpec>,
    /// Virtual servers: named endpoints over chosen tools, prompts and resources.
    #[serde(default, rename = "server")]
    pub servers: Vec<ServerSpec>,
    /// Where certificate alerts go.
    #[serde(default)]
    pub alerts: AlertsSpec,
    /// Traces and logs.
    #[serde(default)]
    pub telemetry: TelemetrySpec,
}

/// `[[server]]`: a named endpoint (`/mcp/{name}`) exposing chosen tools, prompts and
/// resources across routes, with instructions of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Its name: the endpoint is `/mcp/{name}`.
    pub name: Spanned<String>,
    /// The tools it exposes: globs over `route__tool` names.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// The prompts it exposes: globs over `route__prompt` names.
    #[serde(default)]
    pub prompts: Vec<Spanned<String>>,
    /// The routes whose resources it exposes.
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
    /// What `initialize` tells clients about it.
    pub instructions: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    /// An Alertmanager-compatible alerts URL (`…/api/v2/alerts`).
    pub webhook: Option<Spanned<String>>,
    /// `/readyz` fails while a certificate in play is critical or expired.
    pub fail_readiness: Option<bool>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySpec {
    /// OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`); nothing is
    /// exported without it.
    pub otlp_endpoint: Option<Spanned<String>>,
    /// `service.name` of the exported spans.
    pub service_name: Option<String>,
    /// `text` (default) or `json` log lines.
    pub log_format: Option<Spanned<String>>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Where agents connect, `host:port`.
    pub listen: Option<Spanned<String>>,
    /// Where health and metrics are served, `host:port`.
    pub admin: Option<Spanned<String>>,
    /// Who can reach `listen`.
    pub boundary: Option<Spanned<Boundary>>,
    /// Why a boundary looser than the address suggests is right (an explicit opt-in).
    pub boundary_override: Option<Spanned<String>>,
    /// TLS for `listen`.
    pub tls: Option<Spanned<ListenerTlsSpec>>,
    /// Between a route's prefix and a tool's name in the aggregated `/mcp` server.
    pub name_separator: Option<Spanned<String>>,
    /// Browser origins allowed besides loopback ones (`Origin` checks, DNS rebinding).
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    /// The largest JSON-RPC message accepted from a client or a tool server, in bytes.
    pub max_message_bytes: Option<Spanned<i64>>,
    /// Admit requests without credentials (loopback listeners only, and no `[[clients]]`).
    pub allow_anonymous: Option<Spanned<bool>>,
    /// How long calls in flight may take to finish after SIGTERM.
    pub shutdown_grace: Option<Spanned<HumanDuration>>,
    /// Runtime worker threads (default: the cores available to the process).
    pub workers: Option<Spanned<i64>>,
    /// After I/O, keep polling this long before the runtime sleeps (`workers = 1` only).
    pub busy_poll: Option<Spanned<HumanDuration>>,
    /// What one client may hold of the listeners: timeouts and caps.
    pub limits: Option<Spanned<LimitsSpec>>,
}

/// `[gateway.limits]`: what a client (or many) can make the front door hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// A request head must arrive whole within this (HTTP/1.1; also how long a
    /// keep-alive connection may wait for its next request).
    pub header_timeout: Option<Spanned<HumanDuration>>,
    /// A request body must arrive whole within this.
    pub body_timeout: Option<Spanned<HumanDuration>>,
    /// A connection with no request for this long is closed (both HTTP versions).
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    /// Connections held at once, all clients together; past it new ones are closed.
    pub max_connections: Option<Spanned<i64>>,
    /// Connections held at once from one client address.
    pub max_connections_per_client: Option<Spanned<i64>>,
    /// Request bodies being read, in bytes, all connections together.
    pub max_buffered_bytes: Option<Spanned<i64>>,
    /// Requests in flight on one HTTP/2 connection.
    pub max_streams_per_connection: Option<Spanned<i64>>,
    /// Client sessions in the process.
    pub max_sessions: Option<Spanned<i64>>,
    /// Sessions one client (principal, or address when anonymous) may hold.
    pub max_sessions_per_client: Option<Spanned<i64>>,
    /// New sessions one client may open per second, sustained.
    pub new_sessions_per_second: Option<Spanned<i64>>,
    /// New sessions one client may open in a burst.
    pub new_sessions_burst: Option<Spanned<i64>>,
    /// A session that has not finished its handshake this long after it opened is ended.
    pub handshake_timeout: Option<Spanned<HumanDuration>>,
    /// Keep-alives on long-lived streams; `"0s"` turns them off.
    pub keepalive: Option<Spanned<HumanDuration>>,
}

/// `[gateway.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsSpec {
    /// PEM certificate chain.
    pub cert: Spanned<String>,
    /// PEM private key.
    pub key: Spanned<String>,
    /// PEM CA bundle; when set, clients must present a certificate it issued (mTLS).
    pub client_ca: Option<Spanned<String>>,
}

/// `[boundaries]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundariesSpec {
    /// CIDRs, IPv4 or IPv6, whose addresses are trusted.
    #[serde(default)]
    pub trusted_networks: Vec<Spanned<String>>,
    /// DNS suffixes whose names are trusted, such as `.svc.cluster.local`.
    #[serde(default)]
    pub trusted_domains: Vec<Spanned<String>>,
}

/// `[[clients]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// How the client is named in logs and metrics.
    pub name: Spanned<String>,
    /// The bearer token it presents.
    pub token: Option<Spanned<SecretRef>>,
    /// Or: a SAN (URI, DNS) or the CN of the client certificate it presents over mTLS.
    pub identity: Option<Spanned<String>>,
    /// The routes it may use; `"*"` means all.
    #[serde(default)]
    pub routes: Vec<Spanned<String>>,
    /// Of those routes' tools, only these (globs over `route__tool` names); all when
    /// absent.
    pub tools: Option<Vec<Spanned<String>>>,
}

/// Policies, in `[defaults]` or on a route. Every key is optional; a route's keys
/// override the defaults' one by one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesSpec {
    /// Per-call deadline.
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Each attempt's deadline (a retry is a new attempt).
    pub attempt_timeout: Option<Spanned<HumanDuration>>,
    /// How far progress notifications may extend a call's deadline, in all.
    pub max_timeout: Option<Spanned<HumanDuration>>,
    /// Retries.
    pub retry: Option<RetrySpec>,
    /// Circuit breaker.
    pub breaker: Option<BreakerSpec>,
    /// Token bucket.
    pub rate_limit: Option<RateLimitSpec>,
    /// In-flight bound and queue.
    pub concurrency: Option<ConcurrencySpec>,
}

/// `retry = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included; 1 disables retries.
    pub attempts: Option<Spanned<i64>>,
    /// First backoff (before jitter).
    pub base: Option<Spanned<HumanDuration>>,
    /// Largest backoff.
    pub max: Option<Spanned<HumanDuration>>,
    /// Retries may add at most this fraction of calls.
    pub budget: Option<Spanned<f64>>,
    /// Retries per second allowed whatever the traffic (the budget's floor).
    pub min_per_second: Option<Spanned<i64>>,
    /// Tools whose calls may be repeated although their annotations do not say so.
    pub idempotent_tools: Option<Vec<Spanned<String>>>,
}

/// `breaker = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: Option<Spanned<i64>>,
    /// Failure ratio over `window` that opens it.
    pub failure_ratio: Option<Spanned<f64>>,
    /// Calls in `window` before the ratio counts.
    pub min_calls: Option<Spanned<i64>>,
    /// The sliding window.
    pub window: Option<Spanned<HumanDuration>>,
    /// How long it stays open the first time.
    pub open_for: Option<Spanned<HumanDuration>>,
    /// The longest it stays open, however often it trips.
    pub max_open_for: Option<Spanned<HumanDuration>>,
    /// Calls let through while half-open; all must succeed to close it.
    pub probes: Option<Spanned<i64>>,
}

/// `rate_limit = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Sustained calls per second, for everyone together.
    pub per_second: Option<Spanned<i64>>,
    /// Calls allowed at once above the sustained rate.
    pub burst: Option<Spanned<i64>>,
    /// Each client's own bucket on this route.
    pub per_client: Option<Spanned<BucketSpec>>,
}

/// `per_client = { per_second = 20, burst = 10 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Sustained calls per second.
    pub per_second: Option<Spanned<i64>>,
    /// Calls allowed at once above the sustained rate.
    pub burst: Option<Spanned<i64>>,
}

/// `concurrency = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// Calls in flight at once.
    pub max_in_flight: Option<Spanned<i64>>,
    /// Calls waiting for a slot before new ones are refused as busy.
    pub queue: Option<Spanned<i64>>,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique name; the default tool prefix and the path in `/mcp/{route}`.
    pub name: Spanned<String>,
    /// A child process: a program, or a program and its arguments.
    pub command: Option<Spanned<StringOrList>>,
    /// More arguments after `command`: strings, or secret references resolved when the
    /// child starts (a credential the tool server takes only as an argument).
    #[serde(default)]
    pub args: Vec<MaybeSecret>,
    /// The child's environment (added to a minimal inherited one).
    #[serde(default)]
    pub env: BTreeMap<String, MaybeSecret>,
    /// The child's working directory.
    pub cwd: Option<Spanned<String>>,
    /// A network tool server: `http`, `https`, `ws` or `wss` URL.
    pub url: Option<Spanned<String>>,
    /// Several replicas of one Streamable HTTP tool server, balanced.
    pub urls: Option<Spanned<Vec<Spanned<String>>>>,
    /// A network tool server as `host:port`; the scheme follows from the boundary.
    pub address: Option<Spanned<String>>,
    /// Declared boundary, when inference is not what is wanted.
    pub boundary: Option<Spanned<Boundary>>,
    /// Why a boundary looser than the facts is right (an explicit opt-in).
    pub boundary_override: Option<Spanned<String>>,
    /// TLS to the tool server.
    pub tls: Option<Spanned<UpstreamTlsSpec>>,
    /// Credentials to the tool server.
    pub auth: Option<Spanned<UpstreamAuthSpec>>,
    /// Which MCP transport to speak.
    pub protocol: Option<Spanned<Protocol>>,
    /// Tool-name prefix in the aggregated server; `""` for none. Defaults to `name`.
    pub prefix: Option<Spanned<String>>,
    /// Which of the server's tools to expose.
    pub tools: Option<ToolFilterSpec>,
    /// When to warn about this route's certificates.
    pub cert_expiry: Option<CertExpirySpec>,
    /// `/readyz` fails while this route is not usable.
    pub required: Option<Spanned<bool>>,
    /// How often the tool server is pinged while nothing else shows it is alive;
    /// `"0s"` turns probing off.
    pub probe_interval: Option<Spanned<HumanDuration>>,
    /// `"per-client"`: an upstream session of its own for each client session;
    /// `"shared"`: one for all.
    pub sessions: Option<Spanned<String>>,
    /// The most upstream sessions (children, for a stdio route) held for clients.
    pub per_client_max: Option<Spanned<i64>>,
    /// Per-call deadline (overrides `[defaults]`).
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Each attempt's deadline (overrides `[defaults]`).
    pub attempt_timeout: Option<Spanned<HumanDuration>>,
    /// How far progress may extend a call (overrides `[defaults]`).
    pub max_timeout: Option<Spanned<HumanDuration>>,
    /// Retries (overrides `[defaults]` key by key).
    pub retry: Option<RetrySpec>,
    /// Circuit breaker (overrides `[defaults]` key by key).
    pub breaker: Option<BreakerSpec>,
    /// Token bucket (overrides `[defaults]` key by key).
    pub rate_limit: Option<RateLimitSpec>,
    /// In-flight bound (overrides `[defaults]` key by key).
    pub concurrency: Option<ConcurrencySpec>,
}

/// `tls = { ... }` on a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// PEM CA bundle to verify the server with, instead of the platform's roots.
    pub ca: Option<Spanned<String>>,
    /// PEM client certificate chain, for mTLS.
    pub client_cert: Option<Spanned<String>>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<Spanned<String>>,
    /// The name to verify instead of the URL's host.
    pub server_name: Option<Spanned<String>>,
    /// Turns verification off. Refused across an untrusted boundary.
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

/// `auth = { ... }` on a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamAuthSpec {
    /// `Authorization: Bearer …` sent to the tool server.
    pub bearer: Option<SecretRef>,
    /// Extra headers sent to the tool server.
    #[serde(default)]
    pub headers: BTreeMap<String, MaybeSecret>,
}

/// `tools = { include = [...], exclude = [...] }`: glob patterns with `*`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFilterSpec {
    /// Only tools matching one of these are exposed (all when empty).
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    /// Tools matching one of these are hidden.
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    /// Per tool, by its name at the tool server: `[route.tools.override.NAME]`.
    #[serde(default, rename = "override")]
    pub overrides: BTreeMap<String, Spanned<ToolOverrideSpec>>,
}

/// `[route.tools.override.NAME]`: how one tool is shown to clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolOverrideSpec {
    /// The name clients see (before the route's prefix).
    pub name: Option<Spanned<String>>,
    /// The description clients see.
    pub description: Option<Spanned<String>>,
    /// Hints set whatever the tool server says.
    pub annotations: Option<AnnotationsSpec>,
}

/// Tool annotations an override may set (the MCP `ToolAnnotations` hints).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnnotationsSpec {
    /// A human-readable title.
    pub title: Option<String>,
    /// The tool does not change its environment.
    pub read_only_hint: Option<bool>,
    /// The tool may make destructive updates.
    pub destructive_hint: Option<bool>,
    /// Calling it again with the same arguments has no further effect.
    pub idempotent_hint: Option<bool>,
    /// The tool reaches an open world (the internet, say).
    pub open_world_hint: Option<bool>,
}

/// `cert_expiry = { warn = "30d", critical = "7d" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertExpirySpec {
    /// Days-left threshold for a warning.
    pub warn: Option<Spanned<HumanDuration>>,
    /// Days-left threshold for a critical alert.
    pub critical: Option<Spanned<HumanDuration>>,
}

/// A string or a list of strings (`command = "server"` or `command = ["server", "--stdio"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a program, or a list of a program and its arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StringOrList(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}
