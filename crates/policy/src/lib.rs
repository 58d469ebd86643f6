//! What every policy of a route sees, and the two policies that need nothing more.
//!
//! A route's calls go through a stack of tower layers, outermost first:
//!
//! | layer | crate | what it does |
//! |---|---|---|
//! | rate limit | `mcp-edge-ratelimit` | refuses a call over the route's or the client's rate |
//! | [`timeout::Timeout`] | here | the call's deadline, moved on by progress up to a cap |
//! | retry | `mcp-edge-retry` | repeats what is safe to repeat, within a budget |
//! | circuit breaker | `mcp-edge-breaker` | fails at once while the tool server is sick |
//! | [`bulkhead::BulkheadPolicy`] | here | bounds calls in flight, with a bounded queue |
//! | [`timeout::Timeout`] | here | each attempt's deadline |
//!
//! Each is a [`Policy`]: what it does with one call, given the rest of the stack.
//! [`PolicyLayer`] makes any of them a [`tower_layer::Layer`] over [`Request`],
//! answering [`Reply`] or [`UpstreamError`]. None of them applies back-pressure
//! through `poll_ready`: a call that cannot go on fails fast with an error that says
//! why, so memory and latency stay bounded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub use mcp_edge_call::{Call, CallEvent, Reply, UpstreamError};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub mod backoff;
pub mod bulkhead;
pub mod timeout;
pub mod window;

/// One call going through a route's policies.
#[derive(Debug, Clone)]
pub struct Request {
    /// The call as the connector will make it. Its `deadline` is the hard limit the
    /// connector enforces; the timeout layers set it.
    pub call: Call,
    /// Who makes it: the client's name, or `anonymous`.
    pub principal: Arc<str>,
    /// Whether sending it twice is harmless: a read, or a tool that says it is
    /// idempotent (or read-only), or one the route's configuration names.
    pub repeatable: bool,
    /// What of the call reached the client so far.
    pub activity: Arc<Activity>,
    /// Which attempt this is (1 for the first; the retry layer counts).
    pub attempt: u32,
}

/// What a policy layer's future resolves to.
pub type PolicyFuture = Pin<Box<dyn Future<Output = Result<Reply, UpstreamError>> + Send>>;

/// The rest of a route's stack, as a policy sees it.
pub trait Stack:
    Service<Request, Response = Reply, Error = UpstreamError, Future: Send> + Clone + Send + 'static
{
}

impl<S> Stack for S where
    S: Service<Request, Response = Reply, Error = UpstreamError, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// One policy: what it does with a call, given the rest of the stack (a fresh clone,
/// ready: no policy waits in `poll_ready`).
pub trait Policy: Clone + Send + Sync + 'static {
    /// Makes one call through this policy.
    fn call<S: Stack>(&self, inner: S, request: Request) -> PolicyFuture;
}

/// Any [`Policy`] as a tower [`Layer`].
#[derive(Debug, Clone)]
pub struct PolicyLayer<P>(P);

impl<P> PolicyLayer<P> {
    /// The layer applying `policy`.
    pub fn new(policy: P) -> Self {
        PolicyLayer(policy)
    }
}

impl<P: Clone, S> Layer<S> for PolicyLayer<P> {
    type Service = PolicyService<P, S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            policy: self.0.clone(),
            inner,
        }
    }
}

/// A [`Policy`] over the rest of the stack.
#[derive(Debug, Clone)]
pub struct PolicyService<P, S> {
    policy: P,
    inner: S,
}

impl<P: Policy, S: Stack> Service<Request> for PolicyService<P, S> {
    type Response = Reply;
    type Error = UpstreamError;
    type Future = PolicyFuture;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), UpstreamError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> PolicyFuture {
        self.policy.call(self.inner.clone(), request)
    }
}

/// What of a call reached the client: anything (then it is never retried) and
/// progress (which moves its deadline on).
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    relayed: AtomicBool,
    /// Milliseconds after `start` of the last progress, plus one; zero for none.
    progress: AtomicU64,
}

impl Activity {
    /// A call starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            relayed: AtomicBool::new(false),
            progress: AtomicU64::new(0),
        })
    }

    /// Something of the call (a notification, a request) reached the client.
    pub fn relayed(&self) {
        self.relayed.store(true, Ordering::Release);
    }

    /// A progress notification of the call reached the client.
    pub fn progressed(&self) {
        self.relayed();
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.progress.store(ms + 1, Ordering::Release);
    }

    /// Whether anything of the call reached the client.
    pub fn reached_client(&self) -> bool {
        self.relayed.load(Ordering::Acquire)
    }

    /// When the last progress notification reached the client.
    pub fn last_progress(&self) -> Option<Instant> {
        match self.progress.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.start + Duration::from_millis(n - 1)),
        }
    }
}

/// Whether an answer says the tool server is overloaded, and when to come back: a
/// JSON-RPC error with mcp-edge's `busy` code (another gateway in front of it) or a
/// `data.reason` of `busy`, `overloaded` or `rate_limited`, with `data.retry_after_ms`.
pub fn overloaded(reply: &Reply) -> Option<Option<Duration>> {
    let Reply::Error(error) = reply else {
        return None;
    };
    overloaded_hint(error.get())
}

/// The JSON-RPC code mcp-edge answers "busy" with.
const BUSY: i64 = -32004;

fn overloaded_hint(error: &str) -> Option<Option<Duration>> {
    let error: serde_json::Value = serde_json::from_str(error).ok()?;
    let reason = error["data"]["reason"].as_str();
    let busy = error["code"].as_i64() == Some(BUSY)
        || matches!(reason, Some("busy" | "overloaded" | "rate_limited"));
    busy.then(|| {
        error["data"]["retry_after_ms"]
            .as_u64()
            .map(Duration::from_millis)
    })
}

/// A service that answers every call with what `f` says: for the policies' tests.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A request for `method` with a deadline far away.
    pub fn request(method: &str, repeatable: bool) -> Request {
        Request {
            call: Call {
                method: method.into(),
                params: None,
                deadline: Instant::now() + Duration::from_secs(3600),
                events: None,
                traceparent: None,
                name: None,
                session: None,
            },
            principal: "tester".into(),
            repeatable,
            activity: Activity::new(),
            attempt: 1,
        }
    }

    /// An empty successful reply.
    pub fn ok() -> Reply {
        Reply::Result(
            serde_json::value::RawValue::from_string("{}".into())
                .unwrap_or_else(|_| unreachable!("{{}} is JSON")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloaded_answers_are_recognized_with_their_hint() {
        let error =
            |s: &str| Reply::Error(serde_json::value::RawValue::from_string(s.into()).unwrap());
        assert_eq!(
            overloaded(&error(
                r#"{"code":-32004,"message":"busy","data":{"retry_after_ms":250}}"#
            )),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(
            overloaded(&error(
                r#"{"code":-32000,"message":"x","data":{"reason":"overloaded"}}"#
            )),
            Some(None)
        );
        assert_eq!(
            overloaded(&error(r#"{"code":-32602,"message":"bad"}"#)),
            None
        );
        assert_eq!(overloaded(&testing::ok()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_is_remembered_to_the_millisecond() {
        let activity = Activity::new();
        assert!(!activity.reached_client());
        assert_eq!(activity.last_progress(), None);
        tokio::time::advance(Duration::from_millis(1500)).await;
        activity.progressed();
        assert!(activity.reached_client());
        let at = activity.last_progress().unwrap();
        assert_eq!(at - activity.start, Duration::from_millis(1500));
    }
}
