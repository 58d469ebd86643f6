//! What one client sees: which routes, and how their names are shown.
//!
//! `/mcp` shows every route the principal may use, names prefixed `route__name`;
//! `/mcp/{route}` shows one route as its own server, names unprefixed.

use std::sync::Arc;

use mcp_edge_config::model::{Glob, VirtualServer};
use mcp_edge_protocol::mcp;

use crate::RouteRt;

/// The routes a client sees and how names map.
#[derive(Clone)]
pub struct Scope {
    /// The routes, in routes.toml order.
    pub routes: Arc<[Arc<RouteRt>]>,
    /// One route as its own server (`/mcp/{route}`): names are not prefixed.
    pub single: bool,
    /// Between a prefix and a name.
    pub separator: Arc<str>,
    /// Of the routes' tools, only those matching one of these (by `route__tool` name,
    /// whatever the endpoint); `None`: all.
    pub tools: Option<Arc<[Glob]>>,
    /// The virtual server (`[[server]]`) the client reached, which shows only its own
    /// tools, prompts and resources.
    pub server: Option<Arc<VirtualServer>>,
}

impl Scope {
    /// The name a client sees for a route's tool or prompt.
    pub fn exposed(&self, route: &RouteRt, name: &str) -> String {
        if self.single || route.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}{}{name}", route.prefix, self.separator)
        }
    }

    /// A route's tool or prompt by the name `/mcp` shows (`route__name`).
    fn full(&self, route: &RouteRt, name: &str) -> String {
        if route.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}{}{name}", route.prefix, self.separator)
        }
    }

    /// Whether the client may see and call a route's tool shown as `name` (before the
    /// prefix): its own grant, and the virtual server's tools.
    pub fn allows_tool(&self, route: &RouteRt, name: &str) -> bool {
        self.grants_tool(route, name) && self.serves_tool(route, name)
    }

    /// Whether the client's own grant (`[[clients]] tools`) includes the tool.
    pub fn grants_tool(&self, route: &RouteRt, name: &str) -> bool {
        let full = self.full(route, name);
        self.tools
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| g.matches(&full)))
    }

    /// Whether the endpoint shows the tool (a virtual server only its own).
    pub fn serves_tool(&self, route: &RouteRt, name: &str) -> bool {
        let full = self.full(route, name);
        self.server
            .as_ref()
            .is_none_or(|s| s.tools.iter().any(|g| g.matches(&full)))
    }

    /// Whether the client may see and get a route's prompt shown as `name`.
    pub fn allows_prompt(&self, route: &RouteRt, name: &str) -> bool {
        let full = self.full(route, name);
        self.server
            .as_ref()
            .is_none_or(|s| s.prompts.iter().any(|g| g.matches(&full)))
    }

    /// Whether a list (`method`) asks the route: on a virtual server, only routes some
    /// of whose tools or prompts its patterns can match, and the routes it shows the
    /// resources of.
    pub fn shows(&self, route: &RouteRt, method: &str) -> bool {
        let Some(server) = &self.server else {
            return true;
        };
        let head = format!("{}{}", route.prefix, self.separator);
        let could_match = |globs: &[Glob]| {
            globs.iter().any(|g| {
                let literal = g.as_str().split('*').next().unwrap_or_default();
                route.prefix.is_empty() || literal.starts_with(&head) || head.starts_with(literal)
            })
        };
        match method {
            mcp::TOOLS_LIST => could_match(&server.tools),
            mcp::PROMPTS_LIST => could_match(&server.prompts),
            _ => server.resources.contains(&route.name),
        }
    }

    /// Whether a virtual server shows anything of the route.
    pub fn relevant(&self, route: &RouteRt) -> bool {
        [mcp::TOOLS_LIST, mcp::PROMPTS_LIST, mcp::RESOURCES_LIST]
            .iter()
            .any(|m| self.shows(route, m))
    }

    /// The route and upstream name behind a name the client used.
    pub fn resolve<'a>(&'a self, name: &'a str) -> Option<(&'a Arc<RouteRt>, &'a str)> {
        if self.single {
            return self.routes.first().map(|r| (r, name));
        }
        if let Some((prefix, rest)) = name.split_once(&*self.separator)
            && let Some(route) = self
                .routes
                .iter()
                .find(|r| !r.prefix.is_empty() && r.prefix == prefix)
        {
            return Some((route, rest));
        }
        self.routes
            .iter()
            .find(|r| r.prefix.is_empty())
            .map(|r| (r, name))
    }

    /// Whether the scope includes the route.
    pub fn contains(&self, route: &str) -> bool {
        self.routes.iter().any(|r| r.name == route)
    }

    /// A stable description of the endpoint, to bind sessions to it.
    pub fn target(&self) -> Option<&str> {
        if let Some(server) = &self.server {
            return Some(&server.name);
        }
        if self.single {
            self.routes.first().map(|r| r.name.as_str())
        } else {
            None
        }
    }
}
