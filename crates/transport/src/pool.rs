//! A supervised connection per client session, for a route with `sessions =
//! "per-client"` whose transport is a child (stdio: a stateful server keeps its state
//! per process, so isolation means a process per client) or a link (legacy SSE or
//! WebSocket: the connection is the session).
//!
//! The route's own one (started with the route) serves what belongs to no client:
//! lists, probes, calls without a session. A client's is started by its first call,
//! ended when its session ends, ended too after [`IDLE`] without a call (the next call
//! starts a new one, without the old one's state), and at most `max` run at once: past
//! that, a new client's call is refused, saying so. What a client's sends outside calls
//! goes to that client alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use mcp_edge_protocol::{Id, Message};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::link::{Link, LinkConfig};
use crate::stdio::{Stdio, StdioConfig};
use crate::{Call, Reply, ServerInfo, Sink, UpstreamError};

/// A supervised connection a pool can hold one of per client: a child or a link.
pub trait Supervised: Clone + Send + Sync + 'static {
    /// How to start one.
    type Config: Clone + Send + Sync + 'static;
    /// What a client is told it runs out of.
    const NOUN: &'static str;
    /// Starts one, reporting to `sink`.
    fn start(cfg: Self::Config, sink: Arc<dyn Sink>) -> Self;
    /// Makes a call.
    fn call(&self, call: Call) -> impl Future<Output = Result<Reply, UpstreamError>> + Send;
    /// Sends a notification.
    fn notify(&self, method: &str, params: Option<&RawValue>) -> impl Future<Output = ()> + Send;
    /// Answers a request it made.
    fn respond(&self, id: &Id, reply: Reply) -> impl Future<Output = ()> + Send;
    /// Stops it.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}

impl Supervised for Stdio {
    type Config = StdioConfig;
    const NOUN: &'static str = "children";
    fn start(cfg: StdioConfig, sink: Arc<dyn Sink>) -> Self {
        Stdio::spawn(cfg, sink)
    }
    fn call(&self, call: Call) -> impl Future<Output = Result<Reply, UpstreamError>> + Send {
        Stdio::call(self, call)
    }
    fn notify(&self, method: &str, params: Option<&RawValue>) -> impl Future<Output = ()> + Send {
        Stdio::notify(self, method, params)
    }
    fn respond(&self, id: &Id, reply: Reply) -> impl Future<Output = ()> + Send {
        Stdio::respond(self, id, reply)
    }
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        Stdio::shutdown(self)
    }
}

impl Supervised for Link {
    type Config = LinkConfig;
    const NOUN: &'static str = "connections";
    fn start(cfg: LinkConfig, sink: Arc<dyn Sink>) -> Self {
        Link::spawn(cfg, sink)
    }
    fn call(&self, call: Call) -> impl Future<Output = Result<Reply, UpstreamError>> + Send {
        Link::call(self, call)
    }
    fn notify(&self, method: &str, params: Option<&RawValue>) -> impl Future<Output = ()> + Send {
        Link::notify(self, method, params)
    }
    fn respond(&self, id: &Id, reply: Reply) -> impl Future<Output = ()> + Send {
        Link::respond(self, id, reply)
    }
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        Link::shutdown(self)
    }
}

/// Children per client, for a stdio route.
pub type StdioPool = Pool<Stdio>;
/// Legacy SSE or WebSocket connections per client.
pub type LinkPool = Pool<Link>;

/// How long a client's child may go without a call before it is ended.
pub const IDLE: Duration = Duration::from_secs(300);

/// A route's connections: its own, and one per client session. Cheap to clone.
pub struct Pool<W: Supervised> {
    shared: Arc<Shared<W>>,
}

impl<W: Supervised> Clone for Pool<W> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<W: Supervised> {
    route: String,
    cfg: W::Config,
    sink: Arc<dyn Sink>,
    base: W,
    children: Mutex<HashMap<Arc<str>, Child<W>>>,
    max: usize,
}

struct Child<W> {
    worker: W,
    used: Instant,
}

impl<W: Supervised> Pool<W> {
    /// Starts the route's own one; clients' start with their first calls.
    pub fn spawn(route: &str, cfg: W::Config, sink: Arc<dyn Sink>, max: usize) -> Pool<W> {
        let base = W::start(cfg.clone(), sink.clone());
        let shared = Arc::new(Shared {
            route: route.to_owned(),
            cfg,
            sink,
            base,
            children: Mutex::new(HashMap::new()),
            max,
        });
        tokio::spawn(reap(Arc::downgrade(&shared)));
        Pool { shared }
    }

    fn children(&self) -> MutexGuard<'_, HashMap<Arc<str>, Child<W>>> {
        lock(&self.shared)
    }

    /// The route's own one.
    pub fn base(&self) -> &W {
        &self.shared.base
    }

    /// Makes a call: in the client's own child, or the route's when it names none.
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        match call.session.clone() {
            Some(key) => self.child(&key)?.call(call).await,
            None => self.shared.base.call(call).await,
        }
    }

    /// The client's child, started now if it has none.
    fn child(&self, key: &Arc<str>) -> Result<W, UpstreamError> {
        let mut children = self.children();
        if let Some(child) = children.get_mut(key) {
            child.used = Instant::now();
            return Ok(child.worker.clone());
        }
        let max = self.shared.max;
        if children.len() >= max {
            return Err(UpstreamError::Unavailable {
                reason: format!(
                    "the route runs {max} {}, one per client, its most; a new client's starts when one ends",
                    W::NOUN
                ),
                retry_in: Some(Duration::from_secs(1)),
            });
        }
        let sink: Arc<dyn Sink> = Arc::new(Owned {
            inner: self.shared.sink.clone(),
            owner: key.clone(),
        });
        let worker = W::start(self.shared.cfg.clone(), sink);
        children.insert(
            key.clone(),
            Child {
                worker: worker.clone(),
                used: Instant::now(),
            },
        );
        Ok(worker)
    }

    /// The child serving `session` now, if it has one; else the route's.
    fn current(&self, session: Option<&Arc<str>>) -> W {
        session
            .and_then(|key| self.children().get(key).map(|c| c.worker.clone()))
            .unwrap_or_else(|| self.shared.base.clone())
    }

    /// Sends a notification to the client's child (or the route's).
    pub async fn notify(
        &self,
        session: Option<&Arc<str>>,
        method: &str,
        params: Option<&RawValue>,
    ) {
        self.current(session).notify(method, params).await;
    }

    /// Answers a request of the client's child (or the route's).
    pub async fn respond(&self, session: Option<&Arc<str>>, id: &Id, reply: Reply) {
        self.current(session).respond(id, reply).await;
    }

    /// A client session ended: its child, if it has one, is shut down.
    pub fn end_session(&self, session: &str) {
        if let Some(child) = self.children().remove(session) {
            tokio::spawn(async move { child.worker.shutdown().await });
        }
    }

    /// Clients with a child of their own.
    pub fn client_sessions(&self) -> usize {
        self.children().len()
    }

    /// Stops every child.
    pub async fn shutdown(&self) {
        let children: Vec<W> = self.children().drain().map(|(_, c)| c.worker).collect();
        let stops = children.iter().map(W::shutdown);
        futures_util::future::join(
            futures_util::future::join_all(stops),
            self.shared.base.shutdown(),
        )
        .await;
    }
}

fn lock<W: Supervised>(shared: &Shared<W>) -> MutexGuard<'_, HashMap<Arc<str>, Child<W>>> {
    shared
        .children
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Ends the children idle past [`IDLE`], until the pool is gone.
async fn reap<W: Supervised>(shared: Weak<Shared<W>>) {
    let mut tick = tokio::time::interval(IDLE / 10);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let idle: Vec<Child<W>> = {
            let mut children = lock(&shared);
            let keys: Vec<Arc<str>> = children
                .iter()
                .filter(|(_, c)| c.used.elapsed() > IDLE)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| children.remove(k)).collect()
        };
        for child in idle {
            tracing::debug!(route = %shared.route, "a client's {} was idle for {}s: ended", W::NOUN, IDLE.as_secs());
            tokio::spawn(async move { child.worker.shutdown().await });
        }
    }
}

/// A client's child reports to that client: what it sends outside calls is that
/// client's alone, and its coming and going is not the route's.
struct Owned {
    inner: Arc<dyn Sink>,
    owner: Arc<str>,
}

impl Sink for Owned {
    fn notification(&self, route: &str, message: Message) {
        self.inner.notification_for(route, &self.owner, message);
    }

    fn request(&self, route: &str, message: Message) -> bool {
        self.inner.request_for(route, &self.owner, message)
    }

    fn availability(&self, _: &str, _: Option<Arc<ServerInfo>>) {}
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use mcp_edge_upstream::NoSink;

    /// A worker that answers every call and counts the ones started and stopped.
    #[derive(Clone)]
    struct Fake(Arc<(AtomicUsize, AtomicUsize)>);

    impl Supervised for Fake {
        type Config = Arc<(AtomicUsize, AtomicUsize)>;
        const NOUN: &'static str = "fakes";
        fn start(cfg: Self::Config, _: Arc<dyn Sink>) -> Self {
            cfg.0.fetch_add(1, Ordering::SeqCst);
            Fake(cfg)
        }
        fn call(&self, _: Call) -> impl Future<Output = Result<Reply, UpstreamError>> + Send {
            std::future::ready(Ok(Reply::Result(
                RawValue::from_string("{}".into()).unwrap(),
            )))
        }
        fn notify(&self, _: &str, _: Option<&RawValue>) -> impl Future<Output = ()> + Send {
            std::future::ready(())
        }
        fn respond(&self, _: &Id, _: Reply) -> impl Future<Output = ()> + Send {
            std::future::ready(())
        }
        fn shutdown(&self) -> impl Future<Output = ()> + Send {
            self.0.1.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }
    }

    fn call(session: &str) -> Call {
        Call {
            method: "tools/call".into(),
            params: None,
            deadline: Instant::now() + Duration::from_secs(1),
            events: None,
            traceparent: None,
            name: None,
            session: Some(session.into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_clients_worker_is_reused_capped_and_ended_when_idle_or_ended() {
        let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let pool: Pool<Fake> = Pool::spawn("r", counts.clone(), Arc::new(NoSink), 2);
        assert_eq!(counts.0.load(Ordering::SeqCst), 1, "the route's own");
        pool.call(call("a")).await.unwrap();
        pool.call(call("a")).await.unwrap();
        pool.call(call("b")).await.unwrap();
        assert_eq!(counts.0.load(Ordering::SeqCst), 3, "one per client, reused");
        let refused = pool.call(call("c")).await.unwrap_err();
        assert!(refused.to_string().contains("runs 2 fakes"), "{refused}");
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(1)));

        pool.end_session("a");
        tokio::task::yield_now().await;
        assert_eq!(pool.client_sessions(), 1);
        assert_eq!(counts.1.load(Ordering::SeqCst), 1);

        // b goes quiet: it is ended once IDLE has passed, and not before.
        tokio::time::sleep(IDLE - IDLE / 5).await;
        assert_eq!(pool.client_sessions(), 1);
        tokio::time::sleep(IDLE / 2).await;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.client_sessions(), 0);
        assert_eq!(counts.1.load(Ordering::SeqCst), 2);
    }
}
