//! Any text as a session id: unsealing never panics, and nothing opens that was not
//! sealed with the key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcp_edge_front::fuzzing::session_id(data);
});
