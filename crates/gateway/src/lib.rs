//! mcp-edge, the boundary-aware MCP gateway: the command line and, as the data path
//! lands, the listeners, sessions and routing that the binary runs.
//!
//! The flow of a call reads top-down from [`cli`]: parse the routes file
//! (`mcp-edge-config`), classify every route and listener (`mcp-edge-router`), and act.

pub mod check;
pub mod cli;
