//! The child's life: spawn, open the MCP connection, watch, restart, shut down.

use std::future::Future;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio as Pipe};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use mcp_edge_protocol::ndjson::{Line, LineReader};
use mcp_edge_protocol::{Message, jsonrpc, mcp};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{INHERITED_ENV, Phase, Shared, StdioConfig};
use crate::{Call, Reply, ServerInfo, UpstreamError};
use mcp_edge_upstream::conn::Conn;

/// A child that stays up this long has its restart backoff reset.
const HEALTHY_UPTIME: Duration = Duration::from_secs(30);

struct Running {
    child: Child,
    pid: Option<u32>,
    conn: Arc<Conn>,
    reader: JoinHandle<()>,
    stderr: JoinHandle<()>,
    close_stdin: Option<oneshot::Sender<()>>,
}

enum End {
    Exited(std::io::Result<ExitStatus>),
    StdoutClosed,
    Hung(UpstreamError),
    Shutdown,
}

pub(super) async fn run(shared: Arc<Shared>) {
    let route = shared.cfg.route.clone();
    let mut failures: u32 = 0;
    loop {
        if shared.state().shutting_down {
            break;
        }
        shared.phase.send_replace(Phase::Starting);
        let started = Instant::now();
        let failure = match spawn(&shared) {
            Err(reason) => reason,
            Ok(mut running) => match one_life(&shared, &mut running).await {
                Some(reason) => reason,
                None => break,
            },
        };
        if shared.state().shutting_down {
            break;
        }
        if started.elapsed() >= HEALTHY_UPTIME {
            failures = 0;
        }
        let delay = backoff(&shared.cfg, failures);
        failures = failures.saturating_add(1);
        tracing::error!(route = %route, retry_in_ms = delay.as_millis() as u64, "tool server failed: {failure}");
        {
            let mut state = shared.state();
            state.pid = None;
            state.restarts += 1;
            state.last_error = Some((SystemTime::now(), failure));
        }
        if mcp_edge_upstream::wait_backoff(&shared.phase, &shared.shutdown, Instant::now() + delay)
            .await
        {
            break;
        }
    }
    shared.phase.send_replace(Phase::Stopped);
    shared.stopped.send_replace(true);
}

/// Opens a started child and serves it until it ends: why it failed, or `None` when
/// it was shut down.
async fn one_life(shared: &Arc<Shared>, running: &mut Running) -> Option<String> {
    let route = &shared.cfg.route;
    let info = match open(shared, running).await {
        Ok(info) => info,
        Err(reason) => {
            running
                .conn
                .fail_all(&UpstreamError::Crashed(for_callers(&reason).to_owned()));
            stop(&shared.cfg, running).await;
            return Some(reason);
        }
    };
    {
        let mut state = shared.state();
        state.conn = Some(running.conn.clone());
        state.pid = running.pid;
        state.info = Some(info.clone());
    }
    tracing::info!(route = %route, pid = running.pid, version = %info.protocol_version, "tool server ready");
    shared.phase.send_replace(Phase::Ready);
    shared.sink.availability(route, Some(info));
    let end = serve(shared, running).await;
    {
        let mut state = shared.state();
        state.conn = None;
        state.info = None;
    }
    shared.sink.availability(route, None);
    let failure = ended(shared, running, end).await?;
    // Grandchildren (behind `npx`, `sh -c`) may still hold the pipes.
    running.reader.abort();
    running.stderr.abort();
    Some(failure)
}

/// What the end of a child's service means: the failure to report (its calls failed
/// with it), or `None` after a shutdown.
async fn ended(shared: &Shared, running: &mut Running, end: End) -> Option<String> {
    let route = &shared.cfg.route;
    match end {
        End::Shutdown => {
            running.conn.fail_all(&UpstreamError::Closed);
            stop(&shared.cfg, running).await;
            shared.state().pid = None;
            None
        }
        End::Hung(why) => {
            let reason =
                format!("the tool server did not answer the watchdog's ping ({why}); killed it");
            running
                .conn
                .fail_all(&UpstreamError::Crashed(reason.clone()));
            kill(running).await;
            Some(reason)
        }
        End::StdoutClosed => {
            let status =
                tokio::time::timeout(Duration::from_millis(500), running.child.wait()).await;
            let (reason, detail) = exit_reason(running, status.ok()).await;
            tracing::warn!(route = %route, "{detail}");
            running
                .conn
                .fail_all(&UpstreamError::Crashed(reason.clone()));
            stop(&shared.cfg, running).await;
            Some(reason)
        }
        End::Exited(status) => {
            // The child may have answered just before it exited: read what it wrote
            // before failing what is left.
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut running.reader).await;
            let (reason, detail) = exit_reason(running, Some(status)).await;
            tracing::warn!(route = %route, "{detail}");
            running
                .conn
                .fail_all(&UpstreamError::Crashed(reason.clone()));
            Some(reason)
        }
    }
}

/// The delay before the next start after `failures` failures in a row.
pub(super) fn backoff(cfg: &StdioConfig, failures: u32) -> Duration {
    mcp_edge_upstream::backoff(cfg.backoff_base, cfg.backoff_max, failures)
}

fn spawn(shared: &Arc<Shared>) -> Result<Running, String> {
    let cfg = &shared.cfg;
    let program = cfg.program.display();
    if let Some(cwd) = &cfg.cwd
        && !cwd.is_dir()
    {
        return Err(format!(
            "working directory {} does not exist (check `cwd` in routes.toml)",
            cwd.display()
        ));
    }
    let mut command = Command::new(&cfg.program);
    command.args(&cfg.args).env_clear();
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.envs(cfg.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &cfg.cwd {
        command.current_dir(cwd);
    }
    command
        .stdin(Pipe::piped())
        .stdout(Pipe::piped())
        .stderr(Pipe::piped())
        // A group of its own: signals reach wrappers' children too (`npx`, `sh -c`), and
        // a Ctrl-C at the gateway's terminal is the gateway's to handle, not the child's.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "program `{program}` was not found (ENOENT): check `command` in routes.toml, or that it is on PATH"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "program `{program}` cannot be executed (EACCES): check that it is a program and has execute permission"
        ),
        _ => format!("could not start `{program}`: {e}"),
    })?;
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the child's stdio pipes were not set up".to_owned());
    };
    tracing::info!(route = %cfg.route, pid, program = %program, "spawned tool server");
    let route: Arc<str> = cfg.route.as_str().into();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (close_stdin, closed) = oneshot::channel();
    let conn = Arc::new(Conn::new(route.clone(), tx, shared.sink.clone()));
    tokio::spawn(write_loop(stdin, rx, closed));
    let stderr = tokio::spawn(stderr_loop(route.clone(), pid, stderr, conn.clone()));
    let reader = tokio::spawn(read_loop(
        route,
        stdout,
        conn.clone(),
        cfg.max_message_bytes,
    ));
    Ok(Running {
        child,
        pid,
        conn,
        reader,
        stderr,
        close_stdin: Some(close_stdin),
    })
}

async fn write_loop(
    stdin: ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
    mut closed: oneshot::Receiver<()>,
) {
    let mut stdin = tokio::io::BufWriter::new(stdin);
    loop {
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = &mut closed => None,
        };
        let Some(first) = first else { break };
        if stdin.write_all(&first).await.is_err() {
            break;
        }
        // Write whatever else is queued before one flush.
        while let Ok(more) = rx.try_recv() {
            if stdin.write_all(&more).await.is_err() {
                return;
            }
        }
        if stdin.flush().await.is_err() {
            break;
        }
    }
    // Dropping stdin closes it: the spec's first step of shutdown.
}

async fn read_loop(route: Arc<str>, stdout: ChildStdout, conn: Arc<Conn>, max: usize) {
    let mut lines = LineReader::new(stdout, max);
    loop {
        match lines.next().await {
            Ok(Some(Line::Message(bytes))) => match Message::parse(&bytes) {
                Ok(message) => {
                    mcp_edge_busy_poll::progress();
                    conn.dispatch(message);
                }
                Err(e) => {
                    let preview: String =
                        String::from_utf8_lossy(&bytes).chars().take(200).collect();
                    tracing::warn!(route = %route, "skipped a line on stdout that is not a JSON-RPC message ({e}): {preview}");
                }
            },
            Ok(Some(Line::Oversized(n))) => {
                tracing::warn!(route = %route, bytes = n, max, "skipped a message larger than the limit");
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(route = %route, "reading the tool server's stdout failed: {e}");
                break;
            }
        }
    }
}

async fn stderr_loop(route: Arc<str>, pid: Option<u32>, stderr: ChildStderr, conn: Arc<Conn>) {
    let mut lines = LineReader::new(stderr, 64 * 1024);
    while let Ok(Some(line)) = lines.next().await {
        match line {
            Line::Message(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                // Scrubbed of known secrets before it is kept or logged.
                let text = mcp_edge_upstream::redact::redact(&text);
                conn.note_stderr(&text);
                // The spec: stderr is for logs, not errors.
                tracing::info!(target: "mcp_edge::stderr", route = %route, pid, in_flight = ?conn.in_flight(), "{text}");
            }
            Line::Oversized(n) => {
                tracing::info!(target: "mcp_edge::stderr", route = %route, pid, "({n} bytes of stderr in one line, skipped)");
            }
        }
    }
}

/// Opens the MCP connection: `initialize` (session era, which dual-era servers also
/// accept and which legacy servers require first), then `server/discover` when a
/// stateless-only server refuses `initialize`.
async fn open(shared: &Shared, running: &mut Running) -> Result<Arc<ServerInfo>, String> {
    let cfg = &shared.cfg;
    let deadline = Instant::now() + cfg.init_timeout;
    let reply = handshake(
        running,
        mcp::INITIALIZE,
        mcp_edge_upstream::handshake::initialize_params(),
        deadline,
    )
    .await?;
    match reply {
        Reply::Result(result) => {
            let info = mcp_edge_upstream::handshake::session_info(&result)?;
            running
                .conn
                .send(jsonrpc::notification(mcp::INITIALIZED, None))
                .await;
            Ok(Arc::new(info))
        }
        Reply::Error(init_error) => {
            match handshake(
                running,
                mcp::DISCOVER,
                mcp_edge_upstream::handshake::discover_params(),
                deadline,
            )
            .await?
            {
                Reply::Result(result) => {
                    running.conn.set_stateless();
                    mcp_edge_upstream::handshake::stateless_info(&result).map(Arc::new)
                }
                Reply::Error(_) => Err(format!(
                    "the tool server refused initialize: {}",
                    init_error.get()
                )),
            }
        }
    }
}

async fn handshake(
    running: &mut Running,
    method: &str,
    params: Box<serde_json::value::RawValue>,
    deadline: Instant,
) -> Result<Reply, String> {
    let call = running.conn.call(Call {
        method: method.to_owned(),
        params: Some(params),
        deadline,
        events: None,
        traceparent: None,
        name: None,
        session: None,
    });
    tokio::select! {
        reply = call => reply.map_err(|e| match e {
            UpstreamError::Timeout(d) => format!("no answer to {method} within {}ms", d.as_millis()),
            other => format!("{method} failed: {other}"),
        }),
        status = running.child.wait() => {
            // A child that dies while starting says why on stderr: that goes in the error.
            Err(exit_reason(running, Some(status)).await.1)
        }
    }
}

/// Serves until the child exits, hangs, closes stdout, or shutdown is asked for.
async fn serve(shared: &Shared, running: &mut Running) -> End {
    type Ping = Pin<Box<dyn Future<Output = Result<Reply, UpstreamError>> + Send>>;
    let cfg = &shared.cfg;
    let watchdog = !cfg.ping_interval.is_zero();
    let mut next_ping = Instant::now() + cfg.ping_interval;
    let mut ping: Option<Ping> = None;
    loop {
        tokio::select! {
            status = running.child.wait() => return End::Exited(status),
            _ = &mut running.reader => return End::StdoutClosed,
            () = shared.shutdown.notified() => return End::Shutdown,
            () = tokio::time::sleep_until(next_ping), if watchdog && ping.is_none() => {
                if !running.conn.is_idle() {
                    next_ping = Instant::now() + cfg.ping_interval;
                    continue;
                }
                let conn = running.conn.clone();
                let deadline = Instant::now() + cfg.ping_timeout;
                ping = Some(Box::pin(async move {
                    conn.call(Call { method: mcp::PING.to_owned(), params: None, deadline, events: None, traceparent: None, name: None, session: None }).await
                }));
            }
            result = async {
                match ping.as_mut() {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            } => {
                ping = None;
                next_ping = Instant::now() + cfg.ping_interval;
                match result {
                    // Any answer, even an error, shows the child is alive and reading.
                    Ok(_) => {}
                    Err(e @ UpstreamError::Timeout(_)) => return End::Hung(e),
                    Err(_) => {}
                }
            }
        }
    }
}

/// The part of a failure a client may read: without the tail of the child's stderr,
/// which may hold anything (another client's data, a credential it printed).
pub(super) fn for_callers(failure: &str) -> &str {
    failure.split(STDERR_MARK).next().unwrap_or(failure)
}

/// Where the stderr tail starts in a failure's detail.
const STDERR_MARK: &str = "; stderr: ";

/// Why the child is gone: a short reason for callers, and the same with the tail of
/// its stderr for the log (and for start-up failures, where it is what the operator
/// needs). Mid-call errors leave stderr out: it may hold other clients' data.
async fn exit_reason(
    running: &mut Running,
    status: Option<std::io::Result<ExitStatus>>,
) -> (String, String) {
    // Let stderr drain so the tail has the child's last words.
    let _ = tokio::time::timeout(Duration::from_millis(300), &mut running.stderr).await;
    let status = match status {
        Some(Ok(status)) => describe(status),
        Some(Err(e)) => format!("could not be waited for ({e})"),
        None => "closed its stdout".to_owned(),
    };
    let short = format!("the tool server {status}");
    let tail = running.conn.stderr_tail();
    let detail = if tail.is_empty() {
        short.clone()
    } else {
        format!("{short}{STDERR_MARK}{tail}")
    };
    (short, detail)
}

fn signal_group(running: &Running, signal: nix::sys::signal::Signal) {
    if let Some(pid) = running.pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

async fn kill(running: &mut Running) {
    signal_group(running, nix::sys::signal::Signal::SIGKILL);
    let _ = running.child.start_kill();
    let _ = running.child.wait().await;
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("exited ({status})"),
    }
}

/// Shutdown as the spec says: close stdin, wait; SIGTERM, wait; SIGKILL.
async fn stop(cfg: &StdioConfig, running: &mut Running) {
    if let Some(close) = running.close_stdin.take() {
        let _ = close.send(());
    }
    if tokio::time::timeout(cfg.shutdown_grace, running.child.wait())
        .await
        .is_ok()
    {
        return;
    }
    if let Some(pid) = running.pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(cfg.shutdown_grace, running.child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    tracing::warn!(route = %cfg.route, pid = running.pid, "tool server ignored stdin close and SIGTERM; killing it");
    let _ = running.child.start_kill();
    let _ = running.child.wait().await;
}
