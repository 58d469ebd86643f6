//! Any bytes as a tool server's HTTP/1.1 answer: mcp-edge's own response parser (heads,
//! 1xx, Content-Length, chunked with extensions and trailers, close-delimited) answers
//! with a response or an error, and never panics or loops.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcp_edge_client::fuzz_h1::response(data);
});
