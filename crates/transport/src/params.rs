//! Rewriting a request's `_meta` on its way upstream, shared by every connector.
//!
//! Many client sessions share one upstream connection, so their progress tokens may
//! collide: each call's token is replaced by its upstream id (unique per connection)
//! and the caller's own token restored on the notifications that come back. A
//! stateless-era upstream also needs the protocol version and client capabilities in
//! every request's `_meta`.

use mcp_edge_protocol::jsonrpc;
use mcp_edge_protocol::version::{META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, V2026_07_28};
use mcp_edge_protocol::{Id, RawObject};
use serde_json::value::RawValue;

/// The request to send upstream as bytes, its params rewritten for the upstream, and
/// the caller's progress token if it gave one.
pub(crate) fn request(
    upstream_id: i64,
    method: &str,
    params: Option<&RawValue>,
    stateless: bool,
) -> (Vec<u8>, Option<Box<RawValue>>) {
    let id = Id::Num(upstream_id);
    let has_meta = params.is_some_and(|p| p.get().contains("\"_meta\""));
    if !stateless && !has_meta {
        return (jsonrpc::request(&id, method, params), None);
    }
    if !has_meta {
        // The common stateless case: only the era's `_meta` to add, spliced in front of
        // the members as they came, straight into the request: no parse, no
        // re-serialization, no copy of the params but the one into the body.
        let text = params.map_or("{}", RawValue::get).trim_start();
        if let Some(members) = text.strip_prefix('{') {
            let members = members.trim_start();
            let mut body = jsonrpc::request(&id, method, None);
            // `{"jsonrpc":"2.0","id":…,"method":…}`: params go before its closing brace.
            body.pop();
            let start = body.len();
            body.extend_from_slice(
                format!(
                    ",\"params\":{{\"_meta\":{{\"{META_PROTOCOL_VERSION}\":\"{V2026_07_28}\",\"{META_CLIENT_CAPABILITIES}\":{{}}}}"
                )
                .as_bytes(),
            );
            if !members.starts_with('}') {
                body.push(b',');
            }
            body.extend_from_slice(members.as_bytes());
            jsonrpc::compact_newlines(&mut body[start..]);
            body.push(b'}');
            return (body, None);
        }
    }
    let (params, token) = prepare(params, upstream_id, stateless);
    (jsonrpc::request(&id, method, params.as_deref()), token)
}

/// The params to send, and the caller's progress token if it gave one.
pub(crate) fn prepare(
    params: Option<&RawValue>,
    upstream_id: i64,
    stateless: bool,
) -> (Option<Box<RawValue>>, Option<Box<RawValue>>) {
    let text = params.map_or("{}", RawValue::get);
    let Ok(mut object) = RawObject::parse(text) else {
        return (params.map(RawValue::to_owned), None);
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
    match serde_json::from_str::<Id>(object.get("progressToken")?.get()).ok()? {
        Id::Num(n) => Some(n),
        Id::Str(s) => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The request sent for `params` (JSON text): the params as the upstream reads
    /// them, and the caller's token. The body must be one valid JSON-RPC request.
    fn sent(
        params: Option<&str>,
        id: i64,
        stateless: bool,
    ) -> (serde_json::Value, Option<Box<RawValue>>) {
        let params = params.map(|t| RawValue::from_string(t.to_owned()).unwrap());
        let (body, token) = request(id, "tools/call", params.as_deref(), stateless);
        assert!(!body.contains(&b'\n'), "one line for stdio framing");
        let message = mcp_edge_protocol::Message::parse(&body).unwrap();
        assert_eq!(message.method(), "tools/call");
        assert_eq!(message.id, Some(Id::Num(id)));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (v["params"].clone(), token)
    }

    #[test]
    fn stateless_params_get_the_era_meta_and_keep_their_members() {
        for text in [
            r#"{"name":"echo","arguments":{"message":"{hi}"}}"#,
            " { \"name\" :\n \"echo\" } ",
        ] {
            let (v, token) = sent(Some(text), 7, true);
            assert!(token.is_none());
            assert_eq!(v["name"], "echo");
            assert_eq!(v["_meta"][META_PROTOCOL_VERSION], V2026_07_28);
            assert!(v["_meta"][META_CLIENT_CAPABILITIES].is_object());
        }
        for empty in [Some("{}"), Some("{ }"), None] {
            let (v, _) = sent(empty, 7, true);
            assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
            assert_eq!(v["_meta"][META_PROTOCOL_VERSION], V2026_07_28);
        }
    }

    #[test]
    fn a_progress_token_is_swapped_for_the_upstream_id_and_handed_back() {
        let text = r#"{"name":"echo","_meta":{"progressToken":"client-1"}}"#;
        for stateless in [false, true] {
            let (v, token) = sent(Some(text), 42, stateless);
            assert_eq!(token.unwrap().get(), r#""client-1""#);
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
        let params = RawValue::from_string(text.to_owned()).unwrap();
        let (body, token) = request(1, "tools/call", Some(&params), false);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#
        );
        assert!(token.is_none());
    }
}
