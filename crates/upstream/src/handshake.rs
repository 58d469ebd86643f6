//! Opening an MCP connection: what mcp-edge says in `initialize` and `server/discover`,
//! and what it reads from the answers. Shared by every connector.

use mcp_edge_protocol::version::{
    self, Era, LATEST_SESSION, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION,
};
use mcp_edge_protocol::{RawObject, jsonrpc};
use serde_json::json;
use serde_json::value::RawValue;

use crate::ServerInfo;

/// `initialize` params: the newest session-era version and the client capabilities
/// mcp-edge can relay to its clients.
pub fn initialize_params() -> Box<RawValue> {
    jsonrpc::raw(&json!({
        "protocolVersion": LATEST_SESSION,
        "capabilities": { "roots": { "listChanged": true }, "sampling": {}, "elicitation": {} },
        "clientInfo": { "name": "mcp-edge", "version": env!("CARGO_PKG_VERSION") },
    }))
}

/// `server/discover` params (2026-07-28).
pub fn discover_params() -> Box<RawValue> {
    jsonrpc::raw(&json!({
        "_meta": {
            META_PROTOCOL_VERSION: version::V2026_07_28,
            META_CLIENT_CAPABILITIES: {},
        }
    }))
}

/// What a session-era tool server said in its `initialize` result.
pub fn session_info(result: &RawValue) -> Result<ServerInfo, String> {
    let object = RawObject::parse(result.get())
        .map_err(|e| format!("initialize result is not an object: {e}"))?;
    let version = object.get_str("protocolVersion").unwrap_or_default();
    if version::era(&version) != Some(Era::Session) {
        return Err(format!(
            "the tool server answered initialize with protocol version `{version}`, which mcp-edge does not speak (it speaks {})",
            version::supported().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(ServerInfo {
        protocol_version: version,
        era: Era::Session,
        capabilities: object
            .get("capabilities")
            .map_or_else(jsonrpc::empty_object, |v| v.to_owned()),
        server_info: object
            .get("serverInfo")
            .map_or_else(jsonrpc::empty_object, |v| v.to_owned()),
        instructions: object.get_str("instructions"),
    })
}

/// What a stateless (2026-07-28) tool server said in its `server/discover` result.
pub fn stateless_info(result: &RawValue) -> Result<ServerInfo, String> {
    let object = RawObject::parse(result.get())
        .map_err(|e| format!("server/discover result is not an object: {e}"))?;
    let supported: Vec<String> = object
        .get("supportedVersions")
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .unwrap_or_default();
    let Some(version) = supported
        .iter()
        .find(|v| version::era(v) == Some(Era::Stateless))
    else {
        return Err(format!(
            "the tool server supports {supported:?}, none of which mcp-edge speaks"
        ));
    };
    let server_info = object
        .get("_meta")
        .and_then(|m| RawObject::parse(m.get()).ok())
        .and_then(|m| {
            m.get("io.modelcontextprotocol/serverInfo")
                .map(|v| v.to_owned())
        })
        .or_else(|| object.get("serverInfo").map(|v| v.to_owned()))
        .unwrap_or_else(jsonrpc::empty_object);
    Ok(ServerInfo {
        protocol_version: version.clone(),
        era: Era::Stateless,
        capabilities: object
            .get("capabilities")
            .map_or_else(jsonrpc::empty_object, |v| v.to_owned()),
        server_info,
        instructions: object.get_str("instructions"),
    })
}
