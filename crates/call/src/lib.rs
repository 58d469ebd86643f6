//! One call to a tool server, as every layer between a client and a tool server sees it.
//!
//! The front door turns a client's request into a [`Call`]; the route's policies
//! (`mcp-edge-policy`, `-ratelimit`, `-retry`, `-breaker`) pass it down; a connector
//! from `mcp-edge-transport` makes it and answers a [`Reply`] or an [`UpstreamError`].
//! Notifications and the tool server's own requests during the call come back on the
//! call's [`CallEvent`] channel.
//!
//! This crate holds only those types, so that the policy crates depend on it and on
//! nothing heavier: no HTTP stack, no TLS, no WebSocket.
//!
//! ```
//! use std::time::Duration;
//! use mcp_edge_call::UpstreamError;
//!
//! let refused = UpstreamError::RateLimited { scope: "route", retry_after: Duration::from_millis(250) };
//! assert_eq!(refused.reason(), "rate_limited");
//! assert_eq!(refused.retry_after(), Some(Duration::from_millis(250)));
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mcp_edge_protocol::Message;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    /// The client session the call is made for: a route with an upstream session per
    /// client makes it in that client's own session (`None`: the route's shared one).
    pub session: Option<Arc<str>>,
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
    /// The tool server no longer knows the upstream session (HTTP 404 to its
    /// `Mcp-Session-Id`) and refused the request unread: the call was not made. The
    /// connector opens a new session for the next attempt; whether to make one is the
    /// retry policy's decision (only what is safe to repeat, since the new session has
    /// none of the old one's state).
    SessionGone(String),
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
    Tls(String),
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
            UpstreamError::SessionGone(_) => "upstream_session_gone",
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
    // Long: one sentence per failure a client can be told, each its own arm
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
            UpstreamError::SessionGone(why) => write!(
                f,
                "the tool server no longer knows its session with the gateway: {why}"
            ),
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
            UpstreamError::Tls(why) => f.write_str(why),
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
