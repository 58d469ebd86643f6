//! W3C trace context across the gateway: a client's `traceparent` continued, and one
//! sent to every HTTP tool server. Export itself is set up by the binary.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether spans are exported (then `traceparent` comes from them).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Spans are exported from now on: `traceparent`s come from them.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Release);
}

/// Continues a client's trace: makes `traceparent` (W3C) the parent of `span`.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| exporting()) else {
        return;
    };
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// The `traceparent` for a request made inside `span`: the span's own when traces
/// are exported, else the client's (passed through), else none.
pub fn traceparent(span: &tracing::Span, from_client: Option<&str>) -> Option<String> {
    if !exporting() {
        return from_client.map(str::to_owned);
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Acquire)
}
