//! The routes file: its schema, its validation, and diagnostics a person can act on.
//!
//! Loading is two layers, as in linkerd and agentgateway: [`spec`] mirrors the TOML key
//! for key (serde, unknown keys refused), and [`model`] is the validated configuration
//! the gateway runs on, where durations are [`std::time::Duration`]s within range,
//! counts are non-zero, URLs parsed and relative paths resolved. Every problem found
//! on the way is a [`Diagnostic`] with a span; [`Source::locate`] turns it into
//! `file:line:column` with the offending line and a caret.
//!
//! Deciding which boundary a route crosses, and whether that is allowed, is the
//! router's job (`mcp-edge-router`), not this crate's.
//!
//! ```
//! use mcp_edge_config::{parse, Source};
//!
//! let source = Source::new("routes.toml", r#"
//!     [[route]]
//!     name = "docs"
//!     url = "http://127.0.0.1:3000/mcp"
//!     timeout = "5s"
//! "#);
//! let (config, diagnostics) = parse(&source);
//! assert!(diagnostics.is_empty());
//! let config = config.unwrap();
//! assert_eq!(config.routes[0].policies.timeout.as_secs(), 5);
//! ```

pub mod diag;
pub mod duration;
pub mod environment;
pub mod model;
pub mod secret;
pub mod spec;

use std::path::Path;

pub use diag::{Diagnostic, Located, Severity, Source, Span, Written};
pub use duration::HumanDuration;
pub use environment::environment_diagnostics;
pub use model::{Config, Endpoint, Route};
pub use secret::{MaybeSecret, Secret, SecretError, SecretRef};
pub use spec::{Boundary, Protocol};

/// The environment variable naming the routes file when none is given.
pub const ROUTES_ENV: &str = "MCP_EDGE_ROUTES";

/// Reads a routes file.
pub fn read(path: &Path) -> std::io::Result<Source> {
    let text = std::fs::read_to_string(path)?;
    Ok(Source::new(path, text))
}

/// Parses and validates a routes file. Returns the configuration when there is no error,
/// and every diagnostic found (warnings accompany a valid configuration).
pub fn parse(source: &Source) -> (Option<Config>, Vec<Diagnostic>) {
    let (config, diagnostics) = parse_partial(source);
    let config = config.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    (config, diagnostics)
}

/// Like [`parse`], but returns what could be validated even when there are errors
/// (`None` only for a TOML syntax or type error), so a report can also show what later
/// stages think of the rest. Never run a configuration from here that came with errors.
pub fn parse_partial(source: &Source) -> (Option<Config>, Vec<Diagnostic>) {
    match toml::from_str::<spec::RoutesSpec>(source.text()) {
        Ok(spec) => {
            let (config, diagnostics) = model::validate(spec, &source.base_dir());
            (Some(config), diagnostics)
        }
        Err(e) => {
            let message = e.message().trim_end().to_owned();
            let help = syntax_help(&message);
            let inline_secret = message.contains(secret::INLINE_REFUSED);
            let mut diagnostic = Diagnostic::error(e.span(), message);
            if inline_secret {
                diagnostic = diagnostic.concealed();
            }
            if let Some(help) = help {
                diagnostic = diagnostic.help(help);
            }
            (None, vec![diagnostic])
        }
    }
}

fn syntax_help(message: &str) -> Option<&'static str> {
    if message.starts_with("unknown field") {
        Some("check the spelling; README.md lists every key of routes.toml")
    } else if message.starts_with("missing field") {
        Some("add the key; README.md lists what each table needs")
    } else if message.contains("invalid type") {
        Some("check the value's type against README.md (strings are quoted, lists use [ ])")
    } else {
        None
    }
}
