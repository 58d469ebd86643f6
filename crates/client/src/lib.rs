//! mcp-edge's outbound HTTP stack: how it opens connections and speaks HTTP/1.1 to
//! tool servers.
//!
//! Where it sits in a call's path: a route's connector (`mcp-edge-transport`) hands a
//! request to a [`pool::Pool`], which takes an idle HTTP/1.1 connection ([`h1`]) or
//! opens one through [`dial`] (TCP, then TLS with rustls, keeping what the server
//! presented for certificate tracking and saying why a handshake failed). HTTP/2 and
//! the legacy SSE link use hyper's client over the same [`dial::Dialer`].
//!
//! The HTTP/1.1 client is mcp-edge's own because it pays (`docs/PERFORMANCE.md`:
//! about 9 k fewer instructions per call than hyper's dispatcher), and because it reads
//! bytes from tool servers across untrusted boundaries it is fuzzed (`fuzz/`,
//! target `h1_response`, through [`fuzz_h1`]).

pub mod dial;
#[doc(hidden)]
pub mod fuzz_h1;
pub mod h1;
pub mod pool;
