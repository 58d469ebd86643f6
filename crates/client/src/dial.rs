//! Every outbound connection mcp-edge opens: TCP, then TLS with rustls, done here so
//! that mcp-edge keeps what the server presented (for certificate-expiry tracking)
//! and can say exactly why a connection or a handshake failed.
//!
//! [`Dialer`] is the hyper connector of the Streamable HTTP client and of the legacy
//! SSE link; [`connect_error`] turns what a request's failure chain says into the
//! [`UpstreamError`] the route reports.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, HttpConnector};
use hyper_util::rt::TokioIo;
use mcp_edge_tls::TlsFailure;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use mcp_edge_call::UpstreamError;

/// What a TLS handshake showed: the chain the server presented and what was agreed.
#[derive(Debug, Clone)]
pub struct PeerTls {
    /// The name verified.
    pub server_name: String,
    /// Leaf first.
    pub chain: Arc<Vec<CertificateDer<'static>>>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
}

/// Called once per new TLS connection (certificate tracking hangs here).
pub type OnHandshake = Arc<dyn Fn(&PeerTls) + Send + Sync>;

impl PeerTls {
    /// What a finished client handshake showed.
    pub fn of(server_name: String, session: &rustls::ClientConnection) -> PeerTls {
        PeerTls {
            server_name,
            chain: Arc::new(
                session
                    .peer_certificates()
                    .map(<[_]>::to_vec)
                    .unwrap_or_default(),
            ),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP (or DNS) failed.
    Tcp(String),
    /// The TLS handshake failed.
    Tls {
        /// The name verified.
        server_name: String,
        /// Why, classified.
        failure: TlsFailure,
    },
    /// The host is not a valid TLS server name.
    ServerName(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(why) => f.write_str(why),
            ConnectError::Tls {
                server_name,
                failure,
            } => write!(f, "TLS with {server_name}: {failure}"),
            ConnectError::ServerName(name) => write!(f, "`{name}` is not a valid TLS server name"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Plain TCP, or TLS with what the handshake showed.
#[derive(Clone)]
pub struct Dialer {
    tcp: HttpConnector,
    tls: Option<Arc<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
    on_handshake: Option<OnHandshake>,
}

impl Dialer {
    /// A dialer: `tls` (with the name to verify, when it is not the URL's host) for
    /// `https`, `on_handshake` told what each server presented, TCP connects bounded
    /// by `connect_timeout`.
    pub fn new(
        tls: Option<Arc<ClientConfig>>,
        server_name: Option<ServerName<'static>>,
        on_handshake: Option<OnHandshake>,
        connect_timeout: std::time::Duration,
    ) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        Dialer {
            tcp,
            tls,
            server_name,
            on_handshake,
        }
    }
}

/// A connection a [`Dialer`] opened.
pub enum Stream {
    /// Plain TCP.
    Plain(TokioIo<TcpStream>),
    /// TLS over TCP; `true` when the server chose HTTP/2 by ALPN.
    Tls(
        Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>,
        bool,
    ),
}

impl Stream {
    /// Whether the server chose HTTP/2 (over TLS, with ALPN).
    pub fn is_h2(&self) -> bool {
        matches!(self, Stream::Tls(_, true))
    }
}

impl tower_service::Service<Uri> for Dialer {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.tcp, cx)
            .map_err(|e| ConnectError::Tcp(e.to_string()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.to_string());
        let tls = self.tls.clone();
        let name = self.server_name.clone();
        let on_handshake = self.on_handshake.clone();
        let connecting = tower_service::Service::<Uri>::call(&mut self.tcp, uri);
        Box::pin(async move {
            let tcp = connecting
                .await
                .map_err(|e| ConnectError::Tcp(tcp_reason(&authority, &e)))?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let Some(tls) = tls else {
                return Err(ConnectError::Tcp(
                    "https:// without a TLS configuration".into(),
                ));
            };
            let (stream, peer) =
                handshake(tcp.into_inner(), tls, name, &host, on_handshake.as_ref()).await?;
            let h2 = peer.alpn.as_deref() == Some(b"h2");
            Ok(Stream::Tls(Box::new(TokioIo::new(stream)), h2))
        })
    }
}

/// The TLS handshake over `tcp`, verifying `name` (or else `host`); what the server
/// presented goes to `on_handshake`.
pub async fn handshake(
    tcp: TcpStream,
    tls: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
    host: &str,
    on_handshake: Option<&OnHandshake>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, PeerTls), ConnectError> {
    let name = match name {
        Some(name) => name,
        None => ServerName::try_from(host.to_owned())
            .map_err(|_| ConnectError::ServerName(host.to_owned()))?,
    };
    let shown = name.to_str().into_owned();
    let stream = TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectError::Tls {
            server_name: shown.clone(),
            failure: TlsFailure::find(&e).unwrap_or_else(|| TlsFailure::Other(e.to_string())),
        })?;
    let peer = PeerTls::of(shown, stream.get_ref().1);
    if let Some(hook) = on_handshake {
        hook(&peer);
    }
    Ok((stream, peer))
}

/// Where [`connect`] goes over TLS.
#[derive(Clone)]
pub struct TlsTarget {
    /// The client configuration (roots, client certificate, ALPN).
    pub config: Arc<ClientConfig>,
    /// The name to verify, when it is not the host's.
    pub name: Option<ServerName<'static>>,
    /// Told what the server presented.
    pub on_handshake: Option<OnHandshake>,
}

/// A connection [`connect`] opened.
pub enum Connection {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A TCP connection to `host:port` within `timeout`, then TLS when `tls` says so: for
/// what does not go through a [`Dialer`] (WebSocket links, `mcp-edge certs inspect`).
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&TlsTarget>,
    timeout: std::time::Duration,
) -> Result<Connection, ConnectError> {
    let authority = format!("{host}:{port}");
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| {
            ConnectError::Tcp(format!(
                "cannot connect to {authority}: no answer within {}s",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| ConnectError::Tcp(tcp_reason(&authority, &e)))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Connection::Plain(tcp));
    };
    let (stream, _) = handshake(
        tcp,
        tls.config.clone(),
        tls.name.clone(),
        host,
        tls.on_handshake.as_ref(),
    )
    .await?;
    Ok(Connection::Tls(Box::new(stream)))
}

/// "connection refused", "dns error" and the like, with where.
fn tcp_reason(authority: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        cause = e.to_string();
        current = e.source();
    }
    format!("cannot connect to {authority}: {cause}")
}

impl hyper_util::client::legacy::connect::Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(s, h2) => {
                let connected = s.inner().get_ref().0.connected();
                if *h2 {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s, _) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s, _) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s, _) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s, _) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// What a request's failure means for the route: a connect or TLS failure (nothing
/// reached the tool server), or an interrupted exchange (something may have).
pub fn connect_error(error: &(dyn std::error::Error + 'static), tls: bool) -> UpstreamError {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Tls { .. } => UpstreamError::Tls(connect.to_string()),
                _ => UpstreamError::Unavailable {
                    reason: connect.to_string(),
                    retry_in: None,
                },
            };
        }
        current = e.source();
    }
    let failure = if tls {
        TlsFailure::find_on_tls(error)
    } else {
        None
    };
    if let Some(failure) = failure {
        return UpstreamError::Tls(failure.to_string());
    }
    // Say everything the chain says: "client error (SendRequest)" alone helps nobody.
    let mut reason = format!("the request failed: {error}");
    let mut current = std::error::Error::source(error);
    while let Some(e) = current {
        reason.push_str(&format!(": {e}"));
        current = e.source();
    }
    // Not a connect failure: the request may have been (partly) written.
    UpstreamError::Interrupted(reason)
}

/// A request failure in words (TLS failures classified).
pub fn describe_error(error: &(dyn std::error::Error + 'static), tls: bool) -> String {
    connect_error(error, tls).to_string()
}
