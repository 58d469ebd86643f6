//! Client sessions (session era): what one client negotiated and what is in flight.
//!
//! A session is bound to the principal that opened it and to the endpoint it was opened
//! on (`/mcp` or `/mcp/{route}`); a request that presents its id with another principal
//! or on another endpoint is answered as for an unknown session. Sessions idle past a
//! limit are swept; the store has a cap so that a flood of `initialize` cannot grow
//! memory without bound.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mcp_edge_protocol::Id;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::seal::{Claims, Refusal, Sealer};
use mcp_edge_route::RouteRt;
use mcp_edge_route::scope::Scope;

/// What a tool server asked the client, awaiting the client's answer.
pub struct Ask {
    /// The route whose tool server asked.
    pub route: Arc<RouteRt>,
    /// The tool server's own id for the request.
    pub upstream_id: Id,
}

/// How a request in flight is stopped by `notifications/cancelled` or the session's end.
pub enum Stop {
    /// The request runs as a task of its own (stdio and legacy SSE clients).
    Task(AbortHandle),
    /// The request is polled by the HTTP exchange that asked; it ends when signalled.
    Signal(oneshot::Sender<()>),
}

impl Stop {
    fn stop(self) {
        match self {
            Stop::Task(handle) => handle.abort(),
            Stop::Signal(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// One client session.
pub struct Session {
    /// The id the client presents in `Mcp-Session-Id`.
    pub id: String,
    version: Mutex<&'static str>,
    /// The routes the session sees (renewed by a reload).
    scope: Mutex<Scope>,
    /// Who opened it (`None`: anonymous).
    pub principal: Option<Arc<str>>,
    /// Whose quota it counts against: the principal, or the client address when
    /// anonymous.
    owner: Arc<str>,
    /// Opened by a legacy HTTP+SSE client: every answer goes on its event stream.
    pub legacy: bool,
    initialized: AtomicBool,
    stream: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    inflight: Mutex<HashMap<Id, Stop>>,
    asks: Mutex<HashMap<Id, Ask>>,
    next_ask: AtomicU64,
    subscriptions: Mutex<HashSet<String>>,
    last_seen: Mutex<Instant>,
    created: Instant,
}

/// A session that never finished its handshake is ended after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// The routes the session sees.
    pub fn scope(&self) -> Scope {
        lock(&self.scope).clone()
    }

    /// Gives the session the routes a new configuration grants it.
    pub fn set_scope(&self, scope: Scope) {
        *lock(&self.scope) = scope;
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> &'static str {
        *lock(&self.version)
    }

    /// Sets the version (a legacy HTTP+SSE session learns it at `initialize`).
    pub fn set_version(&self, version: &'static str) {
        *lock(&self.version) = version;
    }

    /// The sender of the session's stream, for answers that must follow it.
    pub fn stream_sender(&self) -> Option<mpsc::Sender<Vec<u8>>> {
        lock(&self.stream).clone()
    }

    /// Marks the session initialized (`notifications/initialized` arrived).
    pub fn set_initialized(&self) {
        self.initialized.store(true, Ordering::Release);
    }

    /// Whether the client finished the handshake.
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// When the client was last heard from.
    pub fn last_seen(&self) -> Instant {
        *lock(&self.last_seen)
    }

    /// Records activity.
    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// Attaches the stream that carries messages not tied to a request (the GET stream,
    /// the legacy SSE stream, or stdout). Replaces, and so closes, any previous one.
    pub fn attach_stream(&self, tx: mpsc::Sender<Vec<u8>>) {
        *lock(&self.stream) = Some(tx);
    }

    /// Whether a stream is attached.
    pub fn has_stream(&self) -> bool {
        lock(&self.stream)
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Sends a message on the session's stream; false when there is none or it is full.
    pub fn push(&self, message: Vec<u8>) -> bool {
        let tx = lock(&self.stream).clone();
        tx.is_some_and(|tx| tx.try_send(message).is_ok())
    }

    /// Sends a message on the session's stream, waiting for room (for responses on a
    /// legacy stream, which must not be dropped).
    pub async fn push_wait(&self, message: Vec<u8>) -> bool {
        let tx = lock(&self.stream).clone();
        match tx {
            Some(tx) => tx.send(message).await.is_ok(),
            None => false,
        }
    }

    /// Registers a request in flight, so `notifications/cancelled` can stop it.
    pub fn start(&self, id: Id, stop: Stop) {
        lock(&self.inflight).insert(id, stop);
    }

    /// Forgets a finished request.
    pub fn finish(&self, id: &Id) {
        lock(&self.inflight).remove(id);
    }

    /// Cancels a request in flight; false if it is unknown (finished already, say).
    pub fn cancel(&self, id: &Id) -> bool {
        match lock(&self.inflight).remove(id) {
            Some(stop) => {
                stop.stop();
                true
            }
            None => false,
        }
    }

    /// Remembers a tool server's request and returns the id the client sees for it.
    pub fn ask(&self, ask: Ask) -> Id {
        let n = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let id = Id::Str(format!("edge-{n}").into());
        lock(&self.asks).insert(id.clone(), ask);
        id
    }

    /// Takes back a tool server's request by the id the client answered.
    pub fn answer(&self, id: &Id) -> Option<Ask> {
        lock(&self.asks).remove(id)
    }

    /// Subscribes to updates of a resource.
    pub fn subscribe(&self, uri: &str, on: bool) {
        let mut subs = lock(&self.subscriptions);
        if on {
            subs.insert(uri.to_owned());
        } else {
            subs.remove(uri);
        }
    }

    /// How many resources the session is subscribed to.
    pub fn subscriptions(&self) -> usize {
        lock(&self.subscriptions).len()
    }

    /// Whether the session subscribed to `uri`.
    pub fn subscribed(&self, uri: &str) -> bool {
        lock(&self.subscriptions).contains(uri)
    }

    /// Closes the session's stream (at shutdown), leaving requests in flight alone.
    pub fn close_stream(&self) {
        lock(&self.stream).take();
    }

    /// How many requests are in flight.
    pub fn in_flight(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// Stops everything in flight and closes the stream.
    pub fn close(&self) {
        for (_, stop) in lock(&self.inflight).drain() {
            stop.stop();
        }
        lock(&self.stream).take();
    }
}

/// The first characters of a session id, enough to tell sessions apart in a log
/// (a full sealed id is a bearer credential for its session, and long).
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Why a session could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every place is taken, and none is held by a session that never finished its
    /// handshake (those are evicted first).
    Process(usize),
    /// This client (principal, or address when anonymous) holds its quota already.
    Client(usize),
    /// This client opens sessions faster than its rate; it may try again after this.
    TooFast(Duration),
    /// No fresh nonce could be had for the session id (the random number generator
    /// failed): no id is made rather than a guessable one.
    NoRandom,
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Process(n) => write!(
                f,
                "too many sessions ({n}, [gateway.limits] max_sessions); try again later"
            ),
            Full::Client(n) => write!(
                f,
                "this client holds {n} sessions already ([gateway.limits] max_sessions_per_client); end some (DELETE) or let them expire"
            ),
            Full::NoRandom => f.write_str(
                "no session id could be made (the system's random number generator failed); try again later",
            ),
            Full::TooFast(after) => write!(
                f,
                "this client opens sessions too fast ([gateway.limits] new_sessions_per_second); try again in {}ms",
                after.as_millis().max(1)
            ),
        }
    }
}

/// How many sessions, and how fast, clients may open.
#[derive(Debug, Clone, Copy)]
pub struct Quotas {
    /// Sessions in the process.
    pub max: usize,
    /// Sessions one client (principal, or address when anonymous) may hold.
    pub per_client: usize,
    /// New sessions one client may open per second, sustained.
    pub per_second: f64,
    /// New sessions one client may open in a burst.
    pub burst: f64,
    /// How long a session may take to finish its handshake before it is ended.
    pub handshake: Duration,
}

impl Quotas {
    /// At most `max` sessions, with the per-client defaults.
    pub fn new(max: usize) -> Quotas {
        Quotas {
            max,
            per_client: max.min(1000),
            per_second: 20.0,
            burst: 100.0,
            handshake: HANDSHAKE_TIMEOUT,
        }
    }
}

/// One client's share: its sessions, and its bucket of new ones.
#[derive(Debug)]
struct Owner {
    sessions: usize,
    tokens: f64,
    refilled: Instant,
}

/// All sessions of this process.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    quotas: Quotas,
    idle: Duration,
    sealer: Sealer,
    /// Sessions ended here (DELETE): their sealed ids must not come back to life here.
    ended: Mutex<HashMap<String, Instant>>,
    /// Each client's share.
    owners: Mutex<HashMap<Arc<str>, Owner>>,
    /// Sessions opened and not yet initialized, oldest first: the first to go when the
    /// process is full (entries of sessions since initialized or ended are skipped).
    unfinished: Mutex<VecDeque<String>>,
    /// Told the id of every session that ends (DELETE, its stream gone, or swept), so
    /// that what was opened for it upstream ends too.
    on_end: std::sync::OnceLock<EndHook>,
}

/// What [`Sessions::on_end`] calls.
type EndHook = Box<dyn Fn(&str) + Send + Sync>;

impl Sessions {
    /// A store for at most `max` sessions, each swept after `idle` without activity.
    pub fn new(max: usize, idle: Duration) -> Result<Self, String> {
        Ok(Sessions::with_sealer(
            Quotas::new(max),
            idle,
            Sealer::random()?,
        ))
    }

    /// A store whose Streamable HTTP session ids are sealed with `sealer`, so that
    /// replicas with the same key can serve them.
    pub fn with_sealer(quotas: Quotas, idle: Duration, sealer: Sealer) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            quotas,
            idle,
            sealer,
            ended: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            unfinished: Mutex::new(VecDeque::new()),
            on_end: std::sync::OnceLock::new(),
        }
    }

    /// Calls `hook` with the id of every session that ends from now on (once set).
    pub fn on_end(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_end.set(Box::new(hook));
    }

    fn ended_now(&self, id: &str) {
        if let Some(hook) = self.on_end.get() {
            hook(id);
        }
    }

    /// The session with this id, whoever it belongs to, without counting as activity.
    pub fn by_id(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.map).get(id).cloned()
    }

    /// Takes one new session from `owner`'s bucket and one place from its quota.
    fn take(&self, owner: &Arc<str>, rate_limited: bool) -> Result<(), Full> {
        let now = Instant::now();
        let mut owners = lock(&self.owners);
        let share = owners.entry(owner.clone()).or_insert(Owner {
            sessions: 0,
            tokens: self.quotas.burst,
            refilled: now,
        });
        if share.sessions >= self.quotas.per_client {
            return Err(Full::Client(self.quotas.per_client));
        }
        if rate_limited {
            let elapsed = now.saturating_duration_since(share.refilled).as_secs_f64();
            share.tokens = (share.tokens + elapsed * self.quotas.per_second).min(self.quotas.burst);
            share.refilled = now;
            if share.tokens < 1.0 {
                let wait = (1.0 - share.tokens) / self.quotas.per_second;
                return Err(Full::TooFast(Duration::from_secs_f64(wait)));
            }
            share.tokens -= 1.0;
        }
        share.sessions += 1;
        Ok(())
    }

    /// Gives back `owner`'s place (its bucket stays until the sweep).
    fn give_back(&self, owner: &Arc<str>) {
        if let Some(share) = lock(&self.owners).get_mut(owner) {
            share.sessions = share.sessions.saturating_sub(1);
        }
    }

    /// Ends the oldest session that never finished its handshake and holds no stream;
    /// whether there was one.
    fn evict_unfinished(&self) -> bool {
        loop {
            let Some(id) = lock(&self.unfinished).pop_front() else {
                return false;
            };
            let victim = lock(&self.map).get(&id).cloned();
            if let Some(victim) = victim
                && !victim.is_initialized()
                && !victim.has_stream()
            {
                tracing::debug!(session = %short_id(&id), "evicted a session that never finished its handshake");
                self.end(&id);
                return true;
            }
        }
    }

    /// How often the sweep should run to keep to the quotas' timeouts.
    pub fn sweep_every(&self) -> Duration {
        (self.quotas.handshake / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Whether session ids are sealed with a key replicas share.
    pub fn shared(&self) -> bool {
        self.sealer.shared
    }

    /// Opens a session for `owner` (the principal, or the client's address when
    /// anonymous), within its quota and its rate.
    pub fn open(
        &self,
        version: &'static str,
        scope: Scope,
        principal: Option<Arc<str>>,
        owner: &Arc<str>,
        legacy: bool,
    ) -> Result<Arc<Session>, Full> {
        self.take(owner, true)?;
        let id = if legacy {
            // A legacy SSE session lives on its stream, in this process.
            let mut bytes = [0u8; 16];
            rand::rng().fill(&mut bytes);
            hex::encode(bytes)
        } else {
            let sealed = self.sealer.seal(&Claims {
                principal: principal.as_deref().map(str::to_owned),
                version: version.to_owned(),
                target: scope.target().map(str::to_owned),
                issued: crate::seal::now(),
            });
            match sealed {
                Some(id) => id,
                None => {
                    self.give_back(owner);
                    tracing::error!(
                        "no session id could be sealed: the random number generator failed"
                    );
                    return Err(Full::NoRandom);
                }
            }
        };
        let opened = self.insert(
            id.clone(),
            version,
            scope,
            principal,
            owner.clone(),
            legacy,
            false,
        );
        match &opened {
            Ok(_) => lock(&self.unfinished).push_back(id),
            Err(_) => self.give_back(owner),
        }
        opened
    }

    /// A session opened on another replica (or before a restart): its sealed id
    /// opened, checked against `principal`, and adopted here, initialized.
    pub fn revive(&self, id: &str, principal: Option<&str>) -> Option<Claims> {
        if lock(&self.ended).contains_key(id) {
            return None;
        }
        match self.sealer.open(id, principal) {
            Ok(claims) => Some(claims),
            Err(Refusal::NotSealed) => None,
            Err(why) => {
                tracing::info!("refused a session id: {}", why.as_str());
                None
            }
        }
    }

    /// Adopts a revived session under its id.
    pub fn adopt(
        &self,
        id: &str,
        version: &'static str,
        scope: Scope,
        principal: Option<Arc<str>>,
    ) -> Result<Arc<Session>, Full> {
        if let Some(existing) = lock(&self.map).get(id) {
            return Ok(existing.clone());
        }
        tracing::debug!("serving a session opened elsewhere");
        let owner: Arc<str> = principal.clone().unwrap_or_else(|| Arc::from("anonymous"));
        self.take(&owner, false)?;
        let adopted = self.insert(
            id.to_owned(),
            version,
            scope,
            principal,
            owner.clone(),
            false,
            true,
        );
        if adopted.is_err() {
            self.give_back(&owner);
        }
        adopted
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one private constructor, called twice"
    )]
    fn insert(
        &self,
        id: String,
        version: &'static str,
        scope: Scope,
        principal: Option<Arc<str>>,
        owner: Arc<str>,
        legacy: bool,
        initialized: bool,
    ) -> Result<Arc<Session>, Full> {
        let session = Arc::new(Session {
            id: id.clone(),
            version: Mutex::new(version),
            scope: Mutex::new(scope),
            principal,
            owner,
            legacy,
            initialized: AtomicBool::new(initialized),
            stream: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            asks: Mutex::new(HashMap::new()),
            next_ask: AtomicU64::new(1),
            subscriptions: Mutex::new(HashSet::new()),
            last_seen: Mutex::new(Instant::now()),
            created: Instant::now(),
        });
        // Full: a session that never finished its handshake makes room first.
        while lock(&self.map).len() >= self.quotas.max {
            if !self.evict_unfinished() {
                return Err(Full::Process(self.quotas.max));
            }
        }
        lock(&self.map).insert(id, session.clone());
        Ok(session)
    }

    /// The session with this id, if it exists and belongs to `principal`.
    pub fn get(&self, id: &str, principal: Option<&str>) -> Option<Arc<Session>> {
        let session = lock(&self.map).get(id).cloned()?;
        (session.principal.as_deref() == principal).then(|| {
            session.touch();
            session
        })
    }

    /// Ends a session; false if it did not exist.
    pub fn end(&self, id: &str) -> bool {
        let removed = lock(&self.map).remove(id);
        if let Some(session) = &removed {
            self.give_back(&session.owner);
            let mut ended = lock(&self.ended);
            // Bounded: past the cap, the oldest half is forgotten.
            let max = self.quotas.max;
            if ended.len() >= max {
                let mut by_age: Vec<(String, Instant)> = ended.drain().collect();
                by_age.sort_by_key(|(_, at)| *at);
                ended.extend(by_age.into_iter().skip(max / 2));
            }
            ended.insert(id.to_owned(), Instant::now());
        }
        match removed {
            Some(session) => {
                session.close();
                self.ended_now(id);
                true
            }
            None => false,
        }
    }

    /// Every session, for broadcasting.
    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.map).values().cloned().collect()
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes sessions idle past the limit, and sessions that never finished their
    /// handshake, unless they hold an open stream.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let max_age = Duration::from_secs(crate::seal::MAX_AGE_SECS);
        lock(&self.ended).retain(|_, at| now.saturating_duration_since(*at) < max_age);
        let mut gone = Vec::new();
        let mut ids = Vec::new();
        let swept = {
            let mut map = lock(&self.map);
            let before = map.len();
            map.retain(|_, s| {
                let idle = now.saturating_duration_since(*lock(&s.last_seen)) > self.idle;
                let abandoned = !s.is_initialized()
                    && now.saturating_duration_since(s.created) > self.quotas.handshake;
                let keep = !(idle || abandoned) || s.has_stream();
                if !keep {
                    s.close();
                    gone.push(s.owner.clone());
                    ids.push(s.id.clone());
                }
                keep
            });
            lock(&self.unfinished).retain(|id| map.get(id).is_some_and(|s| !s.is_initialized()));
            before - map.len()
        };
        for owner in &gone {
            self.give_back(owner);
        }
        for id in &ids {
            self.ended_now(id);
        }
        // A client with no session and a full bucket leaves no trace.
        lock(&self.owners).retain(|_, share| {
            share.sessions > 0
                || share.tokens
                    + now.saturating_duration_since(share.refilled).as_secs_f64()
                        * self.quotas.per_second
                    < self.quotas.burst
        });
        swept
    }
}
