//! Logs and traces.
//!
//! - Logs go to stderr (stdout belongs to MCP in `stdio` mode), as text or as JSON
//!   lines (`[telemetry] log_format = "json"` or `MCP_EDGE_LOG_FORMAT=json`), filtered
//!   by `MCP_EDGE_LOG` (default `info`).
//! - Every client request is a span (`otel.kind = server`) and every attempt at a tool
//!   server a child span (`otel.kind = client`), named and attributed after the
//!   OpenTelemetry semantic conventions for MCP: `mcp.method.name`, `mcp.session.id`,
//!   `mcp.protocol.version`, `jsonrpc.request.id`, `gen_ai.tool.name`,
//!   `gen_ai.prompt.name`, `mcp.resource.uri`, `error.type`, `rpc.response.status_code`,
//!   and mcp-edge's own `mcp_edge.route` and `mcp_edge.attempt`. They are at debug
//!   level, so they cost nothing unless traces are exported or debug logs asked for.
//! - With `[telemetry] otlp_endpoint`, spans are exported over OTLP/HTTP (JSON) in
//!   batches; nothing is exported otherwise. A client's `traceparent` is continued, and
//!   every HTTP request to a tool server carries one (W3C Trace Context).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// What was set up; flushes the traces on drop.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// How to log and trace.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// JSON log lines.
    pub json_logs: bool,
    /// OTLP/HTTP traces endpoint.
    pub otlp_endpoint: Option<String>,
    /// `service.name`.
    pub service_name: String,
}

/// Installs logging and, with an endpoint, trace export. Call outside any tokio
/// runtime (the exporter's HTTP client has its own).
pub fn init(settings: &Settings) -> Telemetry {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("MCP_EDGE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let json = settings.json_logs
        || std::env::var("MCP_EDGE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter())
            .boxed()
    };
    let mut provider = None;
    let mut problem = None;
    let otel = settings.otlp_endpoint.as_ref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
            .with_endpoint(endpoint.clone())
            .build();
        match exporter {
            Ok(exporter) => {
                let resource = opentelemetry_sdk::Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build();
                let sdk = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build();
                let tracer = sdk.tracer("mcp-edge");
                provider = Some(sdk);
                opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
                mcp_edge_route::trace::set_exporting();
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(tracing_subscriber::EnvFilter::new(
                            "mcp_edge=debug,mcp_edge_core=debug,mcp_edge_front=debug,mcp_edge_route=debug,mcp_edge_gateway=debug,off",
                        )),
                )
            }
            Err(e) => {
                problem = Some(format!("OTLP export to {endpoint} is off: {e}"));
                None
            }
        }
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(problem) = problem {
        tracing::error!("{problem}");
    }
    if let Some(endpoint) = &settings.otlp_endpoint
        && provider.is_some()
    {
        tracing::info!("exporting traces over OTLP/HTTP to {endpoint}");
    }
    Telemetry { provider }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}
