//! Bounded retries, only of what is safe to repeat, within a budget.
//!
//! - **What is retried** ([`verdict`]): a call that never reached the tool server (it
//!   was unavailable: not started, connection refused), whatever its method; and, for
//!   calls marked [`Request::repeatable`], a 502/503/504/429, an "overloaded" answer,
//!   a timed-out attempt, a dropped connection or a crashed child. Nothing is retried
//!   once any part of the call (progress, a log, a request) reached the client.
//! - **When**: after a full-jitter backoff (uniform in `[0, min(max, base·2ⁿ)]`), or
//!   after the tool server's `Retry-After` (or a child's restart time) when it gave one;
//!   not at all when that is beyond `max`, or past the call's deadline.
//! - **How often**: at most `attempts` in all, and the route's [`Budget`] must allow it:
//!   retries may add at most `ratio` of the calls of the last ten seconds, plus a floor
//!   of `min_per_second`, so a failing tool server never sees a retry storm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mcp_edge_policy::{Policy, PolicyFuture, Reply, Request, Stack, UpstreamError, overloaded};
use tokio::time::Instant;

pub use mcp_edge_policy::backoff::Backoff;
use mcp_edge_policy::window::Window;

/// How long deposits count.
const WINDOW: Duration = Duration::from_secs(10);

/// A retry budget: over the last ten seconds, retries may be at most
/// `min_per_second · 10 + ratio · calls`.
#[derive(Debug)]
pub struct Budget {
    ratio: f64,
    floor: f64,
    state: Mutex<Window>,
}

impl Budget {
    /// A budget letting retries add `ratio` of calls, with `min_per_second` allowed
    /// regardless.
    pub fn new(ratio: f64, min_per_second: u32) -> Budget {
        Budget {
            ratio: ratio.clamp(0.0, 1.0),
            floor: f64::from(min_per_second) * WINDOW.as_secs_f64(),
            state: Mutex::new(Window::new(WINDOW)),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a call.
    pub fn deposit(&self) {
        self.window().add(1, 0);
    }

    /// Takes one retry from the budget, if it allows one.
    pub fn try_withdraw(&self) -> bool {
        let mut window = self.window();
        let (calls, retries) = window.totals();
        let allowed = self.floor + self.ratio * calls as f64;
        if (retries + 1) as f64 > allowed {
            return false;
        }
        window.add(0, 1);
        true
    }
}

/// Whether to retry an attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Give the outcome to the caller.
    Final,
    /// Try again, not before the tool server's hint if it gave one.
    Retry(Option<Duration>),
}

/// What is safe to retry (see the crate's documentation).
pub fn verdict(request: &Request, outcome: &Result<Reply, UpstreamError>) -> Verdict {
    if request.activity.reached_client() {
        return Verdict::Final;
    }
    match outcome {
        // Never reached the tool server: safe for every method. A supervised server
        // (a child, a stream) that restarts within a second is waited for by its
        // connector already; one that restarts later is not waited for here either.
        Err(UpstreamError::Unavailable { retry_in: None, .. }) => Verdict::Retry(None),
        Err(UpstreamError::Unavailable { .. }) => Verdict::Final,
        _ if !request.repeatable => Verdict::Final,
        // Refused unread, but in a session whose state is gone: only what is safe to
        // repeat is made again, in the new session.
        Err(UpstreamError::SessionGone(_)) => Verdict::Retry(None),
        Err(UpstreamError::Status {
            status: 429 | 502 | 503 | 504,
            retry_after,
            ..
        }) => Verdict::Retry(*retry_after),
        Err(
            UpstreamError::Timeout(_) | UpstreamError::Interrupted(_) | UpstreamError::Crashed(_),
        ) => Verdict::Retry(None),
        Ok(reply) => overloaded(reply).map_or(Verdict::Final, Verdict::Retry),
        Err(_) => Verdict::Final,
    }
}

/// A route's retry policy: wrap it in a [`mcp_edge_policy::PolicyLayer`].
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    attempts: u32,
    backoff: Backoff,
    budget: Arc<Budget>,
    route: Arc<str>,
    retried: Arc<AtomicU64>,
    budget_exhausted: Arc<AtomicU64>,
}

impl RetryPolicy {
    /// At most `attempts` in all (1: no retries), waiting per `backoff`, within `budget`.
    pub fn new(route: &str, attempts: u32, backoff: Backoff, budget: Arc<Budget>) -> Self {
        RetryPolicy {
            attempts: attempts.max(1),
            backoff,
            budget,
            route: route.into(),
            retried: Arc::default(),
            budget_exhausted: Arc::default(),
        }
    }

    /// Counts the retries made (for metrics).
    pub fn retried(&self) -> Arc<AtomicU64> {
        self.retried.clone()
    }

    /// Counts the retries not made because the budget was spent (for metrics).
    pub fn budget_exhausted(&self) -> Arc<AtomicU64> {
        self.budget_exhausted.clone()
    }
}

impl Policy for RetryPolicy {
    fn call<S: Stack>(&self, mut inner: S, request: Request) -> PolicyFuture {
        let cfg = self.clone();
        cfg.budget.deposit();
        if cfg.attempts == 1 {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let mut retries = 0;
            loop {
                let mut attempt = request.clone();
                attempt.attempt = retries + 1;
                let outcome = inner.call(attempt).await;
                let Verdict::Retry(hint) = verdict(&request, &outcome) else {
                    return outcome;
                };
                if retries + 1 >= cfg.attempts {
                    return outcome;
                }
                // A tool server that asks for more than the cap is not asked again now:
                // the caller gets its answer, and its hint, at once.
                if hint.is_some_and(|h| h > cfg.backoff.max) {
                    return outcome;
                }
                let wait = hint.unwrap_or_else(|| cfg.backoff.full_jitter(retries));
                if Instant::now() + wait >= request.call.deadline {
                    return outcome;
                }
                if !cfg.budget.try_withdraw() {
                    cfg.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(route = %cfg.route, method = %request.call.method, "retry budget spent; not retrying");
                    return outcome;
                }
                retries += 1;
                cfg.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    route = %cfg.route,
                    method = %request.call.method,
                    retry = retries,
                    wait_ms = wait.as_millis() as u64,
                    reason = outcome.as_ref().err().map_or("overloaded", |e| e.reason()),
                    "retrying"
                );
                tokio::time::sleep(wait).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use mcp_edge_policy::PolicyLayer;
    use mcp_edge_policy::testing::{ok, request};
    use proptest::prelude::*;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    fn unavailable() -> UpstreamError {
        UpstreamError::Unavailable {
            reason: "connection refused".into(),
            retry_in: None,
        }
    }

    fn status(code: u16, retry_after: Option<Duration>) -> UpstreamError {
        UpstreamError::Status {
            status: code,
            body: String::new(),
            retry_after,
        }
    }

    /// A service failing with `error` `fails` times, then answering; counts attempts.
    fn flaky(fails: u32, error: UpstreamError, count: Arc<AtomicU32>) -> impl Stack {
        tower::service_fn(move |_| -> PolicyFuture {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let error = error.clone();
            Box::pin(async move { if n < fails { Err(error) } else { Ok(ok()) } })
        })
    }

    fn retry_policy(attempts: u32, budget: Budget) -> RetryPolicy {
        RetryPolicy::new(
            "r",
            attempts,
            Backoff {
                base: Duration::from_millis(50),
                max: Duration::from_secs(2),
            },
            Arc::new(budget),
        )
    }

    fn layer(attempts: u32, budget: Budget) -> PolicyLayer<RetryPolicy> {
        PolicyLayer::new(retry_policy(attempts, budget))
    }

    #[test]
    fn only_what_is_safe_is_retried() {
        let read = request("resources/read", true);
        let write = request("tools/call", false);
        assert_eq!(verdict(&write, &Err(unavailable())), Verdict::Retry(None));
        assert_eq!(verdict(&write, &Err(status(503, None))), Verdict::Final);
        assert_eq!(
            verdict(&read, &Err(status(503, Some(Duration::from_secs(1))))),
            Verdict::Retry(Some(Duration::from_secs(1)))
        );
        assert_eq!(verdict(&read, &Err(status(500, None))), Verdict::Final);
        let gone = || Err(UpstreamError::SessionGone("404".into()));
        assert_eq!(verdict(&read, &gone()), Verdict::Retry(None));
        assert_eq!(verdict(&write, &gone()), Verdict::Final);
        assert_eq!(
            verdict(&read, &Err(UpstreamError::Protocol("x".into()))),
            Verdict::Final
        );
        assert_eq!(verdict(&read, &Ok(ok())), Verdict::Final);
        let streamed = request("resources/read", true);
        streamed.activity.relayed();
        assert_eq!(verdict(&streamed, &Err(unavailable())), Verdict::Final);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeatable_call_is_retried_until_it_succeeds() {
        let count = Arc::new(AtomicU32::new(0));
        let service =
            layer(3, Budget::new(0.2, 10)).layer(flaky(2, status(503, None), count.clone()));
        assert!(service.oneshot(request("tools/list", true)).await.is_ok());
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let count = Arc::new(AtomicU32::new(0));
        let service =
            layer(3, Budget::new(1.0, 100)).layer(flaky(100, status(503, None), count.clone()));
        let outcome = service.oneshot(request("tools/list", true)).await;
        assert!(matches!(
            outcome,
            Err(UpstreamError::Status { status: 503, .. })
        ));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_idempotent_tool_is_not_retried_after_it_reached_the_server() {
        let count = Arc::new(AtomicU32::new(0));
        let service =
            layer(3, Budget::new(1.0, 100)).layer(flaky(100, status(503, None), count.clone()));
        let _ = service.oneshot(request("tools/call", false)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_respected_within_the_cap() {
        let count = Arc::new(AtomicU32::new(0));
        let hinted = status(503, Some(Duration::from_millis(1500)));
        let service = layer(2, Budget::new(1.0, 100)).layer(flaky(1, hinted, count.clone()));
        let started = Instant::now();
        assert!(service.oneshot(request("tools/list", true)).await.is_ok());
        assert_eq!(started.elapsed(), Duration::from_millis(1500));

        let count = Arc::new(AtomicU32::new(0));
        let greedy = status(503, Some(Duration::from_secs(60)));
        let service = layer(2, Budget::new(1.0, 100)).layer(flaky(1, greedy, count.clone()));
        let started = Instant::now();
        let outcome = service.oneshot(request("tools/list", true)).await;
        assert_eq!(
            outcome.unwrap_err().retry_after(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "beyond the cap: not retried, at once"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_would_end_past_the_deadline() {
        let count = Arc::new(AtomicU32::new(0));
        let hinted = status(503, Some(Duration::from_secs(1)));
        let service = layer(3, Budget::new(1.0, 100)).layer(flaky(100, hinted, count.clone()));
        let mut hurried = request("tools/list", true);
        hurried.call.deadline = Instant::now() + Duration::from_millis(500);
        let _ = service.oneshot(hurried).await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_stops_a_retry_storm() {
        // 0.2 of calls, no floor: 100 calls failing with 503 make at most 120 requests.
        let count = Arc::new(AtomicU32::new(0));
        let policy = retry_policy(3, Budget::new(0.2, 0));
        let (retried, exhausted) = (policy.retried(), policy.budget_exhausted());
        let service =
            PolicyLayer::new(policy).layer(flaky(u32::MAX, status(503, None), count.clone()));
        for _ in 0..100 {
            let _ = service.clone().oneshot(request("tools/list", true)).await;
        }
        let sent = count.load(Ordering::SeqCst);
        assert!((100..=120).contains(&sent), "{sent} requests");
        assert!(sent > 110, "the budget is used, not wasted: {sent}");
        let (retried, exhausted) = (
            retried.load(Ordering::SeqCst),
            exhausted.load(Ordering::SeqCst),
        );
        assert_eq!(u64::from(sent), 100 + retried, "every retry is counted");
        assert!(exhausted > 0, "the refusals are counted: {exhausted}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_refills_as_the_window_moves() {
        let budget = Budget::new(0.0, 1);
        for _ in 0..10 {
            assert!(budget.try_withdraw());
        }
        assert!(!budget.try_withdraw(), "the floor is 10 per 10 s");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(budget.try_withdraw());
    }

    proptest! {
        #[test]
        fn backoff_stays_within_zero_and_the_cap(base in 1u64..10_000, max in 1u64..100_000, n in 0u32..64) {
            let backoff = Backoff { base: Duration::from_millis(base), max: Duration::from_millis(max) };
            let delay = backoff.full_jitter(n);
            prop_assert!(delay <= backoff.ceiling(n));
            prop_assert!(delay <= Duration::from_millis(max));
        }

        #[test]
        fn the_budget_is_never_exceeded(ratio in 0.0f64..1.0, floor in 0u32..5, ops in proptest::collection::vec(any::<bool>(), 0..500)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            runtime.block_on(async {
                let budget = Budget::new(ratio, floor);
                let (mut calls, mut retries) = (0u64, 0u64);
                for deposit in ops {
                    if deposit {
                        budget.deposit();
                        calls += 1;
                    } else if budget.try_withdraw() {
                        retries += 1;
                    }
                    prop_assert!(retries as f64 <= f64::from(floor) * 10.0 + ratio * calls as f64 + 1e-9);
                }
                Ok(())
            })?;
        }

        #[test]
        fn attempts_never_exceed_the_bound(attempts in 1u32..8, fails in 0u32..20) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let count = Arc::new(AtomicU32::new(0));
            let service = layer(attempts, Budget::new(1.0, 1000)).layer(flaky(fails, status(503, None), count.clone()));
            let outcome = runtime.block_on(service.oneshot(request("tools/list", true)));
            let sent = count.load(Ordering::SeqCst);
            prop_assert!(sent <= attempts);
            prop_assert_eq!(outcome.is_ok(), fails < attempts);
        }
    }
}
