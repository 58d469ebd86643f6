//! How a route reaches its tool server: one connector, or replicas behind a balancer.

use std::sync::Arc;

use mcp_edge_transport::{Call, Connector, Reply, State, UpstreamError};

use crate::balance::Balanced;

/// How a route reaches its tool server: one connector, or several replicas of one
/// behind a balancer. Cheap to clone.
#[derive(Clone)]
pub enum Upstream {
    /// One tool server.
    One(Connector),
    /// Several replicas of a Streamable HTTP server, balanced.
    Balanced(Arc<Balanced>),
}

impl Upstream {
    /// The connector's state (for replicas: up if any is).
    pub fn state(&self) -> State {
        match self {
            Upstream::One(connector) => connector.state(),
            Upstream::Balanced(balanced) => balanced.state(),
        }
    }

    /// Makes a call, with no policy: see [`RouteRt::call`].
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        match self {
            Upstream::One(connector) => connector.call(call).await,
            Upstream::Balanced(balanced) => balanced.call(call).await,
        }
    }
}
