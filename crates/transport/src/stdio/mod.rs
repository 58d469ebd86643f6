//! A tool server as a supervised child process, spoken to over stdio.
//!
//! One [`Stdio`] owns one route's child. It spawns it with the configured arguments,
//! environment and working directory; opens the MCP connection (`initialize`, or
//! `server/discover` for a stateless-era server); serves any number of concurrent calls
//! from any number of client sessions, rewriting ids so each caller sees its own; and
//! keeps the child alive:
//!
//! - a crash fails the calls in flight at once, with the exit status and the tail of
//!   stderr, and the child is restarted with exponential backoff and jitter;
//! - a watchdog pings the child and restarts it when it stops answering;
//! - a call that times out (or whose caller goes away) is cancelled upstream with
//!   `notifications/cancelled`;
//! - at most `max_in_flight` calls run at once and at most `queue` wait: beyond that a
//!   call fails fast with [`UpstreamError::Busy`] instead of growing memory;
//! - stderr is logged line by line with the route and the ids in flight;
//! - shutdown closes stdin, waits, then sends SIGTERM, then SIGKILL.

mod supervisor;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::{Call, Reply, ServerInfo, Sink, UpstreamError};
use mcp_edge_upstream::conn::Conn;

/// How to run one stdio tool server.
#[derive(Clone)]
pub struct StdioConfig {
    /// The route's name, for logs and errors.
    pub route: String,
    /// The program: a path, or a name looked up in `PATH`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set for the child (secrets already resolved). The child
    /// inherits only a minimal environment besides (see [`INHERITED_ENV`]).
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// The largest message accepted from the child.
    pub max_message_bytes: usize,
    /// How long the child may take to answer `initialize`.
    pub init_timeout: Duration,
    /// How often the watchdog pings the child while no call is in flight (calls in flight
    /// have their own deadlines; a busy child is not a hung one); zero disables it.
    pub ping_interval: Duration,
    /// How long a ping may take before the child counts as hung.
    pub ping_timeout: Duration,
    /// First restart delay; doubles per consecutive failure, with jitter.
    pub backoff_base: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
    /// How long shutdown waits after closing stdin, and again after SIGTERM.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for StdioConfig {
    /// Arguments and environment values may be resolved secrets: only how many
    /// arguments there are, and the variables' names, are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("StdioConfig")
            .field("route", &self.route)
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("env", &env)
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

impl StdioConfig {
    /// A configuration with mcp-edge's defaults for everything but the command.
    pub fn new(route: impl Into<String>, program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        StdioConfig {
            route: route.into(),
            program: program.into(),
            args,
            env: Vec::new(),
            cwd: None,
            max_message_bytes: 4 * 1024 * 1024,
            init_timeout: Duration::from_secs(20),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Environment variables a child inherits from mcp-edge. Everything else (the gateway's
/// own tokens and keys above all) stays out unless the route's `env` sets it.
pub const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SYSTEMROOT",
    "PYTHONIOENCODING",
];

pub use crate::Phase;

/// A snapshot for health reporting.
#[derive(Debug, Clone)]
pub struct Status {
    /// The phase.
    pub phase: Phase,
    /// The child's pid while one runs.
    pub pid: Option<u32>,
    /// How many times the child was (re)started after the first.
    pub restarts: u64,
    /// The last failure and when it happened.
    pub last_error: Option<(SystemTime, String)>,
    /// Calls in flight.
    pub in_flight: usize,
    /// What the tool server said about itself, while ready.
    pub info: Option<Arc<ServerInfo>>,
}

/// A supervised stdio tool server. Cheap to clone; all clones share the child.
#[derive(Clone)]
pub struct Stdio {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Stdio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stdio")
            .field("route", &self.shared.cfg.route)
            .finish()
    }
}

struct Shared {
    cfg: StdioConfig,
    sink: Arc<dyn Sink>,
    state: Mutex<State>,
    phase: watch::Sender<Phase>,
    shutdown: Notify,
    stopped: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    conn: Option<Arc<Conn>>,
    info: Option<Arc<ServerInfo>>,
    pid: Option<u32>,
    restarts: u64,
    last_error: Option<(SystemTime, String)>,
    shutting_down: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Stdio {
    /// Starts supervising the tool server. Must be called inside a tokio runtime.
    pub fn spawn(cfg: StdioConfig, sink: Arc<dyn Sink>) -> Stdio {
        let shared = Arc::new(Shared {
            cfg,
            sink,
            state: Mutex::new(State::default()),
            phase: watch::Sender::new(Phase::Starting),
            shutdown: Notify::new(),
            stopped: watch::Sender::new(false),
        });
        tokio::spawn(supervisor::run(shared.clone()));
        Stdio { shared }
    }

    /// The route this serves.
    pub fn route(&self) -> &str {
        &self.shared.cfg.route
    }

    /// Makes one call.
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        let conn = self.connection(call.deadline).await?;
        conn.call(call).await
    }

    /// Sends a notification to the tool server (e.g. `notifications/roots/list_changed`).
    pub async fn notify(&self, method: &str, params: Option<&serde_json::value::RawValue>) {
        let conn = self.shared.state().conn.clone();
        if let Some(conn) = conn {
            conn.send(mcp_edge_protocol::jsonrpc::notification(method, params))
                .await;
        }
    }

    /// Answers a request the tool server made (delivered as [`crate::CallEvent::Request`]).
    pub async fn respond(&self, id: &mcp_edge_protocol::Id, reply: Reply) {
        let conn = self.shared.state().conn.clone();
        if let Some(conn) = conn {
            conn.respond(id, reply).await;
        }
    }

    /// Waits until the tool server is ready, or `deadline`.
    pub async fn ready(&self, deadline: Instant) -> Result<Arc<ServerInfo>, UpstreamError> {
        self.connection(deadline).await?;
        self.shared
            .state()
            .info
            .clone()
            .ok_or(UpstreamError::Unavailable {
                reason: "restarting".to_owned(),
                retry_in: None,
            })
    }

    /// Waits until the first start attempt has finished, ready or failed (never for
    /// the retries after it), or `deadline`. The gateway waits for this before it
    /// announces that it listens, so its first clients see every route that can start.
    pub async fn first_attempt(&self, deadline: Instant) {
        let mut phase = self.shared.phase.subscribe();
        let _ = tokio::time::timeout_at(deadline, phase.wait_for(|p| *p != Phase::Starting)).await;
    }

    /// A snapshot of the supervisor's state.
    pub fn status(&self) -> Status {
        let phase = self.shared.phase.borrow().clone();
        let state = self.shared.state();
        Status {
            phase,
            pid: state.pid,
            restarts: state.restarts,
            last_error: state.last_error.clone(),
            in_flight: state.conn.as_ref().map_or(0, |c| c.pending_count()),
            info: state.info.clone(),
        }
    }

    /// Shuts the child down as the spec says (close stdin, wait, SIGTERM, wait, SIGKILL)
    /// and waits until it is gone. Calls in flight fail with [`UpstreamError::Closed`].
    pub async fn shutdown(&self) {
        self.shared.state().shutting_down = true;
        self.shared.shutdown.notify_one();
        let mut stopped = self.shared.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// The live connection; waits for a start in progress, or a restart due before
    /// `deadline`, and fails fast otherwise.
    async fn connection(&self, deadline: Instant) -> Result<Arc<Conn>, UpstreamError> {
        mcp_edge_upstream::conn::ready(
            &self.shared.phase,
            || self.shared.state().conn.clone(),
            || self.last_error(),
            deadline,
        )
        .await
    }

    /// The last failure, as callers may read it (no stderr).
    fn last_error(&self) -> String {
        self.shared.state().last_error.as_ref().map_or_else(
            || "not started yet".to_owned(),
            |(_, e)| supervisor::for_callers(e).to_owned(),
        )
    }
}
