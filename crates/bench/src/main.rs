//! `mcp-edge-bench`: what mcp-edge costs, measured side by side.
//!
//! In one run and one process tree, for each connection count: the demo tool server
//! driven directly over its stdio pipes (every request a unique id, as many in flight
//! as there are connections), then the same tool server behind `mcp-edge serve`,
//! driven over HTTP with one MCP session per connection. Each call is `tools/call`
//! of the trivial `echo` tool. Prints calls/s, latency percentiles, the ratio to
//! direct, and mcp-edge's CPU time per call and peak memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use mcp_edge_protocol::ndjson::{self, Line, LineReader};
use mcp_edge_protocol::{Id, Message};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Load generator for mcp-edge.
#[derive(Debug, Parser)]
#[command(name = "mcp-edge-bench", version, about)]
struct Args {
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    connections: Vec<usize>,
    /// How long each measurement runs.
    #[arg(long, default_value = "5s")]
    duration: mcp_edge_config::HumanDuration,
    /// Warm-up before each measurement (not counted).
    #[arg(long, default_value = "1s")]
    warmup: mcp_edge_config::HumanDuration,
    /// The mcp-edge binary (default: next to this one).
    #[arg(long)]
    mcp_edge: Option<PathBuf>,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let mcp_edge = match args.mcp_edge.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("mcp-edge"),
    };
    if !mcp_edge.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --bins`, or pass --mcp-edge",
            mcp_edge.display()
        )
        .into());
    }
    let run = Run {
        duration: args.duration.get(),
        warmup: args.warmup.get(),
    };
    println!(
        "mcp-edge-bench: tools/call of `echo`, {}s per measurement after {}s warm-up, {} cores shared by the load generator, mcp-edge and the tool server",
        run.duration.as_secs_f64(),
        run.warmup.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>5}  {:<28} {:>9} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12}",
        "conns",
        "target",
        "calls/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "x direct",
        "edge CPU/call",
        "edge peak RSS"
    );
    for &connections in &args.connections {
        let direct = run.direct_stdio(&mcp_edge, connections).await?;
        direct.print(connections, "direct (stdio)", None, None);
        let (through, usage) = run.through_gateway(&mcp_edge, connections).await?;
        through.print(
            connections,
            "mcp-edge (HTTP -> stdio)",
            Some(&direct),
            Some(usage),
        );
    }
    Ok(())
}

struct Run {
    duration: Duration,
    warmup: Duration,
}

/// Latencies of one measurement.
struct Stats {
    calls: usize,
    errors: usize,
    elapsed: Duration,
    micros: Vec<u32>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.micros[i]) / 1000.0
    }

    fn print(
        &self,
        connections: usize,
        target: &str,
        direct: Option<&Stats>,
        usage: Option<Usage>,
    ) {
        let ratio = direct.map_or_else(
            || "1.00".to_owned(),
            |d| format!("{:.2}", self.rate() / d.rate()),
        );
        let (cpu, rss) = match usage {
            Some(u) => (
                format!(
                    "{:.1} us",
                    u.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
                ),
                format!("{:.1} MB", u.peak_rss_kb as f64 / 1024.0),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{connections:>5}  {target:<28} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {ratio:>9} {cpu:>12} {rss:>12}",
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
        );
        if self.errors > 0 {
            println!("       ({} calls failed and are not counted)", self.errors);
        }
    }
}

/// What mcp-edge used during a measurement.
#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    peak_rss_kb: u64,
}

fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at state.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `workers` loops of `call` for warm-up plus duration; measures the latter.
async fn measure<F, Fut>(run: &Run, workers: usize, call: F) -> Stats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now() + run.warmup;
    let end = start + run.duration;
    let ids = Arc::new(AtomicU64::new(1));
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let call = call.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut micros = Vec::with_capacity(64 * 1024);
                let mut errors = 0;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = call(worker, ids.fetch_add(1, Ordering::Relaxed)).await;
                    if t0 >= start {
                        if ok {
                            micros
                                .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                        } else {
                            errors += 1;
                        }
                    }
                }
                (micros, errors)
            })
        })
        .collect();
    let mut micros = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((m, e)) = task.await {
            micros.extend(m);
            errors += e;
        }
    }
    micros.sort_unstable();
    Stats {
        calls: micros.len(),
        errors,
        elapsed: run.duration,
        micros,
    }
}

fn echo_request(id: u64, name: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"message":"hello"}}}}}}"#).into_bytes()
}

impl Run {
    /// The demo tool server over its own pipes, `connections` requests in flight.
    async fn direct_stdio(&self, mcp_edge: &Path, connections: usize) -> Result<Stats, Failure> {
        let mut child = Command::new(mcp_edge)
            .args(["demo-tools", "--stdio"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>> = Arc::default();
        {
            let pending = pending.clone();
            tokio::spawn(async move {
                let mut lines = LineReader::new(stdout, 1 << 20);
                while let Ok(Some(Line::Message(bytes))) = lines.next().await {
                    if let Ok(message) = Message::parse(&bytes)
                        && let Some(Id::Num(id)) = message.id
                    {
                        let waiter = pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&(id as u64));
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(message.error.is_none());
                        }
                    }
                }
            });
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                if stdin.write_all(&first).await.is_err() {
                    break;
                }
                while let Ok(more) = rx.try_recv() {
                    if stdin.write_all(&more).await.is_err() {
                        return;
                    }
                }
                let _ = stdin.flush().await;
            }
        });
        let ask = {
            let pending = pending.clone();
            let tx = tx.clone();
            move |id: u64, message: Vec<u8>| {
                let pending = pending.clone();
                let tx = tx.clone();
                async move {
                    let (done, answer) = oneshot::channel();
                    pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id, done);
                    if tx.send(ndjson::frame(&message)).await.is_err() {
                        return false;
                    }
                    answer.await.unwrap_or(false)
                }
            }
        };
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#.to_vec();
        if !ask(0, init).await {
            return Err("the demo tool server did not initialize".into());
        }
        tx.send(ndjson::frame(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ))
        .await?;
        let stats = measure(self, connections, move |_, id| {
            ask(id, echo_request(id, "echo"))
        })
        .await;
        drop(tx);
        let _ = child.kill().await;
        Ok(stats)
    }

    /// The same tool server behind `mcp-edge serve`: one HTTP connection and one MCP
    /// session per connection.
    async fn through_gateway(
        &self,
        mcp_edge: &Path,
        connections: usize,
    ) -> Result<(Stats, Usage), Failure> {
        let dir = std::env::temp_dir().join(format!("mcp-edge-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let routes = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n[defaults]\nconcurrency = {{ max_in_flight = 1024, queue = 4096 }}\n\n[[route]]\nname = \"demo\"\ncommand = [\"{}\", \"demo-tools\", \"--stdio\"]\n",
            mcp_edge.display()
        );
        std::fs::write(dir.join("routes.toml"), routes)?;
        let mut gateway = Command::new(mcp_edge)
            .current_dir(&dir)
            .env("MCP_EDGE_LOG", "warn")
            .args(["serve", "routes.toml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let addr = listening_address(&mut gateway).await?;
        let pid = gateway.id().ok_or("mcp-edge exited")?;
        let mut sessions = Vec::with_capacity(connections);
        for _ in 0..connections {
            sessions.push(Session::open(addr).await?);
        }
        let sessions: Arc<Vec<tokio::sync::Mutex<Session>>> =
            Arc::new(sessions.into_iter().map(tokio::sync::Mutex::new).collect());
        let cpu_before = cpu_time(pid);
        let stats = measure(self, connections, move |worker, id| {
            let sessions = sessions.clone();
            async move {
                let mut session = sessions[worker].lock().await;
                session.call(&echo_request(id, "demo__echo")).await
            }
        })
        .await;
        // CPU includes the warm-up; scale it to the measured share.
        let cpu = cpu_time(pid)
            .saturating_sub(cpu_before)
            .mul_f64(self.duration.as_secs_f64() / (self.duration + self.warmup).as_secs_f64());
        let usage = Usage {
            cpu,
            peak_rss_kb: peak_rss_kb(pid),
        };
        let _ = gateway.kill().await;
        let _ = std::fs::remove_dir_all(&dir);
        Ok((stats, usage))
    }
}

async fn listening_address(gateway: &mut Child) -> Result<std::net::SocketAddr, Failure> {
    use tokio::io::AsyncBufReadExt;
    let stderr = gateway.stderr.take().ok_or("no stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("mcp-edge: listening on http://") {
                return rest.trim_end_matches("/mcp").parse().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("mcp-edge did not start listening")?;
    // Keep draining stderr so the gateway never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

/// One keep-alive HTTP/1.1 connection carrying one MCP session.
struct Session {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: std::net::SocketAddr,
    id: String,
}

impl Session {
    async fn open(addr: std::net::SocketAddr) -> Result<Session, Failure> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut session = Session {
            sender,
            addr,
            id: String::new(),
        };
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
        let response = session.post(init).await?;
        session.id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .ok_or("no session id")?
            .to_owned();
        response.into_body().collect().await?;
        let ack = session
            .post(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await?;
        ack.into_body().collect().await?;
        Ok(session)
    }

    async fn post(
        &mut self,
        body: &[u8],
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let mut request = http::Request::post("/mcp")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if !self.id.is_empty() {
            request = request.header("mcp-session-id", &self.id);
        }
        let request = request.body(Full::new(Bytes::copy_from_slice(body)))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    async fn call(&mut self, body: &[u8]) -> bool {
        match self.post(body).await {
            Ok(response) if response.status() == 200 => {
                match response.into_body().collect().await {
                    Ok(bytes) => !bytes.to_bytes().windows(8).any(|w| w == b"\"error\":"),
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }
}
