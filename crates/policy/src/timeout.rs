//! Deadlines: a call's (or an attempt's) `timeout`, moved on by each progress
//! notification that reached the client to `timeout` after it, never beyond `max`
//! from the start. On expiry the inner future is dropped, and with it the call: the
//! connector sends the tool server `notifications/cancelled`.
//!
//! The connector is told the hard limit (`start + max`) in [`crate::Call::deadline`];
//! the soft, movable deadline is kept here.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Policy, PolicyFuture, Request, Stack, UpstreamError};

/// A deadline of `timeout`, extended by progress up to `max`: wrap it in a
/// [`crate::PolicyLayer`].
#[derive(Debug, Clone, Copy)]
pub struct Timeout {
    timeout: Duration,
    max: Duration,
}

impl Timeout {
    /// `max` below `timeout` is taken as `timeout` (no extension).
    pub fn new(timeout: Duration, max: Duration) -> Self {
        Timeout {
            timeout,
            max: max.max(timeout),
        }
    }
}

impl Policy for Timeout {
    fn call<S: Stack>(&self, mut inner: S, mut request: Request) -> PolicyFuture {
        let Timeout { timeout, max } = *self;
        let start = Instant::now();
        let cap = request.call.deadline.min(start + max);
        request.call.deadline = cap;
        let activity = request.activity.clone();
        let call = inner.call(request);
        Box::pin(async move {
            tokio::pin!(call);
            let mut deadline = (start + timeout).min(cap);
            loop {
                tokio::select! {
                    biased;
                    result = &mut call => return result,
                    () = tokio::time::sleep_until(deadline) => {
                        let moved = activity
                            .last_progress()
                            .map(|at| (at + timeout).min(cap))
                            .filter(|d| *d > deadline);
                        match moved {
                            Some(later) => deadline = later,
                            None => return Err(UpstreamError::Timeout(start.elapsed())),
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::testing::{ok, request};
    use crate::{Activity, PolicyLayer};

    /// A tool that works for `total`, reporting progress every `every` when given.
    fn working(total: Duration, every: Option<Duration>) -> impl Stack {
        tower::service_fn(move |request: Request| -> PolicyFuture {
            let activity: Arc<Activity> = request.activity;
            Box::pin(async move {
                let end = Instant::now() + total;
                while Instant::now() < end {
                    let step = every.unwrap_or(total).min(end - Instant::now());
                    tokio::time::sleep(step).await;
                    if every.is_some() {
                        activity.progressed();
                    }
                }
                Ok(ok())
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_call_times_out_at_its_deadline() {
        let service = PolicyLayer::new(Timeout::new(
            Duration::from_secs(1),
            Duration::from_secs(10),
        ))
        .layer(working(Duration::from_secs(5), None));
        let started = Instant::now();
        let result = service.oneshot(request("tools/call", false)).await;
        assert_eq!(
            result.unwrap_err(),
            UpstreamError::Timeout(Duration::from_secs(1))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn progress_moves_the_deadline_on() {
        let service = PolicyLayer::new(Timeout::new(
            Duration::from_secs(1),
            Duration::from_secs(10),
        ))
        .layer(working(
            Duration::from_secs(5),
            Some(Duration::from_millis(500)),
        ));
        assert!(service.oneshot(request("tools/call", false)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_never_moves_it_beyond_the_cap() {
        let service =
            PolicyLayer::new(Timeout::new(Duration::from_secs(1), Duration::from_secs(3))).layer(
                working(Duration::from_secs(5), Some(Duration::from_millis(500))),
            );
        let started = Instant::now();
        let result = service.oneshot(request("tools/call", false)).await;
        assert!(matches!(result, Err(UpstreamError::Timeout(_))));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_connector_is_told_the_hard_limit() {
        let seen = tower::service_fn(|request: Request| -> PolicyFuture {
            let left = request.call.deadline - Instant::now();
            Box::pin(async move {
                assert_eq!(left, Duration::from_secs(3));
                Ok(ok())
            })
        });
        let service =
            PolicyLayer::new(Timeout::new(Duration::from_secs(1), Duration::from_secs(3)))
                .layer(seen);
        assert!(service.oneshot(request("ping", true)).await.is_ok());
    }
}
