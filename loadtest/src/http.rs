//! HTTP/1.1 on keep-alive connections: requests written raw (so `rest` can
//! pipeline them), responses parsed with httparse. Bodies must be framed by
//! Content-Length: a keep-alive answer needs framing and the server never
//! chunks its small JSON bodies.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use httparse::Status;

use crate::fail::Fail;
use crate::net::{connect_start, Target};

pub const HEAD_BYTES_MAX: usize = 16 * 1024;
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, values trimmed.
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let h = self.headers.iter().find(|(n, _)| n == name);
        h.map(|(_, v)| v.as_str())
    }

    /// Does a comma-separated header (any occurrence) hold `token`?
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        values.any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parse the response at the front of `buf`; `Ok(None)`: need more bytes.
/// Returns it and the bytes it used.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() > HEAD_BYTES_MAX => {
            return Err(format!("response head over {HEAD_BYTES_MAX} bytes"))
        }
        Ok(Status::Partial) => return Ok(None),
        Err(e) => {
            let start = String::from_utf8_lossy(&buf[..buf.len().min(40)]);
            return Err(format!("not an HTTP response ({e}): {start:?}"));
        }
    };
    let status = r.code.unwrap_or(0);
    let header = |h: &httparse::Header| {
        let v = String::from_utf8_lossy(h.value);
        (h.name.to_ascii_lowercase(), v.trim().to_string())
    };
    let headers = r.headers.iter().map(header).collect();
    let resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len = match resp.header("content-length") {
        _ if status / 100 == 1 || status == 204 || status == 304 => 0,
        Some(v) => match v.parse() {
            Ok(n) if n <= BODY_BYTES_MAX => n,
            _ => return Err(format!("bad Content-Length {v:?}")),
        },
        None => return Err(format!("{status} response without Content-Length")),
    };
    if buf.len() < head + len {
        return Ok(None);
    }
    let body = buf[head..head + len].to_vec();
    Ok(Some((Response { body, ..resp }, head + len)))
}

/// A request's bytes; a body is sent as JSON.
pub fn build_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.map_or(0, <[u8]>::len));
    // writes into a Vec cannot fail
    let _ = write!(out, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(
            out,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// The kind of [`Fail`] for a connection the server closed before any byte
/// of the answer.
const CLOSED_EARLY: &str = "connection closed before the response";

/// A keep-alive HTTP/1.1 connection to the target, made when first needed
/// and made again after the server closed it.
pub struct HttpConn {
    target: Target,
    /// The source address (see [`crate::net::source_addr`]).
    src: IpAddr,
    /// Of every read and write.
    timeout: Duration,
    s: Option<TcpStream>,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
    /// `Authorization` of every [`HttpConn::request`].
    auth: Option<String>,
}

impl HttpConn {
    pub fn new(target: &Target, src: IpAddr, timeout: Duration) -> HttpConn {
        let (target, s, buf, auth) = (target.clone(), None, Vec::new(), None);
        HttpConn {
            target,
            src,
            timeout,
            s,
            buf,
            auth,
        }
    }

    /// Send `Authorization: <auth>` with every request.
    pub fn with_auth(self, auth: &str) -> HttpConn {
        let auth = Some(auth.to_string());
        HttpConn { auth, ..self }
    }

    /// The socket and the bytes read past the last response (after an
    /// upgrade: the first WebSocket frames).
    pub fn into_parts(self) -> Option<(TcpStream, Vec<u8>)> {
        Some((self.s?, self.buf))
    }

    async fn stream(&mut self) -> Result<&mut TcpStream, Fail> {
        if self.s.is_none() {
            let s = connect_start(self.target.addr, self.src)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.buf.clear();
            self.s = Some(s);
        }
        Ok(self.s.as_mut().expect("connected"))
    }

    /// Write request bytes (one or several pipelined requests).
    pub async fn send(&mut self, req: &[u8]) -> Result<(), Fail> {
        let r = self.stream().await?.write_all(req).await;
        if r.is_err() {
            self.s = None;
        }
        Ok(r?)
    }

    /// Read the next response; after an error or a `Connection: close`
    /// the next request connects anew.
    pub async fn read_response(&mut self) -> Result<Response, Fail> {
        let r = self.read_one().await;
        if r.as_ref()
            .map_or(true, |r| r.has_token("connection", "close"))
        {
            self.s = None;
        }
        r
    }

    async fn read_one(&mut self) -> Result<Response, Fail> {
        loop {
            match parse_response(&self.buf) {
                Ok(Some((resp, used))) => {
                    self.buf.drain(..used);
                    return Ok(resp);
                }
                Ok(None) => {}
                Err(e) => return Err(Fail::violation("malformed HTTP response", e)),
            }
            let old = self.buf.len();
            self.buf.resize(old + 4096, 0);
            let closed = || Fail::error(CLOSED_EARLY, "");
            let s = self.s.as_mut().ok_or_else(closed)?;
            let n = s.read(&mut self.buf[old..]).await;
            self.buf.truncate(old + *n.as_ref().unwrap_or(&0));
            match n? {
                0 if old == 0 => return Err(Fail::error(CLOSED_EARLY, "")),
                0 => return Err(Fail::error("connection closed mid-response", "")),
                _ => {}
            }
        }
    }

    /// A request without a body.
    pub async fn request(&mut self, method: &str, path: &str) -> Result<Response, Fail> {
        let reused = self.s.is_some();
        let auth = self.auth.as_deref().map(|a| ("Authorization", a));
        let hdrs: Vec<_> = auth.into_iter().collect();
        let req = build_request(method, path, &self.target.host, &hdrs, None);
        let r = match self.send(&req).await {
            Ok(()) => self.read_response().await,
            Err(f) => Err(f),
        };
        // A reused connection the server closed while it was idle (its
        // keep-alive limit) fails at once: retry a safe method once on a
        // fresh connection, as browsers do.
        match r {
            Err(f) if reused && method == "GET" && !f.violation && f.kind != "timeout" => {
                self.send(&req).await?;
                self.read_response().await
            }
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_and_requests() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 405 X\r\nConnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n";
        let (r, used) = parse_response(raw).unwrap().unwrap();
        let (r2, used2) = parse_response(&raw[used..]).unwrap().unwrap();
        assert_eq!(
            (r.status, &r.body[..], r2.status, used + used2),
            (200, &b"{}"[..], 405, raw.len())
        );
        assert!(r2.has_token("connection", "close") && !r.has_token("connection", "close"));
        assert!((0..used).all(|i| parse_response(&raw[..i]) == Ok(None)));
        for bad in [
            &b"HTTX/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(parse_response(bad).is_err());
        }
        let r = build_request("POST", "/o", "h:1", &[("K", "1")], Some(b"{}"));
        let want = "POST /o HTTP/1.1\r\nHost: h:1\r\nK: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(String::from_utf8(r).unwrap(), want);
    }
}
