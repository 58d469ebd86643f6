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
//! A route holds them as one [`Connector`]. What they share, the MCP conversation
//! itself (the handshake, the call table, ids and progress tokens), is
//! `mcp-edge-upstream`'s; the bytes on the wire toward HTTP servers are
//! `mcp-edge-client`'s.
//!
//! Dropping a call's future cancels it: the tool server gets `notifications/cancelled`.

mod connector;
pub mod http;
pub mod link;
pub mod stdio;

pub use connector::{Connector, State};
pub use http::{Http, HttpConfig};
pub use link::{Link, LinkConfig, LinkKind};
pub use mcp_edge_call::{Call, CallEvent, Reply, UpstreamError};
pub use mcp_edge_upstream::{NoSink, Phase, ServerInfo, Sink, redact};
pub mod pool;
pub use pool::{LinkPool, StdioPool};
pub use stdio::{Stdio, StdioConfig};
