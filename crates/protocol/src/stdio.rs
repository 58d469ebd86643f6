//! This process's own stdin and stdout as async byte streams, for a stdio MCP peer.
//!
//! `tokio::io::stdin()` and `stdout()` do every read and every write on a blocking
//! thread, so each message crosses two threads and wakes both. When stdin or stdout is
//! a pipe (how every MCP client launches a stdio server), it is read and written here
//! through the reactor instead, like a socket: no thread hop per message. Anything else
//! (a terminal, a file, a socket) keeps tokio's blocking-thread streams.
//!
//! The pipe is put in non-blocking mode; the flag belongs to the open pipe, so a process
//! sharing the same end (rare for stdio servers) sees it too.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use tokio::io::AsyncWriteExt;
//! let mut out = mcp_edge_protocol::stdio::stdout();
//! out.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n").await?;
//! # Ok(()) }
//! ```

use std::os::fd::AsFd;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

/// Standard input as an async reader (must be called inside a tokio runtime).
pub fn stdin() -> Pin<Box<dyn AsyncRead + Send>> {
    match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Receiver::from_owned_fd)
    {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdin()),
    }
}

/// Standard output as an async writer (must be called inside a tokio runtime).
pub fn stdout() -> Pin<Box<dyn AsyncWrite + Send>> {
    match std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Sender::from_owned_fd)
    {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdout()),
    }
}
