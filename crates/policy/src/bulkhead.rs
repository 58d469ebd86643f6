//! The bulkhead: at most `max_in_flight` calls of a route at once, at most `queue`
//! more waiting for a slot (each no longer than its own deadline), and every call
//! beyond that refused at once as busy. One slow route can then hold only its own
//! slots, never the gateway's memory or the other routes' latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{Policy, PolicyFuture, Request, Stack, UpstreamError};

/// The shared state of one route's bulkhead.
#[derive(Debug)]
pub struct Bulkhead {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_in_flight: u32,
    queue: u32,
}

impl Bulkhead {
    /// A bulkhead of `max_in_flight` slots (at least one) and a queue of `queue`.
    pub fn new(max_in_flight: u32, queue: u32) -> Arc<Bulkhead> {
        let max_in_flight = max_in_flight.max(1);
        Arc::new(Bulkhead {
            permits: Arc::new(Semaphore::new(max_in_flight as usize)),
            waiting: AtomicUsize::new(0),
            max_in_flight,
            queue,
        })
    }

    /// Calls holding a slot.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight as usize - self.permits.available_permits()
    }

    /// Calls waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    fn busy(&self) -> UpstreamError {
        UpstreamError::Busy {
            max_in_flight: self.max_in_flight,
            queue: self.queue,
        }
    }

    /// A slot: at once, or after waiting in the queue until `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, UpstreamError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // The place in the queue is given back however the wait ends, a caller that
        // goes away mid-wait included (a counter a cancelled future leaks would fill
        // the queue for good).
        let place = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue as usize {
            return Err(self.busy());
        }
        let waited = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await;
        drop(place);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(UpstreamError::Closed),
            Err(_) => Err(self.busy()),
        }
    }
}

/// A place in the bulkhead's queue, counted in `waiting` until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Applies a [`Bulkhead`]: wrap it in a [`crate::PolicyLayer`].
#[derive(Debug, Clone)]
pub struct BulkheadPolicy {
    bulkhead: Arc<Bulkhead>,
}

impl BulkheadPolicy {
    /// The policy of this bulkhead (kept by the caller for health reporting).
    pub fn new(bulkhead: Arc<Bulkhead>) -> Self {
        BulkheadPolicy { bulkhead }
    }
}

impl Policy for BulkheadPolicy {
    fn call<S: Stack>(&self, mut inner: S, request: Request) -> PolicyFuture {
        let bulkhead = self.bulkhead.clone();
        Box::pin(async move {
            let _slot = bulkhead.acquire(request.call.deadline).await?;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::PolicyLayer;
    use crate::testing::{ok, request};

    fn slow() -> impl Stack {
        tower::service_fn(|_| -> PolicyFuture {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(ok())
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_goes_away_gives_its_place_in_the_queue_back() {
        let bulkhead = Bulkhead::new(1, 1);
        let held = bulkhead
            .acquire(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap();
        let waiter = {
            let bulkhead = bulkhead.clone();
            tokio::spawn(async move {
                bulkhead
                    .acquire(Instant::now() + Duration::from_secs(10))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.waiting(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(
            bulkhead.waiting(),
            0,
            "the cancelled waiter's place is free"
        );
        // And the queue takes a waiter again.
        let again = {
            let bulkhead = bulkhead.clone();
            tokio::spawn(async move {
                bulkhead
                    .acquire(Instant::now() + Duration::from_secs(10))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.waiting(), 1);
        drop(held);
        assert!(again.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_slots_and_the_queue_calls_are_busy_at_once() {
        let bulkhead = Bulkhead::new(1, 1);
        let service = PolicyLayer::new(BulkheadPolicy::new(bulkhead.clone())).layer(slow());
        let first = tokio::spawn(service.clone().oneshot(request("tools/call", false)));
        let second = tokio::spawn(service.clone().oneshot(request("tools/call", false)));
        tokio::task::yield_now().await;
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (1, 1));
        let started = Instant::now();
        let third = service.clone().oneshot(request("tools/call", false)).await;
        assert_eq!(
            third.unwrap_err(),
            UpstreamError::Busy {
                max_in_flight: 1,
                queue: 1
            }
        );
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        assert!(first.await.unwrap().is_ok());
        assert!(
            second.await.unwrap().is_ok(),
            "the queued call ran when a slot freed"
        );
        assert_eq!((bulkhead.in_flight(), bulkhead.waiting()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_waits_no_longer_than_its_deadline() {
        let bulkhead = Bulkhead::new(1, 4);
        let service = PolicyLayer::new(BulkheadPolicy::new(bulkhead.clone())).layer(slow());
        let _first = tokio::spawn(service.clone().oneshot(request("tools/call", false)));
        tokio::task::yield_now().await;
        let mut hurried = request("tools/call", false);
        hurried.call.deadline = Instant::now() + Duration::from_millis(100);
        let started = Instant::now();
        let result = service.oneshot(hurried).await;
        assert!(matches!(result, Err(UpstreamError::Busy { .. })));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(bulkhead.waiting(), 0);
    }
}
