//! Rate limits: token buckets (GCRA, from `governor`) per route, for everyone's calls
//! together, and per client (principal) on the route, each with a burst.
//!
//! A call over a limit fails at once with [`UpstreamError::RateLimited`], naming whose
//! limit it hit and when a call would be allowed (`retry_after_ms` in the JSON-RPC
//! error, and `Retry-After` beside it at the HTTP front door). The client's bucket is
//! checked first, so a client over its own rate does not spend the route's. Listings
//! and pings are not metered ([`is_metered`]).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use mcp_edge_policy::{Policy, PolicyFuture, Request, Stack, UpstreamError};

/// A bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Sustained calls per second.
    pub per_second: NonZeroU32,
    /// Calls allowed at once.
    pub burst: NonZeroU32,
}

impl Bucket {
    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<C> =
    RateLimiter<Arc<str>, HashMapStateStore<Arc<str>>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// How many checks between sweeps of idle clients' buckets.
const SWEEP_EVERY: u64 = 4096;

/// A route's limits.
pub struct Limits<C: Clock = DefaultClock> {
    route: Option<Direct<C>>,
    per_client: Option<Keyed<C>>,
    clock: C,
    checks: AtomicU64,
    refused: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for Limits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("route", &self.route.is_some())
            .field("per_client", &self.per_client.is_some())
            .finish_non_exhaustive()
    }
}

impl Limits<DefaultClock> {
    /// Limits on the real clock.
    pub fn new(route: Option<Bucket>, per_client: Option<Bucket>) -> Arc<Self> {
        Limits::with_clock(route, per_client, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    /// Limits on `clock` (a fake one in tests).
    pub fn with_clock(route: Option<Bucket>, per_client: Option<Bucket>, clock: C) -> Arc<Self> {
        Arc::new(Limits {
            route: route.map(|b| RateLimiter::direct_with_clock(b.quota(), clock.clone())),
            per_client: per_client
                .map(|b| RateLimiter::hashmap_with_clock(b.quota(), clock.clone())),
            clock,
            checks: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Whether any limit applies.
    pub fn is_limited(&self) -> bool {
        self.route.is_some() || self.per_client.is_some()
    }

    /// Calls refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes a token for a call by `principal`, or says when one is due.
    pub fn check(&self, principal: &Arc<str>) -> Result<(), UpstreamError> {
        if let Some(keyed) = &self.per_client {
            if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                keyed.retain_recent();
            }
            if let Err(not_until) = keyed.check_key(principal) {
                return Err(self.refuse("client", not_until.wait_time_from(self.clock.now())));
            }
        }
        if let Some(direct) = &self.route
            && let Err(not_until) = direct.check()
        {
            return Err(self.refuse("route", not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    fn refuse(&self, scope: &'static str, wait: Duration) -> UpstreamError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        UpstreamError::RateLimited {
            scope,
            // Rounded up, so that coming back after the hint finds a token.
            retry_after: Duration::from_millis(
                u64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX),
            ),
        }
    }
}

/// Applies a route's [`Limits`]: wrap it in a [`mcp_edge_policy::PolicyLayer`].
#[derive(Debug, Clone)]
pub struct RateLimitPolicy<C: Clock = DefaultClock> {
    limits: Arc<Limits<C>>,
}

impl<C: Clock> RateLimitPolicy<C> {
    /// The policy of these limits (kept by the caller for metrics).
    pub fn new(limits: Arc<Limits<C>>) -> Self {
        RateLimitPolicy { limits }
    }
}

/// Whether a method spends a token. Listings and pings do not: the gateway fans them
/// out to every route for every client's `tools/list`, so counting them would spend a
/// client's calls on discovery, and a route over its limit would drop out of the list
/// as if it were down.
pub fn is_metered(method: &str) -> bool {
    !matches!(
        method,
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" | "ping"
    )
}

impl<C: Clock + Clone + Send + Sync + 'static> Policy for RateLimitPolicy<C> {
    fn call<S: Stack>(&self, mut inner: S, request: Request) -> PolicyFuture {
        if is_metered(&request.call.method)
            && let Err(refused) = self.limits.check(&request.principal)
        {
            return Box::pin(std::future::ready(Err(refused)));
        }
        Box::pin(inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn bucket(per_second: u32, burst: u32) -> Bucket {
        Bucket {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let clock = FakeRelativeClock::default();
        let limits = Limits::with_clock(Some(bucket(10, 5)), None, clock.clone());
        let anyone: Arc<str> = "a".into();
        for _ in 0..5 {
            assert!(limits.check(&anyone).is_ok());
        }
        match limits.check(&anyone) {
            Err(UpstreamError::RateLimited { scope, retry_after }) => {
                assert_eq!(scope, "route");
                assert_eq!(retry_after, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
        clock.advance(Duration::from_millis(100));
        assert!(limits.check(&anyone).is_ok(), "one token per 100 ms");
        assert!(limits.check(&anyone).is_err());
        assert_eq!(limits.refused(), 2);
    }

    #[test]
    fn one_client_over_its_rate_leaves_the_others_alone() {
        let clock = FakeRelativeClock::default();
        let limits = Limits::with_clock(Some(bucket(100, 100)), Some(bucket(1, 2)), clock);
        let (greedy, polite): (Arc<str>, Arc<str>) = ("greedy".into(), "polite".into());
        assert!(limits.check(&greedy).is_ok());
        assert!(limits.check(&greedy).is_ok());
        match limits.check(&greedy) {
            Err(UpstreamError::RateLimited { scope, retry_after }) => {
                assert_eq!((scope, retry_after), ("client", Duration::from_secs(1)));
            }
            other => panic!("{other:?}"),
        }
        assert!(limits.check(&polite).is_ok());
        assert!(limits.check(&polite).is_ok());
    }

    #[test]
    fn calls_are_metered_and_discovery_is_not() {
        for method in [
            "tools/call",
            "prompts/get",
            "resources/read",
            "completion/complete",
        ] {
            assert!(is_metered(method), "{method}");
        }
        for method in [
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
            "ping",
        ] {
            assert!(!is_metered(method), "{method}");
        }
    }

    #[test]
    fn no_buckets_no_limit() {
        let limits = Limits::new(None, None);
        assert!(!limits.is_limited());
        for _ in 0..10_000 {
            assert!(limits.check(&Arc::from("x")).is_ok());
        }
    }
}
