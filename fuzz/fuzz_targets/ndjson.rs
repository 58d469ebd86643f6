//! Any bytes: line framing never panics, and every line it returns is within the limit
//! and free of newlines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_edge_protocol::ndjson::{Line, LineReader};

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let mut reader = LineReader::new(data, 64);
        while let Ok(Some(line)) = reader.next().await {
            if let Line::Message(bytes) = line {
                assert!(bytes.len() <= 64 && !bytes.contains(&b'\n'));
            }
        }
    });
});
