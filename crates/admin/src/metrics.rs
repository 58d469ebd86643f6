//! `/metrics`: every metric read from the gateway's state at scrape time, written by
//! `prometheus-client`'s OpenMetrics text encoder.
//!
//! Nothing here counts: the counters live where the events happen (a route's stats,
//! its policies, the listener), and a scrape reads them through a [`Collector`]. The
//! labels are bounded by the configuration (route, method, outcome, endpoint,
//! certificate): never a session id, a token or an argument.
//!
//! `prometheus-client` writes label values as they are; [`escape`] makes each one safe
//! for the text format first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mcp_edge_breaker::State;
use mcp_edge_route::stats::BUCKETS;
use mcp_edge_route::{RouteRt, Upstream};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::{Admin, route_status};

/// The `Content-Type` of what [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition, as of now.
pub fn render(admin: &Arc<Admin>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(admin.clone())));
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// A label set: names, and values escaped.
type Labels = Vec<(&'static str, String)>;

/// A label value made safe for the text format: `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One scrape's view of the gateway.
struct Scrape(Arc<Admin>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        process(&self.0, &mut e)?;
        listener(&self.0, &mut e)?;
        routes(&self.0, &mut e)?;
        certificates(&self.0, &mut e)?;
        replicas(&self.0, &mut e)
    }
}

/// One metric family of `kind`, a sample per label set.
fn family<M: EncodeMetric>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> std::fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One metric without labels.
fn single<M: EncodeMetric>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &M,
) -> std::fmt::Result {
    let kind = metric.metric_type();
    metric.encode(e.encode_descriptor(name, help, None, kind)?)
}

/// A gauge family.
fn gauge<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, N)>,
) -> std::fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(e, name, help, MetricType::Gauge, samples)
}

/// A gauge without labels.
fn gauge1<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result {
    single(e, name, help, &ConstGauge::new(value))
}

/// A counter family; `name` without `_total`, which the encoder adds.
fn counter<N: EncodeCounterValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, N)>,
) -> std::fmt::Result {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(e, name, help, MetricType::Counter, samples)
}

/// A counter without labels.
fn counter1<N: EncodeCounterValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> std::fmt::Result {
    single(e, name, help, &ConstCounter::new(value))
}

/// The process: version, uptime, runtime, sessions, reloads.
fn process(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    gauge(
        e,
        "mcp_edge_build_info",
        "The running version.",
        [(vec![("version", escape(env!("CARGO_PKG_VERSION")))], 1i64)],
    )?;
    gauge1(
        e,
        "mcp_edge_uptime_seconds",
        "Seconds since the process started.",
        admin.started.elapsed().as_secs_f64(),
    )?;
    counter1(
        e,
        "mcp_edge_busy_polls",
        "Times the runtime polled for I/O instead of sleeping ([gateway] busy_poll).",
        mcp_edge_busy_poll::spins(),
    )?;
    gauge1(
        e,
        "mcp_edge_runtime_tasks",
        "Tasks alive in the runtime (connections, calls, streams, supervisors).",
        tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks() as i64),
    )?;
    gauge1(
        e,
        "mcp_edge_ready",
        "1 while /readyz passes: listeners bound, required routes usable, not draining.",
        i64::from(admin.readiness().is_ok()),
    )?;
    gauge1(
        e,
        "mcp_edge_sessions",
        "Open client sessions.",
        admin.gw.sessions.len() as i64,
    )?;
    counter(
        e,
        "mcp_edge_reloads",
        "Reloads of routes.toml by result.",
        [("ok", &admin.reloads_ok), ("error", &admin.reloads_failed)].map(|(result, n)| {
            (
                vec![("result", result.to_owned())],
                n.load(Ordering::Relaxed),
            )
        }),
    )
}

/// The agents' listener: connections, timeouts, body memory.
fn listener(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let front = &admin.front;
    gauge1(
        e,
        "mcp_edge_connections_open",
        "Client connections open on the agents' listener.",
        front.open() as i64,
    )?;
    counter1(
        e,
        "mcp_edge_connections_refused",
        "Connections closed at accept: max_connections or max_connections_per_client reached.",
        front.refused_connections.load(Ordering::Relaxed),
    )?;
    counter1(
        e,
        "mcp_edge_connections_timed_out",
        "Connections or bodies ended for silence (header, body or idle timeout).",
        front.timed_out.load(Ordering::Relaxed),
    )?;
    gauge1(
        e,
        "mcp_edge_request_body_bytes_buffered",
        "Bytes of request bodies being read now (max_buffered_bytes bounds them).",
        front.buffered() as i64,
    )?;
    counter1(
        e,
        "mcp_edge_request_bodies_refused",
        "Request bodies refused because max_buffered_bytes was reached.",
        front.refused_bodies.load(Ordering::Relaxed),
    )
}

/// A sample per route.
fn per_route<N>(admin: &Admin, value: impl Fn(&RouteRt) -> N) -> Vec<(Labels, N)> {
    admin
        .gw
        .table()
        .routes
        .iter()
        .map(|r| (vec![("route", escape(&r.name))], value(r)))
        .collect()
}

/// Each route: calls, latency, state, policies.
fn routes(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let table = admin.gw.table();
    counter(
        e,
        "mcp_edge_calls",
        "Calls to tool servers by route, method and outcome (ok, error, or the gateway's failure reason: timeout, busy, rate_limited, circuit_open, upstream_*).",
        table.routes.iter().flat_map(|r| {
            r.stats.calls().into_iter().map(|(method, outcome, n)| {
                let labels = vec![
                    ("route", escape(&r.name)),
                    ("method", escape(&method)),
                    ("outcome", escape(outcome)),
                ];
                (labels, n)
            })
        }),
    )?;
    latency(&table.routes, e)?;
    route_gauges(admin, e)?;
    route_counters(admin, e)
}

/// `mcp_edge_call_duration_seconds`: a histogram per route and method.
fn latency(routes: &[Arc<RouteRt>], e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let mut family = e.encode_descriptor(
        "mcp_edge_call_duration_seconds",
        "Latency of calls to tool servers, policies included.",
        None,
        MetricType::Histogram,
    )?;
    for r in routes {
        for (method, buckets, count, sum) in r.stats.latency() {
            let labels: Labels = vec![("route", escape(&r.name)), ("method", escape(&method))];
            let mut bounded: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(buckets).collect();
            let within: u64 = bounded.iter().map(|(_, n)| n).sum();
            bounded.push((f64::MAX, count.saturating_sub(within)));
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &bounded, None)?;
        }
    }
    Ok(())
}

/// A route's state now: up, status, in flight, queued, breaker, probe.
fn route_gauges(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    gauge(
        e,
        "mcp_edge_route_up",
        "1 while the route's tool server is connected (or its child running).",
        per_route(admin, |r| i64::from(r.upstream.state().up)),
    )?;
    gauge(
        e,
        "mcp_edge_route_status",
        "0 healthy, 1 degraded, 2 down.",
        per_route(admin, |r| route_status(r, &admin.gw.certs) as i64),
    )?;
    gauge(
        e,
        "mcp_edge_calls_in_flight",
        "Calls in flight to the tool server.",
        per_route(admin, |r| r.policy.bulkhead.in_flight() as i64),
    )?;
    gauge(
        e,
        "mcp_edge_calls_queued",
        "Calls waiting for a slot (max_in_flight reached).",
        per_route(admin, |r| r.policy.bulkhead.waiting() as i64),
    )?;
    gauge(
        e,
        "mcp_edge_client_upstream_sessions",
        "Client sessions holding an upstream session (a child, on a stdio route) of their own (sessions = \"per-client\").",
        per_route(admin, |r| r.client_sessions() as i64),
    )?;
    gauge(
        e,
        "mcp_edge_breaker_state",
        "0 closed, 1 half-open, 2 open.",
        per_route(admin, |r| breaker_value(r.policy.breaker.snapshot().state)),
    )?;
    gauge(
        e,
        "mcp_edge_probe_success",
        "1 when the last active probe succeeded.",
        per_route(admin, |r| {
            r.stats
                .probe()
                .map_or(f64::NAN, |p| f64::from(u8::from(p.error.is_none())))
        }),
    )
}

/// What a route's policies and connector have done.
fn route_counters(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    counter(
        e,
        "mcp_edge_retries",
        "Retries made.",
        per_route(admin, |r| r.policy.retried.load(Ordering::Relaxed)),
    )?;
    counter(
        e,
        "mcp_edge_retry_budget_exhausted",
        "Retries not made because the route's retry budget was spent: its tool server fails more than retries may cover.",
        per_route(admin, |r| r.policy.budget_exhausted.load(Ordering::Relaxed)),
    )?;
    counter(
        e,
        "mcp_edge_rate_limited",
        "Calls refused by a rate limit.",
        per_route(admin, |r| r.policy.limits.refused()),
    )?;
    counter(
        e,
        "mcp_edge_busy",
        "Calls refused as busy by the bulkhead.",
        per_route(admin, |r| r.stats.count("busy")),
    )?;
    counter(
        e,
        "mcp_edge_upstream_restarts",
        "Restarts of a stdio child or reconnections of a network tool server.",
        per_route(admin, |r| r.upstream.state().restarts),
    )?;
    counter(
        e,
        "mcp_edge_breaker_trips",
        "Times the route's breaker opened.",
        per_route(admin, |r| r.policy.breaker.snapshot().total_trips),
    )
}

/// Every certificate in play: when it expires, and its state.
fn certificates(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let certs = admin.gw.certs.all();
    let labels = |t: &mcp_edge_certwatch::Tracked| -> Labels {
        vec![
            ("kind", escape(t.origin.kind)),
            ("route", escape(t.origin.route.as_deref().unwrap_or(""))),
            ("from", escape(&t.origin.from)),
            ("subject", escape(&t.cert.subject)),
        ]
    };
    gauge(
        e,
        "mcp_edge_certificate_expiry_timestamp_seconds",
        "When a certificate in play expires (unix time).",
        certs.iter().map(|t| (labels(t), t.cert.not_after)),
    )?;
    gauge(
        e,
        "mcp_edge_certificate_state",
        "A certificate's state (1 for the one it is in).",
        certs.iter().map(|t| {
            let mut labels = labels(t);
            labels.push(("state", t.level.as_str().to_owned()));
            (labels, 1i64)
        }),
    )
}

/// The breaker of each replica of a balanced route.
fn replicas(admin: &Admin, e: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
    let table = admin.gw.table();
    gauge(
        e,
        "mcp_edge_replica_breaker_state",
        "Per replica: 0 closed, 1 half-open, 2 open.",
        table.routes.iter().flat_map(|r| match &r.upstream {
            Upstream::Balanced(b) => b
                .replicas
                .iter()
                .map(|replica| {
                    let labels = vec![
                        ("route", escape(&r.name)),
                        ("endpoint", escape(&replica.url)),
                    ];
                    (labels, breaker_value(replica.breaker.snapshot().state))
                })
                .collect::<Vec<_>>(),
            Upstream::One(_) => Vec::new(),
        }),
    )
}

fn breaker_value(state: State) -> i64 {
    match state {
        State::Closed => 0,
        State::HalfOpen => 1,
        State::Open { .. } => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
