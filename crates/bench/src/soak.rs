//! The soak: healthy load through mcp-edge for a while, with hostile clients at the
//! same time (slow heads, stalled bodies, idle and flooding connections, bodies held
//! open, session floods, garbage), then a pause; what the gateway holds (memory, file
//! descriptors, tasks, sessions, connections) must come back to where it started, and
//! the healthy calls must all have been answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Failure;
use crate::load::{Caller as _, HttpSession};
use crate::procs::{self, Gateway, Tuning};

/// How long, and how hard.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long the load and the faults run.
    #[arg(long, default_value = "3m")]
    duration: mcp_edge_config::HumanDuration,
    /// Healthy connections calling all the while.
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

/// What the gateway holds at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    rss_kb: u64,
    fds: u64,
    tasks: u64,
    sessions: u64,
    connections: u64,
}

async fn held(gw: &Gateway) -> Result<Held, Failure> {
    let (_, metrics) = procs::admin_get(gw.admin, "/metrics").await?;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    let fds = std::fs::read_dir(format!("/proc/{}/fd", gw.pid))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(Held {
        rss_kb: crate::usage::memory_kb(gw.pid, "VmRSS"),
        fds,
        tasks: gauge("mcp_edge_runtime_tasks"),
        sessions: gauge("mcp_edge_sessions"),
        connections: gauge("mcp_edge_connections_open"),
    })
}

/// Writes `bytes` on a fresh connection and leaves it (the caller holds or drops it).
async fn send(addr: SocketAddr, bytes: &[u8]) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(bytes).await.ok()?;
    Some(stream)
}

/// One round of every fault, each bounded; returns when the round's connections are
/// let go.
async fn fault_round(addr: SocketAddr) {
    let post = |body: &[u8], length: usize| {
        let mut r = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: {length}\r\n\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let mut held = Vec::new();
    // Slow heads, silent and idle connections.
    for _ in 0..20 {
        held.extend(send(addr, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await);
        held.extend(send(addr, b"").await);
    }
    // Stalled bodies and bodies held open.
    for _ in 0..5 {
        held.extend(send(addr, &post(b"{\"jsonrpc\"", 100)).await);
        held.extend(send(addr, &post(&vec![b' '; 256 * 1024], 4_000_000)).await);
    }
    // A session flood that never finishes its handshake.
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"soak","version":"0"}}}"#;
    for _ in 0..30 {
        if let Some(mut s) = send(addr, &post(init, init.len())).await {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
        }
    }
    // Garbage: malformed JSON, a body too large for the limit, an oversized header.
    for request in [
        post(b"{\"jsonrpc\":", 11),
        post(&vec![b'x'; 5 << 20], 5 << 20),
        format!(
            "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nx-big: {}\r\n\r\n",
            "x".repeat(1 << 20)
        )
        .into_bytes(),
    ] {
        if let Some(mut s) = send(addr, &request).await {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
        }
    }
    // Hold the round's connections a while, then let them go (or be cut off).
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(held);
}

/// Runs the soak and prints what the gateway held before, at its peak and after.
// Long: the soak's script, step by step in the order it prints
pub(crate) async fn run(
    mcp_edge: &std::path::Path,
    args: &SoakArgs,
    tuning: Tuning,
) -> Result<(), Failure> {
    let (_tool_server, server_addr) = procs::http_tool_server().await?;
    let mut routes = procs::routes_toml(&format!("http://{server_addr}/mcp"), false, tuning)?;
    // Short timeouts, so that what the faults leave behind is let go within the pause.
    routes = routes.replacen(
        "[gateway.limits]\n",
        "[gateway.limits]\nheader_timeout = \"2s\"\nbody_timeout = \"2s\"\nidle_timeout = \"3s\"\nhandshake_timeout = \"2s\"\nmax_buffered_bytes = 1048576\n",
        1,
    );
    let gw = Gateway::start(mcp_edge, &routes).await?;
    let addr = gw.addr;
    println!(
        "soak: {} of healthy load on {} connections, with a round of faults every few seconds ({tuning})",
        args.duration, args.connections
    );
    // Warm up, then the baseline.
    let mut warm = HttpSession::open(addr, "/mcp", "http__echo").await?;
    for id in 0..200 {
        warm.call(id).await;
    }
    drop(warm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = held(&gw).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for w in 0..args.connections {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let Ok(mut session) = HttpSession::open(addr, "/mcp", "http__echo").await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut id = (w as u64) << 32;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                if session.call(id).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let faults = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fault_round(addr).await;
                rounds += 1;
            }
            rounds
        })
    };
    let until = Instant::now() + args.duration.get();
    let mut peak = before;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = held(&gw).await?;
        peak = Held {
            rss_kb: peak.rss_kb.max(now.rss_kb),
            fds: peak.fds.max(now.fds),
            tasks: peak.tasks.max(now.tasks),
            sessions: peak.sessions.max(now.sessions),
            connections: peak.connections.max(now.connections),
        };
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let rounds = faults.await.unwrap_or(0);
    // The pause: timeouts, sweeps and idle connections do their work.
    let settle = Instant::now() + Duration::from_secs(20);
    let mut after = held(&gw).await?;
    // The healthy workers' own sessions stay (they were not ended), and so may the
    // pooled connections to the tool server their concurrency opened; the faults'
    // connections, sessions and tasks go.
    let healthy = args.connections as u64;
    let back = |b: &Held, a: &Held| {
        a.fds <= b.fds + healthy + 4
            && a.tasks <= b.tasks + 8
            && a.sessions <= b.sessions + healthy
            && a.connections <= b.connections + 1
            && a.rss_kb <= b.rss_kb + b.rss_kb / 2 + 8 * 1024
    };
    while Instant::now() < settle && !back(&before, &after) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        after = held(&gw).await?;
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "held", "before", "peak", "after"
    );
    for (name, b, p, a) in [
        (
            "RSS (MB)",
            before.rss_kb / 1024,
            peak.rss_kb / 1024,
            after.rss_kb / 1024,
        ),
        ("fds", before.fds, peak.fds, after.fds),
        ("tasks", before.tasks, peak.tasks, after.tasks),
        ("sessions", before.sessions, peak.sessions, after.sessions),
        (
            "connections",
            before.connections,
            peak.connections,
            after.connections,
        ),
    ] {
        println!("{name:<12} {b:>10} {p:>10} {a:>10}");
    }
    println!("healthy calls: {ok} answered, {failed} failed; {rounds} rounds of faults");
    gw.stop().await;
    if failed > 0 {
        return Err(format!("{failed} healthy calls failed during the soak").into());
    }
    if !back(&before, &after) {
        return Err("what the gateway holds did not come back to its baseline".into());
    }
    println!(
        "soak: every healthy call answered; memory, fds, tasks, sessions and connections back to baseline"
    );
    Ok(())
}
