//! Minimal RFC 6455 client: handshake, frame codec and a connection with a
//! small, growable read buffer (so thousands of idle connections stay cheap).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::http::{parse_head, parse_response, Head, Response};
use crate::net::{connect_start, Target};

pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest message accepted from the server (its messages are tiny).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Sec-WebSocket-Accept for a given key.
pub fn accept_key(key: &str) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
}

/// Append one frame (FIN set unless `fin` is false) to `out`. `mask` = None
/// writes an unmasked (server-style) frame, used by the tests.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mbit | n as u8);
    } else if n <= 0xffff {
        out.push(mbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i & 3]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// A decoded frame header; the payload is `buf[payload.0..payload.1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    pub payload: (usize, usize),
    /// Total bytes of header + payload.
    pub len: usize,
}

/// Decode one frame at the start of `buf` (unmasking in place if masked).
/// `Ok(None)` = need more bytes. Errors are protocol violations.
pub fn decode_frame(buf: &mut [u8], max_len: usize) -> Result<Option<Frame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(format!("reserved bits set (first byte {b0:#04x})"));
    }
    let opcode = b0 & 0x0f;
    if !matches!(
        opcode,
        OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(format!("unknown opcode {opcode:#x}"));
    }
    let masked = b1 & 0x80 != 0;
    let mut pos = 2;
    let len7 = (b1 & 0x7f) as u64;
    let len = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            pos = 4;
            let l = u16::from_be_bytes([buf[2], buf[3]]) as u64;
            if l < 126 {
                return Err("non-minimal 16-bit length".into());
            }
            l
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            pos = 10;
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let l = u64::from_be_bytes(b);
            if l >> 63 != 0 {
                return Err("64-bit length with the high bit set".into());
            }
            if l <= 0xffff {
                return Err("non-minimal 64-bit length".into());
            }
            l
        }
        l => l,
    };
    if opcode >= 0x8 {
        if !fin {
            return Err(format!("fragmented control frame (opcode {opcode:#x})"));
        }
        if len > 125 {
            return Err(format!("control frame with {len}-byte payload"));
        }
    }
    if len > max_len as u64 {
        return Err(format!("frame of {len} bytes exceeds {max_len}"));
    }
    let len = len as usize;
    let mut mask = [0u8; 4];
    if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        mask.copy_from_slice(&buf[pos..pos + 4]);
        pos += 4;
    }
    if buf.len() < pos + len {
        return Ok(None);
    }
    if masked {
        for (i, b) in buf[pos..pos + len].iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
    }
    Ok(Some(Frame {
        fin,
        opcode,
        masked,
        payload: (pos, pos + len),
        len: pos + len,
    }))
}

/// Close frame payload -> (code, reason). Empty payload = no code (1005).
pub fn parse_close(p: &[u8]) -> Result<Option<(u16, String)>, String> {
    match p.len() {
        0 => Ok(None),
        1 => Err("close payload of 1 byte".into()),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            let reason = std::str::from_utf8(&p[2..])
                .map_err(|_| "close reason is not UTF-8".to_string())?
                .to_string();
            if !(1000..5000).contains(&code) || matches!(code, 1004..=1006 | 1015) {
                return Err(format!("invalid close code {code} on the wire"));
            }
            Ok(Some((code, reason)))
        }
    }
}

/// What the server sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ev {
    Text,
    Binary,
    Ping,
    Pong,
    /// Close frame with its code (None if the frame had no payload).
    Close(Option<u16>),
}

#[derive(Debug)]
pub enum WsError {
    Io(io::Error),
    Timeout,
    /// Connection ended without a close frame.
    Eof,
    /// The server broke the WebSocket protocol.
    Protocol(String),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "I/O error: {e}"),
            WsError::Timeout => write!(f, "timed out"),
            WsError::Eof => write!(f, "connection closed without a close frame"),
            WsError::Protocol(s) => write!(f, "WebSocket protocol violation: {s}"),
        }
    }
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

/// Handshake failures.
#[derive(Debug)]
pub enum HsError {
    Io(io::Error),
    Timeout,
    /// The server answered with something other than 101 (full response).
    Rejected(Response),
    /// 101 but wrong/missing Upgrade, Connection or Sec-WebSocket-Accept.
    Bad(String),
}

impl std::fmt::Display for HsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HsError::Io(e) => write!(f, "I/O error: {e}"),
            HsError::Timeout => write!(f, "handshake timed out"),
            HsError::Rejected(r) => write!(f, "upgrade refused: {} {}", r.status(), r.body_str()),
            HsError::Bad(s) => write!(f, "bad handshake response: {s}"),
        }
    }
}

impl From<io::Error> for HsError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::TimedOut {
            HsError::Timeout
        } else {
            HsError::Io(e)
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
    let want = accept_key(key);
    match head.header("sec-websocket-accept") {
        Some(v) if v == want => Ok(()),
        Some(v) => Err(format!("Sec-WebSocket-Accept {v:?}, expected {want:?}")),
        None => Err("missing Sec-WebSocket-Accept".into()),
    }
}

fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

/// A client WebSocket connection.
pub struct WsConn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes of the last returned frame still to drop from `buf`.
    pending: usize,
    /// Payload of the last returned event: in `buf` or in `frag`.
    cur: (bool, usize, usize),
    frag: Option<(u8, Vec<u8>)>,
    rng: u64,
    /// Set once we sent a close frame.
    pub close_sent: bool,
    /// Code of the close frame received (Some(None) = close without code).
    pub close_received: Option<Option<u16>>,
    pub pings_answered: u32,
}

impl WsConn {
    /// Connect and upgrade. `path` includes the query, e.g. `/ws?room=a`.
    /// `buf_size` is the initial read buffer (it grows if a frame needs it).
    pub async fn connect(
        target: &Target,
        path: &str,
        src: Option<IpAddr>,
        timeout: Duration,
        buf_size: usize,
    ) -> Result<WsConn, HsError> {
        let mut rng: u64 = rand::random::<u64>() | 1;
        let s = connect_start(target.addr, src)?;
        s.set_read_timeout(Some(timeout)).map_err(io::Error::from)?;
        s.set_write_timeout(Some(timeout))
            .map_err(io::Error::from)?;
        let mut keyb = [0u8; 16];
        keyb[..8].copy_from_slice(&xorshift(&mut rng).to_le_bytes());
        keyb[8..].copy_from_slice(&xorshift(&mut rng).to_le_bytes());
        let key = base64::engine::general_purpose::STANDARD.encode(keyb);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.host
        );
        let mut s = s;
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 512];
        let mut end = 0;
        let mut eof = false;
        let head = loop {
            if end > 0 {
                match parse_head(&buf[..end]) {
                    Ok(Some(h)) => break h,
                    Ok(None) => {}
                    Err(e) => return Err(HsError::Bad(e)),
                }
            }
            if eof {
                return Err(HsError::Bad(
                    "connection closed during the handshake".into(),
                ));
            }
            if end == buf.len() {
                if buf.len() > 32 * 1024 {
                    return Err(HsError::Bad("handshake response too large".into()));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = s.read(&mut buf[end..]).await?;
            eof = n == 0;
            end += n;
        };
        if head.status != 101 {
            // read the whole (error) response for the caller to check
            loop {
                match parse_response(&buf[..end], eof, false) {
                    Ok(Some((r, _))) => return Err(HsError::Rejected(r)),
                    Ok(None) if eof => {
                        return Err(HsError::Bad(format!(
                            "status {} with a truncated body",
                            head.status
                        )))
                    }
                    Ok(None) => {}
                    Err(e) => return Err(HsError::Bad(e)),
                }
                if end == buf.len() {
                    if buf.len() > 256 * 1024 {
                        return Err(HsError::Bad("error response too large".into()));
                    }
                    buf.resize(buf.len() * 2, 0);
                }
                let n = s.read(&mut buf[end..]).await?;
                eof = n == 0;
                end += n;
            }
        }
        check_upgrade(&head, &key).map_err(HsError::Bad)?;
        s.set_read_timeout(None).map_err(io::Error::from)?;
        // keep any frame bytes that arrived with the 101
        let extra = &buf[head.len..end];
        let mut rbuf = vec![0u8; buf_size.max(extra.len()).max(64)];
        rbuf[..extra.len()].copy_from_slice(extra);
        Ok(WsConn {
            s,
            end: extra.len(),
            buf: rbuf,
            start: 0,
            pending: 0,
            cur: (false, 0, 0),
            frag: None,
            rng,
            close_sent: false,
            close_received: None,
            pings_answered: 0,
        })
    }

    /// Payload of the last event returned by `next_event`/`recv`.
    pub fn payload(&self) -> &[u8] {
        let (in_frag, a, b) = self.cur;
        if in_frag {
            &self.frag.as_ref().map(|f| &f.1[..]).unwrap_or(&[])[a..b]
        } else {
            &self.buf[a..b]
        }
    }

    /// Text of the last Text event (validated UTF-8 by `next_event`).
    pub fn text(&self) -> &str {
        std::str::from_utf8(self.payload()).unwrap_or("")
    }

    /// Parse the next complete event already in the buffer (no I/O).
    /// Cancel-safe building block: pair it with [`WsConn::fill`].
    pub fn next_event(&mut self) -> Result<Option<Ev>, WsError> {
        if self.pending > 0 {
            self.start += self.pending;
            self.pending = 0;
        }
        if self.frag.as_ref().is_some_and(|f| f.0 == 0xff) {
            self.frag = None;
        }
        loop {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                return Ok(None);
            }
            let Some(fr) = decode_frame(&mut self.buf[self.start..self.end], MAX_MESSAGE)
                .map_err(WsError::Protocol)?
            else {
                return Ok(None);
            };
            if fr.masked {
                return Err(WsError::Protocol("server sent a masked frame".into()));
            }
            let (a, b) = (self.start + fr.payload.0, self.start + fr.payload.1);
            match fr.opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag.as_ref().is_some_and(|f| f.0 != 0xff) {
                        return Err(WsError::Protocol(
                            "new data frame inside a fragmented message".into(),
                        ));
                    }
                    if fr.fin {
                        self.pending = fr.len;
                        self.cur = (false, a, b);
                        return self.finish_data(fr.opcode);
                    }
                    self.frag = Some((fr.opcode, self.buf[a..b].to_vec()));
                    self.start += fr.len;
                }
                OP_CONT => {
                    let Some(f) = self.frag.as_mut().filter(|f| f.0 != 0xff) else {
                        return Err(WsError::Protocol("continuation without a start".into()));
                    };
                    if f.1.len() + (b - a) > MAX_MESSAGE {
                        return Err(WsError::Protocol("fragmented message too large".into()));
                    }
                    f.1.extend_from_slice(&self.buf[a..b]);
                    self.start += fr.len;
                    if fr.fin {
                        let op = f.0;
                        let n = f.1.len();
                        f.0 = 0xff; // "complete, drop on next call"
                        self.cur = (true, 0, n);
                        return self.finish_data(op);
                    }
                }
                OP_PING => {
                    self.pending = fr.len;
                    self.cur = (false, a, b);
                    return Ok(Some(Ev::Ping));
                }
                OP_PONG => {
                    self.pending = fr.len;
                    self.cur = (false, a, b);
                    return Ok(Some(Ev::Pong));
                }
                OP_CLOSE => {
                    self.pending = fr.len;
                    self.cur = (false, a, b);
                    let code = parse_close(&self.buf[a..b])
                        .map_err(WsError::Protocol)?
                        .map(|(c, _)| c);
                    self.close_received = Some(code);
                    return Ok(Some(Ev::Close(code)));
                }
                _ => unreachable!("decode_frame rejects other opcodes"),
            }
        }
    }

    fn finish_data(&mut self, op: u8) -> Result<Option<Ev>, WsError> {
        if op == OP_TEXT {
            if std::str::from_utf8(self.payload()).is_err() {
                return Err(WsError::Protocol("text message is not valid UTF-8".into()));
            }
            Ok(Some(Ev::Text))
        } else {
            Ok(Some(Ev::Binary))
        }
    }

    /// Read more bytes from the socket. Cancel-safe: dropping it loses nothing.
    /// Returns 0 at EOF.
    pub async fn fill(&mut self) -> Result<usize, WsError> {
        if self.pending > 0 {
            self.start += self.pending;
            self.pending = 0;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                if self.buf.len() > MAX_MESSAGE + 64 {
                    return Err(WsError::Protocol("frame too large".into()));
                }
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n = self.s.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Next event, answering pings and echoing a close. Not cancel-safe
    /// (a pong may be half written): use it only where a timeout ends the
    /// connection anyway.
    pub async fn recv(&mut self) -> Result<Ev, WsError> {
        loop {
            if let Some(ev) = self.next_event()? {
                match ev {
                    Ev::Ping => {
                        let p = self.payload().to_vec();
                        self.send_frame(OP_PONG, &p).await?;
                        self.pings_answered += 1;
                    }
                    Ev::Close(code) => {
                        if !self.close_sent {
                            self.close_sent = true;
                            let payload =
                                code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
                            // best effort: the server may already be gone
                            let _ = self.send_frame(OP_CLOSE, &payload).await;
                        }
                        return Ok(ev);
                    }
                    _ => return Ok(ev),
                }
                continue;
            }
            if self.fill().await? == 0 {
                return Err(WsError::Eof);
            }
        }
    }

    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        let m = (xorshift(&mut self.rng) as u32).to_le_bytes();
        let mut out = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut out, true, opcode, payload, Some(m));
        self.s.write_all(&out).await?;
        Ok(())
    }

    pub async fn send_text(&mut self, text: &str) -> Result<(), WsError> {
        self.send_frame(OP_TEXT, text.as_bytes()).await
    }

    /// Send a close frame with `code`.
    pub async fn send_close(&mut self, code: u16) -> Result<(), WsError> {
        self.close_sent = true;
        self.send_frame(OP_CLOSE, &code.to_be_bytes()).await
    }

    /// Client-initiated close handshake: send close(code), then read until the
    /// server's close frame (answering pings, skipping data). Returns the code
    /// the server echoed.
    pub async fn close(&mut self, code: u16) -> Result<Option<u16>, WsError> {
        if !self.close_sent {
            self.send_close(code).await?;
        }
        loop {
            if let Ev::Close(c) = self.recv().await? {
                return Ok(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn roundtrip_lengths_masked_and_not() {
        for n in [0usize, 1, 125, 126, 127, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = Vec::new();
                encode_frame(&mut out, true, OP_BINARY, &payload, mask);
                let hdr = match n {
                    0..=125 => 2,
                    126..=65535 => 4,
                    _ => 10,
                } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(out.len(), hdr + n);
                // every strict prefix is incomplete
                for cut in [0, 1, hdr - 1, hdr + n - 1] {
                    if cut < out.len() {
                        let mut p = out[..cut].to_vec();
                        assert_eq!(decode_frame(&mut p, 1 << 20).unwrap(), None);
                    }
                }
                let fr = decode_frame(&mut out, 1 << 20).unwrap().unwrap();
                assert_eq!(fr.len, hdr + n);
                assert_eq!(fr.masked, mask.is_some());
                assert_eq!(&out[fr.payload.0..fr.payload.1], &payload[..]);
            }
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: unmasked "Hello"
        let mut a = vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let f = decode_frame(&mut a, 100).unwrap().unwrap();
        assert_eq!(&a[f.payload.0..f.payload.1], b"Hello");
        // masked "Hello"
        let mut b = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let f = decode_frame(&mut b, 100).unwrap().unwrap();
        assert!(f.masked);
        assert_eq!(&b[f.payload.0..f.payload.1], b"Hello");
        let mut enc = Vec::new();
        encode_frame(
            &mut enc,
            true,
            OP_TEXT,
            b"Hello",
            Some([0x37, 0xfa, 0x21, 0x3d]),
        );
        assert_eq!(
            enc,
            vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // fragmented "Hel" + "lo"
        let mut c = vec![0x01, 0x03, 0x48, 0x65, 0x6c];
        let f = decode_frame(&mut c, 100).unwrap().unwrap();
        assert!(!f.fin);
        assert_eq!(f.opcode, OP_TEXT);
    }

    #[test]
    fn protocol_errors() {
        assert!(decode_frame(&mut [0xC1, 0x00], 100).is_err()); // RSV1
        assert!(decode_frame(&mut [0x83, 0x00], 100).is_err()); // opcode 3
        assert!(decode_frame(&mut [0x09, 0x00], 100).is_err()); // fragmented ping
        let mut big_ping = vec![0x89, 126, 0, 200];
        big_ping.extend(vec![0; 200]);
        assert!(decode_frame(&mut big_ping, 1000).is_err());
        assert!(decode_frame(&mut [0x82, 126, 0, 5, 1, 2, 3, 4, 5], 100).is_err()); // non-minimal
        let mut huge = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(decode_frame(&mut huge, 1000).is_err());
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(&[]).unwrap(), None);
        assert_eq!(
            parse_close(&[0x03, 0xe8]).unwrap(),
            Some((1000, String::new()))
        );
        assert_eq!(
            parse_close(&[0x03, 0xe9, b'b', b'y', b'e']).unwrap(),
            Some((1001, "bye".into()))
        );
        assert!(parse_close(&[0x03]).is_err());
        assert!(parse_close(&[0x03, 0xed]).is_err()); // 1005 may not be sent
        assert!(parse_close(&[0x03, 0xe8, 0xff]).is_err()); // bad UTF-8
    }

    #[test]
    fn upgrade_check() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let h = parse_head(raw).unwrap().unwrap();
        assert!(check_upgrade(&h, key).is_ok());
        assert!(check_upgrade(&h, "AAAAAAAAAAAAAAAAAAAAAA==").is_err());
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_upgrade(&parse_head(raw).unwrap().unwrap(), key).is_err());
    }

    /// Drive WsConn's parser over a real socket pair within an executor.
    #[test]
    fn conn_parses_fragments_pings_and_close() {
        use glommio::net::TcpListener;
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 << 10)
            .make()
            .unwrap();
        ex.run(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let server = glommio::spawn_local(async move {
                let mut s = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                // read the handshake
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let text = String::from_utf8(got).unwrap();
                let key = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap()
                    .to_string();
                let mut out = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    accept_key(&key)
                )
                .into_bytes();
                encode_frame(&mut out, false, OP_TEXT, b"{\"aver", None);
                encode_frame(&mut out, true, OP_PING, b"p1", None);
                encode_frame(&mut out, true, OP_CONT, b"age\":1,\"count\":2}", None);
                let big = "x".repeat(3000);
                encode_frame(&mut out, true, OP_TEXT, big.as_bytes(), None);
                encode_frame(&mut out, true, OP_CLOSE, &[0x03, 0xe8], None);
                s.write_all(&out).await.unwrap();
                // expect a masked pong "p1" and a masked close 1000
                let mut got = Vec::new();
                let mut frames = Vec::new();
                while frames.len() < 2 {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                    while let Some(f) = decode_frame(&mut got, 1000).unwrap() {
                        assert!(f.masked);
                        frames.push((f.opcode, got[f.payload.0..f.payload.1].to_vec()));
                        got.drain(..f.len);
                    }
                }
                assert_eq!(frames[0], (OP_PONG, b"p1".to_vec()));
                assert_eq!(frames[1], (OP_CLOSE, vec![0x03, 0xe8]));
            });
            let t = Target {
                url: String::new(),
                addr,
                host: addr.to_string(),
            };
            let mut c = WsConn::connect(&t, "/ws?room=x", None, Duration::from_secs(5), 64)
                .await
                .unwrap();
            assert_eq!(c.recv().await.unwrap(), Ev::Text);
            assert_eq!(c.text(), "{\"average\":1,\"count\":2}");
            assert_eq!(c.pings_answered, 1);
            assert_eq!(c.recv().await.unwrap(), Ev::Text);
            assert_eq!(c.payload().len(), 3000);
            assert_eq!(c.recv().await.unwrap(), Ev::Close(Some(1000)));
            assert!(c.close_sent);
            server.await;
        });
    }
}
