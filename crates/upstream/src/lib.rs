//! One MCP conversation with a tool server, whatever carries its messages.
//!
//! Where it sits in a call's path: a connector of `mcp-edge-transport` (a child's
//! stdio, a Streamable HTTP exchange, a legacy SSE or WebSocket link) moves messages;
//! this crate says what they are: the handshake for either protocol era
//! ([`handshake`]), the table of calls in flight over one stream, with ids and
//! progress tokens mapped so that many clients can share the tool server
//! ([`conn`]), the params rewritten for the tool server's era ([`params`]), what the
//! tool server said about itself ([`ServerInfo`]), where what is not part of a call
//! goes ([`Sink`]), and the scrubbing of secrets from what tool servers print
//! ([`redact`]).

pub mod conn;
pub mod handshake;
pub mod params;
pub mod redact;

use std::sync::Arc;
use std::time::Duration;

pub use mcp_edge_call::{Call, CallEvent, Reply, UpstreamError};
use mcp_edge_protocol::Message;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

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

/// The wait before the next start after `failures` failures in a row: at least half
/// of `min(max, base·2^failures)`, so that many gateways do not retry in step and a
/// crash loop never restarts at once.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    mcp_edge_policy::backoff::Backoff { base, max }.half_jitter(failures)
}

/// Publishes a backoff until `until` and sleeps through it; true when shutdown was
/// asked for meanwhile.
pub async fn wait_backoff(
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
    /// A notification from one client's own upstream session (a route with a session
    /// per client): it concerns that client only, unless it is route-wide news.
    fn notification_for(&self, route: &str, session: &Arc<str>, message: Message) {
        let _ = session;
        self.notification(route, message);
    }
    /// A request from one client's own upstream session that no call in flight can
    /// take: that client is asked.
    fn request_for(&self, route: &str, session: &Arc<str>, message: Message) -> bool {
        let _ = session;
        self.request(route, message)
    }
}

/// Which calls in flight could take a tool server's request that names none.
pub enum Taker {
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
