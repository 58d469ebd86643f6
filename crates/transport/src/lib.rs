//! Upstream connectors: how mcp-edge talks to tool servers.
//!
//! Every connector offers the same shape: [`Call`] in, [`Reply`] or [`UpstreamError`]
//! out, with the call's notifications (progress, logs) and the tool server's requests
//! (sampling, elicitation, roots) delivered on the call's event channel. Ids and
//! progress tokens are rewritten inside the connector, so many client sessions can
//! share one tool server and each sees only its own traffic.
//!
//! - [`stdio`]: a supervised child process speaking newline-delimited JSON-RPC.
//! - [`http`]: a Streamable HTTP server, either era, over HTTP or HTTPS (rustls).
//! - [`link`]: a legacy HTTP+SSE or WebSocket server, supervised like a child.
//!
//! Dropping a call's future cancels it: the tool server gets `notifications/cancelled`.

pub mod busy_poll;
mod conn;
mod handshake;
pub mod http;
pub mod link;
mod params;
pub mod redact;
pub mod stdio;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_edge_protocol::Message;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use http::{Http, HttpConfig};
pub use link::{Link, LinkConfig, LinkKind};
pub use stdio::{Stdio, StdioConfig};

/// One call to a tool server. Cloning it (for a retry) copies the parameters.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: String,
    /// The parameters, raw. A `_meta.progressToken` in them is mapped by the connector.
    pub params: Option<Box<RawValue>>,
    /// When the caller stops waiting.
    pub deadline: Instant,
    /// Where the call's notifications and the tool server's requests go.
    pub events: Option<mpsc::Sender<CallEvent>>,
    /// A W3C `traceparent` for HTTP tool servers.
    pub traceparent: Option<String>,
    /// The tool, prompt or resource the call names (`Mcp-Name`), when the caller has
    /// read it already; otherwise the connector reads it from the params if it needs it.
    pub name: Option<String>,
}

/// Something that happens during a call. The message is boxed: every call makes a
/// channel for these, and a channel's first block holds 32 of them, so a small event
/// keeps that block small (events themselves are rare).
#[derive(Debug)]
pub enum CallEvent {
    /// A notification for this call (progress with the caller's token, a log message).
    Notification(Box<Message>),
    /// A request from the tool server (sampling, elicitation, roots) that the caller's
    /// client should answer; the answer goes back with [`Upstream::respond`]-style calls
    /// using the request's id.
    Request(Box<Message>),
}

/// What the tool server answered.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A `result`, raw.
    Result(Box<RawValue>),
    /// An `error` object, raw.
    Error(Box<RawValue>),
}

impl Reply {
    /// The response message answering request `id`.
    pub fn to_message(self, id: &mcp_edge_protocol::Id) -> Vec<u8> {
        match self {
            Reply::Result(result) => mcp_edge_protocol::jsonrpc::result(id, &result),
            Reply::Error(error) => mcp_edge_protocol::jsonrpc::error_response(id, &error),
        }
    }
}

/// Why a call got no answer from the tool server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Not running: never started, or restarting. Says why and when it is tried again.
    Unavailable {
        /// The last failure, in words.
        reason: String,
        /// When the next start is due, if one is scheduled.
        retry_in: Option<Duration>,
    },
    /// The tool server did not answer in time; it was sent `notifications/cancelled`.
    Timeout(Duration),
    /// The tool server died with the call in flight.
    Crashed(String),
    /// Too many calls in flight and waiting already.
    Busy {
        /// The in-flight limit.
        max_in_flight: u32,
        /// The queue limit.
        queue: u32,
    },
    /// The connection broke after the request may have reached the tool server.
    Interrupted(String),
    /// The route's circuit breaker is open: calls fail at once until it is tried again.
    CircuitOpen {
        /// When a probe is let through.
        retry_in: Duration,
        /// Times it opened in a row (the open period grows with them).
        trips: u32,
        /// The last failure it counted, in words.
        cause: String,
    },
    /// Over a rate limit.
    RateLimited {
        /// Whose limit: `route` (everyone's) or `client` (the caller's own).
        scope: &'static str,
        /// When a call would be allowed.
        retry_after: Duration,
    },
    /// The tool server broke the protocol.
    Protocol(String),
    /// The TLS handshake failed; the sentence says why and what to do.
    Tls(String, mcp_edge_tls::TlsFailure),
    /// The tool server answered with an HTTP error status.
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
        /// Its `Retry-After`, in seconds, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The connector is shut down.
    Closed,
    /// mcp-edge would not forward the request as it came (its params are not one JSON
    /// object); the client's error, not the tool server's.
    Refused(String),
}

impl UpstreamError {
    /// A short machine-readable reason, for `error.data.reason` and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Unavailable { .. } | UpstreamError::Closed => "upstream_unavailable",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Crashed(_) => "upstream_crashed",
            UpstreamError::Busy { .. } => "busy",
            UpstreamError::Interrupted(_) => "upstream_interrupted",
            UpstreamError::CircuitOpen { .. } => "circuit_open",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Protocol(_) => "upstream_protocol",
            UpstreamError::Tls(..) => "tls",
            UpstreamError::Status { .. } => "upstream_status",
            UpstreamError::Refused(_) => "invalid_request",
        }
    }

    /// When the caller may try again, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Unavailable { retry_in, .. } => *retry_in,
            UpstreamError::CircuitOpen { retry_in, .. } => Some(*retry_in),
            UpstreamError::RateLimited { retry_after, .. } => Some(*retry_after),
            UpstreamError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Unavailable {
                reason,
                retry_in: Some(d),
            } => {
                write!(
                    f,
                    "tool server unavailable: {reason}; next start in {}ms",
                    d.as_millis()
                )
            }
            UpstreamError::Unavailable {
                reason,
                retry_in: None,
            } => {
                write!(f, "tool server unavailable: {reason}")
            }
            UpstreamError::Timeout(d) => write!(
                f,
                "the tool server did not answer within {}ms; the call was cancelled",
                d.as_millis()
            ),
            UpstreamError::Crashed(why) => write!(f, "the tool server died during the call: {why}"),
            UpstreamError::Busy {
                max_in_flight,
                queue,
            } => write!(
                f,
                "busy: {max_in_flight} calls in flight and {queue} waiting already"
            ),
            UpstreamError::Interrupted(why) => {
                write!(
                    f,
                    "the connection to the tool server broke during the call: {why}"
                )
            }
            UpstreamError::CircuitOpen {
                retry_in,
                trips,
                cause,
            } if retry_in.is_zero() => write!(
                f,
                "circuit breaker half-open after {trips} trip{}: probes are testing the tool server, and other calls fail at once until they succeed (last failure: {cause})",
                if *trips == 1 { "" } else { "s" }
            ),
            UpstreamError::CircuitOpen {
                retry_in,
                trips,
                cause,
            } => write!(
                f,
                "circuit breaker open after {trips} trip{} in a row: calls fail at once; the tool server is tried again in {}ms (last failure: {cause})",
                if *trips == 1 { "" } else { "s" },
                retry_in.as_millis()
            ),
            UpstreamError::RateLimited { scope, retry_after } => write!(
                f,
                "over the {} rate limit; try again in {}ms",
                if *scope == "client" {
                    "caller's"
                } else {
                    "route's"
                },
                retry_after.as_millis().max(1)
            ),
            UpstreamError::Protocol(why) => write!(f, "the tool server broke the protocol: {why}"),
            UpstreamError::Refused(why) => write!(f, "not forwarded: {why}"),
            UpstreamError::Tls(why, _) => f.write_str(why),
            UpstreamError::Status { status, body, .. } if body.is_empty() => {
                write!(f, "the tool server answered HTTP {status}")
            }
            UpstreamError::Status { status, body, .. } => {
                write!(f, "the tool server answered HTTP {status}: {body}")
            }
            UpstreamError::Closed => f.write_str("the route is shutting down"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// What the supervisor is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Spawning the child and opening the connection.
    Starting,
    /// Serving calls.
    Ready,
    /// Waiting to restart after a failure.
    Backoff {
        /// When the next attempt starts.
        until: Instant,
    },
    /// Shut down.
    Stopped,
}

/// Exponential backoff with jitter: `base * 2^failures`, capped at `max`, then scaled by
/// a random factor in [0.5, 1.0] so that many gateways do not retry in step.
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    use rand::Rng as _;
    let exp = base.saturating_mul(1u32 << failures.min(20)).min(max);
    exp.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Publishes a backoff until `until` and sleeps through it; true when shutdown was
/// asked for meanwhile.
pub(crate) async fn wait_backoff(
    phase: &tokio::sync::watch::Sender<Phase>,
    shutdown: &tokio::sync::Notify,
    until: Instant,
) -> bool {
    phase.send_replace(Phase::Backoff { until });
    tokio::select! {
        () = tokio::time::sleep_until(until) => false,
        () = shutdown.notified() => true,
    }
}

/// What a tool server said about itself when the connection was set up.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The negotiated protocol version.
    pub protocol_version: String,
    /// Which era the tool server speaks.
    pub era: mcp_edge_protocol::version::Era,
    /// Its `capabilities` object, raw.
    pub capabilities: Box<RawValue>,
    /// Its `serverInfo` object, raw (`{}` when it sent none).
    pub server_info: Box<RawValue>,
    /// Its `instructions`, if any.
    pub instructions: Option<String>,
}

impl ServerInfo {
    /// Whether the capabilities object has `key` (e.g. `"tools"`).
    pub fn has_capability(&self, key: &str) -> bool {
        mcp_edge_protocol::RawObject::parse(self.capabilities.get())
            .map(|caps| caps.get(key).is_some_and(|v| v.get() != "null"))
            .unwrap_or(false)
    }
}

/// Where a connector sends what is not part of any call.
pub trait Sink: Send + Sync + 'static {
    /// A notification not tied to a call (list changes, resource updates, logs).
    fn notification(&self, route: &str, message: Message);
    /// A request from the tool server that no call in flight can take (it names no
    /// call, and not exactly one call could answer it). The sink finds a client of the
    /// route to ask, or answers it with a refusal through the route. Without a sink
    /// that can, it is refused here.
    fn request(&self, route: &str, message: Message) -> bool {
        let _ = (route, message);
        false
    }
    /// The route came up (with what it said about itself) or went down.
    fn availability(&self, route: &str, info: Option<Arc<ServerInfo>>);
}

/// Which calls in flight could take a tool server's request that names none.
pub(crate) enum Taker {
    /// None: the request may go to a client of the route (see [`Sink::request`]).
    None,
    /// Exactly one: it is surely that call's.
    One(mpsc::Sender<CallEvent>),
    /// Several: guessing could hand one client's question to another; it is refused.
    Several,
}

/// A sink that drops everything (for tests and tools that only make calls).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSink;

impl Sink for NoSink {
    fn notification(&self, _: &str, _: Message) {}
    fn availability(&self, _: &str, _: Option<Arc<ServerInfo>>) {}
}
