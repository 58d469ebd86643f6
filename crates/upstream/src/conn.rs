//! One live message stream to a tool server (a child's stdio, a legacy SSE session, a
//! WebSocket): the pending-call table, id and progress-token rewriting, and the
//! dispatch of everything the server sends. Each transport feeds it the messages it
//! reads and drains the frames it writes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::{Id, Kind, Message, mcp, ndjson};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{Call, CallEvent, Reply, Sink, Taker, UpstreamError};

/// Lines of stderr kept for crash reports.
const STDERR_TAIL: usize = 20;
/// How long an answer or notification to the child may wait for room on its stdin.
const RESPOND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

struct Pending {
    reply: oneshot::Sender<Result<Reply, UpstreamError>>,
    events: Option<mpsc::Sender<CallEvent>>,
    /// The caller's own progress token, restored on the way back.
    progress_token: Option<Box<RawValue>>,
}

/// The calls in flight over one message stream to a tool server: each request goes out
/// with an id of mcp-edge's own, and each answer, progress notification or request
/// from the tool server finds its caller by it.
pub struct Conn {
    route: Arc<str>,
    tx: mpsc::Sender<Bytes>,
    pending: Mutex<HashMap<i64, Pending>>,
    next_id: AtomicI64,
    /// The child speaks the stateless era: every request carries the version in `_meta`.
    stateless: AtomicBool,
    /// The child is gone: no new call may wait on it.
    closed: AtomicBool,
    sink: Arc<dyn Sink>,
    stderr_tail: Mutex<VecDeque<String>>,
}

impl Conn {
    /// A table for `route`'s stream; messages go out on `tx`, what belongs to no call
    /// goes to `sink`.
    pub fn new(route: Arc<str>, tx: mpsc::Sender<Bytes>, sink: Arc<dyn Sink>) -> Self {
        Conn {
            route,
            tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicI64::new(1),
            stateless: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            sink,
            stderr_tail: Mutex::new(VecDeque::with_capacity(STDERR_TAIL)),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<i64, Pending>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tool server speaks the stateless era: every request carries the version.
    pub fn set_stateless(&self) {
        self.stateless.store(true, Ordering::Release);
    }

    /// How many calls await their answer.
    pub fn pending_count(&self) -> usize {
        self.pending().len()
    }

    /// The ids in flight, sorted, for log lines.
    pub fn in_flight(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.pending().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Keeps a line the tool server wrote to stderr (the last few explain a crash).
    pub fn note_stderr(&self, line: &str) {
        let mut tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(500).collect());
    }

    /// The last lines the child wrote to stderr, joined.
    pub fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// Sends one message; false when the child's stdin is gone.
    pub async fn send(&self, message: Vec<u8>) -> bool {
        self.tx
            .send(Bytes::from(ndjson::frame(&message)))
            .await
            .is_ok()
    }

    /// Sends one message unless the child's stdin stays full past `timeout` (a child
    /// that stopped reading must not hang whoever talks to it).
    pub async fn send_within(&self, message: Vec<u8>, timeout: std::time::Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.send(message)).await,
            Ok(true)
        )
    }

    /// Whether any call is waiting for an answer.
    pub fn is_idle(&self) -> bool {
        self.pending().is_empty()
    }

    /// Answers the tool server's request `id`.
    pub async fn respond(&self, id: &Id, reply: Reply) {
        let message = reply.to_message(id);
        self.send_within(message, RESPOND_TIMEOUT).await;
    }

    /// Fails every call in flight and refuses new ones (the child is gone).
    pub fn fail_all(&self, error: &UpstreamError) {
        let drained: Vec<Pending> = {
            let mut pending = self.pending();
            self.closed.store(true, Ordering::Release);
            pending.drain().map(|(_, p)| p).collect()
        };
        for pending in drained {
            let _ = pending.reply.send(Err(error.clone()));
        }
    }

    /// Makes one call on this connection.
    pub async fn call(self: &Arc<Self>, call: Call) -> Result<Reply, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (request, progress_token) = crate::params::request(
            id,
            &call.method,
            call.params.as_deref(),
            self.stateless.load(Ordering::Acquire),
        )?;
        let (reply, answer) = oneshot::channel();
        let started = Instant::now();
        {
            let mut pending = self.pending();
            // Checked under the lock `fail_all` drains with, so no call slips in after it.
            if self.closed.load(Ordering::Acquire) {
                return Err(UpstreamError::Crashed("the tool server stopped".to_owned()));
            }
            pending.insert(
                id,
                Pending {
                    reply,
                    events: call.events,
                    progress_token,
                },
            );
        }
        // From here on, leaving early (timeout, or the caller dropping this future)
        // cancels the call upstream.
        let mut guard = CancelOnDrop {
            conn: self.clone(),
            id,
            armed: true,
        };
        match tokio::time::timeout_at(call.deadline, self.send(request)).await {
            Ok(true) => {}
            Ok(false) => {
                guard.armed = false;
                self.pending().remove(&id);
                return Err(UpstreamError::Crashed(
                    "the tool server's stdin is closed".to_owned(),
                ));
            }
            // The child stopped reading: the guard removes the call.
            Err(_) => return Err(UpstreamError::Timeout(started.elapsed())),
        }
        match tokio::time::timeout_at(call.deadline, answer).await {
            Ok(Ok(result)) => {
                guard.armed = false;
                result
            }
            Ok(Err(_)) => {
                guard.armed = false;
                Err(UpstreamError::Crashed("the connection closed".to_owned()))
            }
            Err(_) => Err(UpstreamError::Timeout(started.elapsed())),
        }
    }

    /// Handles one line the child wrote.
    pub fn dispatch(&self, message: Message) {
        match message.kind() {
            Kind::Result | Kind::Error => self.on_response(message),
            Kind::Request => self.on_request(message),
            Kind::Notification => self.on_notification(message),
        }
    }

    fn on_response(&self, message: Message) {
        let Some(Id::Num(id)) = message.id else {
            tracing::warn!(route = %self.route, id = ?message.id, "response with an id mcp-edge never sent; dropped");
            return;
        };
        let Some(pending) = self.pending().remove(&id) else {
            tracing::debug!(route = %self.route, id, "late response to a cancelled or timed-out call; dropped");
            return;
        };
        let reply = match (message.result, message.error) {
            (Some(result), _) => Ok(Reply::Result(result)),
            (None, Some(error)) => Ok(Reply::Error(error)),
            (None, None) => Err(UpstreamError::Protocol(
                "a response without result or error".into(),
            )),
        };
        let _ = pending.reply.send(reply);
    }

    /// The events channel of the one call that can take events, if exactly one can.
    ///
    /// Over stdio a tool server's request or log carries no link to the call that caused
    /// it. With one candidate it is surely that call's; with several, guessing could
    /// hand one client's sampling prompt to another, so nothing is guessed.
    fn only_caller(&self) -> Taker {
        let pending = self.pending();
        let mut with_events = pending.values().filter_map(|p| p.events.as_ref());
        match (with_events.next(), with_events.next()) {
            (Some(only), None) => Taker::One(only.clone()),
            (None, _) => Taker::None,
            _ => Taker::Several,
        }
    }

    /// Writes to the child from the reader task without ever blocking it.
    fn send_later(&self, message: &[u8]) {
        let frame = Bytes::from(ndjson::frame(message));
        if let Err(mpsc::error::TrySendError::Full(frame)) = self.tx.try_send(frame)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let tx = self.tx.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(RESPOND_TIMEOUT, tx.send(frame)).await;
            });
        }
    }

    fn on_request(&self, message: Message) {
        if message.method() == mcp::PING {
            if let Some(id) = &message.id {
                self.send_later(&jsonrpc::result(id, &jsonrpc::empty_object()));
            }
            return;
        }
        let (method, id) = (message.method().to_owned(), message.id.clone());
        match self.only_caller() {
            Taker::One(events) => {
                if events
                    .try_send(CallEvent::Request(Box::new(message)))
                    .is_ok()
                {
                    return;
                }
            }
            // No call to tie it to: a client of the route may still answer it.
            Taker::None => {
                if self.sink.request(&self.route, message) {
                    return;
                }
            }
            Taker::Several => {}
        }
        tracing::warn!(route = %self.route, method, "tool server request that no single client can answer; refused");
        if let Some(id) = &id {
            let refusal = jsonrpc::error(
                Some(id),
                code::METHOD_NOT_FOUND,
                "mcp-edge cannot tell which client this request is for: it relays a tool server's request to the one call in flight that can take it, or with none in flight to a client of the route, and never guesses between several",
                None,
            );
            self.send_later(&refusal);
        }
    }

    fn on_notification(&self, mut message: Message) {
        match message.method() {
            mcp::PROGRESS => {
                let Some(id) = message
                    .params
                    .as_deref()
                    .and_then(crate::params::progress_id)
                else {
                    return;
                };
                let target = {
                    let pending = self.pending();
                    pending
                        .get(&id)
                        .and_then(|p| Some((p.events.clone()?, p.progress_token.clone()?)))
                };
                if let Some((events, token)) = target
                    && let Some(params) = message
                        .params
                        .as_deref()
                        .and_then(|p| crate::params::restore_token(p, token))
                {
                    message.params = Some(params);
                    let _ = events.try_send(CallEvent::Notification(Box::new(message)));
                }
            }
            // Logs and cancellations of the tool server's own requests carry no link to a
            // call; when exactly one call can take them, they are surely its.
            mcp::LOG_MESSAGE | mcp::CANCELLED => {
                if let Taker::One(events) = self.only_caller() {
                    if let Err(e) = events.try_send(CallEvent::Notification(Box::new(message)))
                        && let CallEvent::Notification(m) = e.into_inner()
                    {
                        self.sink.notification(&self.route, *m);
                    }
                } else {
                    self.sink.notification(&self.route, message);
                }
            }
            _ => self.sink.notification(&self.route, message),
        }
    }
}

/// Cancels a call upstream when its future is dropped before the answer came.
struct CancelOnDrop {
    conn: Arc<Conn>,
    id: i64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.conn.pending().remove(&self.id).is_none() {
            return;
        }
        let params = jsonrpc::raw(&serde_json::json!({
            "requestId": self.id,
            "reason": "mcp-edge: the caller timed out or went away",
        }));
        let cancel = jsonrpc::notification(mcp::CANCELLED, Some(&params));
        self.conn.send_later(&cancel);
    }
}

/// How long a call may wait for a restart that is already scheduled.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The live connection of a supervised transport: waits while a start is in progress,
/// or a restart is due shortly and before `deadline`; fails fast (with the last failure
/// and when the next attempt is) otherwise.
pub async fn ready(
    phase: &tokio::sync::watch::Sender<crate::Phase>,
    conn: impl Fn() -> Option<Arc<Conn>>,
    last_error: impl Fn() -> String,
    deadline: Instant,
) -> Result<Arc<Conn>, UpstreamError> {
    use crate::Phase;
    let mut phase = phase.subscribe();
    loop {
        let current = phase.borrow_and_update().clone();
        match current {
            Phase::Ready => {
                if let Some(conn) = conn() {
                    return Ok(conn);
                }
            }
            Phase::Stopped => return Err(UpstreamError::Closed),
            // Waiting is worth it only for a restart about to happen; otherwise fail
            // fast and say when the next attempt is, rather than queue callers.
            Phase::Backoff { until }
                if until > deadline || until > Instant::now() + RESTART_WAIT =>
            {
                return Err(UpstreamError::Unavailable {
                    reason: last_error(),
                    retry_in: Some(until.saturating_duration_since(Instant::now())),
                });
            }
            Phase::Starting | Phase::Backoff { .. } => {}
        }
        match tokio::time::timeout_at(deadline, phase.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(UpstreamError::Closed),
            Err(_) => {
                return Err(UpstreamError::Unavailable {
                    reason: format!("still starting ({})", last_error()),
                    retry_in: None,
                });
            }
        }
    }
}
