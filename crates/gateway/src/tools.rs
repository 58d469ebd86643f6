//! `mcp-edge check --tools`: per client and endpoint, the tools it will see. The routes
//! are started as `serve` starts them (children spawned, servers connected, at most
//! 10 s) and asked for their lists through the same gateway code that answers clients,
//! so renames, filters, grants and virtual servers apply exactly as they will. A route
//! whose tool server does not answer is described by its rules instead.

use std::sync::Arc;

use mcp_edge_config::model::Config;
use mcp_edge_core::Ctx;
use mcp_edge_protocol::{Message, version};
use mcp_edge_route::RouteRt;
use mcp_edge_router::Plan;
use serde_json::{Value, json};

use crate::bootstrap;

/// What one client sees on one endpoint.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The client's name, or `anonymous`.
    pub client: String,
    /// `/mcp` or `/mcp/{server}`.
    pub endpoint: String,
    /// The tools' names, as the client sees them, sorted.
    pub tools: Vec<String>,
}

/// A route whose tool server did not answer, and what its rules say.
#[derive(Debug, Clone)]
pub struct Unreachable {
    /// The route.
    pub route: String,
    /// Its filters and renames, in words.
    pub rules: String,
}

/// Every client's view, and the routes that could not be asked.
#[derive(Debug, Clone)]
pub struct Views {
    /// Per client and endpoint.
    pub seen: Vec<Seen>,
    /// Routes whose tools are not in the views above.
    pub unreachable: Vec<Unreachable>,
}

/// Starts the routes, asks for every client's lists, stops the routes.
pub async fn views(config: &Config, plan: &Plan) -> Result<Views, String> {
    let gw = bootstrap::build(config, plan)?;
    bootstrap::wait_for_routes(&gw).await;
    let mut principals: Vec<Option<String>> = config
        .clients
        .iter()
        .map(|c| Some(c.name.clone()))
        .collect();
    if config.gateway.allow_anonymous {
        principals.push(None);
    }
    let mut endpoints: Vec<Option<&str>> = vec![None];
    endpoints.extend(config.servers.iter().map(|s| Some(s.name.as_str())));
    let mut seen = Vec::new();
    for principal in &principals {
        for target in &endpoints {
            let Ok(scope) = gw.scope(principal.as_deref(), *target) else {
                continue;
            };
            let ctx = Ctx {
                scope,
                session: None,
                version: version::LATEST_SESSION,
                principal: Arc::from(principal.as_deref().unwrap_or("anonymous")),
                traceparent: None,
            };
            let mut tools = tool_names(&gw, &ctx).await;
            tools.sort_unstable();
            seen.push(Seen {
                client: principal.clone().unwrap_or_else(|| "anonymous".into()),
                endpoint: target.map_or_else(|| "/mcp".to_owned(), |t| format!("/mcp/{t}")),
                tools,
            });
        }
    }
    let unreachable = gw
        .table()
        .routes
        .iter()
        .filter(|r| !r.upstream.state().up)
        .map(|r| Unreachable {
            route: r.name.clone(),
            rules: rules(r),
        })
        .collect();
    bootstrap::shutdown_routes(&gw).await;
    Ok(Views { seen, unreachable })
}

/// Every page of `tools/list` as the client would get it (at most 20 pages).
async fn tool_names(gw: &mcp_edge_core::Gateway, ctx: &Ctx) -> Vec<String> {
    let (events, _ignored) = tokio::sync::mpsc::channel(16);
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for id in 1..=20 {
        let params = cursor
            .as_ref()
            .map_or_else(|| json!({}), |c| json!({ "cursor": c }));
        let request =
            json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params });
        let Ok(message) = Message::parse(request.to_string().as_bytes()) else {
            break;
        };
        let answer = gw.request(ctx, &message, &events).await;
        let Ok(result) = answer.outcome else { break };
        let Ok(result) = serde_json::from_str::<Value>(result.get()) else {
            break;
        };
        names.extend(
            result["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str().map(str::to_owned)),
        );
        match result["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    names
}

/// A route's tool rules in words.
fn rules(route: &RouteRt) -> String {
    let naming = &route.naming;
    let globs = |g: &[mcp_edge_config::model::Glob]| {
        g.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
    };
    let mut parts = Vec::new();
    if !naming.include.is_empty() {
        parts.push(format!("include {}", globs(&naming.include)));
    }
    if !naming.exclude.is_empty() {
        parts.push(format!("exclude {}", globs(&naming.exclude)));
    }
    let renames: Vec<String> = naming
        .overrides
        .iter()
        .filter_map(|(tool, o)| o.name.as_ref().map(|n| format!("{tool} -> {n}")))
        .collect();
    if !renames.is_empty() {
        parts.push(format!("renamed {}", renames.join(", ")));
    }
    let prefix = if naming.prefix.is_empty() {
        "no prefix".to_owned()
    } else {
        format!("prefix `{}`", naming.prefix)
    };
    if parts.is_empty() {
        format!("every tool, {prefix}")
    } else {
        format!("{}; {prefix}", parts.join("; "))
    }
}

/// The views as text: a line per client and endpoint, then the routes not asked.
pub fn to_text(views: &Views) -> String {
    let mut out = String::from("\nTOOLS PER CLIENT (asked of the tool servers)\n");
    for s in &views.seen {
        out.push_str(&format!(
            "  {} on {}: {} tool{}{}{}\n",
            s.client,
            s.endpoint,
            s.tools.len(),
            if s.tools.len() == 1 { "" } else { "s" },
            if s.tools.is_empty() { "" } else { ": " },
            s.tools.join(", ")
        ));
    }
    for u in &views.unreachable {
        out.push_str(&format!(
            "  route {} did not answer; by its rules: {}\n",
            u.route, u.rules
        ));
    }
    out
}

/// The views as JSON.
pub fn to_json(views: &Views) -> Value {
    json!({
        "clients": views.seen.iter().map(|s| json!({ "client": s.client, "endpoint": s.endpoint, "tools": s.tools })).collect::<Vec<_>>(),
        "unreachable": views.unreachable.iter().map(|u| json!({ "route": u.route, "rules": u.rules })).collect::<Vec<_>>(),
    })
}
