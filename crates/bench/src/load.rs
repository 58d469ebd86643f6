//! The load: workers that each keep one call in flight, and what they measured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mcp_edge_protocol::ndjson::{self, Line, LineReader};
use mcp_edge_protocol::{Id, Message};
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::Failure;

/// One worker's way of making a call with a given JSON-RPC id; true when the answer
/// came back, for that id, without an error.
pub(crate) trait Caller: Send + 'static {
    fn call(&mut self, id: u64) -> impl Future<Output = bool> + Send;
}

/// What one measurement saw.
pub(crate) struct Stats {
    pub(crate) calls: usize,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
    /// Sorted latencies, in microseconds.
    micros: Vec<u32>,
}

impl Stats {
    /// What `calls` latencies (unsorted) and `errors` over `elapsed` make.
    pub(crate) fn from_micros(mut micros: Vec<u32>, errors: usize, elapsed: Duration) -> Stats {
        micros.sort_unstable();
        Stats {
            calls: micros.len(),
            errors,
            elapsed,
            micros,
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q`, in milliseconds.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * q).round() as usize;
        f64::from(self.micros[i]) / 1000.0
    }
}

/// Every id handed out in a run comes from here, so no two requests share one.
pub(crate) static IDS: AtomicU64 = AtomicU64::new(1);

/// Runs every worker in a loop for `warmup` then `duration`; measures the latter.
pub(crate) async fn measure<C: Caller>(
    workers: Vec<C>,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let (_, micros, errors) = window(workers, warmup, duration).await;
    Stats::from_micros(micros, errors, duration)
}

/// One window of load: the workers back, the latencies measured (unsorted) and the
/// errors.
pub(crate) async fn window<C: Caller>(
    workers: Vec<C>,
    warmup: Duration,
    duration: Duration,
) -> (Vec<C>, Vec<u32>, usize) {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut micros = Vec::with_capacity(16 * 1024);
                let mut errors = 0;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = worker.call(IDS.fetch_add(1, Ordering::Relaxed)).await;
                    if t0 >= start {
                        if ok {
                            micros
                                .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                        } else {
                            errors += 1;
                        }
                    }
                }
                (worker, micros, errors)
            })
        })
        .collect();
    let mut workers = Vec::with_capacity(tasks.len());
    let mut micros = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((w, m, e)) = task.await {
            workers.push(w);
            micros.extend(m);
            errors += e;
        }
    }
    (workers, micros, errors)
}

/// One target of a side-by-side measurement: its workers, and the process in the path
/// whose CPU time and memory are reported (none for a direct measurement).
pub(crate) struct Target<C> {
    pub(crate) workers: Vec<C>,
    pub(crate) pid: Option<u32>,
}

/// What a side-by-side measurement saw of one target.
pub(crate) struct Measured {
    pub(crate) stats: Stats,
    /// CPU time of the process in the path over the measured windows.
    pub(crate) cpu: Duration,
    /// Its peak RSS over them, in KB.
    pub(crate) peak_rss_kb: u64,
}

/// Measures `targets` side by side, in turns: `rounds` rounds, each giving every
/// target, in order, `duration / rounds` of load after a short warm-up (the first
/// round after `warmup`). Turns rather than one long window each, so that a slow
/// minute on these shared cores weighs on every target alike and the differences
/// between them are measured under the same conditions.
pub(crate) async fn measure_in_turns<C: Caller>(
    mut targets: Vec<Target<C>>,
    warmup: Duration,
    duration: Duration,
    rounds: u32,
) -> Vec<Measured> {
    const REWARM: Duration = Duration::from_millis(100);
    let rounds = rounds.max(1);
    let turn = duration / rounds;
    let mut seen: Vec<(Vec<u32>, usize, Duration)> = targets
        .iter()
        .map(|_| (Vec::new(), 0, Duration::ZERO))
        .collect();
    for round in 0..rounds {
        let warm = if round == 0 { warmup } else { REWARM };
        for (target, (micros, errors, cpu)) in targets.iter_mut().zip(seen.iter_mut()) {
            let pid = target.pid;
            let before = tokio::spawn(async move {
                tokio::time::sleep(warm).await;
                pid.map(|pid| {
                    if round == 0 {
                        crate::usage::reset_peak(pid);
                    }
                    crate::usage::cpu_time(pid)
                })
            });
            let workers = std::mem::take(&mut target.workers);
            let (workers, m, e) = window(workers, warm, turn).await;
            target.workers = workers;
            if let (Some(pid), Ok(Some(before))) = (pid, before.await) {
                *cpu += crate::usage::cpu_time(pid).saturating_sub(before);
            }
            micros.extend(m);
            *errors += e;
        }
    }
    targets
        .iter()
        .zip(seen)
        .map(|(target, (micros, errors, cpu))| Measured {
            stats: Stats::from_micros(micros, errors, turn * rounds),
            cpu,
            peak_rss_kb: target
                .pid
                .map_or(0, |pid| crate::usage::memory_kb(pid, "VmHWM")),
        })
        .collect()
}

/// Any of the benchmark's callers, so that targets of both kinds take turns.
pub(crate) enum AnyCaller {
    Http(HttpSession),
    Stdio(StdioPipe),
}

impl Caller for AnyCaller {
    async fn call(&mut self, id: u64) -> bool {
        match self {
            AnyCaller::Http(session) => session.call(id).await,
            AnyCaller::Stdio(pipe) => pipe.call(id).await,
        }
    }
}

/// A `tools/call` of `tool` with a small message.
pub(crate) fn call_body(id: u64, tool: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"hello"}}}}}}"#).into_bytes()
}

const INITIALIZE: &[u8] = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-edge-bench","version":"0"}}}"#;
const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Whether `body` answers request `id` without an error.
fn answers(body: &[u8], id: u64) -> bool {
    let wanted = format!("\"id\":{id}");
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    has(wanted.as_bytes()) && !has(b"\"error\":")
}

/// One keep-alive HTTP/1.1 connection carrying one MCP session (or none, when the
/// server keeps no sessions).
pub(crate) struct HttpSession {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    path: String,
    id: Option<String>,
    tool: String,
}

impl HttpSession {
    /// Connects to `url`'s host and initializes a session for calls of `tool`.
    pub(crate) async fn open(addr: SocketAddr, path: &str, tool: &str) -> Result<Self, Failure> {
        let sender = connect(addr).await?;
        let mut session = HttpSession {
            sender,
            authority: addr.to_string(),
            path: path.to_owned(),
            id: None,
            tool: tool.to_owned(),
        };
        let response = session.post(INITIALIZE).await?;
        if response.status() != 200 {
            return Err(format!("initialize at {addr}{path}: HTTP {}", response.status()).into());
        }
        session.id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        response.into_body().collect().await?;
        let ack = session.post(INITIALIZED).await?;
        ack.into_body().collect().await?;
        Ok(session)
    }

    async fn post(
        &mut self,
        body: &[u8],
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let mut request = http::Request::post(&self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = &self.id {
            request = request.header("mcp-session-id", id);
        }
        let request = request.body(Full::new(Bytes::copy_from_slice(body)))?;
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }
}

impl Caller for HttpSession {
    async fn call(&mut self, id: u64) -> bool {
        let body = call_body(id, &self.tool);
        match self.post(&body).await {
            Ok(response) if response.status() == 200 => {
                match response.into_body().collect().await {
                    Ok(bytes) => answers(&bytes.to_bytes(), id),
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }
}

/// An HTTP/1.1 connection to `addr`.
pub(crate) async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, Failure> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>>;

/// A tool server's stdin and stdout shared by many workers: each request goes down the
/// one pipe with its own id, and a reader hands each answer to whoever waits for it.
#[derive(Clone)]
pub(crate) struct StdioPipe {
    waiters: Waiters,
    tx: mpsc::Sender<Vec<u8>>,
}

impl StdioPipe {
    /// Starts the writer and the reader, and initializes the server.
    pub(crate) async fn open(stdin: ChildStdin, stdout: ChildStdout) -> Result<Self, Failure> {
        let waiters: Waiters = Arc::default();
        let reader = waiters.clone();
        tokio::spawn(async move {
            let mut lines = LineReader::new(stdout, 1 << 20);
            while let Ok(Some(line)) = lines.next().await {
                let Line::Message(bytes) = line else { continue };
                if let Ok(message) = Message::parse(&bytes)
                    && let Some(Id::Num(id)) = message.id
                {
                    let waiter = reader
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&(id as u64));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(message.error.is_none());
                    }
                }
            }
        });
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        tokio::spawn(async move {
            let mut stdin = stdin;
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
        let pipe = StdioPipe { waiters, tx };
        if !pipe.ask(0, INITIALIZE.to_vec()).await {
            return Err("the tool server did not answer initialize".into());
        }
        pipe.tx.send(ndjson::frame(INITIALIZED)).await?;
        Ok(pipe)
    }

    async fn ask(&self, id: u64, message: Vec<u8>) -> bool {
        let (done, answer) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, done);
        if self.tx.send(ndjson::frame(&message)).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

impl Caller for StdioPipe {
    async fn call(&mut self, id: u64) -> bool {
        self.ask(id, call_body(id, "echo")).await
    }
}
