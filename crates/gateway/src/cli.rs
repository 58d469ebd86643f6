//! The command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::{bootstrap, check, serve};
use mcp_edge_demo as demo;
use mcp_edge_front::stdio as stdio_front;

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
    Check(check::CheckArgs),
    /// Run the gateway on a routes file.
    Serve(ServeArgs),
    /// Be an MCP server on stdin/stdout that routes to the configured tool servers.
    Stdio(StdioArgs),
    /// Run the built-in demo tool server.
    DemoTools(DemoArgs),
    /// Print the route table of a running gateway from its /health; exit 0 only when
    /// healthy (1 degraded or down, 2 unreachable): a probe for scripts.
    Health(crate::health::HealthArgs),
    /// Make a development PKI, or look at certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
}

/// `mcp-edge certs …`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a development CA, a server certificate for the gateway and a client certificate.
    Init(crate::certs::InitArgs),
    /// Print subject, SANs, issuer, validity and days left of a PEM file or of what a TLS server presents.
    Inspect(crate::certs::InspectArgs),
}

/// `mcp-edge serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The routes file.
    #[arg(env = mcp_edge_config::ROUTES_ENV, default_value = "routes.toml")]
    pub file: PathBuf,
}

/// `mcp-edge stdio`.
#[derive(Debug, clap::Args)]
pub struct StdioArgs {
    /// The routes file.
    #[arg(env = mcp_edge_config::ROUTES_ENV, default_value = "routes.toml")]
    pub file: PathBuf,
    /// Serve one route as its own server (names unprefixed) instead of all of them.
    #[arg(long)]
    pub route: Option<String>,
}

/// `mcp-edge demo-tools`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Speak MCP on stdin/stdout (the only transport of the demo tools for now).
    #[arg(long, default_value_t = true)]
    pub stdio: bool,
    /// Fault: write a non-JSON line before every message.
    #[arg(long)]
    pub garbage: bool,
    /// Fault: stop answering anything after `initialize`.
    #[arg(long)]
    pub hang: bool,
    /// Fault: never answer anything, `initialize` included.
    #[arg(long)]
    pub hang_initialize: bool,
    /// Fault: write to stderr and exit with this code before reading anything.
    #[arg(long, value_name = "CODE")]
    pub exit_at_start: Option<u8>,
    /// Speak only the stateless 2026-07-28 era (refuse `initialize`).
    #[arg(long)]
    pub stateless: bool,
    /// Paginate `tools/list` in pages of this many tools.
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    /// Fault: keep running after stdin closes.
    #[arg(long)]
    pub linger: bool,
}

/// Sets logging and tracing up from the routes file's `[telemetry]` (read before
/// anything else, so that everything after is logged the way it asks).
fn init_telemetry(file: &Path) -> crate::telemetry::Telemetry {
    let mut settings = crate::telemetry::Settings {
        service_name: "mcp-edge".into(),
        ..Default::default()
    };
    if let Ok(source) = mcp_edge_config::read(file)
        && let (Some(config), _) = mcp_edge_config::parse(&source)
    {
        settings.json_logs = config.telemetry.json_logs;
        settings.otlp_endpoint = config.telemetry.otlp_endpoint.map(|u| u.to_string());
        settings.service_name = config.telemetry.service_name;
    }
    crate::telemetry::init(&settings)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    runtime_with(&RuntimeSettings::default())
}

/// What the routes file says about the runtime, read before it starts.
#[derive(Debug, Default)]
struct RuntimeSettings {
    /// `[gateway] workers`; `None`: one per core.
    workers: Option<usize>,
    /// `[gateway] busy_poll`; zero: off.
    busy_poll: Duration,
}

/// A runtime with `workers` threads (default: one per core available to the process,
/// which in a container honours its CPU limit). One worker is a current-thread runtime,
/// as linkerd2-proxy runs on one core: the I/O driver, the timers and every task on the
/// one thread, with no work-stealing machinery to wake (see docs/PERFORMANCE.md). Only
/// that runtime busy-polls ([`mcp_edge_busy_poll`]).
fn runtime_with(settings: &RuntimeSettings) -> Result<tokio::runtime::Runtime, String> {
    let workers = settings.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let busy_poll = workers == 1 && !settings.busy_poll.is_zero();
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        if !settings.busy_poll.is_zero() {
            tracing::warn!(
                workers,
                "busy_poll is set but takes effect only with workers = 1; not busy-polling"
            );
        }
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    if busy_poll {
        // The current-thread runtime runs on this thread: its state is this thread's.
        mcp_edge_busy_poll::enable(settings.busy_poll);
        builder.on_thread_park(mcp_edge_busy_poll::before_park);
    }
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    if busy_poll {
        runtime.spawn(mcp_edge_busy_poll::spinner());
    }
    Ok(runtime)
}

/// `[gateway] workers` and `busy_poll` from the routes file, read before the runtime
/// starts (a file that does not parse is reported by `serve` itself).
fn configured_runtime(file: &Path) -> RuntimeSettings {
    let Some(config) = mcp_edge_config::read(file)
        .ok()
        .and_then(|source| mcp_edge_config::parse(&source).0)
    else {
        return RuntimeSettings::default();
    };
    RuntimeSettings {
        workers: config.gateway.workers,
        busy_poll: config.gateway.busy_poll,
    }
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-edge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_stdio(file: &Path, route: Option<&str>) -> Result<(), String> {
    let (config, plan) = bootstrap::load(file)?;
    runtime()?.block_on(async {
        let gw = bootstrap::build(&config, &plan)?;
        bootstrap::wait_for_routes(&gw).await;
        let result = stdio_front::serve(gw.clone(), route).await;
        bootstrap::shutdown_routes(&gw).await;
        result
    })
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Certs(CertsCommand::Init(args)) => crate::certs::init(&args),
        Command::Certs(CertsCommand::Inspect(args)) => crate::certs::inspect(&args),
        Command::Health(args) => match runtime() {
            Ok(rt) => rt.block_on(crate::health::health_command(&args)),
            Err(e) => finish(Err(e)),
        },
        Command::Serve(args) => {
            let telemetry = init_telemetry(&args.file);
            let result = runtime_with(&configured_runtime(&args.file))
                .and_then(|rt| rt.block_on(serve::serve(&args.file)));
            drop(telemetry);
            finish(result)
        }
        Command::Stdio(args) => {
            let telemetry = init_telemetry(&args.file);
            let result = run_stdio(&args.file, args.route.as_deref());
            drop(telemetry);
            finish(result)
        }
        Command::DemoTools(args) => {
            if let Some(code) = args.exit_at_start {
                eprintln!("demo-tools: exiting at start with code {code}, as asked");
                return ExitCode::from(code);
            }
            let faults = demo::Faults {
                garbage: args.garbage,
                hang: args.hang,
                hang_initialize: args.hang_initialize,
                stateless: args.stateless,
                page_size: args.page_size,
                linger: args.linger,
            };
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
                .and_then(|rt| {
                    rt.block_on(demo::serve_stdio(faults))
                        .map_err(|e| e.to_string())
                });
            finish(result)
        }
    }
}
