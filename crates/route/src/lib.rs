//! A route at run time: the connector to its tool server, the policy stack around it,
//! the balancer over its replicas, and what it has done.
//!
//! Where it sits in a call's path: a front door (`mcp-edge-front`) hands a client's
//! request to the core (`mcp-edge-core`), which finds the route by name and calls
//! [`RouteRt::call`]; the call goes down the route's [`stack`] (rate limit, deadline,
//! retries, circuit breaker, bulkhead) to its [`upstream`], a connector from
//! `mcp-edge-transport` or a [`balance`]r over several.
//!
//! - [`assemble`]: a route from its configuration (start-up and reload).
//! - [`scope`]: which routes a client sees.
//! - [`stats`]: counters and latency histograms per route.
//! - [`trace`]: W3C trace context in and out.

use std::sync::Arc;
use std::time::Duration;

use mcp_edge_config::Boundary;
use mcp_edge_config::model::Naming;
use mcp_edge_policy::Request;
use mcp_edge_protocol::Id;
use mcp_edge_transport::{Reply, ServerInfo, UpstreamError};

pub mod assemble;
pub mod balance;
pub mod scope;
pub mod stack;
pub mod stats;
pub mod trace;
pub mod upstream;

use crate::stack::RoutePolicy;
use crate::stats::RouteStats;
pub use crate::upstream::Upstream;

/// A route, ready to take calls.
pub struct RouteRt {
    /// The route's name.
    pub name: String,
    /// Its tool prefix (empty: none).
    pub prefix: String,
    /// Tool filters.
    pub naming: Naming,
    /// The boundary it crosses.
    pub boundary: Boundary,
    /// The transport label (`stdio`, `https auto`, …).
    pub transport: String,
    /// The endpoint, safe to print.
    pub endpoint: String,
    /// The per-call deadline (before progress moves it on).
    pub timeout: Duration,
    /// The furthest progress may move it.
    pub max_timeout: Duration,
    /// The connector.
    pub upstream: Upstream,
    /// Its policies, over the same connector.
    pub policy: RoutePolicy,
    /// What it has done.
    pub stats: RouteStats,
    /// `/readyz` fails while this route is not usable.
    pub required: bool,
    /// How often it is probed.
    pub probe_interval: Option<Duration>,
    /// Its configuration, positions left out: unchanged on reload means kept as is.
    pub fingerprint: String,
}

impl RouteRt {
    /// Makes a call through the route's policies.
    pub async fn call(&self, request: Request) -> Result<Reply, UpstreamError> {
        self.policy.call(request).await
    }

    /// The protocol era the tool server speaks, once known.
    pub fn upstream_info_era(&self) -> Option<mcp_edge_protocol::version::Era> {
        self.info().map(|i| i.era)
    }

    /// The hard deadline of a call starting now: the furthest progress may move it.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.max_timeout
    }

    /// What the tool server said about itself, while it is up.
    pub fn info(&self) -> Option<Arc<ServerInfo>> {
        match &self.upstream {
            Upstream::One(connector) => connector.info(),
            Upstream::Balanced(balanced) => balanced.info(),
        }
    }

    /// Whether the tool server offers a capability (`tools`, `resources`, `prompts`, …).
    /// Unknown while it is down: assumed yes, so its calls fail with a clear error.
    pub fn offers(&self, capability: &str) -> bool {
        self.info()
            .is_none_or(|info| info.has_capability(capability))
    }

    /// Waits for the route's first start attempt (see [`Connector::first_attempt`]).
    pub async fn first_attempt(&self, deadline: tokio::time::Instant) {
        match &self.upstream {
            Upstream::One(connector) => connector.first_attempt(deadline).await,
            Upstream::Balanced(balanced) => balanced.first_attempt(deadline).await,
        }
    }

    /// Sends a notification to the tool server.
    pub async fn notify(&self, method: &str, params: Option<&serde_json::value::RawValue>) {
        match &self.upstream {
            Upstream::One(connector) => connector.notify(method, params).await,
            Upstream::Balanced(balanced) => balanced.notify(method, params).await,
        }
    }

    /// Answers a request the tool server made.
    pub async fn respond(&self, id: &Id, reply: Reply) {
        match &self.upstream {
            Upstream::One(connector) => connector.respond(id, reply).await,
            Upstream::Balanced(balanced) => balanced.respond(id, reply).await,
        }
    }

    /// Stops the tool server (or ends the upstream session).
    pub async fn shutdown(&self) {
        match &self.upstream {
            Upstream::One(connector) => connector.shutdown().await,
            Upstream::Balanced(balanced) => balanced.shutdown().await,
        }
    }
}
