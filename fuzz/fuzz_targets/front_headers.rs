//! Any bytes as Host, Origin and Accept values: the front door's checks never panic and
//! answer the same each time.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcp_edge_front::fuzzing::front_headers(data);
});
