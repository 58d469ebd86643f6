//! The processes a run starts (tool servers, mcp-edge) and what /proc says of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::Failure;

/// This very program, which is also the benchmark's tool server.
pub(crate) fn myself() -> Result<PathBuf, Failure> {
    Ok(std::env::current_exe()?)
}

/// The rmcp tool server over Streamable HTTP on an ephemeral loopback port.
pub(crate) async fn http_tool_server() -> Result<(Child, SocketAddr), Failure> {
    announced(&["tool-server", "--http", "127.0.0.1:0"], |line| {
        line.strip_prefix("listening on http://")?
            .strip_suffix("/mcp")
    })
    .await
}

/// The same tool server with a session per `initialize`, as a stateful server has.
pub(crate) async fn http_tool_server_with_sessions() -> Result<(Child, SocketAddr), Failure> {
    announced(
        &["tool-server", "--http", "127.0.0.1:0", "--sessions"],
        |line| {
            line.strip_prefix("listening on http://")?
                .strip_suffix("/mcp")
        },
    )
    .await
}

/// A byte relay (`mcp-edge-bench relay`) to `to`, on an ephemeral loopback port.
pub(crate) async fn relay(to: SocketAddr) -> Result<(Child, SocketAddr), Failure> {
    let to = to.to_string();
    announced(&["relay", "--to", &to], |line| {
        line.strip_prefix("relaying ")?
            .split_once(' ')
            .map(|(addr, _)| addr)
    })
    .await
}

/// Runs this program with `args` and reads the address it announces on its first line.
async fn announced(
    args: &[&str],
    address: impl Fn(&str) -> Option<&str>,
) -> Result<(Child, SocketAddr), Failure> {
    let mut child = Command::new(myself()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let what = args[0];
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| format!("the {what} did not start"))??
        .ok_or_else(|| format!("the {what} exited"))?;
    let addr = address(&line)
        .ok_or_else(|| format!("unexpected line from the {what}: {line}"))?
        .parse()?;
    Ok((child, addr))
}

/// The rmcp tool server over its stdin and stdout.
pub(crate) fn stdio_tool_server() -> Result<Child, Failure> {
    Ok(Command::new(myself()?)
        .args(["tool-server", "--stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?)
}

/// A running `mcp-edge serve` on a routes file of the benchmark's.
pub(crate) struct Gateway {
    child: Child,
    /// Its process id.
    pub(crate) pid: u32,
    /// Where agents connect.
    pub(crate) addr: SocketAddr,
    /// The admin listener.
    pub(crate) admin: SocketAddr,
    /// From spawn to the first 200 from `/readyz`.
    pub(crate) start_to_ready: Duration,
    dir: PathBuf,
}

/// mcp-edge's runtime settings for a run: `[gateway] workers` and `busy_poll`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// `None`: unset, one worker per core.
    pub(crate) workers: Option<usize>,
    /// Zero: unset (off).
    pub(crate) busy_poll: Duration,
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.workers {
            None => f.write_str("workers: one per core")?,
            Some(w) => write!(f, "workers = {w}")?,
        }
        if !self.busy_poll.is_zero() {
            write!(
                f,
                ", busy_poll = {}",
                mcp_edge_config::HumanDuration(self.busy_poll)
            )?;
        }
        Ok(())
    }
}

/// Every route the benchmark's gateway serves, under its policies.
pub(crate) fn routes_toml(
    tool_server_url: &str,
    extra: bool,
    tuning: Tuning,
) -> Result<String, Failure> {
    let me = myself()?;
    let mut workers = tuning
        .workers
        .map_or(String::new(), |w| format!("workers = {w}\n"));
    if !tuning.busy_poll.is_zero() {
        workers.push_str(&format!(
            "busy_poll = \"{}\"\n",
            mcp_edge_config::HumanDuration(tuning.busy_poll)
        ));
    }
    let mut routes = format!(
        r#"[gateway]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
allow_anonymous = true
{workers}
# Every load comes from one address: the per-client session quota and rate are raised
# so that `sessions` measures what sessions cost, not their refusal.
[gateway.limits]
max_sessions_per_client = 1000000
new_sessions_per_second = 1000000
new_sessions_burst = 1000000

# The shipped defaults, with limits raised so the benchmark measures the gateway, not a
# refusal: every policy layer is still in the path of every call.
[defaults]
timeout     = "30s"
retry       = {{ attempts = 3, base = "50ms", max = "2s", budget = 0.2 }}
breaker     = {{ consecutive_failures = 5, failure_ratio = 0.5, min_calls = 20, window = "30s", open_for = "10s" }}
rate_limit  = {{ per_second = 1000000, burst = 100000 }}
concurrency = {{ max_in_flight = 1024, queue = 4096 }}

[[route]]
name = "http"
url = "{tool_server_url}"

[[route]]
name = "stdio"
command = ["{}", "tool-server", "--stdio"]

# The same tool server in one upstream session shared by every client (`http` has one
# per client, the default): what per-client sessions cost, side by side.
[[route]]
name = "shared"
url = "{tool_server_url}"
sessions = "shared"
"#,
        me.display()
    );
    if extra {
        routes.push_str(&format!(
            "\n[[route]]\nname = \"extra\"\nurl = \"{tool_server_url}\"\n"
        ));
    }
    Ok(routes)
}

impl Gateway {
    /// Starts mcp-edge on `routes` in a directory of its own and waits until ready.
    pub(crate) async fn start(mcp_edge: &Path, routes: &str) -> Result<Gateway, Failure> {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-edge-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("routes.toml"), routes)?;
        let started = Instant::now();
        let mut child = Command::new(mcp_edge)
            .current_dir(&dir)
            .env(
                "MCP_EDGE_LOG",
                std::env::var("MCP_EDGE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .args(["serve", "routes.toml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let (mut addr, mut admin) = (None, None);
        let deadline = started + Duration::from_secs(30);
        while addr.is_none() || admin.is_none() {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .map_err(|_| "mcp-edge did not start listening")??
                .ok_or("mcp-edge exited before listening")?;
            if let Some(rest) = line.strip_prefix("mcp-edge: listening on http://") {
                addr = rest.trim_end_matches("/mcp").parse().ok();
            } else if let Some(rest) = line.strip_prefix("mcp-edge: admin on http://") {
                admin = rest.trim_end_matches('/').parse().ok();
            } else {
                eprintln!("{line}");
            }
        }
        let (Some(addr), Some(admin)) = (addr, admin) else {
            return Err("mcp-edge announced no address".into());
        };
        // Keep draining stderr, passing on what it says, so the gateway never blocks.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
            }
        });
        while !admin_get(admin, "/readyz")
            .await
            .is_ok_and(|(s, _)| s == 200)
        {
            if Instant::now() > deadline {
                return Err("mcp-edge did not become ready".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let start_to_ready = started.elapsed();
        let pid = child.id().ok_or("mcp-edge exited")?;
        Ok(Gateway {
            child,
            pid,
            addr,
            admin,
            start_to_ready,
            dir,
        })
    }

    /// Rewrites the routes file and signals a reload.
    pub(crate) fn rewrite(&self, routes: &str) -> Result<(), Failure> {
        let path = self.dir.join("routes.toml");
        let staged = self.dir.join("routes.toml.new");
        std::fs::write(&staged, routes)?;
        std::fs::rename(&staged, &path)?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid)?),
            nix::sys::signal::Signal::SIGHUP,
        )?;
        Ok(())
    }

    /// Stops the gateway (SIGTERM, then SIGKILL after 10 s) and removes its directory.
    pub(crate) async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GET on the admin listener: status and body.
pub(crate) async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), Failure> {
    let mut sender = crate::load::connect(admin).await?;
    let request = http::Request::get(path)
        .header("host", admin.to_string())
        .body(Full::new(bytes::Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, body))
}
