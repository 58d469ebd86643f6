//! Any bytes: parsing never panics, and what parses re-serializes to bytes that parse
//! to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_edge_protocol::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let again = Message::parse(&message.to_bytes()).expect("re-serialized message parses");
        assert_eq!(again.kind(), message.kind());
        assert_eq!(again.id, message.id);
        assert_eq!(again.method, message.method);
    }
});
