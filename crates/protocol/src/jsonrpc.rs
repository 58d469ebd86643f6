//! JSON-RPC 2.0 envelopes, parsed only as far as routing needs.
//!
//! A gateway forwards most bytes untouched: [`Message::parse`] reads `jsonrpc`, `id`
//! and `method`, and keeps `params`, `result` and `error` as raw JSON ([`RawValue`]) so
//! they are never re-serialized on the way through.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// JSON-RPC error codes used by mcp-edge.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a valid request object (or a batch, which MCP removed in 2025-06-18).
    pub const INVALID_REQUEST: i32 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// MCP: resource not found.
    pub const RESOURCE_NOT_FOUND: i32 = -32002;
    /// MCP 2026-07-28: routing headers disagree with the body.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// MCP 2026-07-28: unsupported protocol version.
    pub const UNSUPPORTED_VERSION: i32 = -32022;
    /// mcp-edge: the route's tool server cannot be reached (not started, crashed, restarting).
    pub const UPSTREAM_UNAVAILABLE: i32 = -32001;
    /// mcp-edge: the call took longer than the route's timeout.
    pub const TIMEOUT: i32 = -32003;
    /// mcp-edge: too many calls in flight on the route.
    pub const BUSY: i32 = -32004;
    /// mcp-edge: the session is unknown or ended.
    pub const SESSION_NOT_FOUND: i32 = -32005;
    /// mcp-edge: the principal may not use this route.
    pub const FORBIDDEN: i32 = -32006;
    /// mcp-edge: the tool server broke the protocol.
    pub const UPSTREAM_PROTOCOL: i32 = -32007;
    /// mcp-edge: over the route's or the client's rate limit (`data.retry_after_ms`).
    pub const RATE_LIMITED: i32 = -32008;
    /// mcp-edge: the route's circuit breaker is open (`data.state`, `data.retry_after_ms`).
    pub const CIRCUIT_OPEN: i32 = -32009;
}

/// A request id: a string or an integer, never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Num(i64),
    /// A string id.
    Str(Arc<str>),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Num(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Str(s.into())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Num(n) => serializer.serialize_i64(*n),
            Id::Str(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or integer id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id::Num(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(Id::Num)
                    .map_err(|_| E::custom("integer id out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::Str(v.into()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// What kind of message an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `id` and `method`: expects a response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result`.
    Result,
    /// Has `error` (and `id`, null only when the request could not be read).
    Error,
}

/// A JSON-RPC message with its bodies kept raw.
#[derive(Debug, Clone)]
pub struct Message {
    /// The id, for requests and responses.
    pub id: Option<Id>,
    /// The method, for requests and notifications.
    pub method: Option<Box<str>>,
    /// Request or notification parameters, raw.
    pub params: Option<Box<RawValue>>,
    /// A success response's result, raw.
    pub result: Option<Box<RawValue>>,
    /// An error response's error object, raw.
    pub error: Option<Box<RawValue>>,
}

/// Why bytes are not a usable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (-32700).
    NotJson(String),
    /// A JSON array: batches were removed from MCP in 2025-06-18 (-32600).
    Batch,
    /// JSON, but not a JSON-RPC 2.0 message (-32600). Carries the id when it could be read.
    Invalid {
        /// The id, if the message had a usable one.
        id: Option<Id>,
        /// What is wrong.
        why: String,
    },
}

impl ParseError {
    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i32 {
        match self {
            ParseError::NotJson(_) => code::PARSE_ERROR,
            ParseError::Batch | ParseError::Invalid { .. } => code::INVALID_REQUEST,
        }
    }

    /// The id to answer with, if one could be read.
    pub fn id(&self) -> Option<&Id> {
        match self {
            ParseError::Invalid { id, .. } => id.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(why) => write!(f, "parse error: {why}"),
            ParseError::Batch => f.write_str(
                "batches are not supported: MCP removed JSON-RPC batching in 2025-06-18; send one message per request",
            ),
            ParseError::Invalid { why, .. } => write!(f, "invalid request: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Every field is captured raw when present, `null` included (a plain `Option` would
/// turn `"id": null` into "no id" and a request into a notification).
/// The envelope's small members are borrowed from the input, not copied: only the
/// members forwarded as they are (params, result, error) get allocations of their own.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "present_borrowed")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_borrowed")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present_borrowed")]
    method: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

fn present_borrowed<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

impl Message {
    /// Parses one message. Batches and anything that is not JSON-RPC 2.0 are refused.
    // Long: one pass over a message's members, each malformation refused where it is
    // found (fuzzed: fuzz/fuzz_targets/envelope.rs)
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'[') => {
                // Only call it a batch if it is valid JSON; otherwise it is a parse error.
                return match serde_json::from_slice::<de::IgnoredAny>(bytes) {
                    Ok(_) => Err(ParseError::Batch),
                    Err(e) => Err(ParseError::NotJson(e.to_string())),
                };
            }
            Some(b'{') => {}
            Some(_) => {
                return match serde_json::from_slice::<de::IgnoredAny>(bytes) {
                    Ok(_) => Err(invalid(None, "a message must be a JSON object")),
                    Err(e) => Err(ParseError::NotJson(e.to_string())),
                };
            }
            None => return Err(ParseError::NotJson("empty body".into())),
        }
        let wire: Wire<'_> = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ParseError::NotJson(e.to_string())
            } else {
                invalid(None, &e.to_string())
            }
        })?;
        let id = match &wire.id {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => Some(
                serde_json::from_str::<Id>(raw.get())
                    .map_err(|_| invalid(None, "id must be a string or an integer"))?,
            ),
        };
        let id_was_null = wire.id.as_ref().is_some_and(|raw| raw.get() == "null");
        match wire.jsonrpc.map(RawValue::get) {
            Some("\"2.0\"") => {}
            _ => return Err(invalid(id, "\"jsonrpc\" must be \"2.0\"")),
        }
        let method = match &wire.method {
            None => None,
            // A name without escapes is copied once, straight from the input.
            Some(raw) => Some(match serde_json::from_str::<&str>(raw.get()) {
                Ok(name) => Box::from(name),
                Err(_) => serde_json::from_str::<String>(raw.get())
                    .map_err(|_| invalid(id.clone(), "method must be a string"))?
                    .into_boxed_str(),
            }),
        };
        let message = Message {
            id,
            method,
            // `"params": null` means no parameters.
            params: wire.params.filter(|p| p.get() != "null"),
            result: wire.result,
            error: wire.error,
        };
        match (
            &message.method,
            &message.id,
            &message.result,
            &message.error,
        ) {
            (Some(_), _, None, None) if id_was_null => Err(invalid(None, "id must not be null")),
            (Some(_), _, None, None) => {
                if let Some(params) = &message.params
                    && !matches!(params.get().as_bytes().first(), Some(b'{' | b'['))
                {
                    return Err(invalid(message.id, "params must be an object"));
                }
                Ok(message)
            }
            (None, Some(_), Some(_), None) | (None, _, None, Some(_)) => Ok(message),
            (Some(_), ..) => Err(invalid(
                message.id,
                "a message has a method or a result/error, not both",
            )),
            (None, None, Some(_), None) => Err(invalid(None, "a result needs an id")),
            (None, _, Some(_), Some(_)) => Err(invalid(
                message.id,
                "a response has a result or an error, not both",
            )),
            (None, _, None, None) => Err(invalid(
                message.id,
                "a message needs a method, a result or an error",
            )),
        }
    }

    /// What kind of message this is.
    pub fn kind(&self) -> Kind {
        match (&self.method, &self.id, &self.error) {
            (Some(_), Some(_), _) => Kind::Request,
            (Some(_), None, _) => Kind::Notification,
            (None, _, Some(_)) => Kind::Error,
            (None, _, None) => Kind::Result,
        }
    }

    /// The method, or `""`.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or_default()
    }

    /// Serializes the message compactly, bodies as they came.
    pub fn to_bytes(&self) -> Vec<u8> {
        write(&Parts {
            id: self.id.as_ref(),
            method: self.method.as_deref(),
            params: self.params.as_deref(),
            result: self.result.as_deref(),
            error: self.error.as_deref(),
        })
    }
}

/// A message's members, borrowed: what [`write`] puts on the wire.
struct Parts<'a> {
    id: Option<&'a Id>,
    method: Option<&'a str>,
    params: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
}

/// Writes a message compactly, bodies copied once as they came, straight into one buffer
/// of the right size (no intermediate owned message, no serializer over the bodies).
fn write(parts: &Parts<'_>) -> Vec<u8> {
    let bodies = [
        (&b",\"params\":"[..], parts.params),
        (&b",\"result\":"[..], parts.result),
        (&b",\"error\":"[..], parts.error),
    ];
    let size = 48
        + parts.method.map_or(0, str::len)
        + bodies
            .iter()
            .filter_map(|(_, body)| body.map(|b| b.get().len() + 10))
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\"");
    // Writing into a Vec cannot fail, nor can serializing an id or a string.
    if let Some(id) = parts.id {
        out.extend_from_slice(b",\"id\":");
        let _ = serde_json::to_writer(&mut out, id);
    }
    if let Some(method) = parts.method {
        out.extend_from_slice(b",\"method\":");
        let _ = serde_json::to_writer(&mut out, method);
    }
    for (key, body) in bodies {
        if let Some(body) = body {
            out.extend_from_slice(key);
            out.extend_from_slice(body.get().as_bytes());
        }
    }
    if parts.error.is_some() && parts.id.is_none() {
        // An error to an unreadable request carries `"id": null`.
        out.extend_from_slice(b",\"id\":null");
    }
    out.push(b'}');
    compact_newlines(&mut out);
    out
}

fn invalid(id: Option<Id>, why: &str) -> ParseError {
    ParseError::Invalid {
        id,
        why: why.to_owned(),
    }
}

/// Replaces raw CR and LF bytes with spaces. In valid JSON they can only be whitespace
/// (inside strings they must be escaped), so this makes any message safe for
/// newline-delimited framing without parsing it again.
pub fn compact_newlines(bytes: &mut [u8]) {
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &bytes[at..]) {
        bytes[at + found] = b' ';
        at += found + 1;
    }
}

/// A request.
pub fn request(id: &Id, method: &str, params: Option<&RawValue>) -> Vec<u8> {
    write(&Parts {
        id: Some(id),
        method: Some(method),
        params,
        result: None,
        error: None,
    })
}

/// A notification.
pub fn notification(method: &str, params: Option<&RawValue>) -> Vec<u8> {
    write(&Parts {
        id: None,
        method: Some(method),
        params,
        result: None,
        error: None,
    })
}

/// A success response.
pub fn result(id: &Id, result: &RawValue) -> Vec<u8> {
    write(&Parts {
        id: Some(id),
        method: None,
        params: None,
        result: Some(result),
        error: None,
    })
}

/// An error response carrying an error object as it came (an upstream's, say).
pub fn error_response(id: &Id, error: &RawValue) -> Vec<u8> {
    write(&Parts {
        id: Some(id),
        method: None,
        params: None,
        result: None,
        error: Some(error),
    })
}

/// An error object: `{"code":…,"message":…,"data":…}`.
pub fn error_object(code: i32, message: &str, data: Option<&serde_json::Value>) -> Box<RawValue> {
    #[derive(Serialize)]
    struct ErrorObject<'a> {
        code: i32,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a serde_json::Value>,
    }
    raw(&ErrorObject {
        code,
        message,
        data,
    })
}

/// An error response. `id` is `None` only when the request's id could not be read.
pub fn error(
    id: Option<&Id>,
    code: i32,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Vec<u8> {
    write(&Parts {
        id,
        method: None,
        params: None,
        result: None,
        error: Some(&error_object(code, message, data)),
    })
}

/// Serializes a value into a [`RawValue`].
pub fn raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_object())
}

/// `{}`.
pub fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable_raw())
}

fn unreachable_raw() -> Box<RawValue> {
    // `{}` is valid JSON; this path exists only to avoid a panic branch.
    serde_json::value::to_raw_value(&serde_json::Value::Null).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse(s.as_bytes())
    }

    #[test]
    fn a_method_name_with_escapes_is_unescaped_and_a_bad_one_refused() {
        let m = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#).unwrap();
        assert_eq!(m.method(), "tools/call");
        let m = parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert_eq!(m.method(), "ping");
        let e = parse(r#"{"jsonrpc":"2.0","id":1,"method":7}"#).unwrap_err();
        assert_eq!(e.to_string(), "invalid request: method must be a string");
        let e = parse(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid request: id must be a string or an integer"
        );
    }

    #[test]
    fn ids_are_integers_or_strings_and_nothing_else() {
        let id = |raw: &str| {
            parse(&format!(
                r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#
            ))
            .map(|m| m.id)
        };
        assert_eq!(id("7").unwrap(), Some(Id::Num(7)));
        assert_eq!(id("-7").unwrap(), Some(Id::Num(-7)));
        assert_eq!(id("9223372036854775807").unwrap(), Some(Id::Num(i64::MAX)));
        assert_eq!(id(r#""a-1""#).unwrap(), Some(Id::Str("a-1".into())));
        assert_eq!(id(r#""""#).unwrap(), Some(Id::Str("".into())));
        // Escapes go through the parser.
        assert_eq!(id(r#""a\"b""#).unwrap(), Some(Id::Str("a\"b".into())));
        assert_eq!(id(r#""\u0041""#).unwrap(), Some(Id::Str("A".into())));
        for bad in ["9223372036854775808", "1.5", "1e3", "true", "[1]", "null"] {
            assert!(id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_each_kind_and_keeps_bodies_raw() {
        let m = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo", "arguments":{"x":[1, 2]}}}"#).unwrap();
        assert_eq!(m.kind(), Kind::Request);
        assert_eq!(m.id, Some(Id::Num(7)));
        assert_eq!(
            m.params.unwrap().get(),
            r#"{"name":"echo", "arguments":{"x":[1, 2]}}"#
        );

        let m = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind(), Kind::Notification);
        let m = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!((m.kind(), m.id), (Kind::Result, Some(Id::from("a"))));
        let m =
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert_eq!((m.kind(), m.id), (Kind::Error, None));
    }

    #[test]
    fn refuses_what_is_not_json_rpc() {
        assert!(matches!(parse("{nope"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse(""), Err(ParseError::NotJson(_))));
        assert_eq!(
            parse(r#"[{"jsonrpc":"2.0","method":"ping","id":1}]"#).unwrap_err(),
            ParseError::Batch
        );
        assert!(matches!(parse("[1,"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse("42"), Err(ParseError::Invalid { .. })));
        let e = parse(r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#).unwrap_err();
        assert_eq!(e.id(), Some(&Id::Num(3)));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":7}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1}"#),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn serializes_compactly_and_without_newlines() {
        let m = parse(
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\n  \"a\": \"b\\nc\"\n}}",
        )
        .unwrap();
        let out = String::from_utf8(m.to_bytes()).unwrap();
        assert!(!out.contains('\n'));
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{   "a": "b\nc" }}"#
        );
        let e = String::from_utf8(error(None, -32700, "parse error", None)).unwrap();
        assert_eq!(
            e,
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error"},"id":null}"#
        );
        let params = RawValue::from_string("{\"x\":\n1}".to_owned()).unwrap();
        assert_eq!(
            String::from_utf8(request(&Id::from("a\"b"), "tools/call", Some(&params))).unwrap(),
            r#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"x": 1}}"#
        );
        assert_eq!(
            String::from_utf8(result(&Id::Num(-3), &empty_object())).unwrap(),
            r#"{"jsonrpc":"2.0","id":-3,"result":{}}"#
        );
        assert_eq!(
            String::from_utf8(notification("notifications/initialized", None)).unwrap(),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        );
    }
}

#[cfg(test)]
mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same property as the `envelope` fuzz target, on stable.
        #[test]
        fn parsing_never_panics_and_round_trips(
            data in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..200),
                r#"\{"jsonrpc":"2\.0"(,"id":(1|"a"|null|1\.5))?(,"method":"[a-z/]{0,8}")?(,"params":(\{\}|\[\]|3|null))?(,"result":\{\})?(,"error":\{"code":1\})?\}"#
                    .prop_map(String::into_bytes),
            ]
        ) {
            if let Ok(message) = Message::parse(&data) {
                let again = Message::parse(&message.to_bytes()).expect("re-serialized message parses");
                prop_assert_eq!(again.kind(), message.kind());
                prop_assert_eq!(again.id, message.id);
                prop_assert_eq!(again.method, message.method);
            }
        }
    }
}
