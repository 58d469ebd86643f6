//! Circuit breakers: stop sending calls to a tool server that keeps failing, and find
//! out cheaply when it has recovered.
//!
//! - **Closed**: calls go through. It opens after `consecutive_failures` failures in a
//!   row, or when at least `min_calls` calls in the sliding `window` failed at a ratio
//!   of `failure_ratio` or more.
//! - **Open**: calls fail at once with [`UpstreamError::CircuitOpen`], naming when the
//!   tool server is tried again. The first open period is `open_for`; each trip in a
//!   row doubles it, up to `max_open_for`.
//! - **Half-open**: after the open period, `probes` calls go through (the others still
//!   fail at once). All succeeding closes it; one failing opens it again, for longer.
//!
//! What counts as a failure ([`is_failure`]) is the tool server's: unavailable, timed
//! out, crashed, a broken connection or protocol, a TLS failure, a 5xx or 429, an
//! "overloaded" answer. A tool's own error result is a success (the server works); the
//! gateway's own refusals (busy, rate limited) count as nothing.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mcp_edge_policy::window::Window;
use mcp_edge_policy::{Policy, PolicyFuture, Reply, Request, Stack, UpstreamError, overloaded};
use tokio::time::Instant;

/// A breaker's thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Failures in a row that open it.
    pub consecutive_failures: u32,
    /// Failure ratio over the window that opens it.
    pub failure_ratio: f64,
    /// Calls in the window before the ratio counts.
    pub min_calls: u32,
    /// The sliding window.
    pub window: Duration,
    /// The first open period.
    pub open_for: Duration,
    /// The longest open period.
    pub max_open_for: Duration,
    /// Calls let through while half-open.
    pub probes: u32,
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls fail at once until `until`.
    Open {
        /// When probes are let through.
        until: Instant,
    },
    /// Probes go through; the other calls fail at once.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half_open`: for logs, metrics and `/health`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A breaker's state, for health reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Where it is.
    pub state: State,
    /// Trips in a row (zero once closed again).
    pub trips: u32,
    /// Times it opened since it was made.
    pub total_trips: u64,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    /// `(successes, failures)` over the window.
    window: Window,
    trips: u32,
    total_trips: u64,
    probes_out: u32,
    probes_ok: u32,
    /// The last failure, in words.
    cause: String,
}

/// One circuit breaker (a route's, or an endpoint's).
#[derive(Debug)]
pub struct Breaker {
    name: Arc<str>,
    cfg: Config,
    inner: Mutex<Inner>,
}

/// What a call holds while it goes through; record its outcome with
/// [`Permit::record`]. Dropped unrecorded (the caller went away) it counts as nothing,
/// and a probe's place is given back.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    /// A closed breaker named `name` in its log events.
    pub fn new(name: &str, cfg: Config) -> Arc<Breaker> {
        Arc::new(Breaker {
            name: name.into(),
            cfg,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                window: Window::new(cfg.window),
                trips: 0,
                total_trips: 0,
                probes_out: 0,
                probes_ok: 0,
                cause: String::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where it is now (an open breaker whose period is over reads half-open).
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        self.advance(&mut inner);
        Snapshot {
            state: inner.state,
            trips: inner.trips,
            total_trips: inner.total_trips,
        }
    }

    /// Lets a call through, or says why not.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, UpstreamError> {
        let mut inner = self.lock();
        self.advance(&mut inner);
        let probe = match inner.state {
            State::Closed => false,
            State::Open { until } => {
                return Err(UpstreamError::CircuitOpen {
                    retry_in: until.saturating_duration_since(Instant::now()),
                    trips: inner.trips,
                    cause: inner.cause.clone(),
                });
            }
            State::HalfOpen => {
                if inner.probes_out + inner.probes_ok >= self.cfg.probes {
                    return Err(UpstreamError::CircuitOpen {
                        retry_in: Duration::ZERO,
                        trips: inner.trips,
                        cause: inner.cause.clone(),
                    });
                }
                inner.probes_out += 1;
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    /// Moves an open breaker whose period is over to half-open, and the window on.
    fn advance(&self, inner: &mut Inner) {
        if let State::Open { until } = inner.state
            && Instant::now() >= until
        {
            inner.state = State::HalfOpen;
            inner.probes_out = 0;
            inner.probes_ok = 0;
            tracing::info!(breaker = %self.name, "circuit breaker half-open: letting {} probe(s) through", self.cfg.probes);
        }
    }

    fn record(&self, probe: bool, failed: Option<String>) {
        let mut inner = self.lock();
        self.advance(&mut inner);
        let failed = match failed {
            Some(cause) => {
                inner.cause = cause;
                true
            }
            None => false,
        };
        if probe {
            inner.probes_out = inner.probes_out.saturating_sub(1);
            if inner.state != State::HalfOpen {
                return;
            }
            if failed {
                self.trip(&mut inner, "a probe failed");
            } else {
                inner.probes_ok += 1;
                if inner.probes_ok >= self.cfg.probes {
                    inner.state = State::Closed;
                    inner.trips = 0;
                    inner.consecutive = 0;
                    inner.window.clear();
                    tracing::info!(breaker = %self.name, "circuit breaker closed: the probes succeeded");
                }
            }
            return;
        }
        if inner.state != State::Closed {
            // A call let through before the breaker opened: its news is old.
            return;
        }
        if failed {
            inner.consecutive += 1;
            inner.window.add(0, 1);
        } else {
            inner.consecutive = 0;
            inner.window.add(1, 0);
        }
        let (ok, bad) = inner.window.totals();
        let total = ok + bad;
        if inner.consecutive >= self.cfg.consecutive_failures {
            let why = format!("{} failures in a row", inner.consecutive);
            self.trip(&mut inner, &why);
        } else if failed
            && total >= u64::from(self.cfg.min_calls)
            && bad as f64 >= self.cfg.failure_ratio * total as f64
        {
            let why = format!("{bad} of the last {total} calls failed");
            self.trip(&mut inner, &why);
        }
    }

    fn trip(&self, inner: &mut Inner, why: &str) {
        inner.trips = inner.trips.saturating_add(1);
        inner.total_trips += 1;
        let open_for = mcp_edge_policy::backoff::Backoff {
            base: self.cfg.open_for,
            max: self.cfg.max_open_for.max(self.cfg.open_for),
        }
        .ceiling(inner.trips - 1);
        inner.state = State::Open {
            until: Instant::now() + open_for,
        };
        inner.consecutive = 0;
        inner.probes_out = 0;
        inner.probes_ok = 0;
        tracing::warn!(
            breaker = %self.name,
            trips = inner.trips,
            open_ms = open_for.as_millis() as u64,
            "circuit breaker open: {why}; calls fail at once for {}ms",
            open_for.as_millis()
        );
    }
}

impl Permit {
    /// Whether this call is a half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records the call's outcome.
    pub fn record(mut self, outcome: &Result<Reply, UpstreamError>) {
        self.recorded = true;
        if let Some(failed) = is_failure(outcome) {
            let cause = failed.then(|| match outcome {
                Err(e) => e.to_string(),
                Ok(_) => "the tool server answered that it is overloaded".to_owned(),
            });
            self.breaker.record(self.probe, cause);
        } else if self.probe {
            let mut inner = self.breaker.lock();
            inner.probes_out = inner.probes_out.saturating_sub(1);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            let mut inner = self.breaker.lock();
            inner.probes_out = inner.probes_out.saturating_sub(1);
        }
    }
}

/// Whether an outcome is the tool server's failure (`Some(true)`), its success
/// (`Some(false)`), or says nothing about it (`None`: the gateway's own refusals).
pub fn is_failure(outcome: &Result<Reply, UpstreamError>) -> Option<bool> {
    match outcome {
        Ok(reply) => Some(overloaded(reply).is_some()),
        Err(
            UpstreamError::Busy { .. }
            | UpstreamError::RateLimited { .. }
            | UpstreamError::CircuitOpen { .. }
            | UpstreamError::Refused(_)
            | UpstreamError::Closed,
        ) => None,
        Err(UpstreamError::Status { status, .. }) => Some(*status >= 500 || *status == 429),
        Err(_) => Some(true),
    }
}

/// Applies a [`Breaker`]: wrap it in a [`mcp_edge_policy::PolicyLayer`].
#[derive(Debug, Clone)]
pub struct BreakerPolicy {
    breaker: Arc<Breaker>,
}

impl BreakerPolicy {
    /// The policy of this breaker (kept by the caller for health reporting).
    pub fn new(breaker: Arc<Breaker>) -> Self {
        BreakerPolicy { breaker }
    }
}

impl Policy for BreakerPolicy {
    fn call<S: Stack>(&self, mut inner: S, request: Request) -> PolicyFuture {
        let permit = self.breaker.try_acquire();
        Box::pin(async move {
            let permit = permit?;
            let outcome = inner.call(request).await;
            permit.record(&outcome);
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use mcp_edge_policy::testing::ok;

    use super::*;

    fn cfg() -> Config {
        Config {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_secs(4),
            probes: 2,
        }
    }

    fn fail() -> Result<Reply, UpstreamError> {
        Err(UpstreamError::Timeout(Duration::from_secs(1)))
    }

    fn call(breaker: &Arc<Breaker>, outcome: &Result<Reply, UpstreamError>) -> bool {
        match breaker.try_acquire() {
            Ok(permit) => {
                permit.record(outcome);
                true
            }
            Err(_) => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_calls_then_fail_at_once() {
        let breaker = Breaker::new("r", cfg());
        assert!(call(&breaker, &fail()));
        assert!(call(&breaker, &fail()));
        assert_eq!(breaker.snapshot().state, State::Closed);
        assert!(call(&breaker, &fail()));
        assert!(matches!(breaker.snapshot().state, State::Open { .. }));
        match breaker.try_acquire() {
            Err(UpstreamError::CircuitOpen {
                retry_in,
                trips,
                cause,
            }) => {
                assert_eq!((retry_in, trips), (Duration::from_secs(1), 1));
                assert!(cause.contains("did not answer within 1000ms"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_run() {
        let breaker = Breaker::new("r", cfg());
        for _ in 0..3 {
            assert!(call(&breaker, &fail()));
            assert!(call(&breaker, &fail()));
            assert!(call(&breaker, &Ok(ok())));
        }
        // Never 3 in a row; 6 of 9 failed, under min_calls: closed. The next failure
        // makes 7 of 10, and the ratio (0.5 of ≥10 calls) opens it.
        assert_eq!(breaker.snapshot().state, State::Closed);
        assert!(call(&breaker, &fail()));
        assert!(matches!(breaker.snapshot().state, State::Open { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn the_ratio_needs_its_minimum_and_forgets_old_calls() {
        let mut config = cfg();
        config.consecutive_failures = 100;
        let breaker = Breaker::new("r", config);
        for _ in 0..4 {
            assert!(call(&breaker, &fail()));
            assert!(call(&breaker, &Ok(ok())));
        }
        assert_eq!(
            breaker.snapshot().state,
            State::Closed,
            "8 calls < min_calls"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(call(&breaker, &fail()));
        assert!(call(&breaker, &Ok(ok())));
        assert_eq!(
            breaker.snapshot().state,
            State::Closed,
            "the old calls left the window"
        );
        for _ in 0..4 {
            assert!(call(&breaker, &Ok(ok())));
            assert!(call(&breaker, &fail()));
        }
        assert!(matches!(breaker.snapshot().state, State::Open { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probes_close_it_on_success() {
        let breaker = Breaker::new("r", cfg());
        for _ in 0..3 {
            call(&breaker, &fail());
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breaker.snapshot().state, State::HalfOpen);
        let first = breaker.try_acquire().unwrap();
        let second = breaker.try_acquire().unwrap();
        assert!(
            matches!(
                breaker.try_acquire(),
                Err(UpstreamError::CircuitOpen { .. })
            ),
            "only `probes` calls go through"
        );
        first.record(&Ok(ok()));
        assert_eq!(breaker.snapshot().state, State::HalfOpen);
        second.record(&Ok(ok()));
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.state, snapshot.trips), (State::Closed, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_it_for_longer_up_to_the_cap() {
        let breaker = Breaker::new("r", cfg());
        for _ in 0..3 {
            call(&breaker, &fail());
        }
        let mut expected = [2, 4, 4].into_iter();
        for _ in 0..3 {
            let Some(State::Open { until }) = Some(breaker.snapshot().state) else {
                panic!("not open")
            };
            tokio::time::advance(until - Instant::now()).await;
            assert!(call(&breaker, &fail()), "a probe goes through");
            let State::Open { until } = breaker.snapshot().state else {
                panic!("a failed probe reopens it")
            };
            assert_eq!(
                until - Instant::now(),
                Duration::from_secs(expected.next().unwrap())
            );
        }
        assert_eq!(breaker.snapshot().total_trips, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_gives_its_place_back() {
        let breaker = Breaker::new("r", cfg());
        for _ in 0..3 {
            call(&breaker, &fail());
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let a = breaker.try_acquire().unwrap();
        let b = breaker.try_acquire().unwrap();
        drop(a);
        drop(b);
        assert!(call(&breaker, &Ok(ok())));
        assert!(call(&breaker, &Ok(ok())));
        assert_eq!(breaker.snapshot().state, State::Closed);
    }

    #[test]
    fn the_gateways_own_refusals_count_for_nothing() {
        let busy = Err(UpstreamError::Busy {
            max_in_flight: 1,
            queue: 0,
        });
        assert_eq!(is_failure(&busy), None);
        let client_error = Err(UpstreamError::Status {
            status: 404,
            body: String::new(),
            retry_after: None,
        });
        assert_eq!(is_failure(&client_error), Some(false));
        assert_eq!(is_failure(&fail()), Some(true));
    }
}
