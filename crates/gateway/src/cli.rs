//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::check;

/// mcp-edge: one MCP gateway for tool servers on this host, in a trusted network, and
/// across a trust boundary.
#[derive(Debug, Parser)]
#[command(name = "mcp-edge", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a routes file and print how every route and listener is classified.
    Check(CheckArgs),
}

/// `mcp-edge check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The routes file.
    #[arg(env = mcp_edge_config::ROUTES_ENV, default_value = "routes.toml")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Fail on warnings too, including secrets that cannot be read and files that do
    /// not exist on this machine (which `serve` refuses).
    #[arg(long)]
    pub strict: bool,
}

/// How `check` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people.
    Text,
    /// One JSON document for machines.
    Json,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
    }
}
