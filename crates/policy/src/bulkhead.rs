//! The bulkhead: at most `max_in_flight` calls of a route at once, at most `queue`
//! more waiting for a slot (each no longer than its own deadline), and every call
//! beyond that refused at once as busy. One slow route can then hold only its own
//! slots, never the gateway's memory or the other routes' latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{PolicyFuture, Reply, Request, UpstreamError};

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
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue as usize {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.busy());
        }
        let waited = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(UpstreamError::Closed),
            Err(_) => Err(self.busy()),
        }
    }
}

/// Applies a [`Bulkhead`].
#[derive(Clone)]
pub struct BulkheadLayer {
    bulkhead: Arc<Bulkhead>,
}

impl BulkheadLayer {
    /// A layer over this bulkhead (kept by the caller for health reporting).
    pub fn new(bulkhead: Arc<Bulkhead>) -> Self {
        BulkheadLayer { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// See [`BulkheadLayer`].
#[derive(Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Arc<Bulkhead>,
}

impl<S> Service<Request> for BulkheadService<S>
where
    S: Service<Request, Response = Reply, Error = UpstreamError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = UpstreamError;
    type Future = PolicyFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> PolicyFuture {
        let bulkhead = self.bulkhead.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let _slot = bulkhead.acquire(request.call.deadline).await?;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower::ServiceExt as _;

    use super::*;
    use crate::testing::{FnService, ok, request};

    fn slow() -> FnService<impl FnMut(Request) -> PolicyFuture + Clone> {
        FnService(|_| -> PolicyFuture {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(ok())
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_the_slots_and_the_queue_calls_are_busy_at_once() {
        let bulkhead = Bulkhead::new(1, 1);
        let service = BulkheadLayer::new(bulkhead.clone()).layer(slow());
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
        let service = BulkheadLayer::new(bulkhead.clone()).layer(slow());
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
