//! A sliding window of two counters (calls and retries, successes and failures):
//! what the retry budget and the circuit breaker count over their last seconds.
//!
//! The window is cut in [`SLICES`] slices; a slice older than the window is emptied
//! as time moves on, so memory is fixed and a count costs O(1) (O(slices) to total).

use std::time::Duration;

use tokio::time::Instant;

/// Slices of a window.
pub const SLICES: usize = 10;

/// Two counters over the last `period`, in slices.
#[derive(Debug, Clone)]
pub struct Window {
    slices: [(u64, u64); SLICES],
    /// The slice being filled, and when it began.
    current: usize,
    since: Instant,
    slice: Duration,
}

impl Window {
    /// An empty window over `period`.
    pub fn new(period: Duration) -> Window {
        Window {
            slices: [(0, 0); SLICES],
            current: 0,
            since: Instant::now(),
            slice: (period / SLICES as u32).max(Duration::from_nanos(1)),
        }
    }

    /// Empties the slices that time has left behind.
    fn advance(&mut self) {
        let steps =
            (self.since.elapsed().as_nanos() / self.slice.as_nanos()).min(SLICES as u128) as usize;
        for _ in 0..steps {
            self.current = (self.current + 1) % SLICES;
            self.slices[self.current] = (0, 0);
        }
        if steps > 0 {
            // Slices stay aligned to when the window began, unless it slept longer
            // than the whole window (then it starts over now).
            self.since += self.slice * steps as u32;
            if self.since + self.slice < Instant::now() {
                self.since = Instant::now();
            }
        }
    }

    /// Adds to the counters, now.
    pub fn add(&mut self, first: u64, second: u64) {
        self.advance();
        let slot = &mut self.slices[self.current];
        slot.0 += first;
        slot.1 += second;
    }

    /// Both counters over the window, as of now.
    pub fn totals(&mut self) -> (u64, u64) {
        self.advance();
        self.slices
            .iter()
            .fold((0, 0), |(a, b), (sa, sb)| (a + sa, b + sb))
    }

    /// Forgets everything counted.
    pub fn clear(&mut self) {
        self.slices = [(0, 0); SLICES];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_leave_the_window_slice_by_slice() {
        let mut w = Window::new(Duration::from_secs(10));
        w.add(3, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        w.add(2, 0);
        assert_eq!(w.totals(), (5, 1));
        tokio::time::advance(Duration::from_millis(5_500)).await;
        assert_eq!(
            w.totals(),
            (2, 0),
            "the first slice left, the second stayed"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(w.totals(), (0, 0));
        w.add(1, 1);
        w.clear();
        assert_eq!(w.totals(), (0, 0));
    }
}
