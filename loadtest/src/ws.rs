//! A client WebSocket: tungstenite runs the protocol (frames, masking,
//! fragments, UTF-8, ping and close replies) over an in-memory [`Pipe`], and
//! the glommio task that owns the connection moves bytes between the pipe and
//! the socket. So one executor drives thousands of connections, each a task,
//! with no thread or blocking call per socket, and a reader can take several
//! frames out of one `recv` (see `meter --load-read-ms`). Everything the
//! scenarios send is well-formed, so there is no raw frame writer. tungstenite
//! does not check that the server encodes lengths minimally; every other
//! framing rule of RFC 6455 it enforces.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use tungstenite::handshake::{client::generate_key, derive_accept_key};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
pub use tungstenite::Message;

use crate::http::{Head, HttpConn, HttpError, Response};
use crate::net::Target;

/// Largest message accepted from the server (its messages are tiny).
pub const MESSAGE_BYTES_MAX: usize = 1 << 20;

/// The bytes between the socket and tungstenite. `rx[start..end]` came from
/// the socket and tungstenite has not read it yet; reading past it is
/// `WouldBlock` (or the end of the stream once the socket said so). `tx` is
/// what tungstenite wrote; `tx[..sent]` is on the socket already. `tx` holds
/// at most one message plus one control reply: every send flushes it.
struct Pipe {
    rx: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    tx: Vec<u8>,
    sent: usize,
}

impl Pipe {
    fn new(rx_bytes: usize) -> Pipe {
        Pipe {
            rx: vec![0; rx_bytes].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            tx: Vec::new(),
            sent: 0,
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.end - self.start);
        buf[..n].copy_from_slice(&self.rx[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("I/O error: {0}")]
    Io(io::Error),
    #[error("timed out")]
    Timeout,
    /// The connection ended without (or after) a close frame.
    #[error("connection closed without a close frame")]
    Eof,
    /// The server broke the WebSocket protocol.
    #[error("WebSocket protocol violation: {0}")]
    Protocol(String),
}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::TimedOut {
            WsError::Timeout
        } else {
            WsError::Io(e)
        }
    }
}

impl From<tungstenite::Error> for WsError {
    fn from(e: tungstenite::Error) -> Self {
        use tungstenite::error::ProtocolError;
        match e {
            tungstenite::Error::Io(e) => e.into(),
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                WsError::Eof
            }
            tungstenite::Error::Utf8 => WsError::Protocol("text message is not valid UTF-8".into()),
            e => WsError::Protocol(e.to_string()),
        }
    }
}

/// Handshake failures.
#[derive(Debug, thiserror::Error)]
pub enum HsError {
    #[error("I/O error: {0}")]
    Io(io::Error),
    #[error("handshake timed out")]
    Timeout,
    /// The server answered with something other than 101 (full response).
    #[error("upgrade refused: {} {}", .0.status(), .0.body_str())]
    Rejected(Response),
    /// 101 but wrong/missing Upgrade, Connection or Sec-WebSocket-Accept, or
    /// not HTTP at all.
    #[error("bad handshake response: {0}")]
    Bad(String),
}

impl From<io::Error> for HsError {
    fn from(e: io::Error) -> Self {
        HttpError::from(e).into()
    }
}

impl From<HttpError> for HsError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Io(e) => HsError::Io(e),
            HttpError::Timeout => HsError::Timeout,
            HttpError::Protocol(s) => HsError::Bad(s),
            HttpError::Closed | HttpError::Truncated => {
                HsError::Bad("connection closed during the handshake".into())
            }
        }
    }
}

/// Check a 101 response head against the key we sent.
pub fn check_upgrade(head: &Head, key: &str) -> Result<(), String> {
    if head.status != 101 {
        return Err(format!("status {}", head.status));
    }
    if !head.tokens("upgrade").iter().any(|t| t == "websocket") {
        return Err("missing Upgrade: websocket".into());
    }
    if !head.tokens("connection").iter().any(|t| t == "upgrade") {
        return Err("missing Connection: Upgrade".into());
    }
    let want = derive_accept_key(key.as_bytes());
    match head.header("sec-websocket-accept") {
        Some(v) if v == want => Ok(()),
        Some(v) => Err(format!("Sec-WebSocket-Accept {v:?}, expected {want:?}")),
        None => Err("missing Sec-WebSocket-Accept".into()),
    }
}

/// A client WebSocket connection.
pub struct WsConn {
    s: TcpStream,
    ws: WebSocket<Pipe>,
}

impl WsConn {
    /// Connect and upgrade. `path` includes the query, e.g. `/ws?room=a`;
    /// `rx_bytes` is how much one socket read may take.
    ///
    /// The upgrade's answer is read by the HTTP client rather than by
    /// tungstenite's handshake, which keeps only the bytes that came with a
    /// refusal's head: a refusal's body must be read whole to be checked.
    pub async fn connect(
        target: &Target,
        path: &str,
        src: Option<IpAddr>,
        timeout: Duration,
        rx_bytes: usize,
    ) -> Result<WsConn, HsError> {
        let key = generate_key();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.host
        );
        let mut http = HttpConn::connect_from(target, src, timeout).await?;
        http.send_raw(req.as_bytes()).await?;
        let resp = http.read_response(false).await?;
        if resp.status() != 101 {
            return Err(HsError::Rejected(resp));
        }
        check_upgrade(&resp.head, &key).map_err(HsError::Bad)?;
        let (s, early_frames) = http.into_parts();
        // awaited messages have their own deadlines; writes keep the timeout
        s.set_read_timeout(None).map_err(io::Error::from)?;
        let config = WebSocketConfig {
            write_buffer_size: 0,
            max_message_size: Some(MESSAGE_BYTES_MAX),
            max_frame_size: Some(MESSAGE_BYTES_MAX),
            ..WebSocketConfig::default()
        };
        let pipe = Pipe::new(rx_bytes.max(64));
        let ws = WebSocket::from_partially_read(pipe, early_frames, Role::Client, Some(config));
        Ok(WsConn { s, ws })
    }

    /// The next message already received, without I/O (`None`: read more
    /// with [`WsConn::fill`]). Pings come back too; tungstenite has queued
    /// their pong and the echo of a close, which the next `fill` or `flush`
    /// sends.
    pub fn next_message(&mut self) -> Result<Option<Message>, WsError> {
        match self.ws.read() {
            Ok(m) => Ok(Some(m)),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Send what tungstenite queued, then read once from the socket.
    /// Returns the bytes now waiting for `next_message`, 0 at the end of the
    /// stream. Cancel-safe: dropping it loses no byte either way.
    pub async fn fill(&mut self) -> Result<usize, WsError> {
        self.write_queued().await?;
        let p = self.ws.get_mut();
        p.rx.copy_within(p.start..p.end, 0);
        p.end -= p.start;
        p.start = 0;
        if p.end < p.rx.len() {
            let n = futures_lite::AsyncReadExt::read(&mut self.s, &mut p.rx[p.end..]).await?;
            p.eof = n == 0;
            p.end += n;
        }
        Ok(p.end)
    }

    /// Sends what tungstenite queued, then takes what the socket holds now with one
    /// non-blocking `recv`, leaving no readiness poll armed: a client that reads on
    /// its own schedule does not make every frame the server sends wake it (on
    /// loopback that wake-up is paid by the sending server's CPU).
    pub async fn fill_now(&mut self) -> Result<Option<usize>, WsError> {
        use std::os::fd::AsRawFd;
        self.write_queued().await?;
        let fd = self.s.as_raw_fd();
        let p = self.ws.get_mut();
        p.rx.copy_within(p.start..p.end, 0);
        p.end -= p.start;
        p.start = 0;
        if p.end < p.rx.len() {
            let free = &mut p.rx[p.end..];
            // SAFETY: `free` is a valid writable buffer of its length.
            let n =
                unsafe { libc::recv(fd, free.as_mut_ptr().cast(), free.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e.into());
                }
                return Ok((p.end > 0).then_some(p.end));
            }
            p.eof = n == 0;
            p.end += n as usize;
        }
        Ok(Some(p.end))
    }

    /// Write `tx[sent..]` to the socket, recording progress after every
    /// write so a dropped call never sends a byte twice.
    async fn write_queued(&mut self) -> Result<(), WsError> {
        let p = self.ws.get_mut();
        while p.sent < p.tx.len() {
            let n = self.s.write(&p.tx[p.sent..]).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
            p.sent += n;
        }
        p.tx.clear();
        p.sent = 0;
        Ok(())
    }

    /// Hand everything tungstenite queued (pongs, a close echo) to the socket.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        self.ws.flush()?;
        self.write_queued().await
    }

    pub async fn send(&mut self, m: Message) -> Result<(), WsError> {
        self.ws.send(m)?;
        self.write_queued().await
    }

    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), WsError> {
        self.send(Message::text(text)).await
    }

    /// Next message, answering pings (not returned) and echoing a close
    /// (returned).
    pub async fn recv(&mut self) -> Result<Message, WsError> {
        loop {
            match self.next_message()? {
                Some(Message::Ping(_)) => {}
                Some(m @ Message::Close(_)) => {
                    // best effort: the server may already be gone
                    let _ = self.flush().await;
                    return Ok(m);
                }
                Some(m) => return Ok(m),
                None => {
                    self.fill().await?;
                }
            }
        }
    }

    /// Client-initiated close handshake: send close(code), then read until
    /// the server's close frame (skipping data). Returns the code it echoed.
    pub async fn close(&mut self, code: u16) -> Result<Option<u16>, WsError> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        // after a close from the server tungstenite has answered it already
        if self.ws.can_write() {
            self.ws.close(Some(frame))?;
        }
        self.write_queued().await?;
        loop {
            if let Message::Close(c) = self.recv().await? {
                return Ok(close_code(&c));
            }
        }
    }
}

/// The code of a received close frame (`None`: a close without payload).
pub fn close_code(c: &Option<CloseFrame>) -> Option<u16> {
    c.as_ref().map(|f| u16::from(f.code))
}

#[cfg(test)]
mod tests {
    use futures_lite::AsyncReadExt;
    use glommio::net::TcpListener;

    use super::*;

    /// Server frames (unmasked) as the kakigori server writes them.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    /// Read client frames (masked) until `n` have arrived; (opcode, payload).
    async fn client_frames(s: &mut glommio::net::TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        let mut frames = Vec::new();
        while frames.len() < n {
            let k = s.read(&mut buf).await.unwrap();
            assert!(k > 0, "client closed early");
            got.extend_from_slice(&buf[..k]);
            while got.len() >= 6 && got.len() >= 6 + (got[1] & 0x7f) as usize {
                assert_eq!(got[1] & 0x80, 0x80, "client frames are masked");
                let len = (got[1] & 0x7f) as usize;
                let mask = [got[2], got[3], got[4], got[5]];
                let p = got[6..6 + len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[i % 4])
                    .collect();
                frames.push((got[0] & 0x0f, p));
                got.drain(..6 + len);
            }
        }
        frames
    }

    /// Against a scripted server on a real socket: the upgrade, a message in
    /// two fragments around a ping, a close, and what the client answers.
    #[test]
    fn upgrade_fragments_ping_and_close() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 << 10)
            .make()
            .unwrap();
        ex.run(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server = glommio::spawn_local(async move {
                let mut s = l.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8(got).unwrap();
                let key = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap();
                let mut out = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                )
                .into_bytes();
                out.extend(frame(false, 0x1, b"{\"aver"));
                out.extend(frame(true, 0x9, b"p1"));
                out.extend(frame(true, 0x0, b"age\":1,\"count\":2}"));
                out.extend(frame(true, 0x8, &[0x03, 0xe8]));
                s.write_all(&out).await.unwrap();
                let frames = client_frames(&mut s, 2).await;
                assert_eq!(frames[0], (0xA, b"p1".to_vec()));
                assert_eq!(frames[1], (0x8, vec![0x03, 0xe8]));
            });
            let t = Target {
                url: String::new(),
                addr,
                host: addr.to_string(),
            };
            let mut c = WsConn::connect(&t, "/ws?room=x", None, Duration::from_secs(5), 64)
                .await
                .unwrap();
            assert_eq!(
                c.recv().await.unwrap(),
                Message::text("{\"average\":1,\"count\":2}")
            );
            let m = c.recv().await.unwrap();
            assert!(matches!(&m, Message::Close(f) if close_code(f) == Some(1000)), "{m:?}");
            server.await;
        });
    }

    /// Protocol violations of the server surface as `WsError::Protocol`.
    #[test]
    fn server_violations_are_protocol_errors() {
        for (bytes, what) in [
            (vec![0xC1, 0x00], "reserved bit"),
            (vec![0x83, 0x00], "unknown opcode"),
            (vec![0x09, 0x00], "fragmented ping"),
            (vec![0x81, 0x82, 1, 2, 3, 4, 0, 0], "masked server frame"),
            (vec![0x81, 0x02, 0xff, 0xfe], "invalid UTF-8"),
            (vec![0x80, 0x00], "continuation without a start"),
        ] {
            let mut pipe = Pipe::new(bytes.len());
            pipe.rx.copy_from_slice(&bytes);
            pipe.end = bytes.len();
            let mut ws = WebSocket::from_raw_socket(pipe, Role::Client, None);
            match ws.read() {
                Err(e) => assert!(matches!(WsError::from(e), WsError::Protocol(_)), "{what}"),
                Ok(m) => panic!("{what}: read {m:?}"),
            }
        }
    }

    #[test]
    fn upgrade_check() {
        use crate::http::parse_head;
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let h = parse_head(ok).unwrap().unwrap();
        assert!(check_upgrade(&h, key).is_ok());
        assert!(check_upgrade(&h, "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
        let no_upgrade = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_upgrade(&parse_head(no_upgrade).unwrap().unwrap(), key).is_err());
    }
}
