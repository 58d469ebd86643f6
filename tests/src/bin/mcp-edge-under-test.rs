//! The `mcp-edge` command, built by Cargo for this package's integration tests.
//!
//! Cargo builds a package's own binaries before its integration tests, and only its
//! own: this is `crates/gateway/src/main.rs` again, so the tests run exactly what
//! `mcp-edge` runs, without a second `cargo build` from inside the tests. (The name
//! differs from `mcp-edge` only so that the two binaries do not overwrite each other
//! in the shared target directory.)

use std::process::ExitCode;

fn main() -> ExitCode {
    mcp_edge_gateway::cli::main()
}
