//! Rewriting a request's `_meta` on its way upstream, shared by every connector.
//!
//! Many client sessions share one upstream connection, so their progress tokens may
//! collide: each call's token is replaced by its upstream id (unique per connection)
//! and the caller's own token restored on the notifications that come back. A
//! stateless-era upstream also needs the protocol version and client capabilities in
//! every request's `_meta`.

use mcp_edge_protocol::RawObject;
use mcp_edge_protocol::jsonrpc;
use mcp_edge_protocol::version::{META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, V2026_07_28};
use serde_json::value::RawValue;

/// The params to send, and the caller's progress token if it gave one.
pub(crate) fn prepare(
    params: Option<Box<RawValue>>,
    upstream_id: i64,
    stateless: bool,
) -> (Option<Box<RawValue>>, Option<Box<RawValue>>) {
    let has_meta = params
        .as_ref()
        .is_some_and(|p| p.get().contains("\"_meta\""));
    if !stateless && !has_meta {
        return (params, None);
    }
    if !has_meta {
        // The common stateless case: only the era's `_meta` to add, spliced in front
        // of the members as they are, with no parse and no re-serialization.
        let text = params.as_ref().map_or("{}", |p| p.get()).trim_start();
        if let Some(members) = text.strip_prefix('{') {
            let members = members.trim_start();
            let comma = if members.starts_with('}') { "" } else { "," };
            let spliced = format!(
                "{{\"_meta\":{{\"{META_PROTOCOL_VERSION}\":\"{V2026_07_28}\",\"{META_CLIENT_CAPABILITIES}\":{{}}}}{comma}{members}"
            );
            if let Ok(raw) = RawValue::from_string(spliced) {
                return (Some(raw), None);
            }
        }
    }
    let text = params.as_ref().map_or("{}", |p| p.get());
    let Ok(mut object) = RawObject::parse(text) else {
        return (params, None);
    };
    let mut meta = object
        .get("_meta")
        .and_then(|m| RawObject::parse(m.get()).ok())
        .unwrap_or_default();
    let token = meta.get("progressToken").map(RawValue::to_owned);
    if token.is_some() {
        meta.set_value("progressToken", &upstream_id);
    }
    if stateless {
        if meta.get(META_PROTOCOL_VERSION).is_none() {
            meta.set_value(META_PROTOCOL_VERSION, V2026_07_28);
        }
        if meta.get(META_CLIENT_CAPABILITIES).is_none() {
            meta.set(META_CLIENT_CAPABILITIES, jsonrpc::empty_object());
        }
    }
    object.set("_meta", meta.to_raw());
    (Some(object.to_raw()), token)
}

/// Puts the caller's token back on a progress notification's params.
pub(crate) fn restore_token(params: &RawValue, token: Box<RawValue>) -> Option<Box<RawValue>> {
    let mut object = RawObject::parse(params.get()).ok()?;
    object.set("progressToken", token);
    Some(object.to_raw())
}

/// The upstream id a progress notification names (its `progressToken`).
pub(crate) fn progress_id(params: &RawValue) -> Option<i64> {
    let object = RawObject::parse(params.get()).ok()?;
    match serde_json::from_str::<mcp_edge_protocol::Id>(object.get("progressToken")?.get()).ok()? {
        mcp_edge_protocol::Id::Num(n) => Some(n),
        mcp_edge_protocol::Id::Str(s) => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn raw(text: &str) -> Option<Box<RawValue>> {
        Some(RawValue::from_string(text.to_owned()).unwrap())
    }

    fn value(params: &Option<Box<RawValue>>) -> serde_json::Value {
        serde_json::from_str(params.as_ref().unwrap().get()).unwrap()
    }

    #[test]
    fn stateless_params_get_the_era_meta_and_keep_their_members() {
        for text in [
            r#"{"name":"echo","arguments":{"message":"{hi}"}}"#,
            r#" { "name" : "echo" } "#,
        ] {
            let (params, token) = prepare(raw(text), 7, true);
            assert!(token.is_none());
            let v = value(&params);
            assert_eq!(v["name"], "echo");
            assert_eq!(v["_meta"][META_PROTOCOL_VERSION], V2026_07_28);
            assert!(v["_meta"][META_CLIENT_CAPABILITIES].is_object());
        }
        for empty in [raw("{}"), raw("{ }"), None] {
            let (params, _) = prepare(empty, 7, true);
            let v = value(&params);
            assert_eq!(v.as_object().unwrap().len(), 1);
            assert_eq!(v["_meta"][META_PROTOCOL_VERSION], V2026_07_28);
        }
    }

    #[test]
    fn a_progress_token_is_swapped_for_the_upstream_id_and_handed_back() {
        let text = r#"{"name":"echo","_meta":{"progressToken":"client-1"}}"#;
        for stateless in [false, true] {
            let (params, token) = prepare(raw(text), 42, stateless);
            assert_eq!(token.unwrap().get(), r#""client-1""#);
            let v = value(&params);
            assert_eq!(v["_meta"]["progressToken"], 42);
            assert_eq!(
                v["_meta"][META_PROTOCOL_VERSION].is_string(),
                stateless,
                "{v}"
            );
        }
    }

    #[test]
    fn session_era_params_without_meta_pass_untouched() {
        let text = r#"{"name":"echo"}"#;
        let (params, token) = prepare(raw(text), 1, false);
        assert_eq!(params.unwrap().get(), text);
        assert!(token.is_none());
    }
}
