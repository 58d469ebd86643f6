//! Shared helpers for mcp-edge's end-to-end tests: find the real `mcp-edge` binary,
//! run it, and read what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The `mcp-edge` binary under test: this package's `mcp-edge-under-test`, which
/// Cargo builds (from the same `cli::main` as `mcp-edge`) before it runs the
/// integration tests. It sits in the profile directory above the test's own
/// executable (`target/<profile>/deps/<test>`).
pub fn mcp_edge() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
            .join(format!("mcp-edge-under-test{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "the mcp-edge binary under test is not at {}: run the tests with `cargo test -p mcp-edge-tests` (or scripts/test), which builds it",
            bin.display()
        );
        bin
    })
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `mcp-edge args…` in `dir` with a clean `MCP_EDGE_ROUTES`, to completion.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    Command::new(mcp_edge())
        .current_dir(dir)
        .env_remove("MCP_EDGE_ROUTES")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run mcp-edge: {e}"))
        .into()
}

/// A fresh, empty directory for one test, in the system temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-edge-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

// ---------- a running gateway ----------

/// `mcp-edge serve` running on a routes file in a scratch directory, on an ephemeral
/// port. Killed when dropped.
pub struct Gateway {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Where its admin endpoints are (`/healthz`, `/health`, `/metrics`…).
    pub admin: std::net::SocketAddr,
    /// The scratch directory holding its routes.toml.
    pub dir: PathBuf,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts a gateway on `routes` (TOML). A `[gateway]` table with ephemeral ports
    /// is prepended unless the text has its own. `{mcp_edge}` in the text is replaced
    /// with the path of the mcp-edge binary; `{repo}` with the repository root.
    pub fn start(name: &str, routes: &str) -> Gateway {
        Gateway::start_with_env(name, routes, &[])
    }

    /// Like [`Gateway::start`], on one worker: mcp-edge's current-thread runtime, the one
    /// a host with one core (or `workers = 1`) gets, where everything shares a thread.
    pub fn start_on_one_worker(name: &str, routes: &str) -> Gateway {
        Gateway::start(
            name,
            &format!(
                "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\nworkers = 1\n\n{routes}"
            ),
        )
    }

    /// Like [`Gateway::start`], with extra environment variables.
    pub fn start_with_env(name: &str, routes: &str, env: &[(&str, &str)]) -> Gateway {
        use std::io::BufRead;
        let dir = scratch_dir(name);
        let mut text = routes
            .replace("{mcp_edge}", &mcp_edge().display().to_string())
            .replace("{repo}", &repo_root().display().to_string());
        if !text.contains("[gateway]") {
            text = format!(
                "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n{text}"
            );
        }
        std::fs::write(dir.join("routes.toml"), text)
            .unwrap_or_else(|e| panic!("write routes.toml: {e}"));
        let mut child = Command::new(mcp_edge())
            .current_dir(&dir)
            .env("MCP_EDGE_LOG", "info,mcp_edge_transport=debug")
            .envs(env.iter().copied())
            .args(["serve", "routes.toml"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn mcp-edge serve: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(rest) = line.strip_prefix("mcp-edge: admin on http://") {
                        let _ = tx.send(("admin", rest.trim_end_matches('/').to_owned()));
                    }
                    if let Some(rest) = line
                        .strip_prefix("mcp-edge: listening on http://")
                        .or_else(|| line.strip_prefix("mcp-edge: listening on https://"))
                    {
                        let addr = rest.trim_end_matches("/mcp").to_owned();
                        let _ = tx.send(("listen", addr));
                    }
                    logs.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        // The admin address is announced first, then the agents' listener.
        let mut admin = None;
        let addr = loop {
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(("admin", addr)) => admin = addr.parse().ok(),
                Ok((_, addr)) => {
                    break addr
                        .parse()
                        .unwrap_or_else(|e| panic!("bad address {addr}: {e}"));
                }
                Err(_) => {
                    let _ = child.kill();
                    let logs = logs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .join("\n");
                    panic!("mcp-edge serve did not start within 30s; its log:\n{logs}");
                }
            }
        };
        let admin =
            admin.unwrap_or_else(|| panic!("mcp-edge serve did not announce its admin address"));
        Gateway {
            child,
            addr,
            admin,
            dir,
            logs,
        }
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// Waits until a log line contains `needle`; panics with the log after `timeout`.
    pub async fn wait_log(&self, needle: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.logs().contains(needle) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "no log line with {needle:?} within {timeout:?}; log:\n{}",
            self.logs()
        );
    }

    /// The process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, up to `timeout`; its exit code.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// An MCP client on `/mcp` presenting `token`, its session open.
    pub async fn client_with_token(&self, token: &str) -> Mcp {
        let mut mcp = self.client("/mcp");
        mcp.headers
            .push(("authorization".into(), format!("Bearer {token}")));
        mcp.initialize().await;
        mcp
    }

    /// An MCP client for `path` (`/mcp`, `/mcp/demo`).
    pub fn client(&self, path: &str) -> Mcp {
        Mcp::new(self.addr, path)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------- HTTP ----------

/// A complete HTTP response.
#[derive(Debug)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl Resp {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON-RPC messages in the body: one for a JSON answer, each `data:` event of
    /// an SSE answer.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        if self
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
        {
            let mut parser = mcp_edge_protocol::sse::Parser::new(16 << 20);
            parser
                .feed(&self.body)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| !e.data.is_empty())
                .map(|e| {
                    serde_json::from_str(&e.data)
                        .unwrap_or_else(|err| panic!("bad event {:?}: {err}", e.data))
                })
                .collect()
        } else if self.body.is_empty() {
            Vec::new()
        } else {
            vec![self.json()]
        }
    }
}

async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap_or_else(|e| panic!("handshake: {e}"));
    tokio::spawn(connection);
    sender
}

fn build(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = http::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(http_body_util::Full::new(body))
        .unwrap_or_else(|e| panic!("request: {e}"))
}

/// Sends one request and reads the whole response (30 s at most).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    use http_body_util::BodyExt;
    let work = async {
        let mut sender = connect(addr).await;
        let response = sender
            .send_request(build(
                addr,
                method,
                path,
                headers,
                bytes::Bytes::copy_from_slice(body),
            ))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("body: {e}"))
            .to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), work)
        .await
        .unwrap_or_else(|_| panic!("{method} {path} took more than 30s"))
}

/// An open SSE response, read event by event.
pub struct EventStream {
    body: hyper::body::Incoming,
    parser: mcp_edge_protocol::sse::Parser,
    queued: std::collections::VecDeque<mcp_edge_protocol::sse::Event>,
    /// The response status.
    pub status: u16,
    /// The response headers.
    pub headers: http::HeaderMap,
}

impl EventStream {
    /// The next event with data, or `None` when the stream ends or `timeout` passes.
    pub async fn next(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<mcp_edge_protocol::sse::Event> {
        use http_body_util::BodyExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.queued.pop_front() {
                if event.data.is_empty() {
                    continue;
                }
                return Some(event);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.queued.extend(self.parser.feed(&data).ok()?);
            }
        }
    }

    /// The next event's data as JSON.
    pub async fn next_json(&mut self, timeout: std::time::Duration) -> Option<serde_json::Value> {
        let event = self.next(timeout).await?;
        serde_json::from_str(&event.data).ok()
    }
}

/// POSTs one JSON-RPC message to `path` with `headers`, reading the answer as an
/// event stream (a call whose progress or questions come before its result).
pub async fn post_message_stream(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &serde_json::Value,
) -> EventStream {
    open_stream(addr, "POST", path, headers, message.to_string().as_bytes()).await
}

/// POSTs one JSON-RPC message to `path` with `headers`; the raw response.
pub async fn post_message(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &serde_json::Value,
) -> Resp {
    http(addr, "POST", path, headers, message.to_string().as_bytes()).await
}

/// Sends a request whose answer is a stream and returns it unread.
pub async fn open_stream(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> EventStream {
    let mut sender = connect(addr).await;
    let response = sender
        .send_request(build(
            addr,
            method,
            path,
            headers,
            bytes::Bytes::copy_from_slice(body),
        ))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (parts, body) = response.into_parts();
    EventStream {
        body,
        parser: mcp_edge_protocol::sse::Parser::new(16 << 20),
        queued: Default::default(),
        status: parts.status.as_u16(),
        headers: parts.headers,
    }
}

// ---------- an MCP session over raw HTTP ----------

/// A session-era MCP client speaking Streamable HTTP by hand, so tests see every
/// status, header and message.
pub struct Mcp {
    /// The gateway's address.
    pub addr: std::net::SocketAddr,
    /// The endpoint path.
    pub path: String,
    /// The session id, once initialized.
    pub session: Option<String>,
    /// Extra headers on every request (`Authorization`, say).
    pub headers: Vec<(String, String)>,
    next_id: i64,
}

impl Mcp {
    /// A client for `path` on `addr`; not yet initialized.
    pub fn new(addr: std::net::SocketAddr, path: &str) -> Mcp {
        Mcp {
            addr,
            path: path.to_owned(),
            session: None,
            headers: Vec::new(),
            next_id: 1,
        }
    }

    fn all_headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            ),
        ];
        if let Some(session) = &self.session {
            headers.push(("mcp-session-id".to_owned(), session.clone()));
        }
        headers.extend(self.headers.iter().cloned());
        headers
    }

    /// Opens the session's GET stream (after [`Mcp::initialize`]); it must answer 200.
    pub async fn get_stream(&self) -> EventStream {
        let session = self.session.clone().unwrap_or_default();
        let stream = open_stream(
            self.addr,
            "GET",
            &self.path,
            &[
                ("accept", "text/event-stream"),
                ("mcp-session-id", &session),
            ],
            b"",
        )
        .await;
        assert_eq!(stream.status, 200, "the GET stream was refused");
        stream
    }

    /// POSTs one message; the raw response.
    pub async fn post(&self, message: &serde_json::Value) -> Resp {
        let headers = self.all_headers();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http(
            self.addr,
            "POST",
            &self.path,
            &refs,
            message.to_string().as_bytes(),
        )
        .await
    }

    /// Initializes a session (and sends `notifications/initialized`); the result.
    pub async fn initialize(&mut self) -> serde_json::Value {
        let resp = self
            .post(&serde_json::json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": { "protocolVersion": "2025-11-25", "capabilities": { "roots": {} }, "clientInfo": { "name": "mcp-edge-tests", "version": "0" } }
            }))
            .await;
        assert_eq!(
            resp.status,
            200,
            "initialize: {}",
            String::from_utf8_lossy(&resp.body)
        );
        self.session = resp.header("mcp-session-id").map(str::to_owned);
        assert!(self.session.is_some(), "initialize gave no Mcp-Session-Id");
        let result = resp.json()["result"].clone();
        let ack = self
            .post(&serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(ack.status, 202);
        result
    }

    /// Sends a request; every message of the answer (events, then the response).
    pub async fn rpc(&mut self, method: &str, params: serde_json::Value) -> Vec<serde_json::Value> {
        let id = self.next_id;
        self.next_id += 1;
        let resp = self
            .post(&serde_json::json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        assert_eq!(
            resp.status,
            200,
            "{method}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        let messages = resp.messages();
        assert!(
            messages.last().is_some_and(|m| m["id"] == id),
            "{method}: the last message is not the answer: {messages:#?}"
        );
        messages
    }

    /// Sends a request; the answer's `result`, or panics with its error.
    pub async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let answer = self.rpc(method, params).await.pop().unwrap_or_default();
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// Sends a request; the answer's `error` object, or panics if it succeeded.
    pub async fn error(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let answer = self.rpc(method, params).await.pop().unwrap_or_default();
        assert!(
            answer.get("error").is_some(),
            "{method} should have failed: {answer}"
        );
        answer["error"].clone()
    }

    /// The names of the tools listed.
    pub async fn tool_names(&mut self) -> Vec<String> {
        let result = self.call("tools/list", serde_json::json!({})).await;
        result["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The text of the first content item of a tool result.
pub fn text(result: &serde_json::Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---------- peer servers ----------

/// A server process that announces its port on stderr (`…listening 127.0.0.1:PORT`),
/// such as the FastMCP peer or server-everything behind `loopback.cjs`. Killed on drop.
pub struct ServerProc {
    child: std::process::Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl ServerProc {
    /// Starts `program args…` and waits (30 s at most) for its port.
    pub fn start(program: &str, args: &[&str], env: &[(&str, &str)]) -> ServerProc {
        use std::io::BufRead;
        let mut child = Command::new(program)
            .current_dir(repo_root())
            .args(args)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {program}: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(port) = line
                    .split("listening 127.0.0.1:")
                    .nth(1)
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(port) => ServerProc { child, port },
            Err(_) => {
                let _ = child.kill();
                panic!("{program} {args:?} did not announce its port within 30s");
            }
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------- TLS and local receivers ----------

/// A TLS connection to the `localhost` name on 127.0.0.1:`port`, verified with the CA
/// bundle `ca`, presenting `identity` (certificate and key files) when given, and
/// offering `alpn`.
pub async fn tls_connect(
    port: u16,
    ca: &str,
    identity: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = mcp_edge_tls::client_config(
        &mcp_edge_tls::ClientTls {
            ca: Some(ca.into()),
            client_identity: identity.map(|(c, k)| (c.into(), k.into())),
            insecure_skip_verify: false,
        },
        alpn,
    )
    .unwrap_or_else(|e| panic!("client TLS config: {e}"));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    let name = rustls_pki_types::ServerName::try_from("localhost")
        .unwrap_or_else(|e| panic!("server name: {e}"));
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with 127.0.0.1:{port}: {e}"))
}

/// Writes a certificate and its key as `dir/NAME.pem` and `dir/NAME-key.pem`; their
/// paths.
pub fn save_pem(dir: &Path, name: &str, pem: &mcp_edge_tls::pki::Pem) -> (String, String) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, &pem.cert).unwrap_or_else(|e| panic!("write {}: {e}", cert.display()));
    std::fs::write(&key, &pem.key).unwrap_or_else(|e| panic!("write {}: {e}", key.display()));
    (cert.display().to_string(), key.display().to_string())
}

/// What a [`json_receiver`] was sent.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A local HTTP server on 127.0.0.1 taking JSON POSTs at `path` (an Alertmanager's
/// alerts API, an OTLP/HTTP collector): its port, and every body it was sent. It
/// answers `200 {}`; a POST elsewhere fails the test.
pub async fn json_receiver(path: &'static str) -> (u16, Received) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port();
    let received: Received = Received::default();
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            assert_eq!(req.uri().path(), path, "POSTed to the wrong path");
                            let body = req.into_body().collect().await?.to_bytes();
                            let json: serde_json::Value = serde_json::from_slice(&body)
                                .unwrap_or_else(|e| panic!("not JSON: {e}"));
                            seen.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(json);
                            let ok = hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                                .unwrap_or_else(|e| panic!("response: {e}"));
                            Ok::<_, hyper::Error>(ok)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, received)
}

// ---------- interop peers ----------

/// Where `tests/peers/install` put the official SDK peers (`PEERS_DIR` overrides).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("PEERS_DIR").map_or_else(|| repo_root().join(".cache/peers"), PathBuf::from)
}

/// A peer's file, or a failure that names the install step (never a silent skip).
pub fn peer(relative: &str) -> String {
    let path = peers_dir().join(relative);
    assert!(
        path.exists(),
        "interop peer missing: {} — install the peers with `tests/peers/install` (scripts/test runs it first)",
        path.display()
    );
    path.display().to_string()
}

// ---------- raw sockets, for clients and servers that misbehave ----------

pub use raw::{call_on, closed_within, connect_from, dripping_server, read_request, respond_json};

/// Clients and servers that speak HTTP/1.1 by hand, to misbehave on purpose.
mod raw {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Reads until the peer closes (or `within` passes): whether it closed, and what came.
    pub async fn closed_within(
        stream: &mut tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> (bool, String) {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into()),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return (false, String::from_utf8_lossy(&got).into()),
            }
        }
    }

    /// A connection to `addr` from the loopback address `from`.
    pub async fn connect_from(from: [u8; 4], addr: std::net::SocketAddr) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
        socket.connect(addr).await.unwrap()
    }

    /// One echo call on an open keep-alive connection; its status.
    pub async fn call_on(
        stream: &mut tokio::net::TcpStream,
        addr: std::net::SocketAddr,
        n: u32,
    ) -> u16 {
        // A 2026-07-28 call: no session to open first.
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": n, "method": "tools/call", "params": { "name": "demo__echo", "arguments": { "message": "alive" }, "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } }).to_string();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: demo__echo\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "the server closed an established connection");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text[9..12].parse().unwrap();
                }
            }
        }
    }

    /// Reads one HTTP/1.1 request: its method and JSON body (`Null` when there is none).
    pub async fn read_request(
        stream: &mut tokio::net::TcpStream,
        buf: &mut Vec<u8>,
    ) -> Option<(String, serde_json::Value)> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + length {
                    let mut more = [0u8; 4096];
                    let n = stream.read(&mut more).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&more[..n]);
                }
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + length])
                    .unwrap_or(serde_json::Value::Null);
                buf.drain(..end + 4 + length);
                let method = head.split(' ').next().unwrap_or_default().to_owned();
                return Some((method, body));
            }
            let mut more = [0u8; 4096];
            let n = stream.read(&mut more).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&more[..n]);
        }
    }

    /// Writes one JSON response with `extra` header lines.
    pub async fn respond_json(
        stream: &mut tokio::net::TcpStream,
        status: &str,
        extra: &str,
        body: &serde_json::Value,
    ) {
        let body = body.to_string();
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
    }

    /// A session-era Streamable HTTP tool server whose one tool answers with an event
    /// stream that never ends a line: `data: ` and then 16-byte pieces, as fast as they
    /// go, until `stop`.
    pub async fn dripping_server(stop: tokio::time::Instant) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some((method, body)) = read_request(&mut stream, &mut buf).await {
                        if method != "POST" {
                            respond_json(
                                &mut stream,
                                "405 Method Not Allowed",
                                "",
                                &serde_json::json!({}),
                            )
                            .await;
                            continue;
                        }
                        let id = body["id"].clone();
                        match body["method"].as_str().unwrap_or_default() {
                            "initialize" => {
                                let result = serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": {
                                    "protocolVersion": "2025-06-18", "capabilities": { "tools": {} },
                                    "serverInfo": { "name": "drip", "version": "1" } } });
                                respond_json(
                                    &mut stream,
                                    "200 OK",
                                    "mcp-session-id: drip-1\r\n",
                                    &result,
                                )
                                .await;
                            }
                            "tools/list" => {
                                let result = serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": [
                                    { "name": "drip", "inputSchema": { "type": "object" } } ] } });
                                respond_json(&mut stream, "200 OK", "", &result).await;
                            }
                            "tools/call" => {
                                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n";
                                if stream.write_all(head.as_bytes()).await.is_err() {
                                    return;
                                }
                                let piece = b"10\r\nxxxxxxxxxxxxxxxx\r\n";
                                while tokio::time::Instant::now() < stop {
                                    if stream.write_all(piece).await.is_err() {
                                        return;
                                    }
                                    tokio::task::yield_now().await;
                                }
                                return;
                            }
                            "ping" => {
                                respond_json(
                                    &mut stream,
                                    "200 OK",
                                    "",
                                    &serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": {} }),
                                )
                                .await;
                            }
                            _ if id.is_null() => {
                                let _ = stream
                                    .write_all(
                                        b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
                                    )
                                    .await;
                            }
                            _ => {
                                let error = serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "no" } });
                                respond_json(&mut stream, "200 OK", "", &error).await;
                            }
                        }
                    }
                });
            }
        });
        port
    }
}
