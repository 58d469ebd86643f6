//! Any text as routes.toml: loading, validating and classifying never panic, and every
//! refusal is placed in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_edge_config::Source;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source::new("routes.toml", text);
    let (config, diagnostics) = mcp_edge_config::parse_partial(&source);
    for diagnostic in &diagnostics {
        let _ = source.locate(diagnostic).to_string();
    }
    if let Some(config) = config {
        let (_, more) = mcp_edge_router::plan(&config);
        for diagnostic in &more {
            let _ = source.locate(diagnostic).to_string();
        }
    }
});
