//! Connections to one tool server, pooled; an HTTP/1.1 connection is used by the call
//! that holds it, not by a task of its own.
//!
//! hyper-util's pooled client gives every connection a task, and for HTTP/1 spawns one
//! more task per request to put the connection back once it is free: two wake-ups and
//! a task per call. Here a call takes an idle connection ([`crate::h1::Conn`]), writes
//! its request and reads the response head itself, in its own task; the response body
//! reads the rest and puts the connection back in the pool when it ends. A body
//! dropped before its end closes the connection (what was left unread cannot be
//! reused).
//!
//! HTTP/2 (offered over TLS with ALPN) multiplexes every call on one connection, so
//! that connection keeps a task of its own and is shared.
//!
//! Idle connections are reused most recent first (its socket is the warmest), at most
//! `max_idle` are kept, and one idle for longer than `idle_timeout` is closed when next
//! seen. A pooled connection the server closed is found out at checkout; one that
//! fails while the request is being written is replaced with a new one and the
//! request sent there. The server never had the whole request (its length says so),
//! so this is safe for any method. A failure after the request was written is the
//! caller's to judge: the tool server may have acted on it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::dial::{ConnectError, Dialer};
use crate::h1::Conn;

type H2Sender = http2::SendRequest<Full<Bytes>>;

/// A failed exchange, as a response body reports it.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request got no response.
#[derive(Debug)]
pub enum PoolError {
    /// No connection could be made: nothing was sent.
    Connect(ConnectError),
    /// The exchange failed on an open connection: the request may have been sent.
    Http(BodyError),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Connect(e) => e.fmt(f),
            PoolError::Http(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Connect(e) => Some(e),
            // Its text is already this error's: the chain goes on below it.
            PoolError::Http(e) => e.source(),
        }
    }
}

struct Idle {
    connection: Box<Conn>,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    h2: Option<H2Sender>,
}

/// The connections of one route to its tool server.
pub struct Pool {
    connector: Dialer,
    uri: Uri,
    /// `Host` for HTTP/1.1 requests: the URL's authority, its port only when it is not
    /// the scheme's default.
    host: Option<HeaderValue>,
    max_idle: usize,
    idle_timeout: Duration,
    state: Mutex<State>,
}

/// A connection to use. An HTTP/1.1 connection (its buffers above all) is boxed once,
/// so handing it from the pool to a call, to its response body and back moves a
/// pointer.
enum Checkout {
    H1(Box<Conn>),
    H2(H2Sender),
}

impl Pool {
    /// A pool of connections to `uri`'s server, opened with `connector`, keeping at
    /// most `max_idle` idle ones for `idle_timeout` each.
    pub fn new(connector: Dialer, uri: Uri, max_idle: usize, idle_timeout: Duration) -> Arc<Pool> {
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let host = uri.host().and_then(|host| {
            let text = match uri.port_u16() {
                Some(port) if port != default_port => format!("{host}:{port}"),
                _ => host.to_owned(),
            };
            HeaderValue::from_str(&text).ok()
        });
        Arc::new(Pool {
            connector,
            uri,
            host,
            max_idle,
            idle_timeout,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one request to the tool server; its response streams its body through
    /// the connection it came on.
    pub async fn request(
        self: &Arc<Self>,
        mut request: Request<Bytes>,
    ) -> Result<Response<PoolBody>, PoolError> {
        let (mut h1, mut reused) = match self.checkout() {
            Some(Checkout::H2(sender)) => return h2(sender, request).await,
            Some(Checkout::H1(h1)) => (h1, true),
            // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is rare, and its
            // state would otherwise be carried by every request's future.
            None => match Box::pin(self.connect()).await? {
                Checkout::H2(sender) => return h2(sender, request).await,
                Checkout::H1(h1) => (h1, false),
            },
        };
        if let Some(host) = &self.host
            && !request.headers().contains_key(HOST)
        {
            request.headers_mut().insert(HOST, host.clone());
        }
        loop {
            match h1.send(&request).await {
                Ok(()) => break,
                // A pooled connection the server closed: no whole request reached it.
                // A new connection.
                Err(_) if reused => {
                    h1 = match Box::pin(self.connect()).await? {
                        Checkout::H2(sender) => return h2(sender, request).await,
                        Checkout::H1(h1) => h1,
                    };
                    reused = false;
                }
                Err(e) => return Err(PoolError::Http(Box::new(e))),
            }
        }
        let head = h1
            .response(request.method())
            .await
            .map_err(|e| PoolError::Http(Box::new(e)))?;
        let pool = Arc::downgrade(self);
        Ok(head.map(|()| PoolBody::owned(h1, pool)))
    }

    /// An idle connection that can take a request now, or the shared HTTP/2 one.
    fn checkout(&self) -> Option<Checkout> {
        let mut state = self.state();
        if let Some(h2) = &state.h2 {
            if h2.is_ready() {
                return Some(Checkout::H2(h2.clone()));
            }
            state.h2 = None;
        }
        let now = Instant::now();
        while let Some(mut idle) = state.idle.pop() {
            if now.saturating_duration_since(idle.since) < self.idle_timeout
                && idle.connection.usable()
            {
                return Some(Checkout::H1(idle.connection));
            }
        }
        None
    }

    /// Puts a connection back after its response ended.
    fn checkin(&self, mut connection: Box<Conn>) {
        if !connection.usable() {
            return;
        }
        connection.shrink();
        let mut state = self.state();
        if state.idle.len() < self.max_idle {
            state.idle.push(Idle {
                connection,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Checkout, PoolError> {
        let mut connector = self.connector.clone();
        let stream = tower_service::Service::call(&mut connector, self.uri.clone())
            .await
            .map_err(PoolError::Connect)?;
        if stream.is_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(stream)
                .await
                .map_err(|e| PoolError::Http(Box::new(e)))?;
            tokio::spawn(connection);
            self.state().h2 = Some(sender.clone());
            return Ok(Checkout::H2(sender));
        }
        Ok(Checkout::H1(Box::new(Conn::new(stream))))
    }

    /// How many idle connections are kept (for tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.state().idle.len()
    }
}

/// Sends a request over the shared HTTP/2 connection (which takes the whole URL, as
/// `:scheme`, `:authority` and `:path`).
async fn h2(
    mut sender: H2Sender,
    request: Request<Bytes>,
) -> Result<Response<PoolBody>, PoolError> {
    let response = sender.send_request(request.map(Full::new)).await;
    response
        .map(|r| r.map(PoolBody::shared))
        .map_err(|e| PoolError::Http(Box::new(e)))
}

/// Reads a whole response body, at most `max` bytes within `within`: what an answer
/// that is not a tool server's result may cost (an alert receiver's, an admin
/// listener's, a legacy message endpoint's acknowledgement). A body over `max`, or one
/// that trickles past `within`, is an error and the connection is not reused.
pub async fn read_bounded(body: PoolBody, max: usize, within: Duration) -> Result<Bytes, String> {
    use http_body_util::BodyExt as _;
    match tokio::time::timeout(within, http_body_util::Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(format!("the body broke or passed {max} bytes: {e}")),
        Err(_) => Err(format!(
            "the body did not end within {}ms",
            within.as_millis()
        )),
    }
}

/// A response body from the pool. Over HTTP/1.1 it reads its connection, and hands
/// the connection back to the pool at its end.
pub struct PoolBody {
    from: From,
    pool: Weak<Pool>,
}

enum From {
    /// An HTTP/2 stream.
    Shared(Incoming),
    /// The HTTP/1.1 connection it comes on; `None` once handed back or broken.
    Owned(Option<Box<Conn>>),
}

impl PoolBody {
    fn shared(body: Incoming) -> PoolBody {
        PoolBody {
            from: From::Shared(body),
            pool: Weak::new(),
        }
    }

    fn owned(connection: Box<Conn>, pool: Weak<Pool>) -> PoolBody {
        let mut body = PoolBody {
            from: From::Owned(Some(connection)),
            pool,
        };
        body.release_if_done();
        body
    }

    /// A body read off `connection`, with no pool to hand it back to.
    #[cfg(test)]
    pub fn for_test(connection: Box<Conn>) -> PoolBody {
        PoolBody::owned(connection, Weak::new())
    }

    /// Hands the connection back once the body has been read to its end.
    fn release_if_done(&mut self) {
        let From::Owned(slot) = &mut self.from else {
            return;
        };
        if !slot.as_ref().is_some_and(|c| c.body_done()) {
            return;
        }
        if let (Some(connection), Some(pool)) = (slot.take(), self.pool.upgrade())
            && connection.reusable()
        {
            pool.checkin(connection);
        }
    }
}

impl Body for PoolBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let connection = match &mut this.from {
            From::Shared(body) => {
                return Pin::new(body)
                    .poll_frame(cx)
                    .map_err(|e| Box::new(e) as BodyError);
            }
            From::Owned(None) => return Poll::Ready(None),
            From::Owned(Some(connection)) => connection,
        };
        let polled = ready!(connection.poll_data(cx));
        let frame = match polled {
            Some(Ok(data)) => Some(Ok(Frame::data(data))),
            None => None,
            Some(Err(e)) => {
                this.from = From::Owned(None);
                return Poll::Ready(Some(Err(Box::new(e))));
            }
        };
        this.release_if_done();
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.from {
            From::Shared(body) => body.is_end_stream(),
            From::Owned(None) => true,
            From::Owned(Some(connection)) => connection.body_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.from {
            From::Shared(body) => body.size_hint(),
            From::Owned(Some(connection)) => connection.size_hint(),
            From::Owned(None) => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP/1.1 server that answers every request with `hello`, closing
    /// each connection after `per_connection` answers (saying so in the last one, or
    /// with `silently` not); counts connections.
    async fn server_closing(per_connection: usize, silently: bool) -> (Uri, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut answered = 0;
                    let mut chunk = [0u8; 4096];
                    while answered < per_connection {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        // Requests here have no body: each ends at a blank line.
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            buffer.drain(..end + 4);
                            answered += 1;
                            let last = answered == per_connection && !silently;
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n{}\r\nhello",
                                if last { "connection: close\r\n" } else { "" }
                            );
                            if socket.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/mcp").parse().expect("uri"), accepted)
    }

    async fn server(per_connection: usize) -> (Uri, Arc<AtomicUsize>) {
        server_closing(per_connection, false).await
    }

    fn pool(uri: Uri) -> Arc<Pool> {
        let connector = Dialer::new(None, None, None, Duration::from_secs(2));
        Pool::new(connector, uri, 4, Duration::from_secs(90))
    }

    async fn get(pool: &Arc<Pool>, uri: &Uri) -> Result<Bytes, PoolError> {
        let request = Request::get(uri.clone())
            .header("host", "127.0.0.1")
            .body(Bytes::new())
            .expect("request");
        let response = pool.request(request).await?;
        Ok(response
            .into_body()
            .collect()
            .await
            .map_err(PoolError::Http)?
            .to_bytes())
    }

    #[tokio::test]
    async fn reuses_one_connection_for_calls_one_after_another() {
        let (uri, accepted) = server(usize::MAX).await;
        let pool = pool(uri.clone());
        for _ in 0..20 {
            assert_eq!(get(&pool, &uri).await.expect("answer"), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn concurrent_calls_open_more_connections_and_keep_at_most_max_idle() {
        let (uri, accepted) = server(usize::MAX).await;
        let pool = pool(uri.clone());
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (pool, uri) = (pool.clone(), uri.clone());
                tokio::spawn(async move { get(&pool, &uri).await.expect("answer") })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.expect("task"), "hello");
        }
        assert!(accepted.load(Ordering::SeqCst) >= 2);
        assert!(pool.idle() <= 4, "{} idle", pool.idle());
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_not_failed() {
        // Every connection serves two answers and then closes.
        let (uri, accepted) = server(2).await;
        let pool = pool(uri.clone());
        for _ in 0..10 {
            assert_eq!(get(&pool, &uri).await.expect("answer"), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_hung_up_is_not_used() {
        // Two answers per connection, then a close without `Connection: close`.
        let (uri, accepted) = server_closing(2, true).await;
        let pool = pool(uri.clone());
        for _ in 0..6 {
            assert_eq!(get(&pool, &uri).await.expect("answer"), "hello");
            // Time for the server's FIN to arrive: found at checkout, not by a call.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_return_its_connection() {
        let (uri, accepted) = server(usize::MAX).await;
        let pool = pool(uri.clone());
        let request = Request::get(uri.clone())
            .header("host", "127.0.0.1")
            .body(Bytes::new())
            .expect("request");
        let response = pool.request(request).await.expect("response");
        drop(response);
        assert_eq!(pool.idle(), 0);
        assert_eq!(get(&pool, &uri).await.expect("answer"), "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let uri: Uri = format!("http://{}/mcp", listener.local_addr().expect("addr"))
            .parse()
            .expect("uri");
        drop(listener);
        let pool = pool(uri.clone());
        assert!(matches!(get(&pool, &uri).await, Err(PoolError::Connect(_))));
    }

    /// A server that answers one request with `head` and `body`, then keeps the
    /// connection open without a word more.
    async fn server_answering(head: &'static str, body: Vec<u8>) -> Uri {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut chunk = [0u8; 4096];
            let _ = socket.read(&mut chunk).await;
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        format!("http://{addr}/").parse().expect("uri")
    }

    async fn answer(uri: &Uri) -> PoolBody {
        let pool = Pool::new(
            Dialer::new(None, None, None, Duration::from_secs(2)),
            uri.clone(),
            1,
            Duration::from_secs(90),
        );
        let request = Request::get(uri.clone())
            .body(Bytes::new())
            .expect("request");
        pool.request(request).await.expect("answer").into_body()
    }

    #[tokio::test]
    async fn a_bounded_read_stops_at_its_size_and_its_time() {
        let whole = server_answering(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            b"hello".to_vec(),
        )
        .await;
        let body = read_bounded(answer(&whole).await, 100, Duration::from_secs(5)).await;
        assert_eq!(body.as_deref(), Ok(&b"hello"[..]));

        let huge = server_answering(
            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",
            vec![b'x'; 100_000],
        )
        .await;
        let body = read_bounded(answer(&huge).await, 1_000, Duration::from_secs(5)).await;
        assert!(
            body.as_ref().is_err_and(|e| e.contains("1000 bytes")),
            "{body:?}"
        );

        let endless = server_answering(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",
            b"tri".to_vec(),
        )
        .await;
        let started = Instant::now();
        let body = read_bounded(
            answer(&endless).await,
            10_000_000,
            Duration::from_millis(300),
        )
        .await;
        assert!(
            body.as_ref().is_err_and(|e| e.contains("did not end")),
            "{body:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
