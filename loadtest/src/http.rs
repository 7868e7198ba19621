//! HTTP/1.1 client: a raw request writer (so `rest` can pipeline on
//! keep-alive connections), responses parsed with httparse, and a client that
//! reconnects when the server closed an idle keep-alive connection.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use httparse::Status;

use crate::net::{connect_start, Target};

pub const HEAD_BYTES_MAX: usize = 16 * 1024;
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Headers per response (the server sends fewer than 10).
const HEADERS_MAX: usize = 64;

/// A parsed status line + headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Bytes up to and including the blank line.
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Comma-separated tokens of a header (all occurrences), lower-cased.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    pub fn wants_close(&self) -> bool {
        self.head.tokens("connection").iter().any(|t| t == "close")
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn snippet(buf: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(&buf[..buf.len().min(40)]))
}

/// Parse a response head. `Ok(None)` = need more bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) if buf.len() > HEAD_BYTES_MAX => {
            return Err(format!("response head over {HEAD_BYTES_MAX} bytes"))
        }
        Ok(Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP response ({e}): {}", snippet(buf))),
    };
    let headers = r
        .headers
        .iter()
        .map(|h| {
            let v = std::str::from_utf8(h.value)
                .map_err(|_| format!("header {} is not UTF-8", h.name))?;
            Ok((h.name.to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect::<Result<_, String>>()?;
    Ok(Some(Head {
        status: r.code.unwrap_or(0),
        reason: r.reason.unwrap_or("").to_string(),
        headers,
        len,
    }))
}

/// How the body of a response is delimited.
#[derive(Debug, PartialEq)]
enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilEof,
}

fn body_kind(head: &Head, request_was_head: bool) -> Result<BodyKind, String> {
    if request_was_head || head.status / 100 == 1 || head.status == 204 || head.status == 304 {
        return Ok(BodyKind::None);
    }
    if head.tokens("transfer-encoding").last().map(|s| s.as_str()) == Some("chunked") {
        return Ok(BodyKind::Chunked);
    }
    let mut lens = head
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str());
    let Some(first) = lens.next() else {
        return Ok(BodyKind::UntilEof);
    };
    if lens.any(|l| l != first) {
        return Err("conflicting Content-Length headers".into());
    }
    let n: usize = first
        .parse()
        .map_err(|_| format!("bad Content-Length {first:?}"))?;
    if n > BODY_BYTES_MAX {
        return Err(format!("Content-Length {n} too large"));
    }
    Ok(BodyKind::Length(n))
}

/// Decode a chunked body starting at `buf[0]`. Returns (body, bytes used).
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let (used, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(Status::Complete(x)) => x,
            Ok(Status::Partial) => return Ok(None),
            Err(_) => return Err(format!("bad chunk size line {}", snippet(&buf[pos..]))),
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > BODY_BYTES_MAX - body.len() {
            return Err("chunked body too large".into());
        }
        pos += used;
        if size == 0 {
            let mut trailers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            return match httparse::parse_headers(&buf[pos..], &mut trailers) {
                Ok(Status::Complete((used, _))) => Ok(Some((body, pos + used))),
                Ok(Status::Partial) => Ok(None),
                Err(e) => Err(format!("bad chunked trailer: {e}")),
            };
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

/// Parse one complete response from `buf`. `eof` tells whether the peer has
/// closed (needed for bodies delimited by the end of the connection).
/// Returns the response and how many bytes it used, or `None` if more bytes
/// are needed.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    request_was_head: bool,
) -> Result<Option<(Response, usize)>, String> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    let rest = &buf[head.len..];
    let (body, used) = match body_kind(&head, request_was_head)? {
        BodyKind::None => (Vec::new(), 0),
        BodyKind::Length(n) if rest.len() >= n => (rest[..n].to_vec(), n),
        BodyKind::Chunked => match parse_chunked(rest)? {
            Some(x) => x,
            None => return Ok(None),
        },
        BodyKind::UntilEof if eof => (rest.to_vec(), rest.len()),
        BodyKind::Length(_) | BodyKind::UntilEof => return Ok(None),
    };
    let len = head.len + used;
    Ok(Some((Response { head, body }, len)))
}

/// Serialize a request.
pub fn build_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.map_or(0, |b| b.len()));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(b) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Errors of one request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("I/O error: {0}")]
    Io(io::Error),
    #[error("timed out")]
    Timeout,
    /// The peer sent something that is not valid HTTP.
    #[error("malformed HTTP response: {0}")]
    Protocol(String),
    /// The connection closed before any byte of a response.
    #[error("connection closed before any response byte")]
    Closed,
    /// The connection closed in the middle of a response.
    #[error("connection closed in the middle of a response")]
    Truncated,
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::TimedOut {
            HttpError::Timeout
        } else {
            HttpError::Io(e)
        }
    }
}

impl HttpError {
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Io(_) => "io",
            HttpError::Timeout => "timeout",
            HttpError::Protocol(_) => "protocol",
            HttpError::Closed => "closed",
            HttpError::Truncated => "truncated",
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    host: String,
    pub closed: bool,
}

impl HttpConn {
    pub async fn connect(target: &Target, timeout: Duration) -> Result<HttpConn, HttpError> {
        Self::connect_from(target, None, timeout).await
    }

    /// Connect from source address `src` (None: the kernel chooses).
    pub async fn connect_from(
        target: &Target,
        src: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<HttpConn, HttpError> {
        let s = connect_start(target.addr, src)?;
        s.set_read_timeout(Some(timeout)).map_err(io::Error::from)?;
        s.set_write_timeout(Some(timeout))
            .map_err(io::Error::from)?;
        Ok(HttpConn {
            s,
            buf: vec![0; 4096],
            start: 0,
            end: 0,
            host: target.host.clone(),
            closed: false,
        })
    }

    /// The socket and the bytes read past the last response (after an
    /// upgrade: the first WebSocket frames).
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.s, self.buf[self.start..self.end].to_vec())
    }

    /// Write request bytes (one or several pipelined requests).
    pub async fn send_raw(&mut self, req: &[u8]) -> Result<(), HttpError> {
        if self.closed {
            return Err(HttpError::Closed);
        }
        if let Err(e) = self.s.write_all(req).await {
            self.closed = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Read one response; the connection counts as closed after an error or
    /// a `Connection: close`.
    pub async fn read_response(&mut self, is_head: bool) -> Result<Response, HttpError> {
        let r = self.read_one(is_head).await;
        if r.as_ref().map_or(true, |resp| resp.wants_close()) {
            self.closed = true;
        }
        r
    }

    async fn read_one(&mut self, is_head: bool) -> Result<Response, HttpError> {
        let mut eof = false;
        loop {
            if self.end > self.start || eof {
                match parse_response(&self.buf[self.start..self.end], eof, is_head) {
                    Ok(Some((resp, used))) => {
                        self.start += used;
                        if self.start == self.end {
                            self.start = 0;
                            self.end = 0;
                        }
                        return Ok(resp);
                    }
                    Ok(None) if eof && self.start == self.end => return Err(HttpError::Closed),
                    Ok(None) if eof => return Err(HttpError::Truncated),
                    Ok(None) => {}
                    Err(e) => return Err(HttpError::Protocol(e)),
                }
            }
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    if self.buf.len() >= BODY_BYTES_MAX + HEAD_BYTES_MAX {
                        return Err(HttpError::Protocol("response too large".into()));
                    }
                    let n = self.buf.len() * 2;
                    self.buf.resize(n, 0);
                }
            }
            let n = self.s.read(&mut self.buf[self.end..]).await?;
            eof = n == 0;
            self.end += n;
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let req = build_request(method, path, &self.host, headers, body);
        self.send_raw(&req).await?;
        self.read_response(method == "HEAD").await
    }
}

/// A keep-alive client that reconnects when the server closed the connection.
pub struct Client {
    target: Target,
    timeout: Duration,
    conn: Option<HttpConn>,
}

impl Client {
    pub fn new(target: &Target, timeout: Duration) -> Client {
        Client {
            target: target.clone(),
            timeout,
            conn: None,
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let reused = self.conn.as_ref().is_some_and(|c| !c.closed);
        if !reused {
            self.conn = Some(HttpConn::connect(&self.target, self.timeout).await?);
        }
        let c = self.conn.as_mut().expect("connected");
        let r = c.request(method, path, headers, body).await;
        // A reused keep-alive connection the server closed while it was idle
        // (its keep-alive limit) fails before any byte of a response: retry
        // once on a fresh connection, as browsers do, for safe methods only.
        let stale = matches!(&r, Err(HttpError::Closed))
            || matches!(&r, Err(HttpError::Io(e)) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe));
        if reused && stale && matches!(method, "GET" | "HEAD" | "OPTIONS") {
            let c = self
                .conn
                .insert(HttpConn::connect(&self.target, self.timeout).await?);
            return c.request(method, path, headers, body).await;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_pipelined() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        let (r, used) = parse_response(raw, false, false).unwrap().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.head.reason, "OK");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{\"status\":\"ok\"}");
        let (r2, used2) = parse_response(&raw[used..], false, false).unwrap().unwrap();
        assert_eq!(r2.status(), 404);
        assert_eq!(r2.body, b"{}");
        assert_eq!(used + used2, raw.len());
    }

    #[test]
    fn incomplete_inputs() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde";
        for i in 0..raw.len() {
            assert_eq!(
                parse_response(&raw[..i], false, false).unwrap(),
                None,
                "{i}"
            );
        }
        assert!(parse_response(raw, false, false).unwrap().is_some());
    }

    #[test]
    fn chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (r, used) = parse_response(raw, false, false).unwrap().unwrap();
        assert_eq!(r.body, b"Wikipedia");
        assert_eq!(&raw[used..], b"NEXT");
        for i in 0..used {
            assert_eq!(
                parse_response(&raw[..i], false, false).unwrap(),
                None,
                "{i}"
            );
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad, false, false).is_err());
    }

    #[test]
    fn no_body_statuses_and_eof() {
        let raw = b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\n\r\n";
        let (r, used) = parse_response(raw, false, false).unwrap().unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(used, raw.len());
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
        let (r, used) = parse_response(raw, false, false).unwrap().unwrap();
        assert_eq!(r.status(), 101);
        assert_eq!(&raw[used..], b"\x81\x02hi");
        let raw = b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil eof";
        assert_eq!(parse_response(raw, false, false).unwrap(), None);
        let (r, _) = parse_response(raw, true, false).unwrap().unwrap();
        assert_eq!(r.body, b"until eof");
        assert!(r.wants_close());
        // HEAD: Content-Length describes the GET body, none follows
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let (r, _) = parse_response(raw, false, true).unwrap().unwrap();
        assert!(r.body.is_empty());
    }

    #[test]
    fn malformed() {
        assert!(parse_response(b"HTTX/1.1 200 OK\r\n\r\n", false, false).is_err());
        assert!(parse_response(b"garbage", false, false).is_err());
        assert!(parse_response(b"HTTP/1.1 20 OK\r\n\r\n", false, false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", false, false).is_err());
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            false,
            false
        )
        .is_err());
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', HEAD_BYTES_MAX + 10));
        assert!(parse_response(&big, false, false).is_err());
    }

    #[test]
    fn headers_and_tokens() {
        let raw = b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST\r\nConnection: keep-alive, Upgrade\r\nContent-Length: 0\r\n\r\n";
        let (r, _) = parse_response(raw, false, false).unwrap().unwrap();
        assert_eq!(r.header("allow"), Some("GET, POST"));
        assert_eq!(r.head.tokens("connection"), vec!["keep-alive", "upgrade"]);
        assert!(!r.wants_close());
    }

    #[test]
    fn request_bytes() {
        let r = build_request(
            "POST",
            "/api/v1/stores/orders",
            "127.0.0.1:8080",
            &[("Idempotency-Key", "k1")],
            Some(b"{}"),
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /api/v1/stores/orders HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nIdempotency-Key: k1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let r = build_request("GET", "/healthz", "h", &[], None);
        assert_eq!(r, b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
