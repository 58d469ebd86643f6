//! The benchmark's tool server: the official Rust SDK (`rmcp`) serving one trivial
//! `echo` tool, over Streamable HTTP with JSON responses or over stdio.
//!
//! It is the fastest MCP server the field has, so that what the benchmark measures is
//! the gateway, not the tool server behind it.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use crate::Failure;

/// One `echo` tool that answers with its `message` argument.
#[derive(Clone)]
struct Echo {
    tools: Arc<Vec<Tool>>,
}

impl Echo {
    fn new() -> Echo {
        let schema = serde_json::json!({
            "type": "object",
            "properties": { "message": { "type": "string" } },
            "required": ["message"],
        });
        let schema = match schema {
            serde_json::Value::Object(object) => object,
            _ => serde_json::Map::new(),
        };
        Echo {
            tools: Arc::new(vec![Tool::new(
                "echo",
                "Answers with its message",
                Arc::new(schema),
            )]),
        }
    }
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "echo" {
            return Err(ErrorData::invalid_params(
                format!("no tool named {}", request.name),
                None,
            ));
        }
        let message = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(CallToolResult::success(vec![ContentBlock::text(message)]).into())
    }
}

/// Serves `echo` over stdin/stdout until stdin closes.
pub(crate) async fn stdio() -> Result<(), Failure> {
    // Pipes through the reactor, not rmcp's `stdio()` (tokio's blocking-thread stdin
    // and stdout): two thread hops less per message (see docs/PERFORMANCE.md).
    let pipes = (
        mcp_edge_protocol::stdio::stdin(),
        mcp_edge_protocol::stdio::stdout(),
    );
    let running = Echo::new().serve(pipes).await?;
    running.waiting().await?;
    Ok(())
}

/// Serves `echo` over Streamable HTTP at `/mcp` with JSON responses, without sessions or
/// (`sessions`) with one per `initialize`; prints `listening on http://ADDR/mcp` once
/// bound.
pub(crate) async fn http(bind: SocketAddr, sessions: bool) -> Result<(), Failure> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(sessions)
        .with_json_response(true);
    let service: StreamableHttpService<Echo, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(Echo::new()), Arc::default(), config);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
        });
    }
}
