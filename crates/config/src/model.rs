//! The validated configuration: what the rest of mcp-edge runs on.
//!
//! Values here cannot be wrong in the ways the spec layer can: durations are
//! [`Duration`]s inside their ranges, counts are [`NonZeroU32`], URLs are parsed, CIDRs
//! and domains normalized, relative paths made absolute. Spans are kept only where a
//! later stage (the router's boundary checks) may still need to point into the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;
use url::Url;

use crate::diag::{Diagnostic, Span, Written};
use crate::duration::HumanDuration;
use crate::secret::{MaybeSecret, SecretRef};
use crate::spec::{
    self, Boundary, BreakerSpec, ConcurrencySpec, PoliciesSpec, Protocol, RateLimitSpec, RetrySpec,
    RouteSpec, RoutesSpec,
};

/// The default listener for agents.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default admin listener (health, metrics): loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
/// The default separator between a route prefix and a tool name.
pub const DEFAULT_SEPARATOR: &str = "__";

/// A validated routes file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway's listeners and naming.
    pub gateway: Gateway,
    /// What counts as trusted.
    pub trust: Trust,
    /// Agents and their grants.
    pub clients: Vec<Client>,
    /// The tool servers, in file order.
    pub routes: Vec<Route>,
    /// Virtual servers, in file order.
    pub servers: Vec<VirtualServer>,
    /// The routes file's directory; relative paths were resolved against it.
    pub base_dir: PathBuf,
    /// Where certificate alerts go.
    pub alerts: Alerts,
    /// Traces and logs.
    pub telemetry: Telemetry,
}

/// A virtual server (`[[server]]`): `/mcp/{name}` over chosen tools, prompts and
/// resources across routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// Its name and endpoint.
    pub name: String,
    /// The tools it exposes (globs over `route__tool` names).
    pub tools: Vec<Glob>,
    /// The prompts it exposes (globs over `route__prompt` names).
    pub prompts: Vec<Glob>,
    /// The routes whose resources it exposes.
    pub resources: Vec<String>,
    /// What `initialize` tells its clients.
    pub instructions: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    /// An Alertmanager-compatible alerts URL.
    pub webhook: Option<Url>,
    /// `/readyz` fails while a certificate in play is critical or expired.
    pub fail_readiness: bool,
}

/// `[telemetry]`.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// OTLP/HTTP traces endpoint.
    pub otlp_endpoint: Option<Url>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// JSON log lines instead of text.
    pub json_logs: bool,
}

/// `[gateway]`.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Where agents connect.
    pub listen: Listener,
    /// Where health and metrics are served.
    pub admin: SocketAddr,
    /// Where `admin` was written, if it was.
    pub admin_span: Option<Span>,
    /// Between a route prefix and a tool name.
    pub name_separator: String,
    /// Origins allowed besides loopback ones, normalized (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// The largest message accepted, in bytes.
    pub max_message_bytes: usize,
    /// How long calls in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Runtime worker threads; `None`: one per core available to the process.
    pub workers: Option<usize>,
    /// After I/O progress, how long a current-thread runtime keeps polling before it
    /// sleeps; zero (the default): it sleeps at once.
    pub busy_poll: Duration,
    /// Requests without credentials are admitted (with every route).
    pub allow_anonymous: bool,
    /// Where `allow_anonymous` was written.
    pub allow_anonymous_span: Option<Span>,
    /// What clients may make the listeners hold.
    pub limits: FrontLimits,
}

/// `[gateway.limits]`: timeouts and caps at the front door, so that no client (or
/// crowd of them) can hold the listener's connections, memory or file descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontLimits {
    /// A request head must arrive whole within this; an HTTP/1.1 keep-alive connection
    /// waits this long for its next request.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this.
    pub body_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections at once, all clients together.
    pub max_connections: usize,
    /// Connections at once from one client address.
    pub max_connections_per_client: usize,
    /// Request bodies being read at once, in bytes.
    pub max_buffered_bytes: usize,
    /// Requests in flight on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// Client sessions in the process.
    pub max_sessions: usize,
    /// Sessions one client (principal, or address when anonymous) may hold.
    pub max_sessions_per_client: usize,
    /// New sessions one client may open per second, sustained.
    pub new_sessions_per_second: u32,
    /// New sessions one client may open in a burst.
    pub new_sessions_burst: u32,
    /// A session that has not finished its handshake this long after it opened is ended.
    pub handshake_timeout: Duration,
    /// How often a long-lived stream that has nothing to say says so anyway (an SSE
    /// comment on GET and POST streams, a ping on WebSockets), so that load balancers
    /// with an idle timeout keep it; `None`: never (`"0s"`).
    pub keepalive: Option<Duration>,
}

impl Default for FrontLimits {
    fn default() -> Self {
        FrontLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_connections_per_client: 512,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_streams_per_connection: 128,
            max_sessions: 100_000,
            max_sessions_per_client: 1_000,
            new_sessions_per_second: 20,
            new_sessions_burst: 100,
            handshake_timeout: Duration::from_secs(60),
            keepalive: Some(Duration::from_secs(15)),
        }
    }
}

/// The longest `[gateway] busy_poll`: past it a spin costs more than any sleep it saves.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(10);

/// The default largest message: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// A listener for agents.
#[derive(Debug, Clone)]
pub struct Listener {
    /// The socket address.
    pub addr: SocketAddr,
    /// Where it was written, if it was.
    pub span: Option<Span>,
    /// The boundary the file declares, if any.
    pub declared: Option<Declared>,
    /// TLS, if configured.
    pub tls: Option<ListenerTls>,
}

/// A boundary written in the file rather than inferred.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Declared {
    /// The declared boundary.
    pub boundary: Boundary,
    /// Where it was written.
    pub span: Written,
    /// The opt-in that allows it to be looser than the facts, with its reason.
    pub override_reason: Option<String>,
}

/// `[gateway.tls]`.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Where the `tls` table was written.
    pub span: Span,
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
    /// Client CA bundle; requires client certificates when set.
    pub client_ca: Option<PathBuf>,
}

/// `[boundaries]`, normalized.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Trusted networks.
    pub networks: Vec<IpNet>,
    /// Trusted DNS suffixes, lowercase ASCII (IDNs in punycode), without leading or
    /// trailing dots. A suffix matches itself and every name under it, on label boundaries.
    pub domains: Vec<String>,
}

/// `[[clients]]`.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's name.
    pub name: String,
    /// How it proves who it is.
    pub credential: Credential,
    /// Where the credential was written.
    pub token_span: Span,
    /// The routes it may use.
    pub routes: Grant,
    /// Of those routes' tools, only these (globs over `route__tool` names); `None`:
    /// all.
    pub tools: Option<Vec<Glob>>,
}

/// How a client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token, stored where the reference says.
    Token(SecretRef),
    /// A client certificate (verified against `[gateway.tls] client_ca`) carrying this
    /// identity, of this kind.
    Identity(Identity),
}

/// What a client certificate must carry to be a client: one identity of one kind.
/// A URI SAN matches only URI SANs, a DNS name only DNS SANs, and the common name is
/// matched only when `identity` says `cn:` (a CN is free text any subject can hold).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// `spiffe://…` or any `scheme://…` (or `uri:…`): a URI SAN.
    Uri(String),
    /// `name.example` (or `dns:name.example`): a DNS SAN, case-insensitive.
    Dns(String),
    /// `cn:NAME`: the subject's common name.
    CommonName(String),
}

impl Identity {
    /// Reads `identity = "…"`; why it cannot be, otherwise.
    pub fn parse(written: &str) -> Result<Identity, String> {
        let written = written.trim();
        let valid_dns = |name: &str| {
            !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if let Some(cn) = written.strip_prefix("cn:") {
            return match cn.trim() {
                "" => Err("`cn:` names no common name".to_owned()),
                cn => Ok(Identity::CommonName(cn.to_owned())),
            };
        }
        if let Some(uri) = written.strip_prefix("uri:") {
            return match uri.trim() {
                "" => Err("`uri:` names no URI".to_owned()),
                uri => Ok(Identity::Uri(uri.to_owned())),
            };
        }
        if let Some(dns) = written.strip_prefix("dns:") {
            let dns = dns.trim().to_ascii_lowercase();
            return if valid_dns(&dns) {
                Ok(Identity::Dns(dns))
            } else {
                Err(format!("`{dns}` is not a DNS name"))
            };
        }
        if written.contains("://") {
            return Ok(Identity::Uri(written.to_owned()));
        }
        let dns = written.to_ascii_lowercase();
        if valid_dns(&dns) {
            return Ok(Identity::Dns(dns));
        }
        Err(format!(
            "`{written}` is neither a URI nor a DNS name; a certificate's common name is written cn:{written}"
        ))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Uri(uri) => f.write_str(uri),
            Identity::Dns(name) => write!(f, "dns:{name}"),
            Identity::CommonName(cn) => write!(f, "cn:{cn}"),
        }
    }
}

/// Which routes a client may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every route (`routes = ["*"]`).
    All,
    /// The named routes.
    Only(Vec<String>),
}

impl Grant {
    /// Whether the grant includes `route`.
    pub fn allows(&self, route: &str) -> bool {
        match self {
            Grant::All => true,
            Grant::Only(routes) => routes.iter().any(|r| r == route),
        }
    }
}

/// `[[route]]`.
///
/// Equal routes run the same way: positions in the file ([`Written`]) are equal by
/// construction, so `Eq` and `Hash` see only what the route says (a reload keeps a
/// route whose configuration did not change, wherever it moved in the file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Unique name.
    pub name: String,
    /// Where the name was written.
    pub name_span: Written,
    /// Where the tool server is.
    pub endpoint: Endpoint,
    /// Where the endpoint was written.
    pub endpoint_span: Written,
    /// More replicas of the same tool server (from `urls`), after the one in
    /// `endpoint`; calls are balanced across them all.
    pub more_urls: Vec<Url>,
    /// The boundary the file declares, if any.
    pub declared: Option<Declared>,
    /// TLS to the tool server.
    pub tls: Option<UpstreamTls>,
    /// Credentials to the tool server.
    pub auth: UpstreamAuth,
    /// The transport hint and where it was written.
    pub protocol: Protocol,
    /// Where `protocol` was written.
    pub protocol_span: Written<Option<Span>>,
    /// Tool naming in the aggregated server.
    pub naming: Naming,
    /// Certificate-expiry thresholds.
    pub cert_expiry: CertExpiry,
    /// Effective policies: the route's keys over `[defaults]` over built-in defaults.
    pub policies: Policies,
    /// `/readyz` fails while this route is not usable.
    pub required: bool,
    /// How often the tool server is probed (`ping`); `None`: never.
    pub probe_interval: Option<Duration>,
    /// An upstream session per client session (`sessions = "per-client"`), rather
    /// than one shared by every client: for a stdio route, a child per client.
    pub per_client: bool,
    /// The most upstream sessions (children, for a stdio route) held for clients at
    /// once.
    pub per_client_max: usize,
}

/// Where a tool server is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A child process spoken to over stdio.
    Command(Command),
    /// A URL with a scheme.
    Url(Url),
    /// `host:port`; the scheme follows from the boundary.
    Address {
        /// The host, normalized as a URL host would be.
        host: url::Host,
        /// The port.
        port: u16,
    },
}

/// A child process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: String,
    /// Its arguments: the words of `command` after the program, then `args`.
    pub args: Vec<MaybeSecret>,
    /// Environment variables set for it.
    pub env: BTreeMap<String, MaybeSecret>,
    /// Its working directory, absolute.
    pub cwd: Option<PathBuf>,
}

/// TLS to a tool server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Where the `tls` table was written.
    pub span: Written,
    /// CA bundle, instead of the platform's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for mTLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The name to verify instead of the URL's host.
    pub server_name: Option<String>,
    /// Verification switched off.
    pub insecure_skip_verify: bool,
    /// Where `insecure_skip_verify` was written, if it was.
    pub insecure_span: Written<Option<Span>>,
}

/// Credentials sent to a tool server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamAuth {
    /// Where the `auth` table was written.
    pub span: Written<Option<Span>>,
    /// `Authorization: Bearer …`.
    pub bearer: Option<SecretRef>,
    /// Extra headers, names lowercase.
    pub headers: BTreeMap<String, MaybeSecret>,
}

impl UpstreamAuth {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.headers.is_empty()
    }
}

/// How a route's tools are named and filtered in the aggregated server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Naming {
    /// The prefix; empty for none.
    pub prefix: String,
    /// Where the prefix came from (the `prefix` key, or else the route's name).
    pub prefix_span: Written,
    /// Only tools matching one of these (all when empty).
    pub include: Vec<Glob>,
    /// Tools matching one of these are hidden.
    pub exclude: Vec<Glob>,
    /// How tools are shown, by their name at the tool server.
    pub overrides: BTreeMap<String, ToolOverride>,
}

impl Naming {
    /// Whether a tool of this route is exposed (by its name at the tool server).
    pub fn exposes(&self, tool: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(tool)))
            && !self.exclude.iter().any(|g| g.matches(tool))
    }

    /// The name clients see for a tool (before the route's prefix).
    pub fn shown<'a>(&'a self, tool: &'a str) -> &'a str {
        self.overrides
            .get(tool)
            .and_then(|o| o.name.as_deref())
            .unwrap_or(tool)
    }

    /// The tool server's name behind a name a client used (before the route's
    /// prefix); `None` when no exposed tool is shown by that name.
    pub fn upstream<'a>(&'a self, shown: &'a str) -> Option<&'a str> {
        let renamed = self
            .overrides
            .iter()
            .find(|(_, o)| o.name.as_deref() == Some(shown))
            .map(|(tool, _)| tool.as_str());
        let tool = match renamed {
            Some(tool) => tool,
            // A tool renamed away is not reachable by its old name.
            None if self.shown(shown) != shown => return None,
            None => shown,
        };
        self.exposes(tool).then_some(tool)
    }
}

/// How one tool is shown to clients (`[route.tools.override.NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ToolOverride {
    /// The name clients see, instead of the tool server's.
    pub name: Option<String>,
    /// The description clients see.
    pub description: Option<String>,
    /// Annotations set whatever the tool server says: `title` as a string, the hints
    /// (`readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`) as
    /// booleans, in that order of keys.
    pub annotations: Vec<(&'static str, AnnotationValue)>,
}

/// An annotation's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnnotationValue {
    /// `title`.
    Text(String),
    /// A hint.
    Flag(bool),
}

/// A glob where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob(String);

impl Glob {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// Certificate-expiry thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertExpiry {
    /// Warn when fewer than this remain.
    pub warn: Duration,
    /// Critical when fewer than this remain.
    pub critical: Duration,
}

/// Effective policies of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policies {
    /// Per-call deadline; each progress notification moves it to `timeout` later.
    pub timeout: Duration,
    /// Each attempt's deadline.
    pub attempt_timeout: Duration,
    /// The furthest progress may move a call's deadline, from its start.
    pub max_timeout: Duration,
    /// Retries.
    pub retry: Retry,
    /// Circuit breaker.
    pub breaker: Breaker,
    /// Token buckets.
    pub rate_limit: RateLimit,
    /// In-flight bound.
    pub concurrency: Concurrency,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: NonZeroU32,
    /// First backoff.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
    /// Fraction of calls retries may add.
    pub budget: Fraction,
    /// Retries per second allowed whatever the traffic.
    pub min_per_second: u32,
    /// Tools that may be repeated although their annotations do not say so.
    pub idempotent_tools: Vec<Glob>,
}

/// A number validated to lie in a closed range of finite values (a ratio, a budget):
/// never NaN, so it is `Eq` and `Hash` like the rest of the model.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Fraction(f64);

impl Fraction {
    /// `value`, if it is finite.
    pub fn new(value: f64) -> Option<Fraction> {
        value.is_finite().then_some(Fraction(value))
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

// Never NaN (see `new`): equality is reflexive.
impl Eq for Fraction {}

impl std::hash::Hash for Fraction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // 0.0 and -0.0 are equal; hash them alike.
        (self.0 + 0.0).to_bits().hash(state);
    }
}

/// Circuit-breaker policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Breaker {
    /// Consecutive failures that open it.
    pub consecutive_failures: NonZeroU32,
    /// Failure ratio over the window that opens it.
    pub failure_ratio: Fraction,
    /// Calls in the window before the ratio counts.
    pub min_calls: NonZeroU32,
    /// Sliding window.
    pub window: Duration,
    /// First open period.
    pub open_for: Duration,
    /// Longest open period.
    pub max_open_for: Duration,
    /// Calls let through while half-open.
    pub probes: NonZeroU32,
}

/// Rate limits of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RateLimit {
    /// Everyone's calls together.
    pub route: Option<Bucket>,
    /// Each client's (principal's) own calls.
    pub per_client: Option<Bucket>,
}

/// A token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Sustained calls per second.
    pub per_second: NonZeroU32,
    /// Burst size.
    pub burst: NonZeroU32,
}

/// Concurrency bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concurrency {
    /// Calls in flight at once.
    pub max_in_flight: NonZeroU32,
    /// Calls that may wait for a slot.
    pub queue: u32,
}

/// Turns a parsed spec into a validated [`Config`], collecting every problem.
///
/// The configuration is returned even when there are errors, with the routes and
/// clients that had them left out, so that later stages (the router) can report their
/// problems too. Only a configuration with no error diagnostic may be run:
/// [`crate::parse`] enforces that.
pub fn validate(spec: RoutesSpec, base_dir: &Path) -> (Config, Vec<Diagnostic>) {
    let mut v = Validator {
        diags: Vec::new(),
        seen: HashSet::new(),
        base_dir,
    };
    let gateway = v.gateway(spec.gateway);
    let trust = v.trust(spec.boundaries);
    let separator = gateway.name_separator.clone();
    // Validate the defaults once on their own, so that a bad default is reported even
    // when no route uses it.
    let _ = v.policies(&PolicyView::defaults_only(&spec.defaults));
    let routes: Vec<Route> = spec
        .routes
        .into_iter()
        .filter_map(|route| v.route(route, &spec.defaults, &separator))
        .collect();
    let routes = v.unique_routes(routes);
    let clients = v.clients(spec.clients, &routes);
    let servers = v.servers(spec.servers, &routes, &separator);
    let alerts = Alerts {
        webhook: spec
            .alerts
            .webhook
            .as_ref()
            .and_then(|w| v.http_url(w, "alerts.webhook")),
        fail_readiness: spec.alerts.fail_readiness.unwrap_or(false),
    };
    let telemetry = Telemetry {
        otlp_endpoint: spec
            .telemetry
            .otlp_endpoint
            .as_ref()
            .and_then(|e| v.http_url(e, "telemetry.otlp_endpoint")),
        service_name: spec
            .telemetry
            .service_name
            .clone()
            .unwrap_or_else(|| "mcp-edge".into()),
        json_logs: match &spec.telemetry.log_format {
            None => false,
            Some(f) if f.get_ref() == "text" => false,
            Some(f) if f.get_ref() == "json" => true,
            Some(f) => {
                v.error(
                    Some(f.span()),
                    format!("log_format `{}` is not known", f.get_ref()),
                    "use \"text\" or \"json\"",
                );
                false
            }
        },
    };
    let config = Config {
        gateway,
        trust,
        clients,
        routes,
        servers,
        base_dir: base_dir.to_path_buf(),
        alerts,
        telemetry,
    };
    (config, v.diags)
}

struct Validator<'a> {
    diags: Vec<Diagnostic>,
    /// A bad `[defaults]` value is met once per route; it is reported once.
    seen: HashSet<(Option<Span>, String)>,
    base_dir: &'a Path,
}

/// One route's policy keys seen together with `[defaults]`.
struct PolicyView<'a> {
    timeout: [Option<&'a Spanned<HumanDuration>>; 2],
    attempt_timeout: [Option<&'a Spanned<HumanDuration>>; 2],
    max_timeout: [Option<&'a Spanned<HumanDuration>>; 2],
    retry: [Option<&'a RetrySpec>; 2],
    breaker: [Option<&'a BreakerSpec>; 2],
    rate_limit: [Option<&'a RateLimitSpec>; 2],
    concurrency: [Option<&'a ConcurrencySpec>; 2],
}

impl<'a> PolicyView<'a> {
    fn defaults_only(defaults: &'a PoliciesSpec) -> Self {
        PolicyView {
            timeout: [None, defaults.timeout.as_ref()],
            attempt_timeout: [None, defaults.attempt_timeout.as_ref()],
            max_timeout: [None, defaults.max_timeout.as_ref()],
            retry: [None, defaults.retry.as_ref()],
            breaker: [None, defaults.breaker.as_ref()],
            rate_limit: [None, defaults.rate_limit.as_ref()],
            concurrency: [None, defaults.concurrency.as_ref()],
        }
    }

    fn route(route: &'a RouteSpec, defaults: &'a PoliciesSpec) -> Self {
        PolicyView {
            timeout: [route.timeout.as_ref(), defaults.timeout.as_ref()],
            attempt_timeout: [
                route.attempt_timeout.as_ref(),
                defaults.attempt_timeout.as_ref(),
            ],
            max_timeout: [route.max_timeout.as_ref(), defaults.max_timeout.as_ref()],
            retry: [route.retry.as_ref(), defaults.retry.as_ref()],
            breaker: [route.breaker.as_ref(), defaults.breaker.as_ref()],
            rate_limit: [route.rate_limit.as_ref(), defaults.rate_limit.as_ref()],
            concurrency: [route.concurrency.as_ref(), defaults.concurrency.as_ref()],
        }
    }
}

/// The first of (route, defaults) that sets a key.
fn pick<'a, T, V>(
    tables: [Option<&'a T>; 2],
    key: impl Fn(&'a T) -> Option<&'a V>,
) -> Option<&'a V> {
    tables.into_iter().flatten().find_map(key)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

impl Validator<'_> {
    fn push(&mut self, d: Diagnostic, help: &str) {
        let d = if help.is_empty() { d } else { d.help(help) };
        if self.seen.insert((d.span.clone(), d.message.clone())) {
            self.diags.push(d);
        }
    }

    fn error(&mut self, span: impl Into<Option<Span>>, message: impl Into<String>, help: &str) {
        self.push(Diagnostic::error(span, message), help);
    }

    fn warning(&mut self, span: impl Into<Option<Span>>, message: impl Into<String>, help: &str) {
        self.push(Diagnostic::warning(span, message), help);
    }

    fn path(&self, written: &str) -> PathBuf {
        let path = Path::new(written);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    fn socket_addr(
        &mut self,
        value: Option<&Spanned<String>>,
        default: &str,
        key: &str,
    ) -> SocketAddr {
        let fallback: SocketAddr = default
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let Some(value) = value else {
            return fallback;
        };
        match value.get_ref().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.error(
                    value.span(),
                    format!("`{}` is not an IP address and port", value.get_ref()),
                    &format!("write {key} = \"127.0.0.1:8080\" (loopback), \"0.0.0.0:8080\" (every IPv4 interface) or \"[::]:8080\""),
                );
                fallback
            }
        }
    }

    fn declared(
        &mut self,
        boundary: Option<Spanned<Boundary>>,
        override_reason: Option<Spanned<String>>,
    ) -> Option<Declared> {
        let reason = override_reason.and_then(|r| {
            if r.get_ref().trim().is_empty() {
                self.error(
                    r.span(),
                    "boundary_override is empty",
                    "say why the looser boundary is right, e.g. boundary_override = \"traffic goes through the partner VPN\"",
                );
                None
            } else {
                Some((r.span(), r.into_inner()))
            }
        });
        match (boundary, reason) {
            (Some(b), reason) => Some(Declared {
                boundary: *b.get_ref(),
                span: Written(b.span()),
                override_reason: reason.map(|(_, r)| r),
            }),
            (None, Some((span, _))) => {
                self.error(
                    span,
                    "boundary_override has no boundary to apply to",
                    "set `boundary` too, or remove boundary_override",
                );
                None
            }
            (None, None) => None,
        }
    }

    // Long: one validated key after another, in the schema's order (spec.rs); split, the
    // schema would be scattered over functions that each read part of it
    fn gateway(&mut self, spec: spec::GatewaySpec) -> Gateway {
        let listen_addr = self.socket_addr(spec.listen.as_ref(), DEFAULT_LISTEN, "listen");
        let admin = self.socket_addr(spec.admin.as_ref(), DEFAULT_ADMIN, "admin");
        if spec.admin.is_some() && admin == listen_addr && admin.port() != 0 {
            let span = spec.admin.as_ref().map(Spanned::span);
            self.error(
                span,
                "admin and listen use the same address",
                "give the admin listener a port of its own, e.g. admin = \"127.0.0.1:9090\"",
            );
        }
        let declared = self.declared(spec.boundary, spec.boundary_override);
        let tls = spec.tls.map(|tls| {
            let span = tls.span();
            let tls = tls.into_inner();
            ListenerTls {
                span,
                cert: self.path(tls.cert.get_ref()),
                key: self.path(tls.key.get_ref()),
                client_ca: tls.client_ca.map(|ca| self.path(ca.get_ref())),
            }
        });
        let name_separator = match spec.name_separator {
            None => DEFAULT_SEPARATOR.to_owned(),
            Some(sep) => {
                let s = sep.get_ref();
                let ok = !s.is_empty()
                    && s.len() <= 8
                    && s.chars().all(is_name_char)
                    && s.chars().any(|c| !c.is_ascii_alphanumeric());
                if !ok {
                    self.error(
                        sep.span(),
                        format!("`{s}` cannot separate route prefixes from tool names"),
                        "use 1 to 8 of the characters tool names allow (letters, digits, _ - .), at least one of them not a letter or digit, e.g. \"__\" or \".\"",
                    );
                }
                sep.into_inner()
            }
        };
        let mut allowed_origins = Vec::new();
        for origin in &spec.allowed_origins {
            match Url::parse(origin.get_ref()) {
                Ok(url) if url.host().is_some() && url.path() == "/" && url.query().is_none() => {
                    allowed_origins.push(url.origin().ascii_serialization());
                }
                _ => self.error(
                    origin.span(),
                    format!("`{}` is not an origin", origin.get_ref()),
                    "write scheme://host[:port] with no path, e.g. \"https://console.example.com\"",
                ),
            }
        }
        let max_message_bytes = match &spec.max_message_bytes {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(v) => self.int(Some(v), 0, 1024, 256 * 1024 * 1024, "max_message_bytes") as usize,
        };
        let workers = spec
            .workers
            .as_ref()
            .map(|w| self.int(Some(w), 1, 1, 1024, "workers") as usize);
        let busy_poll = self.duration(
            spec.busy_poll.as_ref(),
            Duration::ZERO,
            Duration::ZERO,
            MAX_BUSY_POLL,
            "busy_poll",
        );
        if let (Some(span), Some(n @ 2..)) = (spec.busy_poll.as_ref().map(Spanned::span), workers)
            && !busy_poll.is_zero()
        {
            self.warning(
                span,
                format!("busy_poll takes effect only with workers = 1, not {n}"),
                "set workers = 1, or remove busy_poll",
            );
        }
        Gateway {
            listen: Listener {
                addr: listen_addr,
                span: spec.listen.map(|l| l.span()),
                declared,
                tls,
            },
            admin,
            admin_span: spec.admin.map(|a| a.span()),
            name_separator,
            allowed_origins,
            max_message_bytes: max_message_bytes.max(1024),
            shutdown_grace: self.duration(
                spec.shutdown_grace.as_ref(),
                20 * SECOND,
                Duration::ZERO,
                HOUR,
                "shutdown_grace",
            ),
            workers,
            busy_poll,
            allow_anonymous: spec.allow_anonymous.as_ref().is_some_and(|a| *a.get_ref()),
            allow_anonymous_span: spec.allow_anonymous.as_ref().map(Spanned::span),
            limits: self.front_limits(&spec.limits.map(Spanned::into_inner).unwrap_or_default()),
        }
    }

    // Long: one validated key after another, in the schema's order (spec.rs)
    fn front_limits(&mut self, spec: &spec::LimitsSpec) -> FrontLimits {
        let d = FrontLimits::default();
        let limits = FrontLimits {
            header_timeout: self.duration(
                spec.header_timeout.as_ref(),
                d.header_timeout,
                SECOND,
                5 * MINUTE,
                "limits.header_timeout",
            ),
            body_timeout: self.duration(
                spec.body_timeout.as_ref(),
                d.body_timeout,
                SECOND,
                HOUR,
                "limits.body_timeout",
            ),
            idle_timeout: self.duration(
                spec.idle_timeout.as_ref(),
                d.idle_timeout,
                SECOND,
                24 * HOUR,
                "limits.idle_timeout",
            ),
            max_connections: spec
                .max_connections
                .as_ref()
                .map_or(d.max_connections, |v| {
                    self.int(Some(v), 0, 1, 1_000_000, "limits.max_connections") as usize
                }),
            max_connections_per_client: spec.max_connections_per_client.as_ref().map_or(
                d.max_connections_per_client,
                |v| {
                    self.int(
                        Some(v),
                        0,
                        1,
                        1_000_000,
                        "limits.max_connections_per_client",
                    ) as usize
                },
            ),
            max_buffered_bytes: spec
                .max_buffered_bytes
                .as_ref()
                .map_or(d.max_buffered_bytes, |v| {
                    self.int(Some(v), 0, 1 << 20, u32::MAX, "limits.max_buffered_bytes") as usize
                }),
            max_streams_per_connection: spec
                .max_streams_per_connection
                .as_ref()
                .map_or(d.max_streams_per_connection, |v| {
                    self.int(Some(v), 0, 1, 10_000, "limits.max_streams_per_connection")
                }),
            max_sessions: spec.max_sessions.as_ref().map_or(d.max_sessions, |v| {
                self.int(Some(v), 0, 1, 10_000_000, "limits.max_sessions") as usize
            }),
            max_sessions_per_client: spec
                .max_sessions_per_client
                .as_ref()
                .map_or(d.max_sessions_per_client, |v| {
                    self.int(Some(v), 0, 1, 10_000_000, "limits.max_sessions_per_client") as usize
                }),
            new_sessions_per_second: spec
                .new_sessions_per_second
                .as_ref()
                .map_or(d.new_sessions_per_second, |v| {
                    self.int(Some(v), 0, 1, 1_000_000, "limits.new_sessions_per_second")
                }),
            new_sessions_burst: spec
                .new_sessions_burst
                .as_ref()
                .map_or(d.new_sessions_burst, |v| {
                    self.int(Some(v), 0, 1, 1_000_000, "limits.new_sessions_burst")
                }),
            handshake_timeout: self.duration(
                spec.handshake_timeout.as_ref(),
                d.handshake_timeout,
                SECOND,
                HOUR,
                "limits.handshake_timeout",
            ),
            keepalive: match &spec.keepalive {
                None => d.keepalive,
                Some(k) if k.get_ref().get().is_zero() => None,
                Some(k) => Some(self.duration(
                    Some(k),
                    Duration::from_secs(15),
                    SECOND,
                    10 * 60 * SECOND,
                    "limits.keepalive",
                )),
            },
        };
        if limits.max_connections_per_client > limits.max_connections
            && let Some(v) = &spec.max_connections_per_client
        {
            self.warning(
                    v.span(),
                    "limits.max_connections_per_client is above limits.max_connections, so one client can take every connection",
                    "set it well below max_connections",
                );
        }
        limits
    }

    fn trust(&mut self, spec: spec::BoundariesSpec) -> Trust {
        let mut trust = Trust::default();
        for net in spec.trusted_networks {
            match net.get_ref().parse::<IpNet>() {
                Ok(parsed) => {
                    if parsed.prefix_len() == 0 {
                        self.warning(
                            net.span(),
                            format!("trusted network {parsed} trusts every address, so no endpoint is ever untrusted"),
                            "list the networks you actually control, e.g. \"10.0.0.0/8\"",
                        );
                    } else if parsed.trunc() != parsed {
                        self.warning(
                            net.span(),
                            format!("{parsed} has host bits set; it means {}", parsed.trunc()),
                            &format!("write \"{}\"", parsed.trunc()),
                        );
                    }
                    trust.networks.push(parsed.trunc());
                }
                Err(_) => self.error(
                    net.span(),
                    format!("`{}` is not a CIDR network", net.get_ref()),
                    "write an address and a prefix length, such as \"10.0.0.0/8\" or \"fd00::/8\"",
                ),
            }
        }
        for domain in spec.trusted_domains {
            match normalize_domain(domain.get_ref()) {
                Ok(normalized) => {
                    if !normalized.contains('.') {
                        self.warning(
                            domain.span(),
                            format!("trusted domain `{}` is a single label: every name under .{normalized} is trusted", domain.get_ref()),
                            "prefer the narrowest suffix you control, e.g. \".svc.cluster.local\"",
                        );
                    }
                    trust.domains.push(normalized);
                }
                Err(why) => self.error(
                    domain.span(),
                    format!("`{}` is not a DNS suffix: {why}", domain.get_ref()),
                    "write a suffix such as \".svc.cluster.local\" or \"corp.example.com\"",
                ),
            }
        }
        trust
    }

    // Long: one validated key after another, in the schema's order (spec.rs)
    fn route(
        &mut self,
        spec: RouteSpec,
        defaults: &PoliciesSpec,
        separator: &str,
    ) -> Option<Route> {
        let errors_before = self.error_count();
        let name = spec.name.get_ref().clone();
        let name_span = spec.name.span();
        if !valid_route_name(&name) {
            self.error(
                name_span.clone(),
                format!("route name `{name}` is not allowed"),
                "use 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit (it appears in URLs and metrics)",
            );
        }
        let policies = self.policies(&PolicyView::route(&spec, defaults));
        let required = spec.required.as_ref().is_some_and(|r| *r.get_ref());
        let probe_interval = match &spec.probe_interval {
            None => Some(15 * SECOND),
            Some(d) if d.get_ref().get().is_zero() => None,
            Some(d) => Some(self.duration(Some(d), 15 * SECOND, SECOND, HOUR, "probe_interval")),
        };
        let cert_expiry = self.cert_expiry(spec.cert_expiry.as_ref());
        let naming = self.naming(&spec, separator);
        let (endpoint, endpoint_span) = self.endpoint(&spec)?;
        let more_urls = self.more_urls(&spec, &endpoint);

        if let Endpoint::Command(_) = endpoint {
            for (what, span) in [
                ("tls", spec.tls.as_ref().map(Spanned::span)),
                ("auth", spec.auth.as_ref().map(Spanned::span)),
                ("protocol", spec.protocol.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.error(
                        span,
                        format!("`{what}` has no effect on a command route (it speaks stdio to a child process)"),
                        &format!("remove `{what}`, or use `url` for a network tool server"),
                    );
                }
            }
        } else if !spec.args.is_empty() || !spec.env.is_empty() || spec.cwd.is_some() {
            self.error(
                endpoint_span.clone(),
                "`args`, `env` and `cwd` apply only to command routes",
                "remove them, or use `command` to launch the tool server as a child process",
            );
        }

        let declared = self.declared(spec.boundary, spec.boundary_override);
        let tls = spec.tls.map(|tls| self.upstream_tls(tls));
        let auth = spec
            .auth
            .map(|auth| self.upstream_auth(auth))
            .unwrap_or_default();
        let (protocol, protocol_span) = match spec.protocol {
            Some(p) => (*p.get_ref(), Some(p.span())),
            None => (Protocol::Auto, None),
        };
        // Per client is the default for a network route to one server; for a stdio
        // route (a process per client) and balanced replicas (a client stuck to one
        // replica keeps calling it while it fails, until its breaker opens) it is a
        // choice.
        let network = !matches!(endpoint, Endpoint::Command(_)) && more_urls.is_empty();
        let per_client = match &spec.sessions {
            None => network,
            Some(mode) if mode.get_ref() == "shared" => false,
            Some(mode) if mode.get_ref() == "per-client" => true,
            Some(mode) => {
                self.error(
                    mode.span(),
                    format!("sessions `{}` is not known", mode.get_ref()),
                    "use \"per-client\" or \"shared\"",
                );
                false
            }
        };
        let child_default = if matches!(endpoint, Endpoint::Command(_)) {
            64
        } else {
            1024
        };
        let per_client_max = self.int(
            spec.per_client_max.as_ref(),
            child_default,
            1,
            100_000,
            "per_client_max",
        ) as usize;
        if self.error_count() > errors_before {
            return None;
        }
        Some(Route {
            name,
            name_span: Written(name_span),
            endpoint,
            endpoint_span: Written(endpoint_span),
            more_urls,
            declared,
            tls,
            auth,
            protocol,
            protocol_span: Written(protocol_span),
            naming,
            cert_expiry,
            policies,
            required,
            probe_interval,
            per_client,
            per_client_max,
        })
    }

    fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }

    fn endpoint(&mut self, spec: &RouteSpec) -> Option<(Endpoint, Span)> {
        let given: Vec<(&str, Span)> = [
            ("command", spec.command.as_ref().map(Spanned::span)),
            ("url", spec.url.as_ref().map(Spanned::span)),
            ("urls", spec.urls.as_ref().map(Spanned::span)),
            ("address", spec.address.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(k, s)| s.map(|s| (k, s)))
        .collect();
        match given.as_slice() {
            [] => {
                self.error(
                    spec.name.span(),
                    format!("route `{}` says nowhere to find its tool server", spec.name.get_ref()),
                    "add `command = [\"server\", \"--stdio\"]` (a child process), `url = \"https://host/mcp\"`, or `address = \"host:port\"`",
                );
                return None;
            }
            [_] => {}
            [_, (second, span), ..] => {
                self.error(
                    span.clone(),
                    format!(
                        "route `{}` sets both `{}` and `{second}`; a route has one tool server",
                        spec.name.get_ref(),
                        given[0].0
                    ),
                    "keep one of `command`, `url`, `urls` and `address`",
                );
                return None;
            }
        }
        if let Some(command) = &spec.command {
            return self
                .command(spec, command)
                .map(|c| (Endpoint::Command(c), command.span()));
        }
        if let Some(url) = &spec.url {
            return self.url(url).map(|u| (Endpoint::Url(u), url.span()));
        }
        if let Some(urls) = &spec.urls {
            let first = urls.get_ref().first();
            if first.is_none() {
                self.error(
                    urls.span(),
                    "`urls` is empty",
                    "list the tool server's replicas, e.g. urls = [\"http://a:8080/mcp\", \"http://b:8080/mcp\"]",
                );
            }
            return self.url(first?).map(|u| (Endpoint::Url(u), urls.span()));
        }
        let address = spec.address.as_ref()?;
        self.address(address)
            .map(|(host, port)| (Endpoint::Address { host, port }, address.span()))
    }

    /// The replicas after the first of `urls`: Streamable HTTP, one scheme for all.
    fn more_urls(&mut self, spec: &RouteSpec, endpoint: &Endpoint) -> Vec<Url> {
        let (Some(urls), Endpoint::Url(first)) = (&spec.urls, endpoint) else {
            return Vec::new();
        };
        let websocket = matches!(first.scheme(), "ws" | "wss");
        let protocol = spec.protocol.as_ref().map(|p| *p.get_ref());
        if urls.get_ref().len() > 1
            && (websocket || matches!(protocol, Some(Protocol::Sse | Protocol::Websocket)))
        {
            self.error(
                urls.span(),
                "several `urls` are balanced for Streamable HTTP tool servers only",
                "use http:// or https:// URLs with protocol = \"auto\" or \"streamable-http\", or one route per replica",
            );
            return Vec::new();
        }
        let mut more = Vec::new();
        for written in urls.get_ref().iter().skip(1) {
            let Some(url) = self.url(written) else {
                continue;
            };
            if url.scheme() != first.scheme() {
                self.error(
                    written.span(),
                    format!(
                        "`{}` is {}:// but the first of `urls` is {}://",
                        written.get_ref(),
                        url.scheme(),
                        first.scheme()
                    ),
                    "replicas of one tool server share one scheme",
                );
                continue;
            }
            if url == *first || more.contains(&url) {
                self.error(
                    written.span(),
                    format!("`{}` is listed twice", written.get_ref()),
                    "list each replica once",
                );
                continue;
            }
            more.push(url);
        }
        more
    }

    fn command(
        &mut self,
        spec: &RouteSpec,
        command: &Spanned<spec::StringOrList>,
    ) -> Option<Command> {
        let mut words = command.get_ref().0.clone();
        if words.is_empty() || words[0].trim().is_empty() {
            self.error(
                command.span(),
                "`command` is empty",
                "name the program to launch, e.g. command = [\"my-mcp-server\", \"--stdio\"]",
            );
            return None;
        }
        let program = words.remove(0);
        let mut args: Vec<MaybeSecret> = words.into_iter().map(MaybeSecret::Plain).collect();
        args.extend(
            spec.args
                .iter()
                .map(|a| rebase_maybe(a.clone(), self.base_dir)),
        );
        for name in spec.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.error(
                    command.span(),
                    format!("`{name}` is not an environment variable name"),
                    "environment variable names cannot be empty or contain '=' or NUL",
                );
            }
        }
        let env = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), rebase_maybe(v.clone(), self.base_dir)))
            .collect();
        Some(Command {
            program,
            args,
            env,
            cwd: spec.cwd.as_ref().map(|cwd| self.path(cwd.get_ref())),
        })
    }

    fn url(&mut self, url: &Spanned<String>) -> Option<Url> {
        let written = url.get_ref();
        let parsed = match Url::parse(written) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.error(
                    url.span(),
                    format!("`{written}` is not a URL: {e}"),
                    "write a full URL such as \"https://tools.example.com/mcp\", or use address = \"host:port\"",
                );
                return None;
            }
        };
        if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") {
            self.error(
                url.span(),
                format!("scheme `{}` is not supported", parsed.scheme()),
                "use http://, https://, ws:// or wss://, or `command` for a local tool server",
            );
            return None;
        }
        if parsed.host().is_none() {
            self.error(
                url.span(),
                format!("`{written}` has no host"),
                "write a host, e.g. https://tools.example.com/mcp",
            );
            return None;
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            self.push(
                Diagnostic::error(
                    url.span(),
                    "the URL carries credentials, which would end up in logs",
                )
                .concealed(),
                "remove them from the URL and set auth = { bearer = { env = \"NAME\" } } or auth.headers",
            );
            return None;
        }
        if parsed.fragment().is_some() {
            self.error(
                url.span(),
                "the URL has a #fragment, which is never sent to a server",
                "remove the #fragment",
            );
            return None;
        }
        Some(parsed)
    }

    fn address(&mut self, address: &Spanned<String>) -> Option<(url::Host, u16)> {
        let written = address.get_ref();
        if written.contains("://") {
            self.error(
                address.span(),
                format!("`address` takes host:port without a scheme, not `{written}`"),
                &format!("write url = \"{written}\" instead, or drop the scheme"),
            );
            return None;
        }
        let help = "write host:port, such as \"docs-mcp.tools.svc.cluster.local:8080\", \"10.4.0.7:8080\" or \"[fd00::7]:8080\"";
        let parsed = Url::parse(&format!("http://{written}")).ok();
        let Some(parsed) =
            parsed.filter(|u| u.path() == "/" && u.query().is_none() && u.username().is_empty())
        else {
            self.error(
                address.span(),
                format!("`{written}` is not host:port"),
                help,
            );
            return None;
        };
        // `Url` hides the default port; look at what was written.
        let port = parsed.port().or_else(|| {
            written
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .filter(|_| !written.ends_with(']'))
        });
        match (parsed.host(), port) {
            (Some(host), Some(port)) => Some((host.to_owned(), port)),
            _ => {
                self.error(address.span(), format!("`{written}` has no port"), help);
                None
            }
        }
    }

    fn upstream_tls(&mut self, spec: Spanned<spec::UpstreamTlsSpec>) -> UpstreamTls {
        let span = spec.span();
        let tls = spec.into_inner();
        let client_identity = match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some((self.path(cert.get_ref()), self.path(key.get_ref()))),
            (Some(one), None) | (None, Some(one)) => {
                self.error(
                    one.span(),
                    "mTLS needs both client_cert and client_key",
                    "set both, e.g. client_cert = \"certs/edge-client.pem\", client_key = \"certs/edge-client-key.pem\"",
                );
                None
            }
            (None, None) => None,
        };
        if let Some(name) = &tls.server_name
            && url::Host::parse(name.get_ref()).is_err()
        {
            self.error(
                name.span(),
                format!("`{}` is not a server name", name.get_ref()),
                "write the DNS name or IP address the server's certificate is issued for",
            );
        }
        UpstreamTls {
            span: Written(span),
            ca: tls.ca.map(|ca| self.path(ca.get_ref())),
            client_identity,
            server_name: tls.server_name.map(Spanned::into_inner),
            insecure_skip_verify: tls
                .insecure_skip_verify
                .as_ref()
                .is_some_and(|v| *v.get_ref()),
            insecure_span: Written(tls.insecure_skip_verify.as_ref().map(Spanned::span)),
        }
    }

    fn upstream_auth(&mut self, spec: Spanned<spec::UpstreamAuthSpec>) -> UpstreamAuth {
        const GATEWAY_OWNED: &[&str] = &[
            "host",
            "content-length",
            "content-type",
            "accept",
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "mcp-session-id",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "last-event-id",
            "traceparent",
            "tracestate",
        ];
        let span = spec.span();
        let auth = spec.into_inner();
        let mut headers = BTreeMap::new();
        for (name, value) in auth.headers {
            let lower = name.to_ascii_lowercase();
            if lower.is_empty() || !lower.bytes().all(is_header_token_byte) {
                self.error(
                    span.clone(),
                    format!("`{name}` is not an HTTP header name"),
                    "header names are letters, digits and !#$%&'*+-.^_`|~",
                );
                continue;
            }
            if GATEWAY_OWNED.contains(&lower.as_str()) {
                self.error(
                    span.clone(),
                    format!("header `{name}` is set by the gateway itself"),
                    "remove it from auth.headers",
                );
                continue;
            }
            if lower == "authorization" && auth.bearer.is_some() {
                self.error(
                    span.clone(),
                    "both auth.bearer and an Authorization header are set",
                    "keep one",
                );
                continue;
            }
            if lower == "authorization" && matches!(value, MaybeSecret::Plain(_)) {
                self.error(
                    span.clone(),
                    "the Authorization header is written inline",
                    "credentials are never inline: write { env = \"NAME\" } or { file = \"path\" }",
                );
                continue;
            }
            headers.insert(lower, rebase_maybe(value, self.base_dir));
        }
        UpstreamAuth {
            span: Written(Some(span)),
            bearer: auth.bearer.map(|b| b.rebase(self.base_dir)),
            headers,
        }
    }

    fn naming(&mut self, spec: &RouteSpec, separator: &str) -> Naming {
        let (prefix, prefix_span) = match &spec.prefix {
            Some(p) => (p.get_ref().clone(), p.span()),
            None => (spec.name.get_ref().clone(), spec.name.span()),
        };
        if !prefix.is_empty() && !prefix.chars().all(is_name_char) {
            self.error(
                prefix_span.clone(),
                format!("tool prefix `{prefix}` has characters tool names cannot carry"),
                "use letters, digits, '_', '-' and '.', or set prefix explicitly",
            );
        } else if prefix.contains(separator) {
            let source = if spec.prefix.is_some() {
                "prefix"
            } else {
                "route name (the default prefix)"
            };
            self.error(
                prefix_span.clone(),
                format!("the {source} `{prefix}` contains the separator `{separator}`, so prefixed tool names could not be split back"),
                &format!("set prefix = \"{}\" or change [gateway] name_separator", prefix.replace(separator, "-")),
            );
        }
        let mut glob = |pattern: &Spanned<String>| {
            if pattern.get_ref().is_empty() {
                self.error(
                    pattern.span(),
                    "an empty tool pattern matches nothing",
                    "remove it, or write a pattern such as \"read_*\"",
                );
            }
            Glob(pattern.get_ref().clone())
        };
        let (include, exclude) = match &spec.tools {
            Some(tools) => (
                tools.include.iter().map(&mut glob).collect(),
                tools.exclude.iter().map(&mut glob).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let overrides = spec
            .tools
            .as_ref()
            .map(|tools| self.tool_overrides(&tools.overrides, separator))
            .unwrap_or_default();
        Naming {
            prefix,
            prefix_span: Written(prefix_span),
            include,
            exclude,
            overrides,
        }
    }

    /// `[route.tools.override.NAME]` tables: names a client can use, told apart.
    fn tool_overrides(
        &mut self,
        specs: &BTreeMap<String, Spanned<spec::ToolOverrideSpec>>,
        separator: &str,
    ) -> BTreeMap<String, ToolOverride> {
        let mut out = BTreeMap::new();
        let mut shown: HashMap<String, String> = HashMap::new();
        for (tool, spec) in specs {
            let span = spec.span();
            let spec = spec.get_ref();
            if let Some(name) = &spec.name {
                let new = name.get_ref();
                if new.is_empty() || !new.chars().all(is_name_char) || new.contains(separator) {
                    self.error(
                        name.span(),
                        format!("`{new}` cannot be a tool name here"),
                        &format!("use letters, digits, '_', '-' and '.', without `{separator}`"),
                    );
                } else if let Some(other) = shown.insert(new.clone(), tool.clone()) {
                    self.error(
                        name.span(),
                        format!("`{tool}` and `{other}` would both be shown as `{new}`"),
                        "give each its own name",
                    );
                }
            }
            if spec.name.is_none() && spec.description.is_none() && spec.annotations.is_none() {
                self.warning(
                    span,
                    format!("the override of `{tool}` changes nothing"),
                    "set name, description or annotations, or remove it",
                );
                continue;
            }
            let mut annotations = Vec::new();
            if let Some(a) = &spec.annotations {
                if let Some(title) = &a.title {
                    annotations.push(("title", AnnotationValue::Text(title.clone())));
                }
                for (key, value) in [
                    ("readOnlyHint", a.read_only_hint),
                    ("destructiveHint", a.destructive_hint),
                    ("idempotentHint", a.idempotent_hint),
                    ("openWorldHint", a.open_world_hint),
                ] {
                    if let Some(value) = value {
                        annotations.push((key, AnnotationValue::Flag(value)));
                    }
                }
            }
            out.insert(
                tool.clone(),
                ToolOverride {
                    name: spec.name.as_ref().map(|n| n.get_ref().clone()),
                    description: spec.description.as_ref().map(|d| d.get_ref().clone()),
                    annotations,
                },
            );
        }
        out
    }

    fn cert_expiry(&mut self, spec: Option<&spec::CertExpirySpec>) -> CertExpiry {
        let warn = spec.and_then(|s| s.warn.as_ref());
        let critical = spec.and_then(|s| s.critical.as_ref());
        let warn_d = self.duration(warn, 30 * DAY, HOUR, 730 * DAY, "cert_expiry.warn");
        let critical_d = self.duration(critical, 7 * DAY, HOUR, 730 * DAY, "cert_expiry.critical");
        if critical_d >= warn_d {
            let span = critical.or(warn).map(Spanned::span);
            self.error(
                span,
                format!(
                    "cert_expiry.critical ({}) must be shorter than cert_expiry.warn ({})",
                    HumanDuration(critical_d),
                    HumanDuration(warn_d)
                ),
                "critical fires closer to expiry than warn, e.g. { warn = \"30d\", critical = \"7d\" }",
            );
        }
        CertExpiry {
            warn: warn_d,
            critical: critical_d,
        }
    }

    // Long: one validated key after another, in the schema's order (spec.rs), each with
    // its default and range
    fn policies(&mut self, view: &PolicyView<'_>) -> Policies {
        let timeout = self.duration(
            pick(view.timeout, Some),
            30 * SECOND,
            ms(1),
            24 * HOUR,
            "timeout",
        );
        let attempt_timeout = self.duration(
            pick(view.attempt_timeout, Some),
            timeout,
            ms(1),
            24 * HOUR,
            "attempt_timeout",
        );
        let max_key = pick(view.max_timeout, Some);
        let max_timeout = self.duration(max_key, timeout * 4, ms(1), 24 * HOUR, "max_timeout");
        if max_timeout < timeout {
            self.error(
                max_key.map(Spanned::span),
                format!(
                    "max_timeout ({}) is shorter than timeout ({})",
                    HumanDuration(max_timeout),
                    HumanDuration(timeout)
                ),
                "max_timeout bounds how far progress may extend the timeout: make it at least the timeout",
            );
        }

        let attempts = self.count(
            pick(view.retry, |r| r.attempts.as_ref()),
            3,
            1,
            10,
            "retry.attempts",
        );
        let base_key = pick(view.retry, |r| r.base.as_ref());
        let base = self.duration(base_key, ms(50), ms(1), 60 * SECOND, "retry.base");
        let max_key = pick(view.retry, |r| r.max.as_ref());
        let max = self.duration(max_key, 2 * SECOND, ms(1), 300 * SECOND, "retry.max");
        if max < base {
            let span = max_key.or(base_key).map(Spanned::span);
            self.error(
                span,
                format!(
                    "retry.max ({}) is shorter than retry.base ({})",
                    HumanDuration(max),
                    HumanDuration(base)
                ),
                "the backoff cap must be at least the first backoff",
            );
        }
        let budget = self.fraction(
            pick(view.retry, |r| r.budget.as_ref()),
            0.2,
            true,
            "retry.budget",
        );
        let min_per_second = self.int(
            pick(view.retry, |r| r.min_per_second.as_ref()),
            1,
            0,
            10_000,
            "retry.min_per_second",
        );
        let idempotent_tools = pick(view.retry, |r| r.idempotent_tools.as_ref())
            .map(|patterns| {
                patterns
                    .iter()
                    .filter_map(|p| self.glob(p, "retry.idempotent_tools"))
                    .collect()
            })
            .unwrap_or_default();

        let consecutive_failures = self.count(
            pick(view.breaker, |b| b.consecutive_failures.as_ref()),
            5,
            1,
            1000,
            "breaker.consecutive_failures",
        );
        let failure_ratio = self.fraction(
            pick(view.breaker, |b| b.failure_ratio.as_ref()),
            0.5,
            false,
            "breaker.failure_ratio",
        );
        let min_calls = self.count(
            pick(view.breaker, |b| b.min_calls.as_ref()),
            20,
            1,
            100_000,
            "breaker.min_calls",
        );
        let window = self.duration(
            pick(view.breaker, |b| b.window.as_ref()),
            30 * SECOND,
            SECOND,
            HOUR,
            "breaker.window",
        );
        let open_for = self.duration(
            pick(view.breaker, |b| b.open_for.as_ref()),
            10 * SECOND,
            ms(100),
            HOUR,
            "breaker.open_for",
        );
        let max_open_for = self.duration(
            pick(view.breaker, |b| b.max_open_for.as_ref()),
            // 30 × open_for, at most 5 minutes, never below open_for itself (an
            // open_for above 5 minutes is its own maximum).
            (open_for * 30).min(5 * 60 * SECOND).max(open_for),
            ms(100),
            24 * HOUR,
            "breaker.max_open_for",
        );
        let probes = self.count(
            pick(view.breaker, |b| b.probes.as_ref()),
            3,
            1,
            1000,
            "breaker.probes",
        );

        let per_second_key = pick(view.rate_limit, |r| r.per_second.as_ref());
        let burst_key = pick(view.rate_limit, |r| r.burst.as_ref());
        let route_bucket = match (per_second_key, burst_key) {
            (None, None) => None,
            (None, Some(burst)) => {
                self.error(
                    Some(burst.span()),
                    "rate_limit needs per_second",
                    "e.g. rate_limit = { per_second = 200, burst = 50 }",
                );
                None
            }
            (Some(_), _) => Some(self.bucket(per_second_key, burst_key, "rate_limit")),
        };
        let per_client = pick(view.rate_limit, |r| r.per_client.as_ref()).map(|bucket| {
            let spec = bucket.get_ref();
            if spec.per_second.is_none() {
                self.error(
                    Some(bucket.span()),
                    "rate_limit.per_client needs per_second",
                    "e.g. per_client = { per_second = 20, burst = 10 }",
                );
            }
            self.bucket(
                spec.per_second.as_ref(),
                spec.burst.as_ref(),
                "rate_limit.per_client",
            )
        });
        let rate_limit = RateLimit {
            route: route_bucket,
            per_client,
        };

        let max_in_flight = self.count(
            pick(view.concurrency, |c| c.max_in_flight.as_ref()),
            64,
            1,
            100_000,
            "concurrency.max_in_flight",
        );
        let queue = self.int(
            pick(view.concurrency, |c| c.queue.as_ref()),
            128,
            0,
            1_000_000,
            "concurrency.queue",
        );

        Policies {
            timeout,
            attempt_timeout,
            max_timeout,
            retry: Retry {
                attempts,
                base,
                max,
                budget,
                min_per_second,
                idempotent_tools,
            },
            breaker: Breaker {
                consecutive_failures,
                failure_ratio,
                min_calls,
                window,
                open_for,
                max_open_for,
                probes,
            },
            rate_limit,
            concurrency: Concurrency {
                max_in_flight,
                queue,
            },
        }
    }

    /// An `http://` or `https://` URL with a host, or an error at its place.
    fn http_url(&mut self, written: &Spanned<String>, key: &str) -> Option<Url> {
        match Url::parse(written.get_ref()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            _ => {
                self.error(
                    Some(written.span()),
                    format!("{key} `{}` is not an http(s) URL", written.get_ref()),
                    "write a full URL, e.g. \"http://alertmanager:9093/api/v2/alerts\"",
                );
                None
            }
        }
    }

    fn bucket(
        &mut self,
        per_second: Option<&Spanned<i64>>,
        burst: Option<&Spanned<i64>>,
        key: &str,
    ) -> Bucket {
        let per_second = self.count(per_second, 1, 1, 1_000_000, &format!("{key}.per_second"));
        let burst = self.count(
            burst,
            per_second.get(),
            1,
            1_000_000,
            &format!("{key}.burst"),
        );
        Bucket { per_second, burst }
    }

    fn glob(&mut self, pattern: &Spanned<String>, key: &str) -> Option<Glob> {
        if pattern.get_ref().is_empty() {
            self.error(
                Some(pattern.span()),
                format!("an empty pattern in {key} matches nothing"),
                "remove it, or write a pattern such as \"read_*\"",
            );
            return None;
        }
        Some(Glob(pattern.get_ref().clone()))
    }

    fn duration(
        &mut self,
        value: Option<&Spanned<HumanDuration>>,
        default: Duration,
        lo: Duration,
        hi: Duration,
        key: &str,
    ) -> Duration {
        let Some(value) = value else { return default };
        let d = value.get_ref().get();
        if d < lo || d > hi {
            self.error(
                value.span(),
                format!("{key} = \"{}\" is out of range", value.get_ref()),
                &format!(
                    "use a value from {} to {}",
                    HumanDuration(lo),
                    HumanDuration(hi)
                ),
            );
            return default;
        }
        d
    }

    fn int(
        &mut self,
        value: Option<&Spanned<i64>>,
        default: u32,
        lo: u32,
        hi: u32,
        key: &str,
    ) -> u32 {
        let Some(value) = value else { return default };
        match u32::try_from(*value.get_ref()) {
            Ok(n) if (lo..=hi).contains(&n) => n,
            _ => {
                self.error(
                    value.span(),
                    format!("{key} = {} is out of range", value.get_ref()),
                    &format!("use a whole number from {lo} to {hi}"),
                );
                default
            }
        }
    }

    fn count(
        &mut self,
        value: Option<&Spanned<i64>>,
        default: u32,
        lo: u32,
        hi: u32,
        key: &str,
    ) -> NonZeroU32 {
        let n = self.int(value, default, lo.max(1), hi, key);
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    fn fraction(
        &mut self,
        value: Option<&Spanned<f64>>,
        default: f64,
        zero_ok: bool,
        key: &str,
    ) -> Fraction {
        let Some(value) = value else {
            return Fraction(default);
        };
        let f = *value.get_ref();
        let ok = f.is_finite() && f <= 1.0 && (f > 0.0 || (zero_ok && f == 0.0));
        if ok {
            Fraction(f)
        } else {
            let range = if zero_ok {
                "from 0.0 to 1.0"
            } else {
                "above 0.0 and at most 1.0"
            };
            self.error(
                value.span(),
                format!("{key} = {f} is out of range"),
                &format!("use a fraction {range}"),
            );
            Fraction(default)
        }
    }

    /// Refuses duplicate names and colliding prefixes; keeps the first of each.
    /// `[[server]]` tables: names apart from the routes' and each other's, patterns
    /// that can match, routes that exist.
    fn servers(
        &mut self,
        specs: Vec<spec::ServerSpec>,
        routes: &[Route],
        separator: &str,
    ) -> Vec<VirtualServer> {
        let mut out: Vec<VirtualServer> = Vec::new();
        for spec in specs {
            let name = spec.name.get_ref().clone();
            if name.is_empty() || !name.chars().all(is_name_char) {
                self.error(
                    spec.name.span(),
                    format!("server name `{name}` cannot be a path segment"),
                    "use letters, digits, '_', '-' and '.'",
                );
                continue;
            }
            if routes.iter().any(|r| r.name == name) || out.iter().any(|s| s.name == name) {
                self.error(
                    spec.name.span(),
                    format!("`{name}` names a route or another server already: /mcp/{name} would be ambiguous"),
                    "give the server a name of its own",
                );
                continue;
            }
            let mut globs = |patterns: &[Spanned<String>], what: &str| -> Vec<Glob> {
                patterns
                    .iter()
                    .map(|p| {
                        if !p.get_ref().contains(separator) && p.get_ref() != "*" {
                            self.warning(
                                p.span(),
                                format!("the {what} pattern `{}` has no `{separator}`, so it matches only routes without a prefix", p.get_ref()),
                                &format!("write it as it shows on /mcp: \"route{separator}name\""),
                            );
                        }
                        Glob(p.get_ref().clone())
                    })
                    .collect()
            };
            let tools = globs(&spec.tools, "tool");
            let prompts = globs(&spec.prompts, "prompt");
            let mut resources = Vec::new();
            for route in &spec.resources {
                if routes.iter().any(|r| &r.name == route.get_ref()) {
                    resources.push(route.get_ref().clone());
                } else {
                    self.error(
                        route.span(),
                        format!("no route is called `{}`", route.get_ref()),
                        "resources names the routes whose resources the server shows",
                    );
                }
            }
            if tools.is_empty() && prompts.is_empty() && resources.is_empty() {
                self.warning(
                    spec.name.span(),
                    format!("server `{name}` exposes nothing"),
                    "set tools, prompts or resources",
                );
            }
            out.push(VirtualServer {
                name,
                tools,
                prompts,
                resources,
                instructions: spec.instructions,
            });
        }
        out
    }

    fn unique_routes(&mut self, routes: Vec<Route>) -> Vec<Route> {
        let mut names: HashSet<String> = HashSet::new();
        let mut prefixes: HashMap<String, String> = HashMap::new();
        let mut kept = Vec::with_capacity(routes.len());
        for route in routes {
            if !names.insert(route.name.clone()) {
                self.error(
                    route.name_span.clone(),
                    format!("two routes are named `{}`", route.name),
                    "route names are unique; rename one",
                );
                continue;
            }
            if let Some(first) = prefixes.get(&route.naming.prefix) {
                let message = if route.naming.prefix.is_empty() {
                    format!(
                        "routes `{first}` and `{}` are both unprefixed, so their tool names could collide",
                        route.name
                    )
                } else {
                    format!(
                        "routes `{first}` and `{}` both use the tool prefix `{}`, so their tool names would collide",
                        route.name, route.naming.prefix
                    )
                };
                self.error(
                    route.naming.prefix_span.clone(),
                    message,
                    "give each route its own prefix (at most one route may have prefix = \"\")",
                );
                continue;
            }
            prefixes.insert(route.naming.prefix.clone(), route.name.clone());
            kept.push(route);
        }
        kept
    }

    // Long: one validated key after another, in the schema's order (spec.rs)
    fn clients(&mut self, specs: Vec<spec::ClientSpec>, routes: &[Route]) -> Vec<Client> {
        let mut clients = Vec::new();
        let mut names = HashSet::new();
        let mut tokens: HashMap<SecretRef, String> = HashMap::new();
        let mut identities: HashMap<String, String> = HashMap::new();
        for spec in specs {
            let name = spec.name.get_ref().clone();
            if name.trim().is_empty() {
                self.error(
                    spec.name.span(),
                    "a client's name is empty",
                    "name it, e.g. name = \"billing-agent\"",
                );
            } else if !names.insert(name.clone()) {
                self.error(
                    spec.name.span(),
                    format!("two clients are named `{name}`"),
                    "client names are unique",
                );
            }
            let (credential, token_span) = match (&spec.token, &spec.identity) {
                (Some(token), None) => {
                    let reference = token.get_ref().clone().rebase(self.base_dir);
                    if let Some(other) = tokens.insert(reference.clone(), name.clone()) {
                        self.error(
                            token.span(),
                            format!("clients `{other}` and `{name}` use the same credential ({reference}), so they could not be told apart"),
                            "give each client its own token",
                        );
                    }
                    (Credential::Token(reference), token.span())
                }
                (None, Some(identity)) => {
                    let written = identity.get_ref().trim();
                    if written.is_empty() {
                        self.error(identity.span(), "an empty identity matches no certificate", "write the URI or DNS SAN of the client's certificate (or cn:NAME for its common name), e.g. identity = \"spiffe://cluster.local/ns/agents/sa/billing\"");
                        continue;
                    }
                    let id = match Identity::parse(written) {
                        Ok(id) => id,
                        Err(why) => {
                            self.error(identity.span(), why, "write a URI SAN (spiffe://…), a DNS SAN (agent.example), or cn:NAME to match the common name");
                            continue;
                        }
                    };
                    if let Some(other) = identities.insert(id.to_string(), name.clone()) {
                        self.error(
                            identity.span(),
                            format!("clients `{other}` and `{name}` have the same identity `{id}`"),
                            "give each client its own identity",
                        );
                    }
                    (Credential::Identity(id), identity.span())
                }
                (Some(token), Some(_)) => {
                    self.error(token.span(), format!("client `{name}` has both a token and an identity"), "keep one: token = { env = \"NAME\" }, or identity = \"<certificate SAN or CN>\"");
                    continue;
                }
                (None, None) => {
                    self.error(spec.name.span(), format!("client `{name}` has no credential"), "add token = { env = \"NAME\" } (bearer) or identity = \"<certificate SAN or CN>\" (mTLS)");
                    continue;
                }
            };
            let mut grant = Vec::new();
            let mut all = false;
            for route in &spec.routes {
                let r = route.get_ref();
                if r == "*" {
                    all = true;
                } else if routes.iter().any(|known| &known.name == r) {
                    grant.push(r.clone());
                } else {
                    let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                    self.error(
                        route.span(),
                        format!("client `{name}` is allowed route `{r}`, which does not exist"),
                        &format!("the routes are: {}; or \"*\" for all", known.join(", ")),
                    );
                }
            }
            if spec.routes.is_empty() {
                self.warning(
                    spec.name.span(),
                    format!("client `{name}` may use no route"),
                    "list its routes, e.g. routes = [\"docs\"], or \"*\" for all",
                );
            }
            clients.push(Client {
                name,
                credential,
                token_span,
                routes: if all { Grant::All } else { Grant::Only(grant) },
                tools: spec.tools.as_ref().map(|tools| {
                    tools
                        .iter()
                        .map(|pattern| {
                            if pattern.get_ref().is_empty() {
                                self.error(
                                    pattern.span(),
                                    "an empty tool pattern matches nothing",
                                    "remove it, or write a pattern such as \"docs__read_*\"",
                                );
                            }
                            Glob(pattern.get_ref().clone())
                        })
                        .collect()
                }),
            });
        }
        clients
    }
}

fn rebase_maybe(value: MaybeSecret, base: &Path) -> MaybeSecret {
    match value {
        MaybeSecret::Secret(s) => MaybeSecret::Secret(s.rebase(base)),
        plain => plain,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn valid_route_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(is_name_char)
}

fn is_header_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Normalizes a DNS suffix for matching: trims dots, lowercases, IDNA-encodes.
pub fn normalize_domain(written: &str) -> Result<String, String> {
    let trimmed = written.trim().trim_start_matches('.').trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("it is empty".into());
    }
    if trimmed.contains('*') {
        return Err("wildcards are not needed: a suffix already covers every name under it".into());
    }
    let ascii =
        idna::domain_to_ascii(trimmed).map_err(|_| "it is not a valid domain name".to_owned())?;
    if ascii.is_empty()
        || ascii.split('.').any(str::is_empty)
        || ascii.parse::<std::net::IpAddr>().is_ok()
    {
        return Err("it is not a valid domain name".into());
    }
    Ok(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_have_a_kind() {
        assert_eq!(
            Identity::parse("spiffe://cluster.local/ns/a/sa/b"),
            Ok(Identity::Uri("spiffe://cluster.local/ns/a/sa/b".into()))
        );
        assert_eq!(
            Identity::parse("Agent.Example"),
            Ok(Identity::Dns("agent.example".into()))
        );
        assert_eq!(
            Identity::parse("dns:agent.example"),
            Ok(Identity::Dns("agent.example".into()))
        );
        assert_eq!(
            Identity::parse("cn:billing agent"),
            Ok(Identity::CommonName("billing agent".into()))
        );
        assert_eq!(
            Identity::parse("uri:urn:example:agent"),
            Ok(Identity::Uri("urn:example:agent".into()))
        );
        let refused = Identity::parse("billing agent").unwrap_err();
        assert!(refused.contains("cn:billing agent"), "{refused}");
        assert!(Identity::parse("cn:").is_err());
    }

    #[test]
    fn globs_match_whole_names() {
        let g = |p: &str| Glob(p.to_owned());
        assert!(g("read_*").matches("read_file"));
        assert!(!g("read_*").matches("xread_file"));
        assert!(g("*_file").matches("read_file"));
        assert!(g("*").matches(""));
        assert!(g("a*b*c").matches("abc"));
        assert!(g("a*b*c").matches("aXbYc"));
        assert!(!g("a*b*c").matches("aXbYcd"));
        assert!(!g("ab*ba").matches("aba"));
        assert!(g("exact").matches("exact"));
        assert!(!g("exact").matches("exactly"));
    }

    #[test]
    fn domains_normalize() {
        assert_eq!(
            normalize_domain(".svc.cluster.local"),
            Ok("svc.cluster.local".into())
        );
        assert_eq!(
            normalize_domain("Corp.Example.COM."),
            Ok("corp.example.com".into())
        );
        assert_eq!(
            normalize_domain(".bücher.example"),
            Ok("xn--bcher-kva.example".into())
        );
        assert!(normalize_domain(".").is_err());
        assert!(normalize_domain("*.corp.example").is_err());
        assert!(normalize_domain("a..b").is_err());
        assert!(normalize_domain("10.0.0.1").is_err());
    }
}
