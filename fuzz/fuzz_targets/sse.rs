//! Any bytes in any chunking: the SSE parser never panics and never grows past its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_edge_protocol::sse::Parser;

fuzz_target!(|input: (u8, &[u8])| {
    let (chunk, data) = input;
    let mut parser = Parser::new(4096);
    for piece in data.chunks(usize::from(chunk).max(1)) {
        let _ = parser.feed(piece);
    }
});
