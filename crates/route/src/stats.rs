//! What a route has done: calls by method and outcome, latency histograms and recent
//! latencies, the last failure, the last probe. The data path writes these with
//! atomics (a read lock at most); `/metrics` and `/health` read them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// Upper bounds of the latency histogram buckets, in seconds.
/// From half a millisecond (a cached answer on loopback) to a minute (a long tool run);
/// slower calls land in `+Inf`.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// How many recent latencies are kept for p50/p99.
const RECENT: usize = 512;

/// How many recent failures are kept for the status page.
pub const RECENT_ERRORS: usize = 10;

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The result of the last active probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// When it finished.
    pub at: SystemTime,
    /// How long it took.
    pub took: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

struct Recent {
    samples: Vec<u32>,
    next: usize,
}

/// One route's statistics.
pub struct RouteStats {
    /// By method, then by outcome (a handful each): looked up without allocating.
    calls: RwLock<HashMap<String, Vec<(&'static str, AtomicU64)>>>,
    latency: RwLock<HashMap<String, Histogram>>,
    recent: Mutex<Recent>,
    errors: Mutex<std::collections::VecDeque<(SystemTime, String)>>,
    probe: Mutex<Option<Probe>>,
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            calls: RwLock::default(),
            latency: RwLock::default(),
            recent: Mutex::new(Recent {
                samples: Vec::with_capacity(RECENT),
                next: 0,
            }),
            errors: Mutex::default(),
            probe: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RouteStats {
    /// Counts one call: its method, its outcome (`ok`, `error` for a JSON-RPC error
    /// the tool server answered, or the gateway's failure reason) and how long it took.
    pub fn record(&self, method: &str, outcome: &'static str, elapsed: Duration) {
        let key_known = {
            let calls = self.calls.read().unwrap_or_else(PoisonError::into_inner);
            let counter = calls
                .get(method)
                .and_then(|outcomes| outcomes.iter().find(|(o, _)| *o == outcome));
            match counter {
                Some((_, counter)) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    true
                }
                None => false,
            }
        };
        if !key_known {
            let mut calls = self.calls.write().unwrap_or_else(PoisonError::into_inner);
            let outcomes = calls.entry(method.to_owned()).or_default();
            match outcomes.iter().find(|(o, _)| *o == outcome) {
                Some((_, counter)) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                None => outcomes.push((outcome, AtomicU64::new(1))),
            }
        }
        let observed = {
            let latency = self.latency.read().unwrap_or_else(PoisonError::into_inner);
            latency.get(method).map(|h| h.observe(elapsed)).is_some()
        };
        if !observed {
            self.latency
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(method.to_owned())
                .or_default()
                .observe(elapsed);
        }
        let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        let mut recent = lock(&self.recent);
        if recent.samples.len() < RECENT {
            recent.samples.push(micros);
        } else {
            let at = recent.next;
            recent.samples[at] = micros;
        }
        recent.next = (recent.next + 1) % RECENT;
    }

    /// Remembers a failure (the last [`RECENT_ERRORS`] are kept).
    pub fn failed(&self, why: String) {
        let mut errors = lock(&self.errors);
        if errors.len() == RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back((SystemTime::now(), why));
    }

    /// The last failure and when.
    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        lock(&self.errors).back().cloned()
    }

    /// The recent failures, newest first.
    pub fn recent_errors(&self) -> Vec<(SystemTime, String)> {
        lock(&self.errors).iter().rev().cloned().collect()
    }

    /// Remembers a probe's result.
    pub fn probed(&self, probe: Probe) {
        *lock(&self.probe) = Some(probe);
    }

    /// The last probe.
    pub fn probe(&self) -> Option<Probe> {
        lock(&self.probe).clone()
    }

    /// p50 and p99 of the recent calls.
    pub fn percentiles(&self) -> Option<(Duration, Duration)> {
        let mut samples = lock(&self.recent).samples.clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            Duration::from_micros(u64::from(samples[i]))
        };
        Some((at(0.5), at(0.99)))
    }

    /// Calls with this outcome, over every method.
    pub fn count(&self, outcome: &str) -> u64 {
        self.calls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flatten()
            .filter(|(o, _)| *o == outcome)
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Calls by method and outcome, sorted: `(method, outcome, count)`.
    pub fn calls(&self) -> Vec<(String, &'static str, u64)> {
        let calls = self.calls.read().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<_> = calls
            .iter()
            .flat_map(|(method, outcomes)| {
                outcomes
                    .iter()
                    .map(move |(o, c)| (method.clone(), *o, c.load(Ordering::Relaxed)))
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        rows
    }

    /// Latency histograms by method, sorted: the count in each of [`BUCKETS`] (not
    /// cumulative), the count of all, and the sum in seconds.
    pub fn latency(&self) -> Vec<(String, Vec<u64>, u64, f64)> {
        let latency = self.latency.read().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<_> = latency
            .iter()
            .map(|(method, h)| {
                (
                    method.clone(),
                    h.buckets
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect(),
                    h.count.load(Ordering::Relaxed),
                    h.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_failures_are_kept_newest_first_and_bounded() {
        let stats = RouteStats::default();
        for i in 0..RECENT_ERRORS + 3 {
            stats.failed(format!("failure {i}"));
        }
        let recent = stats.recent_errors();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0].1, format!("failure {}", RECENT_ERRORS + 2));
        assert_eq!(recent[RECENT_ERRORS - 1].1, "failure 3");
        assert_eq!(stats.last_error().map(|e| e.1), Some(recent[0].1.clone()));
    }

    #[test]
    fn calls_and_latency_are_counted_by_method_and_outcome() {
        let stats = RouteStats::default();
        stats.record("tools/call", "ok", Duration::from_millis(3));
        stats.record("tools/call", "ok", Duration::from_millis(40));
        stats.record("tools/call", "timeout", Duration::from_secs(1));
        assert_eq!(
            stats.calls(),
            vec![
                ("tools/call".to_owned(), "ok", 2),
                ("tools/call".to_owned(), "timeout", 1)
            ]
        );
        let latency = stats.latency();
        let (method, buckets, count, sum) = &latency[0];
        assert_eq!((method.as_str(), *count), ("tools/call", 3));
        let upto = |bound: f64| -> u64 {
            BUCKETS
                .iter()
                .zip(buckets)
                .filter(|(b, _)| **b <= bound)
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!((upto(0.005), upto(0.05), upto(10.0)), (1, 2, 3));
        assert!((sum - 1.043).abs() < 1e-3, "{sum}");
    }
}
