//! `mcp-edge stdio`: mcp-edge itself as a stdio MCP server, for agents that can only
//! launch a command. It routes to the configured tool servers (with their TLS and
//! credentials) exactly as the HTTP front door does. Logs go to stderr; stdout carries
//! only MCP messages.

use std::sync::Arc;

use mcp_edge_protocol::jsonrpc;
use mcp_edge_protocol::ndjson::{self, Line, LineReader};
use mcp_edge_protocol::{Message, version};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use mcp_edge_core::Gateway;

/// Serves one client on stdin/stdout until stdin closes.
pub async fn serve(gw: Arc<Gateway>, route: Option<&str>) -> Result<(), String> {
    let scope = gw
        .scope(None, route)
        .map_err(|_| format!("no route named `{}`", route.unwrap_or_default()))?;
    let session = gw
        .sessions
        .open(
            version::LATEST_SESSION,
            scope,
            None,
            &Arc::from("stdio"),
            false,
        )
        .map_err(|_| "no session could be opened".to_owned())?;
    let (out, mut outgoing) = mpsc::channel::<Vec<u8>>(256);
    session.attach_stream(out.clone());
    let writer = tokio::spawn(async move {
        let mut stdout = mcp_edge_protocol::stdio::stdout();
        while let Some(message) = outgoing.recv().await {
            if stdout.write_all(&ndjson::frame(&message)).await.is_err() {
                break;
            }
            let _ = stdout.flush().await;
        }
    });
    let mut lines = LineReader::new(mcp_edge_protocol::stdio::stdin(), gw.max_message_bytes);
    while let Some(line) = lines
        .next()
        .await
        .map_err(|e| format!("reading stdin: {e}"))?
    {
        let bytes = match line {
            Line::Message(bytes) => bytes,
            Line::Oversized(n) => {
                let error = jsonrpc::error(
                    None,
                    jsonrpc::code::INVALID_REQUEST,
                    &format!("message of {n} bytes is larger than the limit"),
                    None,
                );
                let _ = out.send(error).await;
                continue;
            }
        };
        let message = match Message::parse(&bytes) {
            Ok(message) => message,
            Err(e) => {
                let _ = out
                    .send(jsonrpc::error(e.id(), e.code(), &e.to_string(), None))
                    .await;
                continue;
            }
        };
        gw.receive_on_stream(&session, message, out.clone()).await;
    }
    // stdin closed: let what is in flight finish (bounded) before stopping.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while session.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    gw.sessions.end(&session.id);
    drop(out);
    let _ = writer.await;
    Ok(())
}
