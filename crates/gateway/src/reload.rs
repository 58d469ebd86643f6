//! Hot reload: SIGHUP, or a change to routes.toml (checked every second, by content,
//! so a Kubernetes ConfigMap's symlink swap is seen too), re-reads the file.
//!
//! - An invalid file is refused with the same diagnostics as `mcp-edge check`: logged,
//!   shown in `/health` (`config.last_reload`), counted in
//!   `mcp_edge_reloads_total{result="error"}`. The running configuration keeps serving.
//! - A valid one swaps in at once. Routes whose configuration did not change (their
//!   place in the file aside) keep their children, connections and breakers; new and
//!   changed routes start; removed and replaced routes drain — their calls in flight
//!   finish (up to their `max_timeout`) before their tool servers are stopped. No call
//!   in flight is lost. Sessions see the new routes at once and are told their lists
//!   changed.
//! - `[gateway]` settings (listeners, TLS, limits) take effect at the next restart; a
//!   reload that changes them says so. `allow_anonymous` and `[[clients]]` reload.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use mcp_edge_config::Severity;
use mcp_edge_config::model::Config;
use serde_json::json;
use tokio::time::Instant;

use crate::bootstrap;
use mcp_edge_admin::{Admin, rfc3339};
use mcp_edge_core::{ClientRt, Gateway, Table};
use mcp_edge_route::assemble;
use mcp_edge_route::scope::Scope;
use mcp_edge_route::{RouteKey, RouteRt};
use mcp_edge_router::Plan;

/// What a reload did to the routes, by name.
#[derive(Debug, Default)]
struct Changes {
    added: Vec<String>,
    changed: Vec<String>,
    removed: Vec<String>,
    kept: usize,
}

/// Reloads one gateway's routes file.
pub struct Reloader {
    path: PathBuf,
    gw: Arc<Gateway>,
    admin: Arc<Admin>,
    /// The `[gateway]` settings in force, to tell when a reload asks for a restart.
    gateway: std::sync::Mutex<String>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// `[gateway]` as far as a restart is needed to change it.
fn restart_settings(config: &Config) -> String {
    let g = &config.gateway;
    format!(
        "{} {:?} {} {} {:?} {} {:?} {:?}",
        g.listen.addr,
        g.listen
            .tls
            .as_ref()
            .map(|t| (&t.cert, &t.key, &t.client_ca)),
        g.admin,
        g.name_separator,
        g.allowed_origins,
        g.max_message_bytes,
        g.workers,
        g.busy_poll
    )
}

impl Reloader {
    /// A reloader for the gateway serving `config` from `path`.
    pub fn new(path: PathBuf, gw: Arc<Gateway>, admin: Arc<Admin>, config: &Config) -> Arc<Self> {
        Arc::new(Reloader {
            path,
            gw,
            admin,
            gateway: std::sync::Mutex::new(restart_settings(config)),
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    /// Starts the routes a reload added or changed as start-up starts every route
    /// (connect, initialize, list), without waiting for them: the reload is done, and
    /// clients hear `list_changed` once the new routes' tools can be listed.
    fn connect_new_routes(&self, added: &[String], changed: &[String]) {
        let fresh: Vec<Arc<RouteRt>> = self
            .gw
            .table()
            .routes
            .iter()
            .filter(|r| added.contains(&r.name) || changed.contains(&r.name))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return;
        }
        let gw = self.gw.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + bootstrap::FIRST_ATTEMPT;
            futures_util::future::join_all(fresh.iter().map(|r| r.first_attempt(deadline))).await;
            gw.lists_changed();
        });
    }

    /// Re-reads the file and applies it (see the module documentation).
    pub async fn reload(&self, trigger: &str) {
        let _one = self.one_at_a_time.lock().await;
        let started = Instant::now();
        let digest = bootstrap::digest(&self.path);
        let (config, plan, clients) = match self.read() {
            Ok(read) => read,
            Err(errors) => {
                self.refused(trigger, &digest, &errors);
                return;
            }
        };
        let Some(sink) = self.gw.sink.clone() else {
            return;
        };
        let old = self.gw.table();
        let (routes, changes) = match self.routes(&config, &plan, &old, &sink).await {
            Ok(built) => built,
            Err(e) => {
                self.refused(trigger, &digest, &[e]);
                return;
            }
        };
        self.swap(&config, &old, routes, clients, &changes);
        let restart = self.gateway_settings_changed(&config);
        self.record(trigger, digest, &changes, restart, started.elapsed());
    }

    /// The file, checked and planned, with its clients' credentials read; or every
    /// error that refuses it.
    fn read(&self) -> Result<(Config, Plan, Vec<ClientRt>), Vec<String>> {
        let (loaded, diags) = bootstrap::analyze(&self.path).map_err(|e| vec![e])?;
        let Some((config, plan)) = loaded else {
            return Err(diags
                .into_iter()
                .filter(|(s, _)| *s == Severity::Error)
                .map(|(_, text)| text)
                .collect());
        };
        for (_, warning) in diags.iter().filter(|(s, _)| *s == Severity::Warning) {
            tracing::warn!("{warning}");
        }
        let clients = bootstrap::build_clients(&config).map_err(|e| vec![e])?;
        Ok((config, plan, clients))
    }

    /// The new table's routes: each unchanged one kept as it runs (same [`RouteKey`]),
    /// the others built. On an error, what this attempt started is stopped again.
    async fn routes(
        &self,
        config: &Config,
        plan: &Plan,
        old: &Table,
        sink: &Arc<dyn mcp_edge_transport::Sink>,
    ) -> Result<(Vec<Arc<RouteRt>>, Changes), String> {
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut changes = Changes::default();
        for (route, planned) in config.routes.iter().zip(&plan.routes) {
            let key = RouteKey::new(route, planned);
            if let Some(same) = old.routes.iter().find(|r| r.key == key) {
                routes.push(same.clone());
                changes.kept += 1;
                continue;
            }
            match assemble::build_route(config, route, planned, sink, &self.gw.certs) {
                Ok(new) => routes.push(new),
                Err(e) => {
                    for started in routes
                        .iter()
                        .filter(|r| !old.routes.iter().any(|o| Arc::ptr_eq(o, r)))
                    {
                        started.shutdown().await;
                    }
                    return Err(e);
                }
            }
            if old.routes.iter().any(|r| r.name == route.name) {
                changes.changed.push(route.name.clone());
            } else {
                changes.added.push(route.name.clone());
            }
        }
        changes.removed = old
            .routes
            .iter()
            .filter(|r| !config.routes.iter().any(|n| n.name == r.name))
            .map(|r| r.name.clone())
            .collect();
        Ok((routes, changes))
    }

    /// Puts the new table in force; routes replaced or removed drain in the background,
    /// new and changed ones are probed and connected at once.
    fn swap(
        &self,
        config: &Config,
        old: &Table,
        routes: Vec<Arc<RouteRt>>,
        clients: Vec<ClientRt>,
        changes: &Changes,
    ) {
        let replaced: Vec<Arc<RouteRt>> = old
            .routes
            .iter()
            .filter(|r| !routes.iter().any(|n| Arc::ptr_eq(n, r)))
            .cloned()
            .collect();
        self.gw.swap_table(Table {
            routes,
            clients: clients.into(),
            servers: config.servers.iter().cloned().map(Arc::new).collect(),
            allow_anonymous: config.gateway.allow_anonymous,
        });
        self.renew_sessions();
        for name in &changes.removed {
            self.gw.certs.forget_route(name);
        }
        for route in replaced {
            tokio::spawn(drain(route));
        }
        mcp_edge_admin::spawn_probes_for(&self.gw, |r| {
            changes.added.contains(&r.name) || changes.changed.contains(&r.name)
        });
        self.connect_new_routes(&changes.added, &changes.changed);
    }

    /// Whether `[gateway]` changed in what only a restart applies (and says so).
    fn gateway_settings_changed(&self, config: &Config) -> bool {
        let restart = {
            let mut gateway = self
                .gateway
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = restart_settings(config);
            let differs = *gateway != now;
            *gateway = now;
            differs
        };
        if restart {
            tracing::warn!(
                "[gateway] changed (listeners, TLS, limits): that part takes effect at the next restart"
            );
        }
        restart
    }

    /// Logs a reload that took effect and shows it on `/health`.
    fn record(
        &self,
        trigger: &str,
        digest: String,
        changes: &Changes,
        restart: bool,
        took: Duration,
    ) {
        let Changes {
            added,
            changed,
            removed,
            kept,
        } = changes;
        tracing::info!(
            trigger,
            ?added,
            ?changed,
            ?removed,
            kept,
            took_us = took.as_micros() as u64,
            "reloaded {}",
            self.path.display()
        );
        self.admin.reloads_ok.fetch_add(1, Ordering::Relaxed);
        let mut state = self
            .admin
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.digest = digest;
        state.loaded_at = SystemTime::now();
        state.last_reload = Some(json!({
            "at": rfc3339(SystemTime::now()),
            "trigger": trigger,
            "result": "ok",
            "added": added,
            "changed": changed,
            "removed": removed,
            "kept": kept,
            "took_ms": took.as_secs_f64() * 1e3,
            "restart_needed_for_gateway_settings": restart,
        }));
    }

    fn refused(&self, trigger: &str, digest: &str, errors: &[String]) {
        for e in errors {
            tracing::error!("reload refused; the running configuration keeps serving:\n{e}");
        }
        self.admin.reloads_failed.fetch_add(1, Ordering::Relaxed);
        let mut state = self
            .admin
            .config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.last_reload = Some(json!({
            "at": rfc3339(SystemTime::now()),
            "trigger": trigger,
            "result": "error",
            "refused_digest": digest,
            "errors": errors,
        }));
    }

    /// Gives every session the routes the new table grants it, and tells the ones that
    /// listen that their lists changed.
    fn renew_sessions(&self) {
        for session in self.gw.sessions.all() {
            let old = session.scope();
            let scope = self
                .gw
                .scope(session.principal.as_deref(), old.target())
                .unwrap_or_else(|_| Scope {
                    routes: Arc::from(Vec::new()),
                    single: old.single,
                    separator: old.separator.clone(),
                    tools: None,
                    server: None,
                });
            session.set_scope(scope);
        }
        self.gw.lists_changed();
    }

    /// Reloads on SIGHUP and when the file's content changes.
    pub fn watch(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                this.reload("SIGHUP").await;
            }
        });
        let this = self.clone();
        tokio::spawn(async move {
            let mut seen = bootstrap::digest(&this.path);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = bootstrap::digest(&this.path);
                if now != seen {
                    seen = now;
                    this.reload("file changed").await;
                }
            }
        });
    }
}

/// Lets a route's calls in flight finish (up to its `max_timeout`), then stops its
/// tool server.
async fn drain(route: Arc<RouteRt>) {
    let deadline = Instant::now() + route.max_timeout;
    while route.policy.bulkhead.in_flight() + route.policy.bulkhead.waiting() > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(route = %route.name, "drained after a reload; stopping its tool server");
    route.shutdown().await;
}
