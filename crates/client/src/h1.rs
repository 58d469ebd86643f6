//! One HTTP/1.1 client connection, written for the one way mcp-edge uses it: a request
//! at a time, its head and body in one write, the response head parsed with
//! `httparse` (as hyper does), the body read straight out of the connection's buffer.
//!
//! hyper's client connection is a general dispatcher: a channel from the request
//! handle to the connection, a state machine per direction, its own buffers and
//! header encoding. At one call in flight per connection none of that is needed, and
//! on mcp-edge's hot path it cost about 17k instructions a call (callgrind); this
//! costs a few thousand. HTTP/2 (over TLS) stays with hyper.
//!
//! What it takes: `Content-Length`, `chunked` and close-delimited bodies, no body for
//! `HEAD`, 204 and 304, informational (1xx) responses skipped, `Connection: close`
//! and HTTP/1.0 honoured (the connection is then not reused), heads up to
//! [`MAX_HEAD`] with up to [`MAX_HEADERS`] fields.

use std::future::Future;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dial::Stream;

/// The longest response head taken.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response head may have.
pub const MAX_HEADERS: usize = 100;
/// Informational (1xx) heads skipped before a response's own, at most.
const MAX_INFORMATIONAL: usize = 16;

/// What the buffer holds of a response head.
enum Head {
    /// Not all of it yet.
    Partial,
    /// A 1xx head, consumed: the response's own comes after it.
    Informational,
    /// The response's head.
    Final(Response<()>),
}

/// How much the read buffer grows by when it is nearly full: at first, and again
/// whenever reads come back small.
const READ_CHUNK: usize = 8 * 1024;
/// The most it grows by at once, for a large body read in few system calls.
const MAX_READ_CHUNK: usize = 512 * 1024;
/// The most buffer room an idle connection keeps, for reading and for writing.
const IDLE_BUFFER: usize = 32 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing the connection failed.
    Io(io::Error),
    /// The server closed the connection before the response (or its body) ended.
    Closed,
    /// The response is not HTTP/1.x as it must be.
    Invalid(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "connection error: {e}"),
            Error::Closed => f.write_str("the connection closed before the message completed"),
            Error::Invalid(what) => write!(f, "invalid HTTP response: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// `chunked`, in this state.
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
    /// Read to its end.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// This much of the chunk's data is left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// Past the last chunk: trailer fields, up to a blank line (this many bytes of
    /// them so far, at most [`MAX_HEAD`]).
    Trailers(usize),
}

/// An open connection, between exchanges or in one.
pub struct Conn {
    io: TokioIo<Stream>,
    /// Bytes read and not yet taken.
    buf: BytesMut,
    /// The request being written: head, then (small) body.
    out: Vec<u8>,
    framing: Framing,
    /// Whether the connection can take another request once this body is read.
    keep_alive: bool,
    /// How much room the next read is given: doubled after a read that filled it.
    read_chunk: usize,
    /// Whether a read was given more than [`READ_CHUNK`] since the connection was
    /// last idle (the buffer's allocation may be that large, shared or not).
    grown: bool,
}

impl Conn {
    /// An idle connection over `stream`.
    pub fn new(stream: Stream) -> Conn {
        Conn {
            io: TokioIo::new(stream),
            buf: BytesMut::new(),
            out: Vec::new(),
            framing: Framing::Done,
            keep_alive: true,
            read_chunk: READ_CHUNK,
            grown: false,
        }
    }

    /// Writes `request`: its method, path and query, headers and body (with its
    /// `Content-Length`). On an error nothing of the exchange can be trusted, but the
    /// server has no whole request either.
    pub async fn send(&mut self, request: &Request<Bytes>) -> Result<(), Error> {
        let sent = self.write_request(request).await;
        self.keep_alive &= sent.is_ok();
        sent
    }

    /// Reads the head of the response to the request just sent; its body follows
    /// through [`Conn::poll_data`].
    pub async fn response(&mut self, method: &Method) -> Result<Response<()>, Error> {
        let head = self.read_head(method == Method::HEAD).await;
        self.keep_alive &= head.is_ok();
        head
    }

    /// Whether an idle connection can take a request: the server has not closed it
    /// (nor sent anything unasked).
    pub fn usable(&mut self) -> bool {
        if !self.keep_alive || self.framing != Framing::Done || !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut read_buf = tokio::io::ReadBuf::new(&mut probe);
        matches!(
            tokio::io::AsyncRead::poll_read(Pin::new(&mut self.io), &mut cx, &mut read_buf),
            Poll::Pending
        )
    }

    /// Lets go of buffers a large exchange grew (an idle connection keeps at most
    /// [`IDLE_BUFFER`] of each), so the pool's idle connections stay small.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() && (self.grown || self.buf.capacity() > IDLE_BUFFER) {
            self.buf = BytesMut::new();
        }
        if self.out.capacity() > IDLE_BUFFER {
            self.out = Vec::new();
        }
        self.read_chunk = READ_CHUNK;
        self.grown = false;
    }

    /// Whether the whole body has been read and the connection can be used again.
    pub fn reusable(&self) -> bool {
        self.framing == Framing::Done && self.keep_alive
    }

    /// What is known of the length of the body left.
    pub fn size_hint(&self) -> hyper::body::SizeHint {
        match self.framing {
            Framing::Length(left) => hyper::body::SizeHint::with_exact(left),
            Framing::Done => hyper::body::SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::UntilClose => hyper::body::SizeHint::default(),
        }
    }

    /// Whether the body has been read to its end.
    pub fn body_done(&self) -> bool {
        self.framing == Framing::Done
    }

    async fn write_request(&mut self, request: &Request<Bytes>) -> Result<(), Error> {
        let body = request.body();
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(request.method().as_str().as_bytes());
        out.push(b' ');
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let method = request.method();
        if !body.is_empty()
            || !(method == Method::GET || method == Method::HEAD || method == Method::DELETE)
        {
            // Writing to a Vec cannot fail.
            let _ = write!(out, "content-length: {}\r\n", body.len());
        }
        out.extend_from_slice(b"\r\n");
        // Head and a small body go out in one write; a large body after its head.
        if body.len() <= 16 * 1024 {
            out.extend_from_slice(body);
            self.io.write_all(&self.out).await.map_err(Error::Io)?;
        } else {
            self.io.write_all(&self.out).await.map_err(Error::Io)?;
            self.io.write_all(body).await.map_err(Error::Io)?;
        }
        self.io.flush().await.map_err(Error::Io)
    }

    async fn read_head(&mut self, head_request: bool) -> Result<Response<()>, Error> {
        let mut informational = 0;
        loop {
            if !self.buf.is_empty() {
                match self.parse_head(head_request)? {
                    Head::Final(response) => return Ok(response),
                    Head::Informational => {
                        // Skipped in a loop, not by recursion, and only so many: a
                        // server sending 1xx heads forever gets an error, not a stack.
                        informational += 1;
                        if informational > MAX_INFORMATIONAL {
                            return Err(Error::Invalid(format!(
                                "more than {MAX_INFORMATIONAL} informational (1xx) responses before the answer"
                            )));
                        }
                        continue;
                    }
                    Head::Partial => {}
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(Error::Invalid(format!(
                        "the response head is longer than {MAX_HEAD} bytes"
                    )));
                }
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    /// Reads more into the buffer: how much (0 at the end of the stream).
    async fn fill(&mut self) -> Result<usize, Error> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(self.read_chunk);
            self.grown |= self.read_chunk > READ_CHUNK;
        }
        let room = self.buf.capacity() - self.buf.len();
        let read = self.io.read_buf(&mut self.buf).await.map_err(Error::Io)?;
        mcp_edge_busy_poll::progress();
        self.read_chunk = if read == room {
            (self.read_chunk * 2).min(MAX_READ_CHUNK)
        } else if read < self.read_chunk / 4 {
            (self.read_chunk / 2).max(READ_CHUNK)
        } else {
            self.read_chunk
        };
        Ok(read)
    }

    /// The response head, when the buffer holds all of it; an informational head is
    /// consumed and reported as such.
    fn parse_head(&mut self, head_request: bool) -> Result<Head, Error> {
        // Uninitialised: the parser writes only the fields it finds.
        let mut fields =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len =
            match config.parse_response_with_uninit_headers(&mut parsed, &self.buf, &mut fields) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(Head::Partial),
                Err(e) => return Err(Error::Invalid(e.to_string())),
            };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code)
            .map_err(|_| Error::Invalid(format!("status code {code}")))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(Error::Invalid("101 Switching Protocols, unasked".into()));
            }
            self.buf.advance(len);
            return Ok(Head::Informational);
        }
        let version = if parsed.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Header values share the head's bytes (one allocation, no copies): where
        // each starts in it, found while the parse still borrows the buffer.
        let base = self.buf.as_ptr() as usize;
        let mut fields = Vec::with_capacity(parsed.headers.len());
        for field in parsed.headers.iter() {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| Error::Invalid(format!("header name {:?}", field.name)))?;
            let start = field.value.as_ptr() as usize - base;
            fields.push((name, start..start + field.value.len()));
        }
        let head = self.buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(fields.len());
        for (name, at) in fields {
            let value = HeaderValue::from_maybe_shared(head.slice(at))
                .map_err(|_| Error::Invalid(format!("the value of {name}")))?;
            headers.append(name, value);
        }
        // A message with both Transfer-Encoding and Content-Length is suspect (RFC
        // 9112, 6.3): the encoding frames it, and the connection is not reused.
        self.keep_alive = keep_alive(version, &headers)
            && !(headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH));
        self.framing = framing(status, head_request, &headers)?;
        if self.framing == Framing::UntilClose {
            self.keep_alive = false;
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        Ok(Head::Final(response))
    }

    /// The next piece of the body; `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            match self.take_data() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if self.framing == Framing::Done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let read = {
                let fill = self.fill();
                let fill = std::pin::pin!(fill);
                ready!(fill.poll(cx))
            };
            match read {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(Error::Closed)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    /// Body bytes out of the buffer, moving the framing on; `None` when more must be
    /// read first (or the body has ended).
    fn take_data(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.framing {
                Framing::Done => return Ok(None),
                Framing::UntilClose => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Length(left) => {
                    let Some((data, left)) = self.up_to(left) else {
                        return Ok(None);
                    };
                    self.framing = if left == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left)
                    };
                    return Ok(Some(data));
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = self.line()? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&line)?;
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let Some((data, left)) = self.up_to(left) else {
                        return Ok(None);
                    };
                    self.framing = Framing::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Some(data));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    let Some(line) = self.line()? else {
                        return Ok(None);
                    };
                    if !line.is_empty() {
                        return Err(Error::Invalid("no CRLF after a chunk".into()));
                    }
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailers(seen)) => {
                    let Some(line) = self.line()? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.framing = Framing::Done;
                        return Ok(None);
                    }
                    let seen = seen + line.len() + 2;
                    if seen > MAX_HEAD {
                        return Err(Error::Invalid(format!(
                            "the trailer fields are longer than {MAX_HEAD} bytes"
                        )));
                    }
                    self.framing = Framing::Chunked(Chunk::Trailers(seen));
                }
            }
        }
    }

    /// Up to `left` buffered bytes, and how many are left after them; `None` when
    /// nothing is buffered.
    fn up_to(&mut self, left: u64) -> Option<(Bytes, u64)> {
        if self.buf.is_empty() {
            return None;
        }
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        Some((self.buf.split_to(n).freeze(), left - n as u64))
    }

    /// One CRLF-terminated line out of the buffer, without its CRLF.
    fn line(&mut self) -> Result<Option<Bytes>, Error> {
        match memchr::memchr(b'\n', &self.buf) {
            Some(end) => {
                let mut line = self.buf.split_to(end + 1).freeze();
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                Ok(Some(line))
            }
            None if self.buf.len() > 4096 => Err(Error::Invalid("a chunk line is too long".into())),
            None => Ok(None),
        }
    }
}

/// Whether the connection stays open after this response.
fn keep_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    match version {
        Version::HTTP_10 => says("keep-alive"),
        _ => !says("close"),
    }
}

/// How the body of a response with this status and these headers is delimited.
fn framing(status: StatusCode, head_request: bool, headers: &HeaderMap) -> Result<Framing, Error> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Done);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        let chunked_last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked_last {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        });
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| Error::Invalid("Content-Length is not a number".into()))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Invalid("conflicting Content-Length values".into()));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Done,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// A chunk-size line's size (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(Error::Invalid(
            "a chunk size is missing or too large".into(),
        ));
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .ok_or_else(|| Error::Invalid("a chunk size is not hexadecimal".into()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A loopback server that reads one request head and answers with `pieces`, one
    /// write each, a moment apart (so a reader sees them split); then closes when
    /// `close`. Returns the connection, the request it read arriving on `seen`.
    async fn exchange_with(
        pieces: &'static [&'static [u8]],
        close: bool,
    ) -> (Conn, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut chunk).await.expect("read");
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
            }
            for piece in pieces {
                socket.write_all(piece).await.expect("write");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !close {
                // Hold the connection open until the client is done.
                let _ = socket.read(&mut chunk).await;
            }
            request
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        (Conn::new(Stream::Plain(TokioIo::new(tcp))), server)
    }

    fn post(body: &'static str) -> Request<Bytes> {
        Request::post("http://127.0.0.1/mcp?x=1")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Bytes::from_static(body.as_bytes()))
            .expect("request")
    }

    /// Sends `request`, reads the response and all of its body.
    async fn run(
        conn: &mut Conn,
        request: &Request<Bytes>,
    ) -> Result<(Response<()>, Vec<u8>), Error> {
        conn.send(request).await?;
        let head = conn.response(request.method()).await?;
        let mut body = Vec::new();
        while let Some(data) = std::future::poll_fn(|cx| conn.poll_data(cx)).await {
            body.extend_from_slice(&data?);
        }
        Ok((head, body))
    }

    #[tokio::test]
    async fn writes_the_request_line_headers_and_body_in_one_piece() {
        let (mut conn, server) =
            exchange_with(&[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"], false).await;
        let (head, body) = run(&mut conn, &post(r#"{"a":1}"#)).await.expect("exchange");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(body, b"{}");
        assert!(conn.reusable());
        drop(conn);
        let request = String::from_utf8(server.await.expect("server")).expect("text");
        assert_eq!(
            request,
            "POST /mcp?x=1 HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[tokio::test]
    async fn a_large_body_arrives_whole() {
        static RESPONSE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let body: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let response = RESPONSE.get_or_init(|| {
            let mut response =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
            response.extend_from_slice(&body);
            response
        });
        let pieces: &'static [&'static [u8]] = Box::leak(Box::new([response.as_slice()]));
        let (mut conn, _server) = exchange_with(pieces, false).await;
        let (_, got) = run(&mut conn, &post("{}")).await.expect("exchange");
        assert!(
            got == body,
            "{} bytes, not the {} sent",
            got.len(),
            body.len()
        );
        assert!(conn.reusable());
        // Idle again, it lets go of whatever the large body made its buffers grow to.
        let grown = conn.grown;
        conn.shrink();
        if grown {
            assert_eq!(conn.buf.capacity(), 0);
        }
        assert_eq!(conn.read_chunk, READ_CHUNK);
        // The same for room reserved outright, and for a large request written.
        conn.buf.reserve(MAX_READ_CHUNK);
        conn.out.reserve(MAX_READ_CHUNK);
        conn.shrink();
        assert_eq!((conn.buf.capacity(), conn.out.capacity()), (0, 0));
    }

    #[tokio::test]
    async fn reads_a_chunked_body_split_anywhere_with_extensions_and_trailers() {
        let (mut conn, _server) = exchange_with(
            &[
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n",
                b"6\r\n world\r",
                b"\n0\r\ntrailer: x\r\n",
                b"\r\n",
            ],
            false,
        )
        .await;
        let (head, body) = run(&mut conn, &post("{}")).await.expect("exchange");
        assert_eq!(head.headers()["content-type"], "text/event-stream");
        assert_eq!(body, b"hello world");
        assert!(conn.reusable());
    }

    /// A POST answered with `pieces`: its outcome, and whether the connection could
    /// take another request.
    async fn answered(
        pieces: &'static [&'static [u8]],
        close: bool,
    ) -> (Result<(Response<()>, Vec<u8>), Error>, bool) {
        let (mut conn, _server) = exchange_with(pieces, close).await;
        let outcome = run(&mut conn, &post("{}")).await;
        (outcome, conn.reusable())
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_is_not_reused() {
        let (outcome, reusable) = answered(&[b"HTTP/1.1 200 OK\r\n\r\nall of ", b"it"], true).await;
        assert_eq!(outcome.expect("exchange").1, b"all of it");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn a_close_before_the_length_is_an_error() {
        let response: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"];
        let (outcome, reusable) = answered(response, true).await;
        assert!(matches!(outcome, Err(Error::Closed)));
        assert!(!reusable);
    }

    #[tokio::test]
    async fn informational_responses_are_skipped() {
        let (outcome, reusable) = answered(
            &[
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            ],
            false,
        )
        .await;
        let (head, body) = outcome.expect("exchange");
        assert_eq!(head.status(), StatusCode::ACCEPTED);
        assert!(body.is_empty());
        assert!(reusable);
    }

    #[tokio::test]
    async fn endless_informational_responses_are_an_error_not_a_stack() {
        let flood: Vec<&'static [u8]> =
            std::iter::repeat_n(&b"HTTP/1.1 102 Processing\r\n\r\n"[..], 5000)
                .chain([&b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..]])
                .collect();
        let (outcome, _) = answered(flood.leak(), false).await;
        let error = outcome.expect_err("refused");
        assert!(error.to_string().contains("informational"), "{error}");
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_are_not_reused() {
        let close: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 2\r\n\r\nok"];
        let (outcome, reusable) = answered(close, false).await;
        assert!(outcome.is_ok() && !reusable);
        let old: &[&[u8]] = &[b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"];
        let (outcome, reusable) = answered(old, false).await;
        assert_eq!(outcome.expect("exchange").0.version(), Version::HTTP_10);
        assert!(!reusable);
    }

    #[tokio::test]
    async fn no_body_for_204_and_head() {
        let no_content: &[&[u8]] = &[b"HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n"];
        let (outcome, reusable) = answered(no_content, false).await;
        assert!(outcome.expect("exchange").1.is_empty());
        assert!(reusable);
        let (mut conn, _server) =
            exchange_with(&[b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"], false).await;
        let head = Request::head("http://127.0.0.1/mcp")
            .body(Bytes::new())
            .expect("request");
        let (_, body) = run(&mut conn, &head).await.expect("exchange");
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn malformed_heads_and_framing_are_errors_that_say_so() {
        for response in [
            &b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let pieces: &'static [&'static [u8]] = Box::leak(Box::new([response]));
            let (outcome, reusable) = answered(pieces, true).await;
            assert!(
                matches!(&outcome, Err(Error::Invalid(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(response),
                outcome.map(|(h, _)| h.status())
            );
            assert!(!reusable);
        }
    }

    #[tokio::test]
    async fn an_endless_head_is_refused_at_its_cap() {
        static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let huge = HUGE.get_or_init(|| {
            let mut head = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
            head.resize(MAX_HEAD + 10, b'a');
            head
        });
        let pieces: &'static [&'static [u8]] = Box::leak(Box::new([huge.as_slice()]));
        let (outcome, _) = answered(pieces, false).await;
        assert!(matches!(outcome, Err(Error::Invalid(m)) if m.contains("longer than")));
    }

    #[tokio::test]
    async fn through_the_pool_body_api_the_bytes_are_the_same() {
        // The body type the pool hands out, read the way callers read it.
        let (conn, _server) = exchange_with(
            &[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"],
            false,
        )
        .await;
        let mut conn = Box::new(conn);
        conn.send(&post("{}")).await.expect("send");
        conn.response(&Method::POST).await.expect("head");
        let body = crate::pool::PoolBody::for_test(conn);
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(bytes, "abc");
    }
}
