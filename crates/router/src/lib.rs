//! The router's first job: for every route and listener, which boundary it crosses,
//! why, and which transport fits.
//!
//! | boundary | where | transport |
//! |---|---|---|
//! | `host` | a command, or a loopback address or `localhost` name | stdio, or plain HTTP on loopback |
//! | `trusted` | inside `[boundaries]` trusted networks or domains | HTTP (or HTTPS) |
//! | `untrusted` | anything else, including names that cannot be placed | HTTPS only, verified |
//!
//! [`plan`] applies these rules to a validated configuration and refuses, with a reason
//! and a fix, every configuration that would cross an untrusted boundary in plaintext.
//!
//! ```
//! use mcp_edge_config::{parse, Source, Boundary};
//! use mcp_edge_router::plan;
//!
//! let source = Source::new("routes.toml", r#"
//!     [boundaries]
//!     trusted_networks = ["10.0.0.0/8"]
//!     [[route]]
//!     name = "docs"
//!     address = "10.4.0.7:8080"
//! "#);
//! let (config, _) = parse(&source);
//! let (plan, _) = plan(&config.unwrap());
//! let route = &plan.unwrap().routes[0];
//! assert_eq!(route.boundary, Boundary::Trusted);
//! assert_eq!(route.reason.to_string(), "10.4.0.7 is inside trusted network 10.0.0.0/8");
//! assert_eq!(route.transport.endpoint(), "http://10.4.0.7:8080/mcp");
//! ```

pub mod classify;
pub mod plan;

pub use classify::{
    Classification, Reason, classify_host, classify_ip, classify_listener, classify_name,
};
pub use mcp_edge_config::Boundary;
pub use plan::{
    ListenerPlan, ListenerSecurity, Plan, RoutePlan, Security, Transport, admission, plan, redact,
};
