//! A route's policies, stacked as tower layers over its connector (outermost first):
//! rate limit → call deadline → retry → circuit breaker → bulkhead → attempt deadline.
//! See `mcp-edge-policy` for what each does and why in this order.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use mcp_edge_breaker::{Breaker, BreakerPolicy};
use mcp_edge_config::model::{Glob, Policies};
use mcp_edge_policy::bulkhead::{Bulkhead, BulkheadPolicy};
use mcp_edge_policy::timeout::Timeout;
use mcp_edge_policy::{PolicyFuture, PolicyLayer, Request};
use mcp_edge_protocol::mcp;
use mcp_edge_ratelimit::{Limits, RateLimitPolicy};
use mcp_edge_retry::{Backoff, Budget, RetryPolicy};
use mcp_edge_transport::{Reply, UpstreamError};
use serde_json::value::RawValue;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use crate::Upstream;

/// The `_meta` key carrying a repeatable call's idempotency key: the same on every
/// attempt, so a tool server can tell a retry from a new call.
pub const IDEMPOTENCY_KEY: &str = "dev.mcp-edge/idempotency-key";

/// Methods that change nothing on the tool server, or change it the same way however
/// often they are sent.
const REPEATABLE_METHODS: &[&str] = &[
    mcp::PING,
    mcp::TOOLS_LIST,
    mcp::PROMPTS_LIST,
    mcp::PROMPTS_GET,
    mcp::RESOURCES_LIST,
    mcp::RESOURCE_TEMPLATES_LIST,
    mcp::RESOURCES_READ,
    mcp::RESOURCES_SUBSCRIBE,
    mcp::RESOURCES_UNSUBSCRIBE,
    mcp::COMPLETE,
    mcp::SET_LEVEL,
    mcp::DISCOVER,
];

/// The breaker thresholds routes.toml sets for a route (and each of its replicas).
pub fn breaker_config(policies: &Policies) -> mcp_edge_breaker::Config {
    let b = &policies.breaker;
    mcp_edge_breaker::Config {
        consecutive_failures: b.consecutive_failures.get(),
        failure_ratio: b.failure_ratio.get(),
        min_calls: b.min_calls.get(),
        window: b.window,
        open_for: b.open_for,
        max_open_for: b.max_open_for,
        probes: b.probes.get(),
    }
}

/// A route's policy stack and the state it keeps.
pub struct RoutePolicy {
    service: BoxCloneSyncService<Request, Reply, UpstreamError>,
    /// The route's circuit breaker.
    pub breaker: Arc<Breaker>,
    /// The route's in-flight bound.
    pub bulkhead: Arc<Bulkhead>,
    /// The route's rate limits.
    pub limits: Arc<Limits>,
    /// Retries made.
    pub retried: Arc<std::sync::atomic::AtomicU64>,
    /// Retries not made because the retry budget was spent.
    pub budget_exhausted: Arc<std::sync::atomic::AtomicU64>,
    attempts: u32,
    idempotent_tools: Vec<Glob>,
    /// Tools whose annotations (from `tools/list`) say they are read-only or idempotent.
    hinted: RwLock<HashSet<String>>,
}

/// The connector at the bottom of the stack: one attempt, in its own span.
#[derive(Clone)]
struct Connector {
    upstream: Upstream,
    route: Arc<str>,
}

impl Connector {
    fn attempt(&self, request: Request) -> PolicyFuture {
        use tracing::Instrument as _;
        let upstream = self.upstream.clone();
        let span = tracing::debug_span!(
            "mcp.upstream",
            otel.name = tracing::field::Empty,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            mcp.method.name = request.call.method.as_str(),
            mcp_edge.route = &*self.route,
            mcp_edge.attempt = request.attempt,
            error.type = tracing::field::Empty,
        );
        let mut call = request.call;
        if span.is_disabled() {
            return Box::pin(async move { upstream.call(call).await });
        }
        span.record(
            "otel.name",
            format!("{} {}", call.method, self.route).as_str(),
        );
        call.traceparent = crate::trace::traceparent(&span, call.traceparent.as_deref());
        let recorder = span.clone();
        Box::pin(
            async move {
                let outcome = upstream.call(call).await;
                if let Err(e) = &outcome {
                    recorder.record("otel.status_code", "ERROR");
                    recorder.record("error.type", e.reason());
                }
                outcome
            }
            .instrument(span),
        )
    }
}

/// The attempt-deadline layer, unless it can never expire before the call's own: an
/// attempt starts no earlier than its call, and progress moves both deadlines alike,
/// so with `attempt_timeout >= timeout` (the default) the call's deadline always comes
/// first. Leaving the layer out then saves each call a timer and a boxed future.
fn attempt_deadline(policies: &Policies) -> Option<PolicyLayer<Timeout>> {
    (policies.attempt_timeout < policies.timeout)
        .then(|| PolicyLayer::new(Timeout::new(policies.attempt_timeout, policies.max_timeout)))
}

impl RoutePolicy {
    /// The stack for route `name` over its connector.
    pub fn new(name: &str, policies: &Policies, upstream: Upstream) -> RoutePolicy {
        let breaker = Breaker::new(name, breaker_config(policies));
        let bulkhead = Bulkhead::new(
            policies.concurrency.max_in_flight.get(),
            policies.concurrency.queue,
        );
        let bucket = |b: mcp_edge_config::model::Bucket| mcp_edge_ratelimit::Bucket {
            per_second: b.per_second,
            burst: b.burst,
        };
        let limits = Limits::new(
            policies.rate_limit.route.map(bucket),
            policies.rate_limit.per_client.map(bucket),
        );
        let r = &policies.retry;
        let retry = RetryPolicy::new(
            name,
            r.attempts.get(),
            Backoff {
                base: r.base,
                max: r.max,
            },
            Arc::new(Budget::new(r.budget.get(), r.min_per_second)),
        );
        let retried = retry.retried();
        let budget_exhausted = retry.budget_exhausted();
        let connector = Connector {
            upstream,
            route: name.into(),
        };
        let stack = tower::ServiceBuilder::new()
            .layer(PolicyLayer::new(RateLimitPolicy::new(limits.clone())))
            .layer(PolicyLayer::new(Timeout::new(
                policies.timeout,
                policies.max_timeout,
            )))
            .layer(PolicyLayer::new(retry))
            .layer(PolicyLayer::new(BreakerPolicy::new(breaker.clone())))
            .layer(PolicyLayer::new(BulkheadPolicy::new(bulkhead.clone())))
            .option_layer(attempt_deadline(policies))
            .service(tower::service_fn(move |request| connector.attempt(request)));
        RoutePolicy {
            service: BoxCloneSyncService::new(stack),
            breaker,
            bulkhead,
            limits,
            retried,
            budget_exhausted,
            attempts: r.attempts.get(),
            idempotent_tools: r.idempotent_tools.clone(),
            hinted: RwLock::new(HashSet::new()),
        }
    }

    /// Makes a call through the stack.
    pub async fn call(&self, request: Request) -> Result<Reply, UpstreamError> {
        self.service.clone().oneshot(request).await
    }

    /// Whether a call may be sent twice: a method that changes nothing, or a tool that
    /// says it is read-only or idempotent, or one routes.toml names.
    pub fn repeatable(&self, method: &str, tool: Option<&str>) -> bool {
        if REPEATABLE_METHODS.contains(&method) {
            return true;
        }
        let Some(tool) = tool.filter(|_| method == mcp::TOOLS_CALL) else {
            return false;
        };
        self.idempotent_tools.iter().any(|g| g.matches(tool))
            || self
                .hinted
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(tool)
    }

    /// Whether this route retries at all (an idempotency key is then worth sending).
    pub fn retries(&self) -> bool {
        self.attempts > 1
    }

    /// Learns from one page of the route's `tools/list` which tools are read-only or
    /// idempotent.
    pub fn learn_tools(&self, tools: &[Box<RawValue>]) {
        #[derive(serde::Deserialize)]
        struct Tool {
            name: String,
            #[serde(default)]
            annotations: Option<Annotations>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Annotations {
            #[serde(default)]
            read_only_hint: Option<bool>,
            #[serde(default)]
            idempotent_hint: Option<bool>,
        }
        let mut hinted = self.hinted.write().unwrap_or_else(PoisonError::into_inner);
        for raw in tools {
            let Ok(tool) = serde_json::from_str::<Tool>(raw.get()) else {
                continue;
            };
            let safe = tool
                .annotations
                .is_some_and(|a| a.read_only_hint == Some(true) || a.idempotent_hint == Some(true));
            if safe {
                hinted.insert(tool.name);
            } else {
                hinted.remove(&tool.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(route: &str) -> Policies {
        let text = format!("[[route]]\nname = \"r\"\nurl = \"http://127.0.0.1:9/mcp\"\n{route}");
        let source = mcp_edge_config::Source::new("routes.toml", text);
        let (config, diagnostics) = mcp_edge_config::parse(&source);
        let config = config.unwrap_or_else(|| panic!("{diagnostics:?}"));
        config.routes[0].policies.clone()
    }

    #[test]
    fn the_attempt_deadline_is_kept_only_when_it_can_come_first() {
        assert!(attempt_deadline(&policies("")).is_none());
        assert!(
            attempt_deadline(&policies("timeout = \"5s\"\nattempt_timeout = \"5s\"")).is_none()
        );
        assert!(
            attempt_deadline(&policies("timeout = \"5s\"\nattempt_timeout = \"9s\"")).is_none()
        );
        assert!(
            attempt_deadline(&policies("timeout = \"5s\"\nattempt_timeout = \"1s\"")).is_some()
        );
    }
}
