//! The status page (`/`) and a page per route (`/routes/{name}`), for an on-call
//! engineer: what is broken comes first, in colour, with the last fifteen minutes of
//! each route drawn as inline SVG from [`crate::history`].
//!
//! Nothing is loaded from elsewhere: the styles are inline, the charts are SVG in the
//! page, and the one script ([`SCRIPT`], served at `/status.js`) only refreshes the
//! page's `<main>` every few seconds without a reload. With JavaScript off the page is
//! whole, and a `<noscript>` refresh reloads it instead. [`CSP`] allows nothing more.
//!
//! What is shown is what `/health` shows: the gateway's own words for errors, endpoints
//! with their secrets redacted, and credentials only as references (never a value).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use mcp_edge_certwatch::Tracked;
use mcp_edge_config::HumanDuration;
use mcp_edge_config::model::{Endpoint, Policies};
use mcp_edge_route::{RouteRt, Upstream};
use serde_json::{Value, json};

use crate::history::{Point, SPAN};
use crate::{Admin, Status, route_status};

/// The page's script: refreshes `<main>` in place.
pub const SCRIPT: &str = include_str!("status.js");

/// The pages' `Content-Security-Policy`: their own script and inline styles, nothing
/// else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often the page refreshes, in seconds (the script's interval is the same).
const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}\
main{padding:0 1.5em 2em}a{color:#0550ae}\
.banner{margin:0 -1.5em 1em;padding:.8em 1.5em;color:#fff}\
.banner h1{margin:0;font-size:1.6em}.banner p{margin:.2em 0 0}.banner a{color:#fff;font-weight:bold}\
.banner.healthy{background:#1a7f37}.banner.degraded{background:#b35900}.banner.down{background:#c62828}\
#stale{display:none;background:#222;color:#ffd54f;padding:.4em 1.5em;margin:0 -1.5em}\
html[data-stale=unreachable] #stale{display:block}\
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.5em}\
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:middle}\
th{background:#eef1f4;font-weight:600}\
tr.down td{background:#fdecea}tr.degraded td{background:#fff4e5}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:bold;font-size:.9em}\
.badge.healthy,.badge.ok,.badge.closed{background:#1a7f37}\
.badge.degraded,.badge.warning,.badge.half_open{background:#b35900}\
.badge.down,.badge.critical,.badge.expired,.badge.not_yet_valid,.badge.open{background:#c62828}\
.panel{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));gap:.5em;margin:0 0 1em}\
.panel div{background:#fff;border:1px solid #d0d7de;padding:.4em .6em}\
.panel b{display:block;font-size:1.3em;overflow-wrap:anywhere}.panel span{color:#57606a;font-size:.85em}\
svg{display:block}svg .calls{stroke:#0550ae}svg .errors{stroke:#c62828}svg .p50{stroke:#1a7f37}\
svg .p99{stroke:#8250df;stroke-dasharray:3 2}svg polyline{fill:none;stroke-width:1.5}\
svg text{font:10px sans-serif;fill:#57606a}svg .axis{stroke:#d0d7de}\
.muted{color:#57606a}.error{color:#c62828}code{font-size:.95em}";

/// The whole page around `main`.
fn layout(title: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><link rel=\"icon\" href=\"data:,\"><title>{title}</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"></noscript>\
         <style>{STYLE}</style><script src=\"/status.js\" defer></script></head>\
         <body><main>{main}</main></body></html>",
        title = html(title),
    )
}

/// The banner: the status in words and colour, and what is down.
fn banner(status: Status, heading: &str, detail: &str) -> String {
    format!(
        "<header class=\"banner {class}\"><h1>{heading}</h1><p>{detail}</p>\
         <div id=\"stale\">The gateway does not answer: this is what it said last.</div></header>",
        class = status.as_str(),
    )
}

/// `/`: every route, broken ones first.
pub fn status(admin: &Admin) -> String {
    let now = SystemTime::now();
    let table = admin.gw.table();
    let mut routes: Vec<(Status, &RouteRt)> = table
        .routes
        .iter()
        .map(|r| (route_status(r, &admin.gw.certs), r.as_ref()))
        .collect();
    routes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let overall = admin.status();

    let count = |s: Status| routes.iter().filter(|(st, _)| *st == s).count();
    let names = |s: Status| {
        routes
            .iter()
            .filter(|(st, _)| *st == s)
            .map(|(_, r)| link(r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut detail = format!(
        "{} routes: {} down, {} degraded, {} healthy",
        routes.len(),
        count(Status::Down),
        count(Status::Degraded),
        count(Status::Healthy)
    );
    for s in [Status::Down, Status::Degraded] {
        if count(s) > 0 {
            let _ = write!(detail, " · {}: {}", s.as_str(), names(s));
        }
    }
    let _ = write!(detail, " · as of {}", clock(now));

    let mut main = banner(overall, &format!("mcp-edge: {}", overall.as_str()), &detail);
    main.push_str(&gateway_panel(admin));
    main.push_str(
        "<h2>Routes</h2><table><tr><th>status</th><th>route</th><th>boundary</th><th>transport</th>\
         <th>breaker</th><th>calls/s, 15 min</th><th>errors/s</th><th>latency p50 / p99</th>\
         <th>certificates</th><th>in flight / queued</th><th>last error</th></tr>",
    );
    for (status, route) in &routes {
        main.push_str(&route_row(admin, route, *status, now));
    }
    main.push_str("</table>");
    main.push_str("<h2>Certificates</h2>");
    main.push_str(&certificates(admin.gw.certs.all()));
    let _ = write!(
        main,
        "<p class=\"muted\">Also: <a href=\"/health\">/health</a> (JSON) · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/readyz\">/readyz</a>. Refreshes every {REFRESH_SECONDS} s.</p>"
    );
    layout(&format!("mcp-edge: {}", overall.as_str()), &main)
}

/// The gateway's own panel.
fn gateway_panel(admin: &Admin) -> String {
    let config = admin.config();
    let ready = match admin.readiness() {
        Ok(()) => "yes".to_owned(),
        Err(why) => format!("no: {}", why.join("; ")),
    };
    let reload = config.last_reload.as_ref().map_or_else(
        || "none".to_owned(),
        |r| {
            format!(
                "{} ({})",
                r["result"].as_str().unwrap_or("?"),
                r["at"].as_str().unwrap_or("?")
            )
        },
    );
    let short = config
        .digest
        .get(..19)
        .unwrap_or(config.digest.as_str())
        .to_owned();
    let uptime = HumanDuration(std::time::Duration::from_secs(
        admin.started.elapsed().as_secs(),
    ));
    let cells = [
        ("ready", ready),
        ("sessions", format!("{} sessions", admin.gw.sessions.len())),
        ("connections open", admin.front.open().to_string()),
        (
            "connections refused / timed out",
            pair(&admin.front.refused_connections, &admin.front.timed_out),
        ),
        (
            "reloads ok / refused",
            pair(&admin.reloads_ok, &admin.reloads_failed),
        ),
        ("last reload", reload),
        ("config", short),
        (
            "version · up",
            format!("{} · {uptime}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    let mut out = panel(cells);
    let _ = write!(
        out,
        "<p class=\"muted\">Routes file <code>{}</code>, digest <code>{}</code>, loaded {}.</p>",
        html(&config.path),
        html(&config.digest),
        crate::rfc3339(config.loaded_at)
    );
    out
}

/// `a / b`, of two counters.
fn pair(a: &AtomicU64, b: &AtomicU64) -> String {
    format!(
        "{} / {}",
        a.load(Ordering::Relaxed),
        b.load(Ordering::Relaxed)
    )
}

/// A row of figures, each with its label.
fn panel<const N: usize>(cells: [(&str, String); N]) -> String {
    let mut out = String::from("<section class=\"panel\">");
    for (label, value) in cells {
        let _ = write!(
            out,
            "<div><b>{}</b><span>{}</span></div>",
            html(&value),
            html(label)
        );
    }
    out.push_str("</section>");
    out
}

/// A link to a route's page.
fn link(route: &RouteRt) -> String {
    format!(
        "<a href=\"/routes/{name}\">{name}</a>",
        name = html(&route.name)
    )
}

/// One route's row on `/`.
fn route_row(admin: &Admin, route: &RouteRt, status: Status, now: SystemTime) -> String {
    let points = admin.history.points(route, now);
    let breaker = route.policy.breaker.snapshot().state.as_str();
    let certs = admin.gw.certs.of_route(Some(&route.name));
    let days = certs.iter().min_by_key(|t| t.cert.not_after).map_or_else(
        || "<span class=\"muted\">none</span>".to_owned(),
        |t| {
            format!(
                "<span class=\"badge {}\">{} d</span> <span class=\"muted\">{}</span>",
                t.level.as_str(),
                t.cert.days_left(mcp_edge_tls::inspect::now()),
                certs.len()
            )
        },
    );
    let last_error = crate::last_error(route)
        .map(|(at, message)| {
            format!(
                "<span class=\"error\">{}</span> <span class=\"muted\">{}</span>",
                html(&message),
                clock(at)
            )
        })
        .unwrap_or_default();
    format!(
        "<tr class=\"{status}\"><td><span class=\"badge {status}\">{status}</span></td><td>{link}</td>\
         <td>{boundary}</td><td>{transport}</td><td><span class=\"badge {breaker}\">{breaker}</span></td>\
         <td>{calls}</td><td>{errors}</td><td>{latency}</td><td>{days}</td><td>{in_flight} / {queued}</td>\
         <td>{last_error}</td></tr>",
        status = status.as_str(),
        link = link(route),
        boundary = html(&route.boundary.to_string()),
        transport = html(&route.transport),
        calls = chart(&points, &[Series::Calls], 150, 34),
        errors = chart(&points, &[Series::Errors], 150, 34),
        latency = chart(&points, &[Series::P50, Series::P99], 150, 34),
        in_flight = route.policy.bulkhead.in_flight(),
        queued = route.policy.bulkhead.waiting(),
    )
}

/// The certificates, soonest to expire first.
fn certificates(mut certs: Vec<Tracked>) -> String {
    if certs.is_empty() {
        return "<p class=\"muted\">No certificate in play.</p>".to_owned();
    }
    certs.sort_by_key(|t| t.cert.not_after);
    let now = mcp_edge_tls::inspect::now();
    let mut out = String::from(
        "<table><tr><th>state</th><th>days left</th><th>kind</th><th>route</th><th>subject</th>\
         <th>valid until</th><th>from</th></tr>",
    );
    for t in certs {
        let _ = write!(
            out,
            "<tr><td><span class=\"badge {state}\">{state}</span></td><td>{days}</td><td>{kind}</td>\
             <td>{route}</td><td>{subject}</td><td>{until}</td><td><code>{from}</code></td></tr>",
            state = t.level.as_str(),
            days = t.cert.days_left(now),
            kind = html(t.origin.kind),
            route = html(t.origin.route.as_deref().unwrap_or("(listener)")),
            subject = html(&t.cert.subject),
            until = mcp_edge_certwatch::rfc3339(t.cert.not_after),
            from = html(&t.origin.from),
        );
    }
    out.push_str("</table>");
    out
}

/// `/routes/{name}`: one route in detail; `None` if there is no such route.
pub fn route(admin: &Admin, name: &str) -> Option<String> {
    let table = admin.gw.table();
    let route = table.routes.iter().find(|r| r.name == name)?;
    let now = SystemTime::now();
    let status = route_status(route, &admin.gw.certs);
    let mut main = banner(
        status,
        &format!("route {}: {}", html(&route.name), status.as_str()),
        &format!(
            "{} · {} · <code>{}</code> · <a href=\"/\">all routes</a> · as of {}",
            html(&route.boundary.to_string()),
            html(&route.transport),
            html(&route.endpoint),
            clock(now)
        ),
    );
    let points = admin.history.points(route, now);
    let _ = write!(
        main,
        "<h2>Last 15 minutes</h2><table><tr><th>calls/s</th><th>errors/s</th><th>latency (ms): p50 green, p99 purple</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        chart(&points, &[Series::Calls], 320, 110),
        chart(&points, &[Series::Errors], 320, 110),
        chart(&points, &[Series::P50, Series::P99], 320, 110),
    );
    main.push_str(&route_panel(route));
    main.push_str(&breaker_history(admin, &route.name));
    main.push_str(&recent_errors(route));
    main.push_str("<h2>Certificates</h2>");
    main.push_str(&certificates(admin.gw.certs.of_route(Some(&route.name))));
    if let Upstream::Balanced(balanced) = &route.upstream {
        main.push_str(&replicas(balanced));
    }

    main.push_str("<h2>Effective configuration</h2>");
    main.push_str(&config_table(&effective(route)));
    Some(layout(&format!("mcp-edge: route {}", route.name), &main))
}

/// A route's figures now.
fn route_panel(route: &RouteRt) -> String {
    let state = route.upstream.state();
    let breaker = route.policy.breaker.snapshot();
    let cells = [
        (
            "tool server",
            if state.up { "up" } else { "down" }.to_owned(),
        ),
        ("breaker", breaker.state.as_str().to_owned()),
        ("breaker trips", breaker.total_trips.to_string()),
        (
            "in flight / queued",
            format!(
                "{} / {}",
                route.policy.bulkhead.in_flight(),
                route.policy.bulkhead.waiting()
            ),
        ),
        ("restarts", state.restarts.to_string()),
        (
            "protocol",
            state.protocol_version.unwrap_or_else(|| "-".into()),
        ),
        (
            "retries / refused by budget",
            pair(&route.policy.retried, &route.policy.budget_exhausted),
        ),
        ("rate limited", route.policy.limits.refused().to_string()),
    ];
    panel(cells)
}

/// A route's breaker changes, newest first.
fn breaker_history(admin: &Admin, route: &str) -> String {
    let mut main = String::new();
    main.push_str("<h2>Breaker history</h2>");
    let changes = admin.history.changes(route);
    if changes.is_empty() {
        main.push_str("<p class=\"muted\">No change of state since the gateway started.</p>");
    } else {
        main.push_str("<table><tr><th>when</th><th>from</th><th>to</th><th>trips in all</th></tr>");
        for c in changes {
            let _ = write!(
                main,
                "<tr><td>{}</td><td>{}</td><td><span class=\"badge {to}\">{to}</span></td><td>{}</td></tr>",
                crate::rfc3339(c.at),
                c.from,
                c.trips,
                to = c.to,
            );
        }
        main.push_str("</table>");
    }
    main
}

/// A route's recent failures, newest first.
fn recent_errors(route: &RouteRt) -> String {
    let mut main = String::new();
    main.push_str("<h2>Recent errors</h2>");
    let errors = route.stats.recent_errors();
    if errors.is_empty() {
        main.push_str("<p class=\"muted\">None.</p>");
    } else {
        main.push_str("<table><tr><th>when</th><th>error</th></tr>");
        for (at, message) in errors {
            let _ = write!(
                main,
                "<tr><td>{}</td><td class=\"error\">{}</td></tr>",
                crate::rfc3339(at),
                html(&message)
            );
        }
        main.push_str("</table>");
    }
    main
}

/// A balanced route's replicas.
fn replicas(balanced: &mcp_edge_route::balance::Balanced) -> String {
    let mut main = String::new();
    main.push_str("<h2>Replicas</h2><table><tr><th>endpoint</th><th>connected</th><th>breaker</th><th>in flight</th></tr>");
    for r in &balanced.replicas {
        let state = r.breaker.snapshot().state.as_str();
        let _ = write!(
            main,
            "<tr><td><code>{}</code></td><td>{}</td><td><span class=\"badge {state}\">{state}</span></td><td>{}</td></tr>",
            html(&r.url),
            if r.http.status().connected {
                "yes"
            } else {
                "no"
            },
            r.in_flight(),
        );
    }
    main.push_str("</table>");
    main
}

/// What a route runs with, as `mcp-edge check --json` shows it: secrets appear only as
/// references (`env:NAME`, a file path), header values not at all.
pub fn effective(route: &RouteRt) -> Value {
    let config = route.key.config();
    let endpoint = match &config.endpoint {
        Endpoint::Command(command) => json!({
            "command": command.program,
            "arguments": command.args.len(),
            "env": command.env.keys().collect::<Vec<_>>(),
        }),
        _ => json!(route.endpoint),
    };
    let tls = config.tls.as_ref().map(|tls| {
        json!({
            "ca": tls.ca.as_ref().map(|p| p.display().to_string()),
            "client_cert": tls.client_identity.as_ref().map(|(cert, _)| cert.display().to_string()),
            "server_name": tls.server_name,
            "insecure_skip_verify": tls.insecure_skip_verify,
        })
    });
    json!({
        "endpoint": endpoint,
        "boundary": route.boundary.to_string(),
        "transport": route.transport,
        "required": route.required,
        "probe_interval": route.probe_interval.map_or_else(|| "off".to_owned(), |d| HumanDuration(d).to_string()),
        "tls": tls,
        "auth": {
            "bearer": config.auth.bearer.as_ref().map(|r| format!("from {r} (value hidden)")),
            "headers": config.auth.headers.keys().map(|h| format!("{h}: (value hidden)")).collect::<Vec<_>>(),
        },
        "cert_expiry": {
            "warn": HumanDuration(config.cert_expiry.warn).to_string(),
            "critical": HumanDuration(config.cert_expiry.critical).to_string(),
        },
        "policies": policies_json(&config.policies),
    })
}

/// A route's policies as JSON (also `mcp-edge check --json`'s).
pub fn policies_json(p: &Policies) -> Value {
    let d = |duration| HumanDuration(duration).to_string();
    json!({
        "timeout": d(p.timeout),
        "attempt_timeout": d(p.attempt_timeout),
        "max_timeout": d(p.max_timeout),
        "retry": {
            "attempts": p.retry.attempts.get(),
            "base": d(p.retry.base),
            "max": d(p.retry.max),
            "budget": p.retry.budget.get(),
            "min_per_second": p.retry.min_per_second,
            "idempotent_tools": p.retry.idempotent_tools.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        },
        "breaker": {
            "consecutive_failures": p.breaker.consecutive_failures.get(),
            "failure_ratio": p.breaker.failure_ratio.get(),
            "min_calls": p.breaker.min_calls.get(),
            "window": d(p.breaker.window),
            "open_for": d(p.breaker.open_for),
            "max_open_for": d(p.breaker.max_open_for),
            "probes": p.breaker.probes.get(),
        },
        "rate_limit": {
            "route": p.rate_limit.route.map(|r| json!({ "per_second": r.per_second.get(), "burst": r.burst.get() })),
            "per_client": p.rate_limit.per_client.map(|r| json!({ "per_second": r.per_second.get(), "burst": r.burst.get() })),
        },
        "concurrency": { "max_in_flight": p.concurrency.max_in_flight.get(), "queue": p.concurrency.queue },
    })
}

/// A JSON object as a two-column table, nested keys joined with dots.
fn config_table(value: &Value) -> String {
    fn rows(prefix: &str, value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let name = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    rows(&name, v, out);
                }
            }
            Value::Null => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"muted\">none</td></tr>",
                    html(prefix)
                );
            }
            Value::String(s) => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td><code>{}</code></td></tr>",
                    html(prefix),
                    html(s)
                );
            }
            other => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td><code>{}</code></td></tr>",
                    html(prefix),
                    html(&other.to_string())
                );
            }
        }
    }
    let mut out = String::from("<table><tr><th>setting</th><th>value</th></tr>");
    rows("", value, &mut out);
    out.push_str("</table>");
    out
}

/// A line on a chart.
#[derive(Clone, Copy)]
enum Series {
    Calls,
    Errors,
    P50,
    P99,
}

impl Series {
    fn class(self) -> &'static str {
        match self {
            Series::Calls => "calls",
            Series::Errors => "errors",
            Series::P50 => "p50",
            Series::P99 => "p99",
        }
    }

    fn value(self, p: &Point) -> Option<f64> {
        match self {
            Series::Calls => Some(p.calls),
            Series::Errors => Some(p.errors),
            Series::P50 => p.p50_ms,
            Series::P99 => p.p99_ms,
        }
    }
}

/// An inline SVG chart of `series` over the last [`SPAN`], scaled to its highest
/// value, which is written in its corner.
fn chart(points: &[Point], series: &[Series], width: u32, height: u32) -> String {
    let Some(newest) = points.last().map(|p| p.at) else {
        return "<span class=\"muted\">no data yet</span>".to_owned();
    };
    let max = points
        .iter()
        .flat_map(|p| series.iter().filter_map(|s| s.value(p)))
        .fold(0.0f64, f64::max);
    let (w, h) = (f64::from(width), f64::from(height));
    let top = 12.0;
    let x = |at: SystemTime| {
        let ago = newest.duration_since(at).unwrap_or_default().as_secs_f64();
        w * (1.0 - ago / SPAN.as_secs_f64()).clamp(0.0, 1.0)
    };
    let y = |v: f64| {
        if max <= 0.0 {
            h - 1.0
        } else {
            h - 1.0 - (h - 1.0 - top) * (v / max)
        }
    };
    let label = series
        .iter()
        .map(|s| match (s, points.last().and_then(|p| s.value(p))) {
            (_, Some(v)) => format!("{} now {}", s.class(), number(v)),
            (_, None) => format!("{} now -", s.class()),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{label}\">\
         <title>{label}</title><line class=\"axis\" x1=\"0\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\"/>\
         <text x=\"2\" y=\"9\">max {max}</text>",
        base = h - 0.5,
        max = number(max),
    );
    for s in series {
        let coordinates: Vec<String> = points
            .iter()
            .filter_map(|p| {
                // A step per interval: the rate held from its start to its end.
                s.value(p).map(|v| {
                    let y = y(v);
                    format!("{:.1},{y:.1} {:.1},{y:.1}", x(p.from), x(p.at))
                })
            })
            .collect();
        if !coordinates.is_empty() {
            let _ = write!(
                out,
                "<polyline class=\"{}\" points=\"{}\"/>",
                s.class(),
                coordinates.join(" ")
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// A number for a label: three significant digits at most.
fn number(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `23:59:01 UTC`.
fn clock(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    format!("{:02}:{:02}:{:02} UTC", at.hour(), at.minute(), at.second())
}

/// Text made safe for HTML.
pub fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn point(ago: u64, calls: f64) -> Point {
        Point {
            from: SystemTime::UNIX_EPOCH + Duration::from_secs(10_000 - ago - 450),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(10_000 - ago),
            calls,
            errors: 0.0,
            p50_ms: Some(1.0),
            p99_ms: None,
        }
    }

    #[test]
    fn a_chart_spans_fifteen_minutes_and_scales_to_its_highest_value() {
        let svg = chart(
            &[point(900, 0.0), point(450, 5.0), point(0, 10.0)],
            &[Series::Calls],
            100,
            40,
        );
        assert!(svg.contains("max 10.0<"), "{svg}");
        // A step per interval: oldest at the left edge and at the bottom, newest at the
        // right edge, at the top.
        assert!(
            svg.contains("points=\"0.0,39.0 0.0,39.0 0.0,25.5 50.0,25.5 50.0,12.0 100.0,12.0\""),
            "{svg}"
        );
        // A series with no value draws no line.
        let svg = chart(&[point(0, 1.0)], &[Series::P99], 100, 40);
        assert!(!svg.contains("polyline"), "{svg}");
        assert!(chart(&[], &[Series::Calls], 100, 40).contains("no data yet"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            html("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
