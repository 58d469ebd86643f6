//! The last fifteen minutes of each route, for the status page's charts: a sample of
//! each route's counters every [`SAMPLE_EVERY`], kept in a ring of [`KEPT`], and the
//! breaker's changes of state, looked at every second.
//!
//! The data path is not touched: a sample reads the counters `/metrics` reads, so the
//! charts cost nothing per call, and rendering them costs one pass over at most
//! [`KEPT`] samples per route.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use mcp_edge_route::RouteRt;
use mcp_edge_route::stats::BUCKETS;

use crate::Admin;

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: fifteen minutes.
pub const KEPT: usize = 90;
/// The span the charts show.
pub const SPAN: Duration = Duration::from_secs(15 * 60);
/// Breaker changes kept per route.
const CHANGES_KEPT: usize = 20;

/// A route's counters at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: SystemTime,
    calls: u64,
    failed: u64,
    /// Calls per latency bucket (not cumulative), every method together.
    buckets: Vec<u64>,
}

impl Sample {
    fn of(route: &RouteRt, at: SystemTime) -> Sample {
        let (mut calls, mut failed) = (0, 0);
        for (_, outcome, n) in route.stats.calls() {
            calls += n;
            if outcome != "ok" {
                failed += n;
            }
        }
        let mut buckets = vec![0; BUCKETS.len() + 1];
        for (_, counts, count, _) in route.stats.latency() {
            let within: u64 = counts.iter().sum();
            for (total, n) in buckets.iter_mut().zip(counts) {
                *total += n;
            }
            buckets[BUCKETS.len()] += count.saturating_sub(within);
        }
        Sample {
            at,
            calls,
            failed,
            buckets,
        }
    }
}

/// One point of a chart: the rates and latencies between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The start of the interval.
    pub from: SystemTime,
    /// The end of the interval.
    pub at: SystemTime,
    /// Calls per second.
    pub calls: f64,
    /// Failed calls per second.
    pub errors: f64,
    /// Median latency in milliseconds, if there were calls.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds, if there were calls.
    pub p99_ms: Option<f64>,
}

/// A change of a breaker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When it was seen.
    pub at: SystemTime,
    /// The state it left.
    pub from: &'static str,
    /// The state it entered.
    pub to: &'static str,
    /// Times the breaker opened in all, as of then.
    pub trips: u64,
}

#[derive(Debug, Default)]
struct RouteHistory {
    samples: VecDeque<Sample>,
    changes: VecDeque<Change>,
    breaker: Option<(&'static str, u64)>,
}

/// Every route's recent history.
#[derive(Debug, Default)]
pub struct History {
    routes: Mutex<HashMap<String, RouteHistory>>,
}

impl History {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, RouteHistory>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks at every route's breaker and, when `sample`, takes a sample of its
    /// counters. Routes no longer configured are forgotten.
    fn observe(&self, routes: &[Arc<RouteRt>], now: SystemTime, sample: bool) {
        let mut history = self.lock();
        history.retain(|name, _| routes.iter().any(|r| &r.name == name));
        for route in routes {
            let h = history.entry(route.name.clone()).or_default();
            let snapshot = route.policy.breaker.snapshot();
            let seen = (snapshot.state.as_str(), snapshot.total_trips);
            if let Some((from, trips)) = h.breaker {
                if from != seen.0 {
                    push(
                        &mut h.changes,
                        change(now, from, seen.0, seen.1),
                        CHANGES_KEPT,
                    );
                } else if seen.1 > trips {
                    // Opened, and back where it was, between two looks: both are shown.
                    push(
                        &mut h.changes,
                        change(now, from, "open", seen.1),
                        CHANGES_KEPT,
                    );
                    push(
                        &mut h.changes,
                        change(now, "open", from, seen.1),
                        CHANGES_KEPT,
                    );
                }
            }
            h.breaker = Some(seen);
            if sample {
                push(&mut h.samples, Sample::of(route, now), KEPT + 1);
            }
        }
    }

    /// A route's chart points over the last [`SPAN`], oldest first, the last one
    /// from the latest sample to now.
    pub fn points(&self, route: &RouteRt, now: SystemTime) -> Vec<Point> {
        let history = self.lock();
        let mut samples: Vec<Sample> = history
            .get(&route.name)
            .map(|h| h.samples.iter().cloned().collect())
            .unwrap_or_default();
        drop(history);
        let live = Sample::of(route, now);
        if samples.last().is_none_or(|last| {
            live.at.duration_since(last.at).unwrap_or_default() >= Duration::from_secs(1)
        }) {
            samples.push(live);
        }
        samples
            .windows(2)
            .filter_map(|pair| between(&pair[0], &pair[1]))
            .filter(|p| now.duration_since(p.at).unwrap_or_default() <= SPAN)
            .collect()
    }

    /// A route's breaker changes, newest first.
    pub fn changes(&self, route: &str) -> Vec<Change> {
        self.lock()
            .get(route)
            .map(|h| h.changes.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

fn change(at: SystemTime, from: &'static str, to: &'static str, trips: u64) -> Change {
    Change {
        at,
        from,
        to,
        trips,
    }
}

fn push<T>(ring: &mut VecDeque<T>, item: T, cap: usize) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// The point between two samples; none if the counters went back (the route was
/// rebuilt by a reload) or no time passed.
fn between(a: &Sample, b: &Sample) -> Option<Point> {
    let seconds = b.at.duration_since(a.at).ok()?.as_secs_f64();
    if seconds <= 0.0 || b.calls < a.calls || b.failed < a.failed {
        return None;
    }
    let buckets: Vec<u64> = b
        .buckets
        .iter()
        .zip(&a.buckets)
        .map(|(b, a)| b.saturating_sub(*a))
        .collect();
    Some(Point {
        from: a.at,
        at: b.at,
        calls: (b.calls - a.calls) as f64 / seconds,
        errors: (b.failed - a.failed) as f64 / seconds,
        p50_ms: quantile(&buckets, 0.5).map(|s| s * 1e3),
        p99_ms: quantile(&buckets, 0.99).map(|s| s * 1e3),
    })
}

/// The `q` quantile of a histogram (counts per [`BUCKETS`] bound, then `+Inf`), in
/// seconds, interpolated within its bucket as Prometheus' `histogram_quantile` does.
pub fn quantile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        if *n > 0 && (below + n) as f64 >= rank {
            let Some(upper) = BUCKETS.get(i) else {
                // In +Inf: the highest finite bound is the best that can be said.
                return BUCKETS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let within = (rank - below as f64) / *n as f64;
            return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
        }
        below += n;
    }
    BUCKETS.last().copied()
}

/// Keeps `admin`'s history until the admin state is gone.
pub fn spawn(admin: Weak<Admin>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let per_sample = SAMPLE_EVERY.as_secs();
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let Some(admin) = admin.upgrade() else { return };
            let table = admin.gw.table();
            admin.history.observe(
                &table.routes,
                SystemTime::now(),
                n.is_multiple_of(per_sample),
            );
            n += 1;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
    }

    fn sample(seconds: u64, calls: u64, failed: u64, fast: u64, slow: u64) -> Sample {
        // `fast` calls within 1 ms, `slow` ones within 0.5 s.
        let mut buckets = vec![0; BUCKETS.len() + 1];
        buckets[1] = fast;
        buckets[9] = slow;
        Sample {
            at: at(seconds),
            calls,
            failed,
            buckets,
        }
    }

    #[test]
    fn a_point_is_the_rates_and_latencies_between_two_samples() {
        let p = between(&sample(0, 100, 10, 90, 10), &sample(10, 300, 30, 280, 20)).unwrap();
        assert_eq!(p.at, at(10));
        assert!((p.calls - 20.0).abs() < 1e-9, "{p:?}");
        assert!((p.errors - 2.0).abs() < 1e-9, "{p:?}");
        // 190 fast and 10 slow calls: the median is fast, the 99th percentile slow.
        let p50 = p.p50_ms.unwrap();
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        let p99 = p.p99_ms.unwrap();
        assert!((250.0..=500.0).contains(&p99), "{p99}");
    }

    #[test]
    fn counters_that_went_back_make_no_point() {
        assert_eq!(
            between(&sample(0, 100, 0, 0, 0), &sample(10, 5, 0, 0, 0)),
            None
        );
        assert_eq!(
            between(&sample(10, 1, 0, 0, 0), &sample(10, 5, 0, 0, 0)),
            None
        );
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_and_stop_at_the_last_bound() {
        assert_eq!(quantile(&[0; BUCKETS.len() + 1], 0.5), None);
        let mut only_inf = vec![0; BUCKETS.len() + 1];
        only_inf[BUCKETS.len()] = 3;
        assert_eq!(quantile(&only_inf, 0.5), BUCKETS.last().copied());
        let mut first = vec![0; BUCKETS.len() + 1];
        first[0] = 4;
        let median = quantile(&first, 0.5).unwrap();
        assert!((median - BUCKETS[0] / 2.0).abs() < 1e-12, "{median}");
    }

    #[test]
    fn the_rings_are_bounded() {
        let mut ring = VecDeque::new();
        for i in 0..100 {
            push(&mut ring, i, KEPT);
        }
        assert_eq!(ring.len(), KEPT);
        assert_eq!(ring.front(), Some(&10));
    }
}
