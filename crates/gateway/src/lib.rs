//! mcp-edge, the boundary-aware MCP gateway: the command line, the front doors, and the
//! assembly of routes into a running gateway.
//!
//! The flow of a call reads top-down:
//! [`cli`] → [`serve`] (load routes.toml with `mcp-edge-config`, classify with
//! `mcp-edge-router`, start each route's connector from `mcp-edge-transport`) →
//! [`http`] or [`stdio_front`] (parse, admit, find the session) → [`core`] (aggregate,
//! route by name, forward, relay notifications, map errors) → [`policy`] (each route's
//! rate limit, deadlines, retries, circuit breaker and bulkhead) → the connector.

pub mod admin;
pub mod balance;
pub mod certs;
pub mod check;
pub mod cli;
pub mod core;
pub mod demo;
pub mod front;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod policy;
pub mod reload;
pub mod scope;
pub mod seal;
pub mod serve;
pub mod session;
pub mod stats;
pub mod stdio_front;
pub mod telemetry;
pub mod upstream;
mod ws_front;
