//! Builds a route from its configuration: the connector its classification picks, its
//! TLS and certificate watching, its policy stack, and its balancer for replicas.
//!
//! `mcp-edge serve` and a reload both call [`build_route`]; nothing else makes routes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mcp_edge_breaker::Breaker;
use mcp_edge_certwatch::{Origin, Thresholds, Watcher};
use mcp_edge_client::dial::{OnHandshake, PeerTls};
use mcp_edge_config::MaybeSecret;
use mcp_edge_config::Protocol;
use mcp_edge_config::model::{Config, Endpoint};
use mcp_edge_router::Transport;
use mcp_edge_transport::{
    Connector, Http, HttpConfig, Link, LinkConfig, LinkKind, LinkPool, Sink, Stdio, StdioConfig,
    StdioPool,
};

use crate::Upstream;
use crate::balance::{Balanced, Replica};
use crate::stack::{RoutePolicy, breaker_config};
use crate::stats::RouteStats;
use crate::{RouteKey, RouteRt};

/// The program a route launches; `mcp-edge` means this very binary.
fn program(name: &str) -> PathBuf {
    if name == "mcp-edge"
        && let Ok(me) = std::env::current_exe()
    {
        return me;
    }
    PathBuf::from(name)
}

/// The headers a route sends upstream: its bearer token and extra headers, secrets
/// resolved and marked sensitive (hyper never prints them).
fn route_headers(
    route: &mcp_edge_config::Route,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
    let mut headers = Vec::new();
    let value = |text: &str, what: &str| {
        let mut v = http::HeaderValue::from_str(text)
            .map_err(|_| format!("route `{}` {what}: not a valid header value", route.name))?;
        v.set_sensitive(true);
        Ok::<_, String>(v)
    };
    if let Some(bearer) = &route.auth.bearer {
        let secret = bearer
            .resolve()
            .inspect(remember)
            .map_err(|e| format!("route `{}` auth.bearer: {e}", route.name))?;
        headers.push((
            http::header::AUTHORIZATION,
            value(&format!("Bearer {}", secret.expose()), "auth.bearer")?,
        ));
    }
    for (name, text) in &route.auth.headers {
        let text = match text {
            MaybeSecret::Plain(t) => t.clone(),
            MaybeSecret::Secret(reference) => reference
                .resolve()
                .inspect(remember)
                .map_err(|e| format!("route `{}` header {name}: {e}", route.name))?
                .expose()
                .to_owned(),
        };
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("route `{}`: bad header name {name}", route.name))?;
        headers.push((name, value(&text, "header")?));
    }
    Ok(headers)
}

/// The TLS config a route uses, offering `alpn`.
fn route_tls(
    route: &mcp_edge_config::Route,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let tls = route.tls.as_ref();
    let client_tls = mcp_edge_tls::ClientTls {
        ca: tls.and_then(|t| t.ca.clone()),
        client_identity: tls.and_then(|t| t.client_identity.clone()),
        insecure_skip_verify: tls.is_some_and(|t| t.insecure_skip_verify),
    };
    mcp_edge_tls::client_config(&client_tls, alpn)
        .map_err(|e| format!("route `{}` TLS: {e}", route.name))
}

/// Tracks a route's CA bundle and client certificate.
fn track_route_files(certs: &Watcher, route: &mcp_edge_config::Route) {
    let Some(tls) = &route.tls else { return };
    let thresholds = thresholds(route);
    let origin = |kind, path: &Path| Origin {
        kind,
        route: Some(route.name.clone()),
        from: path.display().to_string(),
    };
    if let Some(ca) = &tls.ca {
        certs.observe_file(&origin("route_ca", ca), ca, thresholds);
    }
    if let Some((cert, _)) = &tls.client_identity {
        certs.observe_file(&origin("route_client_cert", cert), cert, thresholds);
    }
}

fn thresholds(route: &mcp_edge_config::Route) -> Thresholds {
    Thresholds {
        warn: route.cert_expiry.warn,
        critical: route.cert_expiry.critical,
    }
}

/// Tracks the chain each TLS tool server of the route presents, at every handshake.
fn handshake_hook(certs: &Arc<Watcher>, route: &mcp_edge_config::Route) -> OnHandshake {
    let certs = Arc::downgrade(certs);
    let name = route.name.clone();
    let thresholds = thresholds(route);
    Arc::new(move |peer: &PeerTls| {
        if let Some(certs) = certs.upgrade() {
            let origin = Origin {
                kind: "upstream",
                route: Some(name.clone()),
                from: peer.server_name.clone(),
            };
            certs.observe_der(&origin, &peer.chain, thresholds);
        }
    })
}

fn http_config(
    config: &Config,
    route: &mcp_edge_config::Route,
    url: &url::Url,
    hook: &OnHandshake,
) -> Result<HttpConfig, String> {
    let uri: http::Uri = url
        .as_str()
        .parse()
        .map_err(|e| format!("route `{}`: {e}", route.name))?;
    let mut cfg = HttpConfig::new(&route.name, uri);
    cfg.fallback_to_sse = route.protocol == Protocol::Auto;
    cfg.per_client = route.per_client;
    cfg.max_client_sessions = route.per_client_max;
    cfg.headers = route_headers(route)?;
    cfg.max_message_bytes = config.gateway.max_message_bytes;
    if url.scheme() == "https" {
        cfg.tls = Some(route_tls(route, &[b"h2", b"http/1.1"])?);
        cfg.server_name = route.tls.as_ref().and_then(|t| t.server_name.clone());
        cfg.on_handshake = Some(hook.clone());
    }
    Ok(cfg)
}

/// A route's replicas, each its own Streamable HTTP connector and breaker.
fn balanced_upstream(
    config: &Config,
    route: &mcp_edge_config::Route,
    first: &url::Url,
    more: &[url::Url],
    sink: &Arc<dyn Sink>,
    hook: &OnHandshake,
) -> Result<Balanced, String> {
    let mut replicas = Vec::new();
    for url in std::iter::once(first).chain(more) {
        let mut cfg = http_config(config, route, url, hook)?;
        // Replicas are Streamable HTTP: no falling back to legacy SSE per replica.
        cfg.fallback_to_sse = false;
        let http = Http::new(cfg, sink.clone());
        let shown = mcp_edge_router::redact(url);
        let breaker = Breaker::new(
            &format!("{}@{shown}", route.name),
            breaker_config(&route.policies),
        );
        replicas.push(Replica::new(http, breaker, shown));
    }
    Ok(Balanced {
        replicas,
        per_client: route.per_client,
    })
}

fn link_config(
    config: &Config,
    route: &mcp_edge_config::Route,
    url: &url::Url,
    kind: LinkKind,
    hook: &OnHandshake,
) -> Result<LinkConfig, String> {
    let uri: http::Uri = url
        .as_str()
        .parse()
        .map_err(|e| format!("route `{}`: {e}", route.name))?;
    let mut cfg = LinkConfig::new(&route.name, kind, uri);
    cfg.headers = route_headers(route)?;
    cfg.max_message_bytes = config.gateway.max_message_bytes;
    if matches!(url.scheme(), "https" | "wss") {
        // A WebSocket upgrade is HTTP/1.1: offer nothing else.
        cfg.tls = Some(route_tls(route, &[b"http/1.1"])?);
        cfg.server_name = route.tls.as_ref().and_then(|t| t.server_name.clone());
        cfg.on_handshake = Some(hook.clone());
    }
    Ok(cfg)
}

/// Starts one route: its connector and its policies. Must run inside tokio.
pub fn build_route(
    config: &Config,
    route: &mcp_edge_config::Route,
    planned: &mcp_edge_router::RoutePlan,
    sink: &Arc<dyn Sink>,
    certs: &Arc<Watcher>,
) -> Result<Arc<RouteRt>, String> {
    track_route_files(certs, route);
    let hook = handshake_hook(certs, route);
    let upstream = match (&planned.transport, &route.endpoint) {
        (Transport::Stdio(command), Endpoint::Command(_)) => {
            let cfg = stdio_config(config, route, command)?;
            if route.per_client {
                let pool = StdioPool::spawn(&route.name, cfg, sink.clone(), route.per_client_max);
                Upstream::One(Connector::StdioPool(pool))
            } else {
                Upstream::One(Connector::Stdio(Stdio::spawn(cfg, sink.clone())))
            }
        }
        (Transport::Network { url, .. }, _) if !planned.more_urls.is_empty() => {
            balanced_upstream(config, route, url, &planned.more_urls, sink, &hook)
                .map(|balanced| Upstream::Balanced(Arc::new(balanced)))
                .unwrap_or_else(|why| unserved(route, why))
        }
        (Transport::Network { url, protocol, .. }, _)
            if matches!(protocol, Protocol::Auto | Protocol::StreamableHttp)
                && matches!(url.scheme(), "http" | "https") =>
        {
            http_config(config, route, url, &hook)
                .map(|cfg| Upstream::One(Connector::Http(Http::new(cfg, sink.clone()))))
                .unwrap_or_else(|why| unserved(route, why))
        }
        (Transport::Network { url, protocol, .. }, _) => {
            let kind = if *protocol == Protocol::Websocket {
                LinkKind::WebSocket
            } else {
                LinkKind::Sse
            };
            link_config(config, route, url, kind, &hook)
                .map(|cfg| {
                    Upstream::One(if route.per_client {
                        let max = route.per_client_max;
                        Connector::LinkPool(LinkPool::spawn(&route.name, cfg, sink.clone(), max))
                    } else {
                        Connector::Link(Link::spawn(cfg, sink.clone()))
                    })
                })
                .unwrap_or_else(|why| unserved(route, why))
        }
        (Transport::Stdio(_), _) => unserved(route, "a command route without a command".into()),
    };
    let policy = RoutePolicy::new(&route.name, &route.policies, upstream.clone());
    Ok(Arc::new(RouteRt {
        name: route.name.clone(),
        prefix: route.naming.prefix.clone(),
        naming: route.naming.clone(),
        boundary: planned.boundary,
        transport: planned.transport.label(),
        endpoint: planned.endpoint(),
        timeout: route.policies.timeout,
        max_timeout: route.policies.max_timeout,
        upstream,
        policy,
        stats: RouteStats::default(),
        required: route.required,
        probe_interval: route.probe_interval,
        key: RouteKey::new(route, planned),
        lists: crate::lists::Lists::default(),
        per_client: route.per_client,
    }))
}

/// A route this build cannot serve: every call is refused with `why`, which is logged.
fn unserved(route: &mcp_edge_config::Route, why: String) -> Upstream {
    tracing::error!(route = %route.name, "{why}");
    Upstream::One(Connector::Unserved(why.into()))
}

/// A stdio route's child: its program, arguments and environment, secrets read.
fn stdio_config(
    config: &Config,
    route: &mcp_edge_config::Route,
    command: &mcp_edge_config::model::Command,
) -> Result<StdioConfig, String> {
    let resolve = |value: &MaybeSecret, what: &dyn std::fmt::Display| match value {
        MaybeSecret::Plain(v) => Ok(v.clone()),
        MaybeSecret::Secret(reference) => reference
            .resolve()
            .inspect(remember)
            .map(|secret| secret.expose().to_owned())
            .map_err(|e| format!("route `{}` {what}: {e}", route.name)),
    };
    let mut env = Vec::new();
    for (key, value) in &command.env {
        env.push((key.clone(), resolve(value, &format_args!("env {key}"))?));
    }
    let mut args = Vec::with_capacity(command.args.len());
    for (i, arg) in command.args.iter().enumerate() {
        args.push(resolve(arg, &format_args!("argument {}", i + 1))?);
    }
    let mut cfg = StdioConfig::new(&route.name, program(&command.program), args);
    cfg.env = env;
    cfg.cwd = command.cwd.clone();
    cfg.max_message_bytes = config.gateway.max_message_bytes;
    Ok(cfg)
}

/// Every secret resolved is remembered, so that text from tool servers (their stderr)
/// is scrubbed of it before it is logged or shown ([`mcp_edge_transport::redact`]).
pub fn remember(secret: &mcp_edge_config::Secret) {
    mcp_edge_transport::redact::remember(secret.expose());
}
