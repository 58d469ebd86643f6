//! Exponential backoff: the one formula behind every growing wait in mcp-edge.
//!
//! A retry waits [`Backoff::full_jitter`] (anywhere from nothing to the ceiling, so
//! that clients retrying together spread out); a tool server restarted after a crash
//! waits [`Backoff::half_jitter`] (at least half the ceiling: a crash loop never
//! restarts at once); a circuit breaker stays open for the [`Backoff::ceiling`] of its
//! trips in a row.
//!
//! ```
//! use std::time::Duration;
//! use mcp_edge_policy::backoff::Backoff;
//!
//! let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
//! assert_eq!(b.ceiling(0), Duration::from_millis(100));
//! assert_eq!(b.ceiling(3), Duration::from_millis(800));
//! assert_eq!(b.ceiling(9), Duration::from_secs(1));
//! assert!(b.full_jitter(2) <= b.ceiling(2));
//! assert!(b.half_jitter(2) >= b.ceiling(2) / 2);
//! ```

use std::time::Duration;

use rand::Rng as _;

/// Exponential backoff: `min(max, base·2ⁿ)`, with or without jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling after `n` steps (0 for the first): `min(max, base·2ⁿ)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        self.base.saturating_mul(1u32 << n.min(30)).min(self.max)
    }

    /// A wait uniform in `[0, ceiling(n)]` ("full jitter").
    pub fn full_jitter(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// A wait uniform in `[ceiling(n) / 2, ceiling(n)]`.
    pub fn half_jitter(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}
