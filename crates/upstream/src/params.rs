//! Rewriting a request's `_meta` on its way upstream, shared by every connector.
//!
//! Many client sessions share one upstream connection, so their progress tokens may
//! collide: each call's token is replaced by its upstream id (unique per connection)
//! and the caller's own token restored on the notifications that come back. The
//! protocol era's hop keys (`io.modelcontextprotocol/protocolVersion`, …) belong to the hop, not to
//! the caller ([`HOP_META_KEYS`]): a stateless-era upstream gets mcp-edge's own in
//! every request, and a session-era upstream gets none, whatever the client sent (a 2026-07-28 client's
//! version in the body would contradict the session's `MCP-Protocol-Version` header).
//!
//! Params are parsed whenever they could hold `_meta` (spelled plainly or with `\u`
//! escapes); params that are not one JSON object with distinct keys are refused, never
//! forwarded as they came.

use mcp_edge_protocol::jsonrpc;
use mcp_edge_protocol::version::{
    HOP_META_KEYS, META_CLIENT_CAPABILITIES, META_PROTOCOL_VERSION, V2026_07_28,
};
use mcp_edge_protocol::{Id, RawObject};
use serde_json::value::RawValue;

use crate::UpstreamError;

/// The request to send upstream as bytes, its params rewritten for the upstream, and
/// the caller's progress token if it gave one. Params that are not a JSON object are
/// refused.
pub fn request(
    upstream_id: i64,
    method: &str,
    params: Option<&RawValue>,
    stateless: bool,
) -> Result<(Vec<u8>, Option<Box<RawValue>>), UpstreamError> {
    let id = Id::Num(upstream_id);
    // `_meta` can only be spelled `"_meta"` or with a `\u` escape: without either, the
    // params hold no `_meta` and need no parse.
    let may_have_meta = params.is_some_and(|p| {
        let text = p.get();
        text.contains("\"_meta\"") || text.contains("\\u")
    });
    if !stateless && !may_have_meta {
        return Ok((jsonrpc::request(&id, method, params), None));
    }
    if !may_have_meta {
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
            return Ok((body, None));
        }
    }
    let (params, token) = prepare(params, upstream_id, stateless)?;
    Ok((jsonrpc::request(&id, method, params.as_deref()), token))
}

/// The params to send, and the caller's progress token if it gave one.
type Prepared = (Option<Box<RawValue>>, Option<Box<RawValue>>);

/// Rewrites `params` for the upstream (see the module documentation).
fn prepare(
    params: Option<&RawValue>,
    upstream_id: i64,
    stateless: bool,
) -> Result<Prepared, UpstreamError> {
    let text = params.map_or("{}", RawValue::get);
    let mut object = RawObject::parse(text).map_err(|e| {
        UpstreamError::Refused(format!(
            "params must be one JSON object with distinct keys ({e})"
        ))
    })?;
    let mut meta = match object.get("_meta") {
        Some(meta) => RawObject::parse(meta.get()).map_err(|e| {
            UpstreamError::Refused(format!(
                "params._meta must be one JSON object with distinct keys ({e})"
            ))
        })?,
        None => RawObject::new(),
    };
    let token = meta.get("progressToken").map(RawValue::to_owned);
    if token.is_some() {
        meta.set_value("progressToken", &upstream_id);
    }
    // The caller's hop keys describe its hop to mcp-edge, not this one.
    let capabilities = meta.get(META_CLIENT_CAPABILITIES).map(RawValue::to_owned);
    for key in HOP_META_KEYS {
        meta.remove(key);
    }
    if stateless {
        meta.set_value(META_PROTOCOL_VERSION, V2026_07_28);
        // The client's capabilities say what it can answer (elicitation, sampling,
        // roots), and mcp-edge relays those requests to it: they stay.
        meta.set(
            META_CLIENT_CAPABILITIES,
            capabilities.unwrap_or_else(jsonrpc::empty_object),
        );
    }
    if meta.keys().next().is_some() {
        object.set("_meta", meta.to_raw());
    } else {
        object.remove("_meta");
    }
    Ok((Some(object.to_raw()), token))
}

/// Puts the caller's token back on a progress notification's params.
pub fn restore_token(params: &RawValue, token: Box<RawValue>) -> Option<Box<RawValue>> {
    let mut object = RawObject::parse(params.get()).ok()?;
    object.set("progressToken", token);
    Some(object.to_raw())
}

/// The upstream id a progress notification names (its `progressToken`).
pub fn progress_id(params: &RawValue) -> Option<i64> {
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
        let (body, token) = request(id, "tools/call", params.as_deref(), stateless).unwrap();
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
        let (body, token) = request(1, "tools/call", Some(&params), false).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#
        );
        assert!(token.is_none());
    }

    #[test]
    fn a_clients_reserved_meta_never_reaches_a_session_era_upstream() {
        let text = r#"{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/related-task":{"taskId":"t"},"trace":"t1"}}"#;
        let (v, _) = sent(Some(text), 3, false);
        assert_eq!(
            v["_meta"],
            serde_json::json!({"io.modelcontextprotocol/related-task": {"taskId": "t"}, "trace": "t1"}),
            "{v}"
        );
        // With nothing else in `_meta`, `_meta` goes too.
        let only =
            r#"{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#;
        let (v, _) = sent(Some(only), 3, false);
        assert_eq!(v, serde_json::json!({"name": "echo"}));
        // A stateless upstream gets mcp-edge's version and the client's capabilities.
        let (v, _) = sent(Some(text), 3, true);
        assert_eq!(v["_meta"][META_PROTOCOL_VERSION], V2026_07_28);
        assert_eq!(
            v["_meta"][META_CLIENT_CAPABILITIES]["elicitation"],
            serde_json::json!({})
        );
        assert!(
            v["_meta"]
                .get("io.modelcontextprotocol/clientInfo")
                .is_none()
        );
    }

    #[test]
    fn an_escaped_meta_key_is_found_and_its_token_remapped() {
        // `\u005f` is `_`: a JSON reader sees `_meta`, so mcp-edge must too.
        let text = r#"{"name":"echo","\u005fmeta":{"progress\u0054oken":5}}"#;
        for stateless in [false, true] {
            let (v, token) = sent(Some(text), 77, stateless);
            assert_eq!(token.unwrap().get(), "5");
            assert_eq!(v["_meta"]["progressToken"], 77, "{v}");
        }
    }

    #[test]
    fn params_that_are_not_one_object_are_refused() {
        for bad in [
            r#"[{"_meta":{"progressToken":1}}]"#,
            r#"{"_meta":{"progressToken":1},"_meta":{"progressToken":2}}"#,
            r#"{"_meta":{"progressToken":1,"progressToken":2}}"#,
            r#"{"_meta":[1]}"#,
            r#""\u0061""#,
        ] {
            let params = RawValue::from_string(bad.to_owned()).unwrap();
            for stateless in [false, true] {
                let refused = request(1, "tools/call", Some(&params), stateless);
                assert!(
                    matches!(refused, Err(UpstreamError::Refused(_))),
                    "{bad} stateless={stateless}: {refused:?}"
                );
            }
        }
    }
}
