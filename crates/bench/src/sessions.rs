//! Session scale: open many MCP sessions through mcp-edge, some with a GET stream, hold
//! them, and see what each costs and that every one still works.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;

use crate::Failure;
use crate::load::{call_body, connect};
use crate::procs::{self, Gateway};

/// How many sessions, and how they are held.
#[derive(Debug, clap::Args)]
pub(crate) struct SessionArgs {
    /// Sessions to open.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// The share of sessions that also hold a GET stream open (one connection each).
    #[arg(long, default_value_t = 0.5)]
    streams: f64,
    /// Keep-alive connections that carry the sessions' POSTs.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long to hold every session before checking them.
    #[arg(long, default_value = "2s")]
    hold: mcp_edge_config::HumanDuration,
}

async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    authority: &str,
    session: Option<&str>,
    body: Vec<u8>,
) -> Result<http::Response<Incoming>, Failure> {
    let mut request = http::Request::post("/mcp")
        .header("host", authority)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = session {
        request = request
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25");
    }
    sender.ready().await?;
    Ok(sender
        .send_request(request.body(Full::new(Bytes::from(body)))?)
        .await?)
}

/// Opens `count` sessions over one connection, one after another.
async fn open_sessions(addr: std::net::SocketAddr, count: usize) -> Result<Vec<String>, Failure> {
    let authority = addr.to_string();
    let mut sender = connect(addr).await?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-edge-bench","version":"0"}}}"#;
        let response = post(&mut sender, &authority, None, init.to_vec()).await?;
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                format!(
                    "initialize answered {} without a session",
                    response.status()
                )
            })?
            .to_owned();
        response.into_body().collect().await?;
        let ack = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let response = post(&mut sender, &authority, Some(&id), ack.to_vec()).await?;
        if response.status() != 202 {
            return Err(format!("notifications/initialized: HTTP {}", response.status()).into());
        }
        response.into_body().collect().await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Opens the session's GET stream on a connection of its own; the open body is kept.
async fn open_stream(addr: std::net::SocketAddr, id: String) -> Result<Incoming, Failure> {
    let mut sender = connect(addr).await?;
    let request = http::Request::get("/mcp")
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    if response.status() != 200 {
        return Err(format!("GET stream: HTTP {}", response.status()).into());
    }
    // The connection task lives on while the body is held.
    Ok(response.into_body())
}

/// Calls `echo` once in each session, over one connection; the failures.
async fn call_each(addr: std::net::SocketAddr, ids: Vec<String>) -> Result<usize, Failure> {
    let authority = addr.to_string();
    let mut sender = connect(addr).await?;
    let mut failed = 0;
    for id in ids {
        let call = crate::load::IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = post(
            &mut sender,
            &authority,
            Some(&id),
            // The shared route: 10,000 sessions measure what a client session costs the
            // gateway; one of its own upstream (per client, the default) is measured
            // in the main run.
            call_body(call, "shared__echo"),
        )
        .await?;
        let ok = response.status() == 200;
        let body = response.into_body().collect().await?.to_bytes();
        let wanted = format!("\"id\":{call}");
        if !ok || !body.windows(wanted.len()).any(|w| w == wanted.as_bytes()) {
            failed += 1;
        }
    }
    Ok(failed)
}

/// Splits `items` into `parts` runs of nearly equal length.
fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let parts = parts.max(1);
    let mut out: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        out[i % parts].push(item);
    }
    out
}

// Long: the session-scale run's script, step by step in the order it prints
pub(crate) async fn run(
    mcp_edge: &std::path::Path,
    args: &SessionArgs,
    tuning: procs::Tuning,
) -> Result<(), Failure> {
    let (_server, server_addr) = procs::http_tool_server().await?;
    let routes = procs::routes_toml(&format!("http://{server_addr}/mcp"), false, tuning)?;
    let gateway = Gateway::start(mcp_edge, &routes).await?;
    let addr = gateway.addr;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_kb = crate::usage::memory_kb(gateway.pid, "VmRSS");

    let started = tokio::time::Instant::now();
    let per = split((0..args.count).collect(), args.connections);
    let opened: Vec<_> = per
        .into_iter()
        .map(|part| tokio::spawn(open_sessions(addr, part.len())))
        .collect();
    let mut ids = Vec::with_capacity(args.count);
    for task in opened {
        ids.extend(task.await??);
    }
    let opening = started.elapsed();

    let with_stream = ((args.count as f64) * args.streams.clamp(0.0, 1.0)).round() as usize;
    let mut streams = Vec::with_capacity(with_stream);
    for batch in ids[..with_stream].chunks(256) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|id| tokio::spawn(open_stream(addr, id.clone())))
            .collect();
        for task in tasks {
            streams.push(task.await??);
        }
    }
    tokio::time::sleep(args.hold.get()).await;
    let held_kb = crate::usage::memory_kb(gateway.pid, "VmRSS");
    let health: serde_json::Value =
        serde_json::from_slice(&procs::admin_get(gateway.admin, "/health").await?.1)?;

    let checks: Vec<_> = split(ids, args.connections)
        .into_iter()
        .map(|part| tokio::spawn(call_each(addr, part)))
        .collect();
    let mut failed = 0;
    for task in checks {
        failed += task.await??;
    }
    let closed = streams.iter().filter(|s| s.is_end_stream()).count();

    let per_session = (held_kb.saturating_sub(idle_kb) as f64 * 1024.0) / args.count.max(1) as f64;
    println!(
        "mcp-edge-bench sessions: {} sessions ({} with a GET stream, each on its own connection; POSTs over {} connections)",
        args.count, with_stream, args.connections
    );
    println!(
        "  opened in {:.2} s ({:.0} sessions/s); the gateway reports {} sessions",
        opening.as_secs_f64(),
        args.count as f64 / opening.as_secs_f64(),
        health["sessions"]
    );
    println!(
        "  RSS idle {:.1} MB, holding them {:.1} MB: {:.1} KB per session",
        idle_kb as f64 / 1024.0,
        held_kb as f64 / 1024.0,
        per_session / 1024.0
    );
    println!(
        "  after holding {}s: {} of {} sessions failed a tools/call; {} of {} GET streams had closed",
        args.hold.get().as_secs_f64(),
        failed,
        args.count,
        closed,
        with_stream
    );
    let ok = failed == 0 && closed == 0 && per_session <= 30.0 * 1024.0;
    println!(
        "  target (<= 30 KB per session, all held without errors): {}",
        if ok { "met" } else { "MISSED" }
    );
    drop(streams);
    gateway.stop().await;
    Ok(())
}
