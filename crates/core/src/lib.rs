//! The gateway's MCP engine: sessions, sealed session ids, and what happens to a
//! client's message once a front door has read it.
//!
//! Where it sits in a call's path: a front door (`mcp-edge-front`) parses and admits a
//! request, finds its [`session`] and hands the message to [`Gateway`]; the gateway
//! answers `initialize` and the lists itself (aggregated across the client's routes),
//! finds the route a call names, forwards it through the route's policies
//! (`mcp-edge-route`) and maps every failure to the error the client sees. What tool
//! servers send outside calls (notifications, their own requests) comes back through
//! [`RouteEvent`]s and is relayed to the sessions it concerns.
//!
//! - [`seal`]: session ids any replica holding the key can open.
//! - [`session`]: one client's negotiated state, with the store's quotas.

mod gateway;
pub mod seal;
pub mod session;

pub use gateway::*;
