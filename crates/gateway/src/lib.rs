//! mcp-edge, the boundary-aware MCP gateway: the `mcp-edge` command.
//!
//! This crate is the assembly and nothing else: the command line ([`cli`]), start-up
//! ([`serve`]), which loads routes.toml with `mcp-edge-config`, classifies it with
//! `mcp-edge-router`, builds every route with `mcp-edge-route` and the gateway with
//! `mcp-edge-core` (both through [`bootstrap`], which reload uses too), then opens the
//! front doors of `mcp-edge-front` and the admin listener of `mcp-edge-admin`.
//!
//! A call then reads top-down through the crates: front door (parse, admit, find the
//! session) → core (aggregate, route by name, map errors) → route (rate limit,
//! deadlines, retries, circuit breaker, bulkhead) → transport (the connector) → the
//! tool server.

pub mod bootstrap;
pub mod certs;
pub mod check;
pub mod cli;
pub mod health;
pub mod reload;
pub mod serve;
pub mod telemetry;
pub mod tools;
