//! Busy polling: after I/O progress, the runtime keeps polling for I/O for a short
//! window before it lets its thread sleep (`[gateway] busy_poll`).
//!
//! A call through mcp-edge at one connection sleeps twice in mcp-edge: once while the
//! tool server works, once until the client's next request. On a VM each sleep and
//! wake-up costs tens of microseconds (the waker's IPI, the vCPU leaving halt), more
//! than mcp-edge's own work on the call. Linux's `net.core.busy_poll` and Go's
//! spinning scheduler threads trade CPU for the same latency; this is that trade for a
//! current-thread runtime, made only where it pays:
//!
//! - **Only after progress.** A request arriving, a response leaving, bytes from a tool
//!   server mark progress ([`progress`]); the window runs from the last mark. A gateway
//!   with no traffic never spins.
//! - **Only when uncrowded.** Once two calls are in flight at the same time, busy
//!   polling stops for [`CROWDED_FOR`]: with more than one call at a time, a wake-up
//!   brings several events at once, and on cores shared with tool servers the CPU a
//!   spin burns is theirs.
//! - **Never in the way.** The spin is a task that wakes itself when the runtime is
//!   about to park: the runtime then polls its I/O driver without blocking, runs
//!   whatever that woke, and comes back to park. Every other task runs as before.
//!
//! Only a current-thread runtime (`workers = 1`) busy-polls: in the multi-thread
//! runtime one worker holds the I/O driver while others park, so a worker's spin
//! cannot see the events it waits for (measured: no gain on the HTTP route, more CPU).
//! All state is the runtime thread's own; the marks are no-ops on any other thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How long busy polling stays off after two calls were in flight at once.
pub const CROWDED_FOR: Duration = Duration::from_millis(5);

struct State {
    window: Duration,
    /// The last progress mark, while the window may still be open.
    last: Cell<Option<Instant>>,
    /// Calls in flight on this thread.
    in_flight: Cell<usize>,
    /// No busy polling before this instant.
    crowded_until: Cell<Option<Instant>>,
    /// The spinner task's waker, once it has run.
    spinner: RefCell<Option<Waker>>,
    /// Times the runtime polled instead of parking (`mcp_edge_busy_polls_total`).
    spins: Cell<u64>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&State) -> R) -> Option<R> {
    STATE.with(|s| s.borrow().as_ref().map(f))
}

/// Turns busy polling on for the calling thread, which must be the one that drives a
/// current-thread runtime; install [`before_park`] as its `on_thread_park` hook and
/// spawn [`spinner`] on it. Zero turns it off; the routes file bounds the window
/// (`mcp_edge_config::model::MAX_BUSY_POLL`).
pub fn enable(window: Duration) {
    STATE.with(|s| {
        *s.borrow_mut() = (!window.is_zero()).then(|| State {
            window,
            last: Cell::new(None),
            in_flight: Cell::new(0),
            crowded_until: Cell::new(None),
            spinner: RefCell::new(None),
            spins: Cell::new(0),
        });
    });
}

/// Marks progress: the window opens again from now.
#[inline]
pub fn progress() {
    with(|s| s.last.set(Some(Instant::now())));
}

/// A call has begun; keep the guard while it is in flight. Marks progress at both ends.
pub fn call() -> InFlight {
    let counted = with(|s| {
        let now = Instant::now();
        s.last.set(Some(now));
        let n = s.in_flight.get() + 1;
        s.in_flight.set(n);
        if n >= 2 {
            s.crowded_until.set(Some(now + CROWDED_FOR));
        }
    })
    .is_some();
    InFlight { counted }
}

/// A call in flight (see [`call`]).
#[must_use = "the call counts as in flight while the guard lives"]
pub struct InFlight {
    counted: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted {
            with(|s| {
                s.in_flight.set(s.in_flight.get().saturating_sub(1));
                s.last.set(Some(Instant::now()));
            });
        }
    }
}

/// Whether to keep polling at `now`, given the last progress mark and the crowding.
fn keep_polling(
    now: Instant,
    last: Option<Instant>,
    window: Duration,
    crowded_until: Option<Instant>,
) -> bool {
    let Some(last) = last else { return false };
    now.saturating_duration_since(last) < window && crowded_until.is_none_or(|until| now >= until)
}

/// The runtime's `on_thread_park` hook: while the window is open, wakes the spinner so
/// that the runtime polls its driver without blocking instead of sleeping.
pub fn before_park() {
    with(|s| {
        let now = Instant::now();
        if keep_polling(now, s.last.get(), s.window, s.crowded_until.get()) {
            if let Some(waker) = s.spinner.borrow().as_ref() {
                waker.wake_by_ref();
                s.spins.set(s.spins.get() + 1);
            }
        } else {
            // Closed until the next mark: no clock read per park while idle.
            s.last.set(None);
        }
    });
}

/// The task that [`before_park`] wakes. It does nothing when polled but stay woken-able.
pub fn spinner() -> impl Future<Output = ()> {
    std::future::poll_fn(|cx| {
        with(|s| {
            let mut slot = s.spinner.borrow_mut();
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        });
        Poll::Pending
    })
}

/// How many times the runtime polled instead of parking, on this thread.
pub fn spins() -> u64 {
    with(|s| s.spins.get()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_micros(100);

    #[test]
    fn polls_only_inside_the_window_after_progress() {
        let t0 = Instant::now();
        assert!(!keep_polling(t0, None, W, None), "no progress yet");
        assert!(keep_polling(
            t0 + Duration::from_micros(99),
            Some(t0),
            W,
            None
        ));
        assert!(
            !keep_polling(t0 + W, Some(t0), W, None),
            "the window closed"
        );
    }

    #[test]
    fn crowding_stops_polling_until_it_has_passed() {
        let t0 = Instant::now();
        let until = t0 + CROWDED_FOR;
        let later = t0 + Duration::from_micros(10);
        assert!(!keep_polling(later, Some(later), W, Some(until)));
        let after = until + Duration::from_micros(1);
        assert!(keep_polling(after, Some(after), W, Some(until)));
    }

    #[test]
    fn a_second_call_in_flight_marks_the_thread_crowded() {
        enable(W);
        let first = call();
        assert!(with(|s| s.crowded_until.get()).flatten().is_none());
        let second = call();
        assert!(with(|s| s.crowded_until.get()).flatten().is_some());
        drop(second);
        drop(first);
        assert_eq!(with(|s| s.in_flight.get()), Some(0));
        enable(Duration::ZERO);
        // Off: the guard counts nothing and the hook does nothing.
        let off = call();
        assert!(!off.counted);
        before_park();
    }

    /// On a current-thread runtime, a mark keeps the runtime polling (the spinner
    /// runs) for about the window, then the runtime parks and stays parked.
    #[test]
    fn the_runtime_spins_after_progress_then_sleeps() {
        let window = Duration::from_millis(5);
        enable(window);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .on_thread_park(before_park)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::spawn(spinner());
            // Let the spinner register before any mark.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(spins(), 0, "no progress, no spin");
            progress();
            tokio::time::sleep(Duration::from_millis(30)).await;
            let after_window = spins();
            assert!(after_window > 0, "progress opened a window");
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert_eq!(
                spins(),
                after_window,
                "the window closed: the runtime slept"
            );
        });
        enable(Duration::ZERO);
    }
}
