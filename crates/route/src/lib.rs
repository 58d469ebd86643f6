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
pub mod lists;
pub mod scope;
pub mod stack;
pub mod stats;
pub mod trace;
pub mod upstream;

use crate::stack::RoutePolicy;
use crate::stats::RouteStats;
pub use crate::upstream::Upstream;

/// What decides how a route runs: its configuration and its classification. Where it
/// was written in the file is no part of it, by construction: the configuration's
/// positions ([`mcp_edge_config::Written`]) are all equal to each other. A reload keeps
/// a route whose key is unchanged, and restarts one whose key changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteKey {
    route: mcp_edge_config::Route,
    boundary: Boundary,
    transport: mcp_edge_router::Transport,
}

impl RouteKey {
    /// The key of a route as configured and classified.
    pub fn new(route: &mcp_edge_config::Route, planned: &mcp_edge_router::RoutePlan) -> RouteKey {
        RouteKey {
            route: route.clone(),
            boundary: planned.boundary,
            transport: planned.transport.clone(),
        }
    }

    /// The route as configured: effective policies, TLS, credentials (references to
    /// secrets, never their values).
    pub fn config(&self) -> &mcp_edge_config::Route {
        &self.route
    }
}

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
    /// What decides how it runs: unchanged on reload means kept as is.
    pub key: RouteKey,
    /// Its lists, kept between clients until they change.
    pub lists: lists::Lists,
    /// Each client session has an upstream session of its own (`sessions =
    /// "per-client"`).
    pub per_client: bool,
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

    /// Sends a notification to the tool server (in the client's own session, on a route
    /// with one per client).
    pub async fn notify(
        &self,
        session: Option<&Arc<str>>,
        method: &str,
        params: Option<&serde_json::value::RawValue>,
    ) {
        match &self.upstream {
            Upstream::One(connector) => connector.notify(session, method, params).await,
            Upstream::Balanced(balanced) => balanced.notify(session, method, params).await,
        }
    }

    /// Answers a request the tool server made, in the session it came from.
    pub async fn respond(&self, session: Option<&Arc<str>>, id: &Id, reply: Reply) {
        match &self.upstream {
            Upstream::One(connector) => connector.respond(session, id, reply).await,
            Upstream::Balanced(balanced) => balanced.respond(session, id, reply).await,
        }
    }

    /// Client sessions holding an upstream session (or a child) of their own here.
    pub fn client_sessions(&self) -> usize {
        match &self.upstream {
            Upstream::One(connector) => connector.client_sessions(),
            Upstream::Balanced(balanced) => balanced.client_sessions(),
        }
    }

    /// A client session ended: its own upstream session on this route, if any, ends.
    pub fn end_session(&self, session: &str) {
        match &self.upstream {
            Upstream::One(connector) => connector.end_session(session),
            Upstream::Balanced(balanced) => balanced.end_session(session),
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::RouteKey;

    /// The keys of every route in a routes file.
    fn keys(text: &str) -> Vec<RouteKey> {
        let source = mcp_edge_config::Source::new("routes.toml", text);
        let (config, diags) = mcp_edge_config::parse(&source);
        let config = config.unwrap_or_else(|| panic!("{diags:?}"));
        let (plan, diags) = mcp_edge_router::plan(&config);
        let plan = plan.unwrap_or_else(|| panic!("{diags:?}"));
        config
            .routes
            .iter()
            .zip(&plan.routes)
            .map(|(route, planned)| RouteKey::new(route, planned))
            .collect()
    }

    const ROUTES: &str = r#"
[[route]]
name = "a"
url = "https://127.0.0.1:9001/mcp"
[route.tls]
server_name = "tools.internal"

[[route]]
name = "b"
command = ["mcp-edge", "demo-tools"]
timeout = "5s"
"#;

    #[test]
    fn a_key_ignores_where_the_route_was_written() {
        // The same routes, moved down the file, in the other order, with comments and with
        // defaults written out.
        let moved = r#"
# a comment that moves every position below it

[[route]]
name = "b"
command = ["mcp-edge", "demo-tools"]
timeout   =   "5s"

[[route]]
# and another, and the defaults written out
name = "a"
url = "https://127.0.0.1:9001/mcp"
protocol = "auto"
[route.tls]
server_name = "tools.internal"
insecure_skip_verify = false
"#;
        let before = keys(ROUTES);
        let after = keys(moved);
        assert_eq!(before[0], after[1]);
        assert_eq!(before[1], after[0]);
        let set: HashSet<RouteKey> = before.into_iter().collect();
        assert!(after.iter().all(|key| set.contains(key)));
    }

    #[test]
    fn a_key_changes_with_what_the_route_says() {
        let before = keys(ROUTES);
        for changed in [
            ROUTES.replace("timeout = \"5s\"", "timeout = \"6s\""),
            ROUTES.replace("9001", "9002"),
            ROUTES.replace("\"demo-tools\"]", "\"demo-tools\", \"--hang\"]"),
        ] {
            let after = keys(&changed);
            assert_ne!(before, after, "{changed}");
        }
    }
}
