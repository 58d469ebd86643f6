//! The `mcp-edge` command. Everything lives in the library; this only hands over.

use std::process::ExitCode;

fn main() -> ExitCode {
    mcp_edge_gateway::cli::main()
}
