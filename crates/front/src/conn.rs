//! What the listeners hold for clients, and the caps on it: connections (all together
//! and per client address), time (a request head, a body, an idle connection) and
//! memory (request bodies being read). A client past a cap is refused at once and the
//! clients already served are not slowed: a connection over the cap is closed as it is
//! accepted, a body over the budget is refused, a silent connection is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use mcp_edge_config::model::FrontLimits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// One listener's guards.
#[derive(Debug)]
pub struct Front {
    /// The limits in force.
    pub limits: FrontLimits,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    buffered: AtomicUsize,
    /// Connections closed at accept because a cap was reached.
    pub refused_connections: AtomicU64,
    /// Connections closed for sending nothing in time (head, body or idle).
    pub timed_out: AtomicU64,
    /// Request bodies refused because the buffering budget was spent.
    pub refused_bodies: AtomicU64,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `max_connections` are open.
    Listener,
    /// `max_connections_per_client` are open from this address.
    Client,
}

impl Front {
    /// Guards with these limits.
    pub fn new(limits: FrontLimits) -> Arc<Front> {
        Arc::new(Front {
            limits,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            buffered: AtomicUsize::new(0),
            refused_connections: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            refused_bodies: AtomicU64::new(0),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Bytes of request bodies being read now.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip`, or says which cap it hit. The permit gives its
    /// place back when dropped, however the connection ends.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Full> {
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            self.refused_connections.fetch_add(1, Ordering::Relaxed);
            return Err(Full::Listener);
        }
        let count = per_client.entry(ip).or_insert(0);
        if *count >= self.limits.max_connections_per_client {
            self.refused_connections.fetch_add(1, Ordering::Relaxed);
            return Err(Full::Client);
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnPermit {
            front: self.clone(),
            ip,
        })
    }

    /// Reads a request body of at most `max` bytes within `body_timeout`, counting it
    /// against the listener's buffering budget while it is read.
    pub async fn read_body(&self, body: Incoming, max: usize) -> Result<Bytes, BodyError> {
        let mut taken = BudgetTaken {
            front: self,
            bytes: 0,
        };
        if usize::try_from(hyper::body::Body::size_hint(&body).lower()).unwrap_or(usize::MAX) > max
        {
            return Err(BodyError::TooLarge);
        }
        let read = async {
            let mut body = body;
            let mut out = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if out.len() + data.len() > max {
                    return Err(BodyError::TooLarge);
                }
                taken.take(data.len())?;
                out.extend_from_slice(&data);
            }
            Ok(out.freeze())
        };
        match tokio::time::timeout(self.limits.body_timeout, read).await {
            Ok(result) => result,
            Err(_) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(BodyError::TimedOut(self.limits.body_timeout))
            }
        }
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than `max_message_bytes`.
    TooLarge,
    /// Not whole within `body_timeout`.
    TimedOut(Duration),
    /// The listener's budget for bodies being read is spent.
    Budget(usize),
    /// The connection broke.
    Broken(String),
}

/// Bytes of one body counted against the budget; given back when dropped.
struct BudgetTaken<'a> {
    front: &'a Front,
    bytes: usize,
}

impl BudgetTaken<'_> {
    fn take(&mut self, n: usize) -> Result<(), BodyError> {
        let max = self.front.limits.max_buffered_bytes;
        let before = self.front.buffered.fetch_add(n, Ordering::Relaxed);
        if before + n > max {
            self.front.buffered.fetch_sub(n, Ordering::Relaxed);
            self.front.refused_bodies.fetch_add(1, Ordering::Relaxed);
            return Err(BodyError::Budget(max));
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for BudgetTaken<'_> {
    fn drop(&mut self) {
        self.front.buffered.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A connection's place under the caps.
#[derive(Debug)]
pub struct ConnPermit {
    front: Arc<Front>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut per_client = self
            .front
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_client.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.ip);
            }
        }
        self.front.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a connection last received bytes, in milliseconds since it opened (0: never).
#[derive(Debug)]
struct LastRead {
    opened: Instant,
    at_ms: AtomicU64,
}

/// A stream that notes when it last received bytes, for the idle timeout.
struct Watched<T> {
    inner: T,
    last: Arc<LastRead>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.last.opened.elapsed().as_millis().max(1);
            self.last
                .at_ms
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one client connection (HTTP/1.1 with upgrades to WebSocket, or HTTP/2) under
/// the listener's limits, until it ends or shutdown asks it to finish what it has in
/// flight and close:
/// - a request head must arrive within `header_timeout` (hyper's own timer, HTTP/1.1;
///   it also bounds how long a keep-alive connection waits for its next request);
/// - a connection that has sent nothing within `header_timeout` of opening, or nothing
///   for `idle_timeout` since, is asked to close (calls in flight finish first);
/// - HTTP/2: at most `max_streams_per_connection` requests in flight, header lists of
///   at most 64 KiB, and resets answered by closing a connection that floods them.
pub async fn serve_connection<T, S, B>(
    stream: T,
    service: S,
    front: &Front,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &front.limits;
    let last = Arc::new(LastRead {
        opened: Instant::now(),
        at_ms: AtomicU64::new(0),
    });
    let io = TokioIo::new(Watched {
        inner: stream,
        last: last.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(256 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(Some(32))
        .max_local_error_reset_streams(Some(256));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let check_every =
        (limits.header_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(250));
    let mut watchdog = tokio::time::interval(check_every);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    let ended = loop {
        tokio::select! {
            ended = connection.as_mut() => break ended,
            _ = watchdog.tick(), if !closing => {
                let at = last.at_ms.load(Ordering::Relaxed);
                let age = last.opened.elapsed();
                let silent = if at == 0 {
                    age > limits.header_timeout
                } else {
                    age.saturating_sub(Duration::from_millis(at)) > limits.idle_timeout
                };
                if silent {
                    front.timed_out.fetch_add(1, Ordering::Relaxed);
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = stopped(&mut stop), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!("connection ended: {e}");
    }
}

/// Resolves when shutdown says stop; never when the sender goes without saying so.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_connections_and_give_them_back() {
        let front = Front::new(FrontLimits {
            max_connections: 3,
            max_connections_per_client: 2,
            ..FrontLimits::default()
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let b: IpAddr = IpAddr::from([127, 0, 0, 2]);
        let first = front.admit(a);
        let second = front.admit(a);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(front.admit(a).err(), Some(Full::Client));
        let third = front.admit(b);
        assert!(third.is_ok());
        assert_eq!(front.admit(b).err(), Some(Full::Listener));
        drop(first);
        assert!(front.admit(b).is_ok(), "a place given back is free again");
        assert_eq!(front.refused_connections.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_body_budget_is_given_back_however_a_read_ends() {
        let front = Front::new(FrontLimits {
            max_buffered_bytes: 100,
            ..FrontLimits::default()
        });
        {
            let mut one = BudgetTaken {
                front: &front,
                bytes: 0,
            };
            assert!(one.take(60).is_ok());
            let mut two = BudgetTaken {
                front: &front,
                bytes: 0,
            };
            assert!(matches!(two.take(60), Err(BodyError::Budget(100))));
            assert!(two.take(40).is_ok());
            assert_eq!(front.buffered(), 100);
        }
        assert_eq!(front.buffered(), 0);
    }
}
