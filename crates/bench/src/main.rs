//! `mcp-edge-bench`: what mcp-edge costs, measured side by side in one run.
//!
//! The tool server is the official Rust SDK's (`rmcp`), built into this binary
//! (`mcp-edge-bench tool-server`), serving a trivial `echo` tool over Streamable HTTP
//! with JSON responses and over stdio. For each connection count the run measures, in
//! one process tree: that server directly over HTTP, the same load through a byte
//! relay (the floor for any process in the path) and through mcp-edge's HTTP route,
//! the server directly over its stdio pipes, and the same load through mcp-edge's
//! stdio route. Every request carries a JSON-RPC id unique in the run, and an answer
//! counts only when it carries the id that was asked. It prints calls/s, latency
//! percentiles, the ratio to direct, and the CPU time per call and peak memory of the
//! process in the path; then start-to-ready, idle memory and reloads under load.
//!
//! `mcp-edge-bench sessions` opens and holds many sessions, and reports memory per
//! session.

mod load;
mod procs;
mod relay;
mod sessions;
mod soak;
mod tool_server;
mod usage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::load::{
    AnyCaller, HttpSession, Measured, Stats, StdioPipe, Target, measure, measure_in_turns,
};
use crate::procs::Gateway;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Load generator for mcp-edge.
#[derive(Debug, Parser)]
#[command(name = "mcp-edge-bench", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    connections: Vec<usize>,
    /// How long each measurement runs.
    #[arg(long, default_value = "5s")]
    duration: mcp_edge_config::HumanDuration,
    /// Warm-up before each measurement (not counted).
    #[arg(long, default_value = "1s")]
    warmup: mcp_edge_config::HumanDuration,
    /// Which routes to measure.
    #[arg(long, value_delimiter = ',', default_value = "http,stdio")]
    routes: Vec<Transport>,
    /// The mcp-edge binary (default: next to this one).
    #[arg(long, global = true)]
    mcp_edge: Option<PathBuf>,
    /// mcp-edge's `[gateway] workers`, comma-separated: the whole run is made once per
    /// value, in this order. `1` is a current-thread runtime (mcp-edge given one of
    /// the shared cores); `0` leaves it unset, one worker per core (mcp-edge's default).
    #[arg(long, global = true, value_delimiter = ',', default_value = "1,0")]
    workers: Vec<usize>,
    /// mcp-edge's `[gateway] busy_poll` in the runs with `workers = 1` (the only runtime
    /// that busy-polls); `0s` turns it off.
    #[arg(long, global = true, default_value = "100us")]
    busy_poll: mcp_edge_config::HumanDuration,
    /// Each measurement is taken in this many turns per target, alternating between the
    /// targets compared (direct, relay, mcp-edge), so that they share the machine's
    /// conditions; the first turn comes after the warm-up, each later one after 100 ms.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Reloads to make under load at the end (0 skips them, e.g. to profile one route).
    #[arg(long, default_value_t = 10)]
    reloads: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    Http,
    Stdio,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Opens many sessions through mcp-edge and holds them; reports memory per session.
    Sessions(sessions::SessionArgs),
    /// Healthy load plus hostile clients for a while; what mcp-edge holds must come back
    /// to its baseline.
    Soak(soak::SoakArgs),
    /// The benchmark's tool server (rmcp): `echo` over stdio or Streamable HTTP.
    ToolServer {
        /// Serve over stdin/stdout.
        #[arg(long, conflicts_with = "http")]
        stdio: bool,
        /// Serve Streamable HTTP (JSON responses) on this address.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// With `--http`: a session per `initialize` (a stateful server), not none.
        #[arg(long, requires = "http")]
        sessions: bool,
    },
    /// A byte relay to ADDR on an ephemeral loopback port: one more process, no parsing.
    Relay {
        /// Where each connection is relayed.
        #[arg(long)]
        to: std::net::SocketAddr,
    },
}

fn main() -> Result<(), Failure> {
    let args = Args::parse();
    if let Some(Cmd::Relay { to }) = args.command {
        return relay::serve(to);
    }
    // The tool server runs as `#[tokio::main]` would run it: a thread per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            Some(Cmd::ToolServer { stdio: true, .. }) => tool_server::stdio().await,
            Some(Cmd::ToolServer {
                http: Some(addr),
                sessions,
                ..
            }) => tool_server::http(addr, sessions).await,
            Some(Cmd::ToolServer { .. }) => Err("tool-server needs --stdio or --http ADDR".into()),
            Some(Cmd::Relay { .. }) => Ok(()),
            Some(Cmd::Sessions(s)) => {
                let tuning = tuning(&args.run, args.run.workers.first().copied().unwrap_or(0));
                sessions::run(&mcp_edge(args.run.mcp_edge)?, &s, tuning).await
            }
            Some(Cmd::Soak(s)) => {
                let tuning = tuning(&args.run, args.run.workers.first().copied().unwrap_or(0));
                soak::run(&mcp_edge(args.run.mcp_edge)?, &s, tuning).await
            }
            None => {
                let mcp_edge = mcp_edge(args.run.mcp_edge.clone())?;
                for (n, &workers) in args.run.workers.iter().enumerate() {
                    if n > 0 {
                        println!();
                    }
                    run(&mcp_edge, &args.run, tuning(&args.run, workers)).await?;
                }
                Ok(())
            }
        }
    })
}

/// mcp-edge's runtime settings for a `--workers` value (0: unset).
fn tuning(args: &RunArgs, workers: usize) -> procs::Tuning {
    procs::Tuning {
        workers: (workers > 0).then_some(workers),
        busy_poll: if workers == 1 {
            args.busy_poll.get()
        } else {
            Duration::ZERO
        },
    }
}

/// The mcp-edge binary to measure.
fn mcp_edge(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("mcp-edge"),
    };
    if !path.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bins`, or pass --mcp-edge",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// mcp-edge's CPU time and peak RSS over a measurement.
#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    peak_rss_kb: u64,
}

/// One row of the table.
struct Row<'a> {
    connections: usize,
    target: &'a str,
    stats: &'a Stats,
    direct: Option<&'a Stats>,
    usage: Option<Usage>,
}

fn header() {
    println!(
        "{:>5}  {:<22} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "conns",
        "target",
        "calls/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "x direct",
        "+p50 ms",
        "CPU/call",
        "peak RSS"
    );
}

impl Row<'_> {
    fn print(&self) {
        let s = self.stats;
        let (ratio, added) = match self.direct {
            Some(d) => (
                format!("{:.2}", s.rate() / d.rate()),
                format!("{:+.3}", s.quantile(0.5) - d.quantile(0.5)),
            ),
            None => ("1.00".to_owned(), "-".to_owned()),
        };
        let (cpu, rss) = match self.usage {
            Some(u) => (
                format!("{:.1}us", u.cpu.as_secs_f64() * 1e6 / s.calls.max(1) as f64),
                format!("{:.1}MB", u.peak_rss_kb as f64 / 1024.0),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:>5}  {:<22} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {ratio:>8} {added:>9} {cpu:>9} {rss:>9}",
            self.connections,
            self.target,
            s.rate(),
            s.quantile(0.50),
            s.quantile(0.90),
            s.quantile(0.99),
        );
        if s.errors > 0 {
            println!("       ({} calls failed and are not counted)", s.errors);
        }
    }
}

impl<'a> Row<'a> {
    /// A direct measurement.
    fn direct(connections: usize, target: &'a str, stats: &'a Stats) -> Row<'a> {
        Row {
            connections,
            target,
            stats,
            direct: None,
            usage: None,
        }
    }

    /// The same load through a process in the path, compared with `direct`.
    fn through(
        connections: usize,
        target: &'a str,
        measured: &'a Measured,
        direct: &'a Stats,
    ) -> Row<'a> {
        Row {
            connections,
            target,
            stats: &measured.stats,
            direct: Some(direct),
            usage: Some(Usage {
                cpu: measured.cpu,
                peak_rss_kb: measured.peak_rss_kb,
            }),
        }
    }
}

/// What the run found, for the summary against the targets.
#[derive(Default)]
struct Findings {
    http_ratio_16: Option<f64>,
    added_p50_1: Option<f64>,
    /// What the byte relay added, for scale.
    relay_added_p50_1: Option<f64>,
    p99_ratio_128: Option<f64>,
    stdio_rate_16: Option<f64>,
    peak_rss_128_kb: Option<u64>,
    /// Calls/s with the status page polled over calls/s without.
    status_page_ratio: Option<f64>,
    failed_calls: usize,
}

/// The whole run against one mcp-edge configuration.
// Long: the benchmark's script, step by step in the order it prints; each step is a call
async fn run(mcp_edge: &Path, args: &RunArgs, tuning: procs::Tuning) -> Result<(), Failure> {
    let (warmup, duration) = (args.warmup.get(), args.duration.get());
    let (_server, server_addr) = procs::http_tool_server().await?;
    let url = format!("http://{server_addr}/mcp");
    let (relay, relay_addr) = procs::relay(server_addr).await?;
    let relay_pid = relay.id().ok_or("the relay exited")?;
    let routes = procs::routes_toml(&url, false, tuning)?;
    let gateway = Gateway::start(mcp_edge, &routes).await?;
    let idle_rss_kb = usage::memory_kb(gateway.pid, "VmRSS");
    println!(
        "mcp-edge-bench: tools/call of `echo` on an rmcp tool server, {}s per measurement after {}s warm-up, {} cores shared by the load generator, mcp-edge ({}) and the tool server",
        duration.as_secs_f64(),
        warmup.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        tuning
    );
    header();
    let mut found = Findings::default();
    for &connections in &args.connections {
        if args.routes.contains(&Transport::Http) {
            let targets = vec![
                Target {
                    workers: sessions(server_addr, "echo", connections).await?,
                    pid: None,
                },
                Target {
                    workers: sessions(relay_addr, "echo", connections).await?,
                    pid: Some(relay_pid),
                },
                Target {
                    workers: sessions(gateway.addr, "http__echo", connections).await?,
                    pid: Some(gateway.pid),
                },
            ];
            let [direct, relayed, through] = side_by_side(targets, args).await?;
            Row::direct(connections, "direct HTTP (rmcp)", &direct.stats).print();
            Row::through(connections, "  via a byte relay", &relayed, &direct.stats).print();
            Row::through(connections, "mcp-edge HTTP route", &through, &direct.stats).print();
            let (direct, relayed, usage, through) = (
                &direct.stats,
                &relayed.stats,
                through.peak_rss_kb,
                &through.stats,
            );
            found.failed_calls += direct.errors + relayed.errors + through.errors;
            match connections {
                1 => {
                    found.added_p50_1 = Some(through.quantile(0.5) - direct.quantile(0.5));
                    found.relay_added_p50_1 = Some(relayed.quantile(0.5) - direct.quantile(0.5));
                }
                16 => found.http_ratio_16 = Some(through.rate() / direct.rate()),
                128 => {
                    found.p99_ratio_128 = Some(through.quantile(0.99) / direct.quantile(0.99));
                    found.peak_rss_128_kb = Some(usage);
                }
                _ => {}
            }
        }
        if args.routes.contains(&Transport::Stdio) {
            let mut child = procs::stdio_tool_server()?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let pipe = StdioPipe::open(stdin, stdout).await?;
            let through = sessions(gateway.addr, "stdio__echo", connections).await?;
            let targets = vec![
                Target {
                    workers: (0..connections)
                        .map(|_| AnyCaller::Stdio(pipe.clone()))
                        .collect(),
                    pid: None,
                },
                Target {
                    workers: through.into_iter().map(AnyCaller::Http).collect(),
                    pid: Some(gateway.pid),
                },
            ];
            let [direct, through] = side_by_side(targets, args).await?;
            let _ = child.kill().await;
            Row::direct(connections, "direct stdio (rmcp)", &direct.stats).print();
            Row::through(connections, "mcp-edge stdio route", &through, &direct.stats).print();
            found.failed_calls += direct.stats.errors + through.stats.errors;
            if connections == 16 {
                found.stdio_rate_16 = Some(through.stats.rate());
            }
            if connections == 128 {
                found.peak_rss_128_kb = found.peak_rss_128_kb.max(Some(through.peak_rss_kb));
            }
        }
    }
    let status_page = status_page_under_load(&gateway, args.rounds, warmup, duration).await?;
    let per_client = per_client_costs(mcp_edge, args, tuning).await?;
    let reloads = if args.reloads > 0 {
        Some(reloads_under_load(&gateway, &url, args.reloads, tuning, warmup, duration).await?)
    } else {
        None
    };
    println!();
    println!(
        "start to ready: {:.1} ms   idle RSS: {:.1} MB",
        gateway.start_to_ready.as_secs_f64() * 1e3,
        idle_rss_kb as f64 / 1024.0
    );
    if let Some(reloads) = &reloads {
        println!(
            "reloads under 16-connection load: {} reloads, took {} ms (max {:.2} ms); {} calls during them, {} failed",
            reloads.took_ms.len(),
            reloads
                .took_ms
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            reloads.took_ms.iter().copied().fold(0.0, f64::max),
            reloads.stats.calls,
            reloads.stats.errors,
        );
    }
    let [quiet, polled] = &status_page.stats;
    let page_ratio = polled.rate() / quiet.rate();
    println!(
        "status page and /metrics each fetched 10 times a second under 16-connection load: {} pages; {:.0} calls/s (p50 {:.3} ms) against {:.0} (p50 {:.3} ms) without, {page_ratio:.2}x",
        status_page.pages,
        polled.rate(),
        polled.quantile(0.5),
        quiet.rate(),
        quiet.quantile(0.5),
    );
    found.status_page_ratio = Some(page_ratio);
    let [shared, own] = &per_client.at_16;
    println!(
        "per-client upstream sessions (the default) at 16 connections: {:.0} calls/s, {:.1}us CPU/call, against {:.0} calls/s, {:.1}us on one shared session ({:.2}x); a new client's first call {:.3} ms (it opens the upstream session) against {:.3} ms for its next; {:.1} KB more in mcp-edge per client session with one open",
        own.stats.rate(),
        cpu_per_call(own),
        shared.stats.rate(),
        cpu_per_call(shared),
        own.stats.rate() / shared.stats.rate(),
        per_client.first_ms,
        per_client.next_ms,
        per_client.kb_per_session,
    );
    found.failed_calls += shared.stats.errors + own.stats.errors + per_client.failed;
    found.failed_calls += quiet.errors + polled.errors;
    summary(&found, &gateway, idle_rss_kb, reloads.as_ref(), tuning);
    gateway.stop().await;
    Ok(())
}

/// `connections` sessions at `addr`, each ready to call `tool`.
async fn sessions(
    addr: std::net::SocketAddr,
    tool: &str,
    connections: usize,
) -> Result<Vec<HttpSession>, Failure> {
    let mut sessions = Vec::with_capacity(connections);
    for _ in 0..connections {
        sessions.push(HttpSession::open(addr, "/mcp", tool).await?);
    }
    Ok(sessions)
}

/// The targets measured in turns (`--rounds`), as many results as targets.
async fn side_by_side<C: load::Caller, const N: usize>(
    targets: Vec<Target<C>>,
    args: &RunArgs,
) -> Result<[Measured; N], Failure> {
    let measured =
        measure_in_turns(targets, args.warmup.get(), args.duration.get(), args.rounds).await;
    measured
        .try_into()
        .map_err(|_| "a side-by-side measurement lost a target".into())
}

/// What upstream sessions per client cost.
struct PerClient {
    /// 16 connections on a shared upstream session, then on their own.
    at_16: [Measured; 2],
    /// Median latency of a new client's first call, which opens its upstream session.
    first_ms: f64,
    /// Median latency of its next call.
    next_ms: f64,
    /// mcp-edge's resident memory per client session holding an upstream session.
    kb_per_session: f64,
    /// Calls that failed.
    failed: usize,
}

/// CPU time per call of a measurement, in microseconds.
fn cpu_per_call(m: &Measured) -> f64 {
    m.cpu.as_secs_f64() * 1e6 / m.stats.calls.max(1) as f64
}

/// Per-client upstream sessions against one shared session, on a tool server with
/// sessions (the main one has none, so a session per client costs nothing there), behind
/// a gateway of its own: 16 connections in turns on the `shared` route and on `http`
/// (one upstream session each); then 200 new clients, each making two calls on `http`,
/// for what opening an upstream session costs.
async fn per_client_costs(
    mcp_edge: &Path,
    args: &RunArgs,
    tuning: procs::Tuning,
) -> Result<PerClient, Failure> {
    let (_server, addr) = procs::http_tool_server_with_sessions().await?;
    let routes = procs::routes_toml(&format!("http://{addr}/mcp"), false, tuning)?;
    let gateway = Gateway::start(mcp_edge, &routes).await?;
    let shared = sessions(gateway.addr, "shared__echo", 16).await?;
    let own = sessions(gateway.addr, "http__echo", 16).await?;
    let targets = vec![
        Target {
            workers: shared.into_iter().map(AnyCaller::Http).collect(),
            pid: Some(gateway.pid),
        },
        Target {
            workers: own.into_iter().map(AnyCaller::Http).collect(),
            pid: Some(gateway.pid),
        },
    ];
    let at_16: [Measured; 2] = side_by_side(targets, args).await?;
    const NEW: usize = 200;
    let before = usage::memory_kb(gateway.pid, "VmRSS");
    let (mut first, mut next, mut failed) = (Vec::new(), Vec::new(), 0);
    let mut held = Vec::with_capacity(NEW);
    for _ in 0..NEW {
        let mut session = HttpSession::open(gateway.addr, "/mcp", "http__echo").await?;
        for latencies in [&mut first, &mut next] {
            let started = std::time::Instant::now();
            let id = load::IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !load::Caller::call(&mut session, id).await {
                failed += 1;
            }
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
        }
        held.push(session);
    }
    let after = usage::memory_kb(gateway.pid, "VmRSS");
    drop(held);
    gateway.stop().await;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(PerClient {
        at_16,
        first_ms: median(&mut first),
        next_ms: median(&mut next),
        kb_per_session: after.saturating_sub(before) as f64 / NEW as f64,
        failed,
    })
}

struct StatusPage {
    /// The 16 connections' calls without, then with, the pages fetched.
    stats: [Stats; 2],
    /// Status pages rendered meanwhile.
    pages: u64,
}

/// The HTTP route at 16 connections in turns, without and then with the status page
/// and `/metrics` each fetched ten times a second: what an open status page (which
/// asks every 5 s) and a scraper (every 15 s) cost the callers, fifty times over.
async fn status_page_under_load(
    gateway: &Gateway,
    rounds: u32,
    warmup: Duration,
    duration: Duration,
) -> Result<StatusPage, Failure> {
    let rounds = rounds.max(1);
    let turn = duration / rounds;
    let mut workers = sessions(gateway.addr, "http__echo", 16).await?;
    let mut seen: [(Vec<u32>, usize); 2] = Default::default();
    let pages = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    for round in 0..rounds {
        let warm = if round == 0 {
            warmup
        } else {
            Duration::from_millis(100)
        };
        for (polled, (micros, errors)) in seen.iter_mut().enumerate() {
            let poller =
                (polled == 1).then(|| tokio::spawn(poll_admin(gateway.admin, pages.clone())));
            let (back, m, e) = load::window(workers, warm, turn).await;
            workers = back;
            if let Some(poller) = poller {
                poller.abort();
            }
            micros.extend(m);
            *errors += e;
        }
    }
    let pages = pages.load(std::sync::atomic::Ordering::Relaxed);
    if pages == 0 {
        return Err("the status page was never rendered".into());
    }
    Ok(StatusPage {
        stats: seen.map(|(micros, errors)| Stats::from_micros(micros, errors, turn * rounds)),
        pages,
    })
}

/// Fetches `/` and `/metrics` ten times a second; counts the pages that rendered.
async fn poll_admin(
    admin: std::net::SocketAddr,
    pages: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Ok((200, body)) = procs::admin_get(admin, "/").await
            && body.starts_with(b"<!doctype html>")
        {
            pages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = procs::admin_get(admin, "/metrics").await;
    }
}

struct Reloads {
    took_ms: Vec<f64>,
    stats: Stats,
}

/// Reloads the gateway over and over (adding, then removing, a route) while 16
/// connections call the HTTP route; how long each took, and whether a call failed.
async fn reloads_under_load(
    gateway: &Gateway,
    url: &str,
    count: u32,
    tuning: procs::Tuning,
    warmup: Duration,
    duration: Duration,
) -> Result<Reloads, Failure> {
    let mut sessions = Vec::with_capacity(16);
    for _ in 0..16 {
        sessions.push(HttpSession::open(gateway.addr, "/mcp", "http__echo").await?);
    }
    let load = tokio::spawn(measure(sessions, warmup, duration));
    tokio::time::sleep(warmup).await;
    let admin = gateway.admin;
    let mut took_ms = Vec::new();
    for n in 0..count {
        let before = digest(admin).await?;
        gateway.rewrite(&procs::routes_toml(url, n % 2 == 0, tuning)?)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let health = health(admin).await?;
            if health["config"]["digest"] != before {
                if let Some(took) = health["config"]["last_reload"]["took_ms"].as_f64() {
                    took_ms.push(took);
                }
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err("a reload did not take effect within 5 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(duration / (count + 1)).await;
    }
    let stats = load.await?;
    Ok(Reloads { took_ms, stats })
}

async fn health(admin: std::net::SocketAddr) -> Result<serde_json::Value, Failure> {
    let (_, body) = procs::admin_get(admin, "/health").await?;
    Ok(serde_json::from_slice(&body)?)
}

async fn digest(admin: std::net::SocketAddr) -> Result<serde_json::Value, Failure> {
    Ok(health(admin).await?["config"]["digest"].clone())
}

// Long: one line per target, in the order the performance issues list them
fn summary(
    found: &Findings,
    gateway: &Gateway,
    idle_rss_kb: u64,
    reloads: Option<&Reloads>,
    tuning: procs::Tuning,
) {
    println!();
    println!("targets (issue #8), mcp-edge with {tuning}:");
    let line = |what: &str, value: Option<String>, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        println!(
            "  {verdict:<12} {what}: {}",
            value.unwrap_or_else(|| "-".to_owned())
        );
    };
    line(
        "HTTP route at 16 connections >= 0.45x direct",
        found.http_ratio_16.map(|r| format!("{r:.2}x")),
        found.http_ratio_16.map(|r| r >= 0.45),
    );
    line(
        "added p50 at 1 connection <= 0.080 ms",
        found.added_p50_1.map(|a| match found.relay_added_p50_1 {
            Some(relay) => format!("{a:.3} ms (a byte relay adds {relay:.3} ms)"),
            None => format!("{a:.3} ms"),
        }),
        found.added_p50_1.map(|a| a <= 0.08),
    );
    line(
        "p99 at 128 connections <= 2.5x direct's",
        found.p99_ratio_128.map(|r| format!("{r:.2}x")),
        found.p99_ratio_128.map(|r| r <= 2.5),
    );
    line(
        "stdio route at 16 connections >= 15,000 calls/s",
        found.stdio_rate_16.map(|r| format!("{r:.0} calls/s")),
        found.stdio_rate_16.map(|r| r >= 15_000.0),
    );
    line(
        "idle RSS <= 12 MB",
        Some(format!("{:.1} MB", idle_rss_kb as f64 / 1024.0)),
        Some(idle_rss_kb <= 12 * 1024),
    );
    line(
        "peak RSS at 128 connections <= 25 MB",
        found
            .peak_rss_128_kb
            .map(|k| format!("{:.1} MB", k as f64 / 1024.0)),
        found.peak_rss_128_kb.map(|k| k <= 25 * 1024),
    );
    line(
        "start to ready < 100 ms",
        Some(format!(
            "{:.1} ms",
            gateway.start_to_ready.as_secs_f64() * 1e3
        )),
        Some(gateway.start_to_ready < Duration::from_millis(100)),
    );
    let worst = reloads.map(|r| r.took_ms.iter().copied().fold(0.0, f64::max));
    line(
        "reload < 10 ms, no call lost",
        reloads
            .zip(worst)
            .map(|(r, worst)| format!("max {worst:.2} ms, {} failed", r.stats.errors)),
        reloads
            .zip(worst)
            .map(|(r, worst)| !r.took_ms.is_empty() && worst < 10.0 && r.stats.errors == 0),
    );
    line(
        "status page and /metrics polled 10/s: HTTP at 16 connections >= 0.95x without",
        found.status_page_ratio.map(|r| format!("{r:.2}x")),
        found.status_page_ratio.map(|r| r >= 0.95),
    );
    line(
        "every call answered, with its own id",
        Some(format!("{} failed", found.failed_calls)),
        Some(found.failed_calls == 0),
    );
    println!("  (sessions: run `mcp-edge-bench sessions` for memory per session)");
}
