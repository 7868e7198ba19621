//! Closing gracefully when the client may still be sending: half-close, then read and
//! discard until the client closes too (bounded in time), so our last response or
//! close frame is not destroyed by a reset answering its unread bytes.

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use std::time::Duration;

/// How long a closing connection's unread input is drained.
const LINGER_MS: u64 = 1000;

pub async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = glommio::timer::timeout(Duration::from_millis(LINGER_MS), async {
        let mut sink = [0u8; 64];
        while stream.read(&mut sink).await? > 0 {}
        Ok(())
    })
    .await;
}
