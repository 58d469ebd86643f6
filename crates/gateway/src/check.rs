//! `mcp-edge check`: validate a routes file and show the classification of everything
//! in it, with the reason, so a platform engineer sees what the gateway will do before
//! it does it.
//!
//! Exit codes: 0 valid (warnings allowed unless `--strict`), 1 refused, 2 unreadable.

use std::fmt::Write as _;
use std::process::ExitCode;

use mcp_edge_config::model::{Bucket, Config, Credential, Grant, Policies};
use mcp_edge_config::{Diagnostic, HumanDuration, Located, Severity, Source};
use mcp_edge_router::{Plan, plan};
use serde_json::{Value, json};

use std::path::PathBuf;

use clap::ValueEnum;

/// `mcp-edge check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The routes file.
    #[arg(env = mcp_edge_config::ROUTES_ENV, default_value = "routes.toml")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Fail on warnings too, including secrets that cannot be read and files that do
    /// not exist on this machine (which `serve` refuses).
    #[arg(long)]
    pub strict: bool,
    /// Also start the routes (as `serve` would, for at most 10 s) and show, per client
    /// and endpoint, the tools it will see; a route whose tool server does not answer
    /// is described by its rules.
    #[arg(long)]
    pub tools: bool,
}

/// How `check` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables for people.
    Text,
    /// One JSON document for machines.
    Json,
}

/// The outcome of checking one routes file.
#[derive(Debug)]
pub struct Report {
    /// The file checked.
    pub source: Source,
    /// The configuration, when valid.
    pub config: Option<Config>,
    /// The plan, when valid.
    pub plan: Option<Plan>,
    /// Every problem, placed in the file.
    pub diagnostics: Vec<Located>,
}

impl Report {
    /// True when nothing is refused (and, when `strict`, nothing warned about either).
    pub fn passes(&self, strict: bool) -> bool {
        self.plan.is_some()
            && self
                .diagnostics
                .iter()
                .all(|d| d.severity == Severity::Warning && !strict)
    }
}

/// Checks `source`. `environment` adds the checks against this machine (secrets and
/// files), as warnings.
pub fn check(source: Source, environment: bool) -> Report {
    let (config, mut diags) = mcp_edge_config::parse_partial(&source);
    let mut planned = None;
    if let Some(config) = &config {
        let (p, more) = plan(config);
        let config_errors = diags.iter().any(Diagnostic::is_error);
        diags.extend(more);
        if let Some(p) = &p {
            diags.extend(mcp_edge_router::admission(config, p));
        }
        let refused = diags.iter().any(Diagnostic::is_error);
        planned = p.filter(|_| !config_errors && !refused);
        if environment {
            diags.extend(
                mcp_edge_config::environment_diagnostics(config)
                    .into_iter()
                    .map(|d| Diagnostic {
                        severity: Severity::Warning,
                        message: format!("{} (`serve` would refuse this)", d.message),
                        ..d
                    }),
            );
        }
    }
    diags.sort_by_key(|d| (d.span.as_ref().map_or(0, |s| s.start), d.severity));
    let diagnostics = diags.iter().map(|d| source.locate(d)).collect();
    Report {
        source,
        config,
        plan: planned,
        diagnostics,
    }
}

/// `mcp-edge check`.
pub fn run(args: &CheckArgs) -> ExitCode {
    let source = match mcp_edge_config::read(&args.file) {
        Ok(source) => source,
        Err(e) => {
            eprintln!(
                "mcp-edge: cannot read {}: {e}\n  = help: pass the routes file as an argument or set {}",
                args.file.display(),
                mcp_edge_config::ROUTES_ENV
            );
            return ExitCode::from(2);
        }
    };
    let report = check(source, true);
    let passes = report.passes(args.strict);
    let views = match (&report.config, &report.plan) {
        (Some(config), Some(plan)) if args.tools && passes => Some(tool_views(config, plan)),
        _ => None,
    };
    match args.format {
        Format::Json => {
            let mut out = to_json(&report, passes);
            if let Some(views) = &views {
                out["tools"] = match views {
                    Ok(views) => crate::tools::to_json(views),
                    Err(e) => json!({ "error": e }),
                };
            }
            println!("{out:#}");
        }
        Format::Text => {
            for d in &report.diagnostics {
                eprintln!("{d}\n");
            }
            if report.plan.is_some() {
                print!("{}", to_text(&report));
            }
            match &views {
                Some(Ok(views)) => print!("{}", crate::tools::to_text(views)),
                Some(Err(e)) => eprintln!("mcp-edge: cannot ask the tool servers: {e}"),
                None => {}
            }
            eprintln!("{}", summary(&report, passes));
        }
    }
    if passes {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Starts the routes on a runtime of their own and asks for every client's tools.
fn tool_views(config: &Config, plan: &Plan) -> Result<crate::tools::Views, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(crate::tools::views(config, plan))
}

fn summary(report: &Report, passes: bool) -> String {
    let count = |s| {
        report
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let verdict = if passes { "valid" } else { "refused" };
    format!(
        "{}: {verdict} ({}, {})",
        report.source.name(),
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// Renders aligned columns; the last column is left ragged.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// Long: the report top to bottom, as `mcp-edge check` prints it
fn to_text(report: &Report) -> String {
    let (Some(plan), Some(config)) = (&report.plan, &report.config) else {
        return String::new();
    };
    let mut out = String::new();
    let mut rows = vec![
        vec!["LISTENER", "ADDRESS", "BOUNDARY", "SERVES", "REASON"]
            .into_iter()
            .map(String::from)
            .collect(),
    ];
    for l in &plan.listeners {
        rows.push(vec![
            l.name.to_owned(),
            l.addr.to_string(),
            l.boundary.to_string(),
            l.security.to_string(),
            l.reason.to_string(),
        ]);
    }
    out.push_str(&table(&rows));

    let mut rows = vec![
        vec!["ROUTE", "BOUNDARY", "TRANSPORT", "ENDPOINT", "REASON"]
            .into_iter()
            .map(String::from)
            .collect(),
    ];
    for r in &plan.routes {
        rows.push(vec![
            r.name.clone(),
            r.boundary.to_string(),
            r.transport.label(),
            r.endpoint(),
            r.reason.to_string(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));

    let mut rows = vec![
        vec![
            "ROUTE",
            "TIMEOUT",
            "RETRY",
            "BREAKER",
            "RATE LIMIT",
            "CONCURRENCY",
        ]
        .into_iter()
        .map(String::from)
        .collect(),
    ];
    for r in &plan.routes {
        let p = &r.policies;
        rows.push(vec![
            r.name.clone(),
            d(p.timeout),
            retry_text(p),
            breaker_text(p),
            rate_text(p),
            concurrency_text(p),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));

    if !config.clients.is_empty() {
        let mut rows = vec![
            vec!["CLIENT", "CREDENTIAL", "ROUTES"]
                .into_iter()
                .map(String::from)
                .collect(),
        ];
        for c in &config.clients {
            rows.push(vec![
                c.name.clone(),
                credential_text(&c.credential),
                grant_text(&c.routes),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }
    out
}

fn d(duration: std::time::Duration) -> String {
    HumanDuration(duration).to_string()
}

fn retry_text(p: &Policies) -> String {
    let r = &p.retry;
    if r.attempts.get() == 1 {
        return "off".into();
    }
    format!(
        "{}x {}..{} budget {}%",
        r.attempts,
        d(r.base),
        d(r.max),
        (r.budget.get() * 100.0).round()
    )
}

fn breaker_text(p: &Policies) -> String {
    let b = &p.breaker;
    format!(
        "{} in a row or {}% of >={} in {}; open {}",
        b.consecutive_failures,
        (b.failure_ratio.get() * 100.0).round(),
        b.min_calls,
        d(b.window),
        d(b.open_for)
    )
}

fn rate_text(p: &Policies) -> String {
    let bucket = |b: &Bucket| format!("{}/s burst {}", b.per_second, b.burst);
    match (&p.rate_limit.route, &p.rate_limit.per_client) {
        (None, None) => "none".into(),
        (Some(r), None) => bucket(r),
        (None, Some(c)) => format!("{} per client", bucket(c)),
        (Some(r), Some(c)) => format!("{}; {} per client", bucket(r), bucket(c)),
    }
}

fn concurrency_text(p: &Policies) -> String {
    format!(
        "{} + queue {}",
        p.concurrency.max_in_flight, p.concurrency.queue
    )
}

fn credential_text(credential: &Credential) -> String {
    match credential {
        Credential::Token(reference) => format!("token {reference}"),
        Credential::Identity(id) => format!("certificate {id}"),
    }
}

fn grant_text(grant: &Grant) -> String {
    match grant {
        Grant::All => "*".into(),
        Grant::Only(routes) => routes.join(", "),
    }
}

/// The machine-readable report.
pub fn to_json(report: &Report, passes: bool) -> Value {
    let diagnostics: Vec<Value> = report
        .diagnostics
        .iter()
        .map(|d| {
            json!({
                "severity": d.severity.as_str(),
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    let mut out = json!({
        "file": report.source.name(),
        "valid": passes,
        "diagnostics": diagnostics,
    });
    if let (Some(plan), Some(config)) = (&report.plan, &report.config) {
        out["listeners"] = plan
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "address": l.addr.to_string(),
                    "boundary": l.boundary.as_str(),
                    "reason": l.reason.to_string(),
                    "serves": l.security.to_string(),
                })
            })
            .collect();
        out["routes"] = plan
            .routes
            .iter()
            .zip(&config.routes)
            .map(|(r, route)| json!({
                "name": r.name,
                "boundary": r.boundary.as_str(),
                "reason": r.reason.to_string(),
                "transport": r.transport.label(),
                "endpoint": r.endpoint(),
                "prefix": route.naming.prefix,
                "policies": mcp_edge_admin::page::policies_json(&r.policies),
                "cert_expiry": { "warn": d(route.cert_expiry.warn), "critical": d(route.cert_expiry.critical) },
            }))
            .collect();
        out["clients"] = config
            .clients
            .iter()
            .map(|c| json!({ "name": c.name, "credential": credential_text(&c.credential), "routes": grant_text(&c.routes) }))
            .collect();
        out["name_separator"] = json!(config.gateway.name_separator);
    }
    out
}
