//! The front doors: how agents reach mcp-edge.
//!
//! Where they sit in a call's path: a listener accepts a connection under the caps of
//! [`conn`] (connections, timeouts, body memory); [`http`] reads Streamable HTTP (both
//! protocol eras) and legacy HTTP+SSE, [`ws`] WebSocket, [`stdio`] newline-delimited
//! JSON on the process's own stdin; each admits the client (Host, Origin,
//! credentials), finds its session and hands the message to `mcp-edge-core`'s
//! `Gateway`, then writes the answer back in its own framing.

pub mod conn;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod listener;
pub mod stdio;
mod ws;
