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
//! A route holds them as one [`Connector`].
//!
//! Dropping a call's future cancels it: the tool server gets `notifications/cancelled`.

pub mod busy_poll;
mod conn;
mod connector;
pub mod dial;
mod handshake;
pub mod http;
pub mod link;
mod params;
pub mod redact;
pub mod stdio;

use std::sync::Arc;
use std::time::Duration;

use mcp_edge_protocol::Message;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use connector::{Connector, State};
pub use http::{Http, HttpConfig};
pub use link::{Link, LinkConfig, LinkKind};
pub use mcp_edge_call::{Call, CallEvent, Reply, UpstreamError};
pub use stdio::{Stdio, StdioConfig};

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
