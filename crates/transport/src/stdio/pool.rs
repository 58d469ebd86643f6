//! A child per client session, for a stdio route with `sessions = "per-client"`: a
//! stateful tool server run as a child keeps its state per process, so isolation means
//! a process per client.
//!
//! The route's own child (started with the route) serves what belongs to no client:
//! lists, probes, calls without a session. A client's child is started by its first
//! call, ended when its session ends, ended too after [`IDLE`] without a call (the next
//! call starts a new one, without the old one's state), and at most `max` run at once:
//! past that, a new client's call is refused, saying so. What a client's child sends
//! outside calls goes to that client alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use mcp_edge_protocol::{Id, Message};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::stdio::{Status, Stdio, StdioConfig};
use crate::{Call, Reply, ServerInfo, Sink, UpstreamError};

/// How long a client's child may go without a call before it is ended.
pub const IDLE: Duration = Duration::from_secs(300);

/// A route's children: its own, and one per client session. Cheap to clone.
#[derive(Clone)]
pub struct StdioPool {
    shared: Arc<Shared>,
}

struct Shared {
    cfg: StdioConfig,
    sink: Arc<dyn Sink>,
    base: Stdio,
    children: Mutex<HashMap<Arc<str>, Child>>,
    max: usize,
}

struct Child {
    stdio: Stdio,
    used: Instant,
}

impl StdioPool {
    /// Starts the route's own child; clients' children start with their first calls.
    pub fn spawn(cfg: StdioConfig, sink: Arc<dyn Sink>, max: usize) -> StdioPool {
        let base = Stdio::spawn(cfg.clone(), sink.clone());
        let shared = Arc::new(Shared {
            cfg,
            sink,
            base,
            children: Mutex::new(HashMap::new()),
            max,
        });
        tokio::spawn(reap(Arc::downgrade(&shared)));
        StdioPool { shared }
    }

    fn children(&self) -> MutexGuard<'_, HashMap<Arc<str>, Child>> {
        lock(&self.shared)
    }

    /// The route's own child.
    pub fn base(&self) -> &Stdio {
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
    fn child(&self, key: &Arc<str>) -> Result<Stdio, UpstreamError> {
        let mut children = self.children();
        if let Some(child) = children.get_mut(key) {
            child.used = Instant::now();
            return Ok(child.stdio.clone());
        }
        let max = self.shared.max;
        if children.len() >= max {
            return Err(UpstreamError::Unavailable {
                reason: format!(
                    "the route runs {max} children, one per client, its most; a new client's starts when one ends"
                ),
                retry_in: Some(Duration::from_secs(1)),
            });
        }
        let sink: Arc<dyn Sink> = Arc::new(Owned {
            inner: self.shared.sink.clone(),
            owner: key.clone(),
        });
        let stdio = Stdio::spawn(self.shared.cfg.clone(), sink);
        children.insert(
            key.clone(),
            Child {
                stdio: stdio.clone(),
                used: Instant::now(),
            },
        );
        Ok(stdio)
    }

    /// The child serving `session` now, if it has one; else the route's.
    fn current(&self, session: Option<&Arc<str>>) -> Stdio {
        session
            .and_then(|key| self.children().get(key).map(|c| c.stdio.clone()))
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
            tokio::spawn(async move { child.stdio.shutdown().await });
        }
    }

    /// Clients with a child of their own.
    pub fn client_sessions(&self) -> usize {
        self.children().len()
    }

    /// The route's own child's status.
    pub fn status(&self) -> Status {
        self.shared.base.status()
    }

    /// What the tool server said about itself (the route's own child).
    pub fn info(&self) -> Option<Arc<ServerInfo>> {
        self.shared.base.status().info
    }

    /// Stops every child.
    pub async fn shutdown(&self) {
        let children: Vec<Stdio> = self.children().drain().map(|(_, c)| c.stdio).collect();
        let stops = children.iter().map(Stdio::shutdown);
        futures_util::future::join(
            futures_util::future::join_all(stops),
            self.shared.base.shutdown(),
        )
        .await;
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, HashMap<Arc<str>, Child>> {
    shared
        .children
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Ends the children idle past [`IDLE`], until the pool is gone.
async fn reap(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(IDLE / 10);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let idle: Vec<Child> = {
            let mut children = lock(&shared);
            let keys: Vec<Arc<str>> = children
                .iter()
                .filter(|(_, c)| c.used.elapsed() > IDLE)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| children.remove(k)).collect()
        };
        for child in idle {
            tracing::debug!(route = %shared.cfg.route, "a client's child was idle for {}s: ended", IDLE.as_secs());
            tokio::spawn(async move { child.stdio.shutdown().await });
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
