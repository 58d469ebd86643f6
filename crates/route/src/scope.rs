//! What one client sees: which routes, and how their names are shown.
//!
//! `/mcp` shows every route the principal may use, names prefixed `route__name`;
//! `/mcp/{route}` shows one route as its own server, names unprefixed.

use std::sync::Arc;

use mcp_edge_config::model::Glob;

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

    /// Whether the client may see and call a route's tool shown as `name` (before the
    /// prefix).
    pub fn allows_tool(&self, route: &RouteRt, name: &str) -> bool {
        let Some(globs) = &self.tools else {
            return true;
        };
        let full = if route.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}{}{name}", route.prefix, self.separator)
        };
        globs.iter().any(|g| g.matches(&full))
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
        if self.single {
            self.routes.first().map(|r| r.name.as_str())
        } else {
            None
        }
    }
}
