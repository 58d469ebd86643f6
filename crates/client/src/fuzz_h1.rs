//! Feeds arbitrary bytes to mcp-edge's own HTTP/1.1 response parser as a tool server's
//! answer, over a loopback connection: heads, 1xx heads, `Content-Length`, chunked
//! bodies with extensions and trailers, close-delimited bodies. Whatever comes, the
//! parser answers (a response or an error) and never panics or loops.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::dial::Stream;
use crate::h1::Conn;

/// One exchange whose answer is `answer`.
pub fn response(answer: &[u8]) {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let Some(runtime) = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
    else {
        return;
    };
    let answer = answer.to_vec();
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let server = tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(&answer).await;
            // A reset, not a FIN: no TIME_WAIT piles up over a fuzzing run.
            #[expect(deprecated, reason = "a zero linger resets at once: it never blocks")]
            let _ = socket.set_linger(Some(Duration::ZERO));
        });
        let exchange = async {
            let tcp = TcpStream::connect(addr).await.ok()?;
            let mut conn = Conn::new(Stream::Plain(TokioIo::new(tcp)));
            let request = Request::post("http://127.0.0.1/mcp")
                .header("host", "127.0.0.1")
                .body(Bytes::from_static(b"{}"))
                .ok()?;
            conn.send(&request).await.ok()?;
            conn.response(&Method::POST).await.ok()?;
            // The body, frame by frame, bounded however it is framed.
            for _ in 0..100_000 {
                match std::future::poll_fn(|cx| conn.poll_data(cx)).await {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            Some(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), exchange).await;
        server.abort();
    });
}
