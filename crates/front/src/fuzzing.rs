//! Entry points for the fuzz targets under `fuzz/` (not an API): the parsers of what
//! clients send before anything else is checked.

use http::HeaderMap;
use http::header::{ACCEPT, HOST, ORIGIN};

use mcp_edge_core::seal::Sealer;

/// `Host`, `Origin` and `Accept` values read from arbitrary bytes (split on NUL): the
/// checks never panic, and their answers do not depend on how often they are asked.
pub fn front_headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for (i, part) in data.split(|b| *b == 0).enumerate().take(8) {
        let Ok(value) = http::HeaderValue::from_bytes(part) else {
            continue;
        };
        let name = match i % 3 {
            0 => HOST,
            1 => ORIGIN,
            _ => ACCEPT,
        };
        headers.append(name, value);
    }
    let allowed = vec!["https://console.example.com".to_owned()];
    let host = crate::http::loopback_host(&headers);
    let origin = crate::http::origin_allowed(&allowed, &headers);
    let accept = crate::http::accepts_all(&headers, &["application/json", "text/event-stream"]);
    assert_eq!(host, crate::http::loopback_host(&headers));
    assert_eq!(origin, crate::http::origin_allowed(&allowed, &headers));
    assert_eq!(
        accept,
        crate::http::accepts_all(&headers, &["application/json", "text/event-stream"])
    );
}

/// A session id from arbitrary text: opening it never panics, and nothing but an id
/// this sealer made opens.
pub fn session_id(data: &[u8]) {
    static SEALER: std::sync::OnceLock<Option<Sealer>> = std::sync::OnceLock::new();
    let Some(sealer) = SEALER
        .get_or_init(|| {
            Sealer::new(&["00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"]).ok()
        })
        .as_ref()
    else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    if let Ok(claims) = sealer.open(&text, Some("agent")) {
        // Forging one is what AES-GCM makes infeasible: a fuzzer that finds one has
        // found a bug.
        panic!("an id nobody sealed opened: {claims:?}");
    }
    let _ = sealer.open(&text, None);
}
