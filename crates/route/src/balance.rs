//! A route with several replicas (`urls`): each call goes to one of them, chosen by
//! the power of two choices on latency — two replicas picked at random, the one with
//! the lower `EWMA latency × (calls in flight + 1)` wins — and each replica has its own
//! circuit breaker, which ejects it while it is sick (a failed call also counts as a
//! slow one, twice the estimate, so the balancer leans away before the breaker opens).
//! An estimate nobody refreshes halves every second, so a replica that was slow once
//! is tried again; a
//! replica whose breaker is half-open is picked first, so that it is probed, and a
//! successful probe starts its estimate afresh.
//!
//! Requests a replica's tool server makes during a call (sampling, elicitation) get an
//! id naming the replica, so the client's answer goes back to the one that asked.
//!
//! Why not tower's `p2c::Balance` over `PeakEwma`: its load is the round-trip time of
//! every response, failures included, so a replica that fails fast looks fast and
//! draws more traffic (the black hole a load balancer must not have); it knows no
//! breaker, so an ejected replica would have to hold its callers in `poll_ready`
//! instead of being passed over at once; and its `&mut self` service shared by every
//! connection task needs a `Buffer` (a task and a channel hop per call) or a lock held
//! across readiness. The choice itself is the same algorithm, in twenty lines
//! ([`Balanced::call`]'s pick), with the failure penalty and the breaker added; the
//! replica tests in `tests/tests/policies.rs` hold both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mcp_edge_breaker::{Breaker, Permit, is_failure};
use mcp_edge_protocol::Id;
use mcp_edge_transport::{Call, CallEvent, Http, Reply, ServerInfo, State, UpstreamError};
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A failed call counts as at least this slow (and twice the estimate): a replica that
/// fails fast must not look fast.
const FAILURE_FLOOR: Duration = Duration::from_millis(20);
/// The weight of a new latency sample.
const ALPHA: f64 = 0.3;
/// An estimate not refreshed for this long counts half.
const HALF_LIFE: Duration = Duration::from_secs(1);

/// Microseconds since the first use: a clock an atomic can hold.
fn now_us() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// One replica.
pub struct Replica {
    /// Its connector.
    pub http: Http,
    /// Its circuit breaker.
    pub breaker: Arc<Breaker>,
    /// Its URL, safe to print.
    pub url: String,
    /// Latency EWMA in microseconds (0 until the first call).
    ewma_us: AtomicU64,
    /// When the estimate was last refreshed ([`now_us`]).
    updated_us: AtomicU64,
    in_flight: AtomicUsize,
}

impl Replica {
    /// A replica behind `http`, with its own breaker.
    pub fn new(http: Http, breaker: Arc<Breaker>, url: String) -> Replica {
        Replica {
            http,
            breaker,
            url,
            ewma_us: AtomicU64::new(0),
            updated_us: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn cost(&self) -> f64 {
        let in_flight = self.in_flight.load(Ordering::Relaxed) as f64;
        (self.latency().as_micros() as f64).max(1.0) * (in_flight + 1.0)
    }

    /// Folds a call's latency into the estimate; `fresh` starts it over.
    fn observe(&self, sample: Duration, fresh: bool) {
        let sample = sample.as_micros() as f64;
        let old = self.latency().as_micros() as f64;
        let new = if old == 0.0 || fresh {
            sample
        } else {
            old + ALPHA * (sample - old)
        };
        self.ewma_us.store(new as u64, Ordering::Relaxed);
        self.updated_us.store(now_us(), Ordering::Relaxed);
    }

    /// The latency estimate, decayed by its age.
    pub fn latency(&self) -> Duration {
        let ewma = self.ewma_us.load(Ordering::Relaxed) as f64;
        let age = now_us().saturating_sub(self.updated_us.load(Ordering::Relaxed)) as f64;
        let halvings = age / HALF_LIFE.as_micros() as f64;
        Duration::from_micros((ewma * 0.5f64.powf(halvings)) as u64)
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a call in flight on a replica until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A route's replicas.
pub struct Balanced {
    /// The replicas, in `urls` order.
    pub replicas: Vec<Replica>,
    /// Each client session has an upstream session of its own, on the replica it
    /// sticks to (see [`Balanced::pick_for`]).
    pub per_client: bool,
}

impl Balanced {
    /// The replicas' state: up if any is, the newest failure, the sum of restarts.
    pub fn state(&self) -> State {
        let states: Vec<State> = self
            .replicas
            .iter()
            .map(|r| r.http.status().into())
            .collect();
        State {
            up: states.iter().any(|s| s.up),
            starting: !states.iter().any(|s| s.up) && states.iter().any(|s| s.starting),
            pid: None,
            restarts: states.iter().map(|s| s.restarts).sum(),
            last_error: states
                .iter()
                .filter_map(|s| s.last_error.clone())
                .max_by_key(|(at, _)| *at),
            protocol_version: states.iter().find_map(|s| s.protocol_version.clone()),
        }
    }

    /// Makes one call on the replica the balancer picks.
    pub async fn call(&self, mut call: Call) -> Result<Reply, UpstreamError> {
        let (index, permit) = match &call.session {
            Some(key) if self.per_client => self.pick_for(key)?,
            _ => self.pick()?,
        };
        let replica = &self.replicas[index];
        let events = call.events.take();
        replica.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(&replica.in_flight);
        let started = Instant::now();
        let outcome = match events {
            Some(events) => tagging_requests(&replica.http, call, index, &events).await,
            None => replica.http.call(call).await,
        };
        let failed = is_failure(&outcome) == Some(true);
        let sample = if failed {
            started
                .elapsed()
                .max(replica.latency() * 2)
                .max(FAILURE_FLOOR)
        } else {
            started.elapsed()
        };
        replica.observe(sample, permit.is_probe() && !failed);
        permit.record(&outcome);
        outcome
    }

    /// Power of two choices among the replicas; a replica whose breaker refuses is
    /// passed over for the next best. All refusing: the soonest to be tried again says
    /// why.
    fn pick(&self) -> Result<(usize, Permit), UpstreamError> {
        let n = self.replicas.len();
        let mut order: Vec<usize> = (0..n).collect();
        if n > 2 {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            order.swap(0, a);
            let b_at = order.iter().position(|&i| i == b).unwrap_or(1);
            order.swap(1, b_at);
        }
        if n >= 2 && self.replicas[order[1]].cost() < self.replicas[order[0]].cost() {
            order.swap(0, 1);
        }
        // A half-open replica goes first: it comes back only if it is probed.
        if let Some(at) = order.iter().position(|&i| {
            self.replicas[i].breaker.snapshot().state == mcp_edge_breaker::State::HalfOpen
        }) {
            let probe = order.remove(at);
            order.insert(0, probe);
        }
        let mut refusal: Option<UpstreamError> = None;
        for index in order {
            match self.replicas[index].breaker.try_acquire() {
                Ok(permit) => return Ok((index, permit)),
                Err(e) => {
                    let sooner = match (&refusal, &e) {
                        (None, _) => true,
                        (Some(old), new) => new.retry_after() < old.retry_after(),
                    };
                    if sooner {
                        refusal = Some(e);
                    }
                }
            }
        }
        Err(refusal.unwrap_or(UpstreamError::Closed))
    }

    /// The replica a client session sticks to (its session lives there): the same one
    /// for every call while its breaker lets calls through, the next ones in turn while
    /// it does not (the client then gets a new upstream session there, without the old
    /// one's state, as when it moves to another gateway replica).
    fn pick_for(&self, key: &str) -> Result<(usize, Permit), UpstreamError> {
        let n = self.replicas.len();
        // FNV-1a: stable across processes, so every gateway replica agrees.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let first = (hash % n as u64) as usize;
        let mut refusal: Option<UpstreamError> = None;
        for index in (0..n).map(|i| (first + i) % n) {
            match self.replicas[index].breaker.try_acquire() {
                Ok(permit) => return Ok((index, permit)),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        Err(refusal.unwrap_or(UpstreamError::Closed))
    }

    /// A client session ended: its upstream sessions end on every replica.
    pub fn end_session(&self, session: &str) {
        for replica in &self.replicas {
            replica.http.end_session(session);
        }
    }

    /// Client sessions with an upstream session of their own, over all replicas.
    pub fn client_sessions(&self) -> usize {
        self.replicas.iter().map(|r| r.http.client_sessions()).sum()
    }

    /// What the first replica that is up said about itself.
    pub fn info(&self) -> Option<Arc<ServerInfo>> {
        self.replicas.iter().find_map(|r| r.http.status().info)
    }

    /// Waits for every replica's first connection attempt.
    pub async fn first_attempt(&self, deadline: Instant) {
        futures_util::future::join_all(
            self.replicas.iter().map(|r| r.http.first_attempt(deadline)),
        )
        .await;
    }

    /// Sends a notification: a client's to the replicas holding its own session,
    /// anything else to every replica.
    pub async fn notify(
        &self,
        session: Option<&Arc<str>>,
        method: &str,
        params: Option<&serde_json::value::RawValue>,
    ) {
        futures_util::future::join_all(
            self.replicas
                .iter()
                .filter(|r| session.is_none_or(|key| r.http.holds(key)))
                .map(|r| r.http.notify(session, method, params)),
        )
        .await;
    }

    /// Answers a request one replica made, by the id [`Balanced::call`] gave it.
    pub async fn respond(&self, session: Option<&Arc<str>>, id: &Id, reply: Reply) {
        if let Some((index, original)) = untag(id)
            && let Some(replica) = self.replicas.get(index)
        {
            replica.http.respond(session, &original, reply).await;
        }
    }

    /// Ends every replica's session.
    pub async fn shutdown(&self) {
        futures_util::future::join_all(self.replicas.iter().map(|r| r.http.shutdown())).await;
    }
}

/// Makes `call` on replica `index`, relaying its events to `events` as they come and
/// giving the tool server's requests ids that name the replica. In the caller's task:
/// every event is passed on before the answer is.
async fn tagging_requests(
    http: &Http,
    mut call: Call,
    index: usize,
    events: &mpsc::Sender<CallEvent>,
) -> Result<Reply, UpstreamError> {
    let (tx, mut rx) = mpsc::channel::<CallEvent>(32);
    call.events = Some(tx);
    let tagged = |event| match event {
        CallEvent::Request(mut message) => {
            message.id = message.id.map(|id| tag(index, &id));
            CallEvent::Request(message)
        }
        other => other,
    };
    let calling = http.call(call);
    tokio::pin!(calling);
    let outcome = loop {
        tokio::select! {
            biased;
            outcome = &mut calling => break outcome,
            Some(event) = rx.recv() => {
                let _ = events.send(tagged(event)).await;
            }
        }
    };
    while let Ok(event) = rx.try_recv() {
        let _ = events.send(tagged(event)).await;
    }
    outcome
}

fn tag(index: usize, id: &Id) -> Id {
    let json = serde_json::to_string(id).unwrap_or_default();
    Id::Str(format!("r{index}:{json}").into())
}

fn untag(id: &Id) -> Option<(usize, Id)> {
    let Id::Str(text) = id else { return None };
    let (index, json) = text.strip_prefix('r')?.split_once(':')?;
    Some((index.parse().ok()?, serde_json::from_str(json).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip_through_their_tag() {
        for id in [Id::Num(7), Id::Str("a:b".into())] {
            assert_eq!(untag(&tag(3, &id)), Some((3, id)));
        }
        assert_eq!(untag(&Id::Num(1)), None);
    }
}
