//! Client WebSockets. The upgrade is an HTTP request of our own, so a refusal
//! is read whole and checked like any error response (tungstenite's own
//! handshake keeps only the bytes that came with the head); after the 101,
//! async-tungstenite runs RFC 6455 over the socket: masking, fragments,
//! UTF-8, ping and close replies. Each connection is one glommio task.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
pub use async_tungstenite::tungstenite::{Error, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;
use glommio::net::TcpStream;
use nix::sys::socket::{recv, MsgFlags};

use crate::fail::Fail;
use crate::http::{HttpConn, Response};
use crate::net::Target;

pub type Ws = WebSocketStream<Socket>;

/// A client's socket. A reader on a schedule of its own (`lazy`, see `meter
/// --load-read-ms`) takes what has arrived with one non-blocking `recv` and
/// leaves no readiness poll armed: on loopback the server's CPU pays for
/// waking a client on every frame, which a phone on the network would not
/// cost it. A lazy read that finds nothing is `Pending` with no waker kept,
/// so lazy sockets are only read with `poll_once`; set `lazy` back to false
/// before awaiting a read.
pub struct Socket {
    stream: TcpStream,
    pub lazy: bool,
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.lazy {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        match recv(self.stream.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Err(nix::errno::Errno::EAGAIN) => Poll::Pending,
            read => Poll::Ready(read.map_err(io::Error::from)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Largest message accepted from the server (its messages are tiny).
const MESSAGE_BYTES_MAX: usize = 1 << 20;

/// Open a WebSocket on `path` (with its query). `Ok(Err(response))`: the
/// server refused the upgrade. `rx_bytes` is tungstenite's read buffer,
/// allocated up front: small for thousands of idle connections.
pub async fn connect(
    target: &Target,
    path: &str,
    src: IpAddr,
    timeout: Duration,
    rx_bytes: usize,
) -> Result<Result<Ws, Response>, Fail> {
    let key = generate_key();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.host
    );
    let mut http = HttpConn::new(target, src, timeout);
    http.send(req.as_bytes()).await?;
    let resp = http.read_response().await?;
    if resp.status != 101 {
        return Ok(Err(resp));
    }
    check_upgrade(&resp, &key).map_err(|e| Fail::violation("bad handshake", e))?;
    let closed = || Fail::violation("bad handshake", "Connection: close on a 101");
    let (s, early_frames) = http.into_parts().ok_or_else(closed)?;
    // awaited messages have their own deadlines; writes keep the timeout
    s.set_read_timeout(None)?;
    let config = WebSocketConfig::default().read_buffer_size(rx_bytes);
    let config = config
        .write_buffer_size(0)
        .max_message_size(Some(MESSAGE_BYTES_MAX));
    let s = Socket {
        stream: s,
        lazy: false,
    };
    let ws = WebSocketStream::from_partially_read(s, early_frames, Role::Client, Some(config));
    Ok(Ok(ws.await))
}

/// A 101 must carry Upgrade, Connection and the accept key of ours.
pub fn check_upgrade(r: &Response, key: &str) -> Result<(), String> {
    if !r.has_token("upgrade", "websocket") {
        return Err("missing Upgrade: websocket".into());
    }
    if !r.has_token("connection", "upgrade") {
        return Err("missing Connection: Upgrade".into());
    }
    let want = derive_accept_key(key.as_bytes());
    match r.header("sec-websocket-accept") {
        Some(v) if v == want => Ok(()),
        v => Err(format!("Sec-WebSocket-Accept {v:?}, want {want:?}")),
    }
}

/// The code of a received close frame (`None`: a close without payload).
pub fn close_code(c: &Option<CloseFrame>) -> Option<u16> {
    c.as_ref().map(|f| u16::from(f.code))
}

/// One item of a connection's stream as the scenarios take it: a message,
/// or why the connection is over (the server closed it, broke the protocol,
/// or dropped it). tungstenite answers pings with the next read or write.
pub fn message(item: Option<Result<Message, Error>>) -> Result<Message, Fail> {
    match item {
        Some(Ok(Message::Close(f))) => {
            let code = close_code(&f);
            Err(Fail::error(
                "server closed the connection",
                format!("close code {code:?}"),
            ))
        }
        Some(Ok(m)) => Ok(m),
        Some(Err(e)) => Err(e.into()),
        None => Err(Fail::dropped()),
    }
}

/// The client's close handshake: close with 1000, then read (skipping data)
/// until the server's close frame; returns the code it echoed.
pub async fn close(ws: &mut Ws) -> Result<Option<u16>, Fail> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    ws.close(Some(frame)).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => return Ok(close_code(&f)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(Fail::dropped()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_check() {
        let head = |h: &str| {
            let raw = format!("HTTP/1.1 101 Switching Protocols\r\n{h}Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
            crate::http::parse_response(raw.as_bytes())
                .unwrap()
                .unwrap()
                .0
        };
        let (ok, key) = (
            head("Upgrade: websocket\r\nConnection: Upgrade\r\n"),
            "dGhlIHNhbXBsZSBub25jZQ==",
        );
        assert!(
            check_upgrade(&ok, key).is_ok()
                && check_upgrade(&ok, "AAAAAAAAAAAAAAAAAAAAAA==").is_err()
        );
        assert!(check_upgrade(&head("Connection: Upgrade\r\n"), key).is_err());
    }
}
