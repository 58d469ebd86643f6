//! `mcp-edge health`: a gateway's `/health`, fetched from its admin listener and shown
//! as a table (or as the JSON itself), with an exit status a script can test.

use std::time::Duration;

use bytes::Bytes;
use mcp_edge_client::dial::Dialer;
use mcp_edge_client::pool::{Pool, read_bounded};
use serde_json::Value;

/// `mcp-edge health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The gateway's admin address (`[gateway] admin`): `http://127.0.0.1:9090`, `127.0.0.1:9090` or the full `/health` URL.
    #[arg(long, default_value = "http://127.0.0.1:9090/health")]
    pub url: String,
    /// Print the JSON as it came.
    #[arg(long)]
    pub json: bool,
}

/// `mcp-edge health`: the route table from a gateway's `/health`.
pub async fn health_command(args: &HealthArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let health = match fetch(&args.url).await {
        Ok(health) => health,
        Err(e) => {
            eprintln!("mcp-edge health: {}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{health:#}");
    } else {
        print!("{}", health_table(&health));
    }
    match health["status"].as_str() {
        Some("healthy") => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// The `/health` URL for what a user typed: the admin base URL (`http://host:9090`,
/// with or without a trailing slash), `host:port`, or the full `/health` URL.
fn health_url(typed: &str) -> String {
    let typed = typed.trim();
    let url = if typed.contains("://") {
        typed.to_owned()
    } else {
        format!("http://{typed}")
    };
    match url::Url::parse(&url) {
        Ok(mut parsed) if parsed.path() == "/" => {
            parsed.set_path("/health");
            parsed.to_string()
        }
        _ => url,
    }
}

async fn fetch(url: &str) -> Result<Value, String> {
    let url = health_url(url);
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// (the admin listener serves plain HTTP on loopback)".into());
    }
    let pool = Pool::new(
        Dialer::new(None, None, None, Duration::from_secs(5)),
        uri.clone(),
        1,
        Duration::from_secs(5),
    );
    let request = http::Request::get(uri)
        .body(Bytes::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), pool.request(request))
        .await
        .map_err(|_| "no answer within 5s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = read_bounded(
        response.into_body(),
        16 * 1024 * 1024,
        Duration::from_secs(5),
    )
    .await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not /health JSON: {e}"))
}

/// The route table `mcp-edge health` prints.
pub fn health_table(health: &Value) -> String {
    let mut out = format!(
        "mcp-edge {} is {} (up {:.0}s, config {}, {} sessions)\n",
        health["version"].as_str().unwrap_or("?"),
        health["status"].as_str().unwrap_or("?"),
        health["uptime_seconds"].as_f64().unwrap_or_default(),
        health["config"]["digest"].as_str().unwrap_or("?"),
        health["sessions"],
    );
    let mut rows = vec![
        [
            "ROUTE",
            "STATUS",
            "BOUNDARY",
            "TRANSPORT",
            "BREAKER",
            "IN-FLIGHT",
            "P50",
            "P99",
            "LAST ERROR",
        ]
        .map(str::to_owned),
    ];
    for r in health["routes"].as_array().into_iter().flatten() {
        let s = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        let ms = |v: &Value| {
            v.as_f64()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}ms"))
        };
        let mut error = s(&r["last_error"]["message"]);
        if error.chars().count() > 60 {
            error = error.chars().take(57).collect::<String>() + "...";
        }
        rows.push([
            s(&r["name"]),
            s(&r["status"]),
            s(&r["boundary"]),
            s(&r["transport"]),
            s(&r["breaker"]["state"]),
            r["in_flight"].to_string(),
            ms(&r["latency"]["p50_ms"]),
            ms(&r["latency"]["p99_ms"]),
            error,
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::health_url;

    #[test]
    fn health_takes_the_admin_address_as_a_user_types_it() {
        for typed in [
            "http://127.0.0.1:9090",
            "http://127.0.0.1:9090/",
            "127.0.0.1:9090",
            "http://127.0.0.1:9090/health",
        ] {
            assert_eq!(health_url(typed), "http://127.0.0.1:9090/health", "{typed}");
        }
    }
}
