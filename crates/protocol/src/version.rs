//! MCP protocol versions and the two eras they belong to.
//!
//! The session era (2024-11-05 … 2025-11-25) opens with `initialize` and keeps state in a
//! session; the stateless era (2026-07-28) carries the version in every request's
//! `_meta` and has no sessions. mcp-edge speaks both, on both sides, and negotiates each
//! side independently.

/// The legacy HTTP+SSE era.
pub const V2024_11_05: &str = "2024-11-05";
/// Streamable HTTP arrives.
pub const V2025_03_26: &str = "2025-03-26";
/// Batching removed; `MCP-Protocol-Version` header.
pub const V2025_06_18: &str = "2025-06-18";
/// The last session-era version.
pub const V2025_11_25: &str = "2025-11-25";
/// The stateless era.
pub const V2026_07_28: &str = "2026-07-28";

/// Session-era versions mcp-edge speaks, newest first.
pub const SESSION_VERSIONS: &[&str] = &[V2025_11_25, V2025_06_18, V2025_03_26, V2024_11_05];
/// Stateless-era versions mcp-edge speaks, newest first.
pub const STATELESS_VERSIONS: &[&str] = &[V2026_07_28];
/// The newest session-era version: what mcp-edge offers in `initialize`.
pub const LATEST_SESSION: &str = V2025_11_25;
/// What a server assumes when a session-era request names no version (spec: 2025-03-26).
pub const DEFAULT_NEGOTIATED: &str = V2025_03_26;

/// The `_meta` key that carries the protocol version in the stateless era.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key that carries the client's capabilities in the stateless era.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key that carries the client's info in the stateless era.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// The `_meta` key that carries the server's info in the stateless era.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The reserved `_meta` keys that describe one hop (who speaks, which version, what it
/// can do). A gateway is an end of each hop: it never passes these on from the other
/// side, while other reserved keys (a related task, say) travel with the message.
pub const HOP_META_KEYS: &[&str] = &[
    META_PROTOCOL_VERSION,
    META_CLIENT_INFO,
    META_CLIENT_CAPABILITIES,
    META_SERVER_INFO,
    "io.modelcontextprotocol/serverCapabilities",
];

/// Which era a version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// `initialize`, sessions, GET streams.
    Session,
    /// Version in `_meta`, no sessions.
    Stateless,
}

/// The era of a known version; `None` for a version mcp-edge does not speak.
pub fn era(version: &str) -> Option<Era> {
    if SESSION_VERSIONS.contains(&version) {
        Some(Era::Session)
    } else if STATELESS_VERSIONS.contains(&version) {
        Some(Era::Stateless)
    } else {
        None
    }
}

/// The version to answer an `initialize` with: the client's if supported, else the
/// newest session-era version (the client then decides whether it can use it).
pub fn negotiate(requested: &str) -> &'static str {
    SESSION_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LATEST_SESSION)
}

/// Every version mcp-edge speaks, newest first.
pub fn supported() -> impl Iterator<Item = &'static str> {
    STATELESS_VERSIONS.iter().chain(SESSION_VERSIONS).copied()
}

/// The `&'static` spelling of a known version.
pub fn known(version: &str) -> Option<&'static str> {
    supported().find(|v| *v == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_known_versions_and_offers_the_newest_otherwise() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), "2024-11-05");
        assert_eq!(negotiate("1999-01-01"), LATEST_SESSION);
        assert_eq!(negotiate("2026-07-28"), LATEST_SESSION);
        assert_eq!(era("2026-07-28"), Some(Era::Stateless));
        assert_eq!(era("2025-11-25"), Some(Era::Session));
        assert_eq!(era("2030-01-01"), None);
    }
}
