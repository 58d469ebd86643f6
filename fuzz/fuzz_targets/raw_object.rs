//! Any text: RawObject never panics, and what it reads it writes back with the same keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_edge_protocol::RawObject;

fuzz_target!(|data: &str| {
    if let Ok(object) = RawObject::parse(data) {
        let raw = object.to_raw();
        let again = RawObject::parse(raw.get()).expect("written object parses");
        assert!(again.keys().eq(object.keys()));
    }
});
