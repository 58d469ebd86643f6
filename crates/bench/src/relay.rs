//! A byte relay: the least any process in the path can cost.
//!
//! `mcp-edge-bench relay --to ADDR` accepts on an ephemeral loopback port and copies
//! bytes both ways between each connection and one of its own to `ADDR`, on a
//! current-thread runtime, parsing nothing. The run measures the direct HTTP load
//! through it too: what it adds is what one more process on these cores adds, the two
//! extra wake-ups per call and four extra system calls, before any HTTP or MCP work.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use crate::Failure;

/// Relays every connection accepted on `127.0.0.1:0` to `to`; prints its address.
pub(crate) fn serve(to: SocketAddr) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("relaying {} to {to}", listener.local_addr()?);
        loop {
            let (mut inbound, _) = listener.accept().await?;
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(to).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    })
}
