//! The MCP wire, as a gateway needs it.
//!
//! - [`jsonrpc`]: envelopes parsed only as far as routing needs; bodies stay raw.
//! - [`object`]: edit one key of a JSON object, copy the rest byte for byte.
//! - [`version`]: protocol versions, the session and stateless eras, negotiation.
//! - [`ndjson`]: stdio framing with a size limit.
//! - [`sse`]: the event-stream parser and writer.
//! - [`stdio`]: this process's stdin and stdout, through the reactor when they are pipes.
//! - [`mcp`]: method names and the parameters routing reads.
//!
//! ```
//! use mcp_edge_protocol::jsonrpc::{Kind, Message};
//!
//! let m = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#).unwrap();
//! assert_eq!(m.kind(), Kind::Request);
//! assert_eq!(mcp_edge_protocol::mcp::routing_name(m.method(), m.params.as_deref()).as_deref(), Some("echo"));
//! ```

pub mod jsonrpc;
pub mod mcp;
pub mod ndjson;
pub mod object;
pub mod sse;
pub mod stdio;
pub mod version;

pub use jsonrpc::{Id, Kind, Message, ParseError};
pub use object::RawObject;
