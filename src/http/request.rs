//! Reading one HTTP/1.1 request head out of a connection's buffer with `httparse`,
//! and pulling out the few headers the server acts on. Nothing here allocates: every
//! field borrows the connection's buffer.

/// Headers beyond this count make the head "too large" (431): real clients send ~10.
pub const HEADERS_MAX: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// Where a request's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The next `n` bytes after the head (`Content-Length`, or 0 without one).
    Length(usize),
    /// `Transfer-Encoding: chunked`: see [`super::chunked`].
    Chunked,
}

/// A parsed request head. `head_len` bytes of the buffer belong to it; the body, if
/// any, follows as `framing` says.
#[derive(Debug)]
pub struct Head<'b, 'h> {
    pub method: Method,
    pub path: &'b str,
    pub query: Option<&'b str>,
    pub head_len: usize,
    pub framing: Framing,
    /// The client asked to close after this request (or spoke HTTP/1.0 without keep-alive).
    pub close: bool,
    pub authorization: Option<&'b [u8]>,
    pub idempotency_key: Option<&'b [u8]>,
    pub headers: &'h [httparse::Header<'b>],
}

/// Why a head could not be read; each maps to one response.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More bytes are needed.
    Partial,
    /// 431: more header lines than [`HEADERS_MAX`].
    TooManyHeaders,
    /// 400, with a message for the client.
    Malformed(&'static str),
    /// 501: a transfer coding other than `chunked`.
    NotImplemented(&'static str),
}

/// Parses the head at the start of `buf`, using `storage` for the header table.
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    storage: &'h mut [httparse::Header<'b>; HEADERS_MAX],
) -> Result<Head<'b, 'h>, HeadError> {
    let mut request = httparse::Request::new(storage);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err(HeadError::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    let method = Method::parse(request.method.unwrap_or(""));
    let target = request.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let http_1_0 = request.version == Some(0);
    let mut close = http_1_0;
    let mut content_length: Option<usize> = None;
    // Transfer-Encoding is judged once every header is seen, so that the answer does
    // not depend on the order of the headers.
    let mut transfer_encoding = false;
    let mut chunked_codings = 0;
    let mut other_codings = false;
    let mut authorization = None;
    let mut idempotency_key = None;
    let headers: &'h [httparse::Header<'b>] = request.headers;
    for header in headers {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            // Only spaces and tabs may surround the digits (RFC 9110 OWS): anything a
            // proxy in front might read differently is refused, not guessed at.
            let digits = header.value.trim_ascii();
            let value = Some(digits)
                .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(HeadError::Malformed("invalid Content-Length"))?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(HeadError::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // A list of codings, possibly over several header lines; empty elements
            // are allowed and ignored (RFC 9110 §5.6.1).
            for coding in header.value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked_codings += 1;
                } else if !coding.is_empty() {
                    other_codings = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http_1_0 {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(header.value);
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            idempotency_key = Some(header.value);
        }
    }
    let framing = if transfer_encoding {
        // Both headers at once is how a request is smuggled past a proxy that reads
        // the other one (RFC 9112 §6.3); HTTP/1.0 has no transfer codings at all.
        if content_length.is_some() {
            return Err(HeadError::Malformed(
                "Transfer-Encoding and Content-Length together",
            ));
        }
        if http_1_0 {
            return Err(HeadError::Malformed(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if other_codings {
            return Err(HeadError::NotImplemented(
                "only the chunked transfer coding is supported",
            ));
        }
        if chunked_codings != 1 {
            return Err(HeadError::Malformed("invalid Transfer-Encoding"));
        }
        Framing::Chunked
    } else {
        Framing::Length(content_length.unwrap_or(0))
    };
    Ok(Head {
        method,
        path,
        query,
        head_len,
        framing,
        close,
        authorization,
        idempotency_key,
        headers,
    })
}

/// A fresh header table for [`parse`].
pub fn header_storage<'b>() -> [httparse::Header<'b>; HEADERS_MAX] {
    [httparse::EMPTY_HEADER; HEADERS_MAX]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(raw: &[u8]) -> (Method, String, Option<String>, usize, Framing, bool) {
        let mut storage = header_storage();
        let head = parse(raw, &mut storage).unwrap();
        (
            head.method,
            head.path.to_string(),
            head.query.map(str::to_string),
            head.head_len,
            head.framing,
            head.close,
        )
    }

    #[test]
    fn reads_path_query_length_and_keepalive() {
        let raw =
            b"POST /api/v1/stores/orders?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let (method, path, query, head_len, framing, close) = parse_ok(raw);
        assert_eq!(method, Method::Post);
        assert_eq!(path, "/api/v1/stores/orders");
        assert_eq!(query.as_deref(), Some("x=1"));
        assert_eq!(head_len, raw.len() - 5);
        assert_eq!(framing, Framing::Length(5));
        assert!(!close);
    }

    #[test]
    fn connection_close_and_http_1_0() {
        assert!(parse_ok(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").5);
        assert!(parse_ok(b"GET / HTTP/1.0\r\n\r\n").5);
        assert!(!parse_ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").5);
    }

    #[test]
    fn rejects_what_cannot_be_trusted() {
        let mut storage = header_storage();
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &mut storage).unwrap_err(),
            HeadError::Partial
        );
        let mut storage = header_storage();
        assert!(matches!(
            parse(b"GARBAGE\r\n\r\n", &mut storage),
            Err(HeadError::Malformed(_))
        ));
        let mut storage = header_storage();
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            parse(raw, &mut storage),
            Err(HeadError::Malformed(_))
        ));
        let mut storage = header_storage();
        let raw = b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(
            parse(raw, &mut storage),
            Err(HeadError::Malformed(_))
        ));
        let mut storage = header_storage();
        assert!(matches!(
            parse(b"GET http://x/ HTTP/1.1\r\n\r\n", &mut storage),
            Err(HeadError::Malformed(_))
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..HEADERS_MAX + 1 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut storage = header_storage();
        assert_eq!(
            parse(&many, &mut storage).unwrap_err(),
            HeadError::TooManyHeaders
        );
    }

    fn framing(raw: &[u8]) -> Result<Framing, HeadError> {
        let mut storage = header_storage();
        parse(raw, &mut storage).map(|head| head.framing)
    }

    #[test]
    fn transfer_encoding_chunked_and_what_is_refused() {
        for raw in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding:  CHUNKED \r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: ,chunked,\r\n\r\n",
        ] {
            assert_eq!(framing(raw), Ok(Framing::Chunked));
        }
        assert_eq!(framing(b"POST / HTTP/1.1\r\n\r\n"), Ok(Framing::Length(0)));
        for (raw, want) in [
            (
                &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"[..],
                HeadError::Malformed("Transfer-Encoding and Content-Length together"),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n",
                HeadError::Malformed("Transfer-Encoding and Content-Length together"),
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::Malformed("Transfer-Encoding in an HTTP/1.0 request"),
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::Malformed("invalid Transfer-Encoding"),
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
                HeadError::Malformed("invalid Transfer-Encoding"),
            ),
        ] {
            assert_eq!(framing(raw), Err(want), "{}", String::from_utf8_lossy(raw));
        }
        for raw in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
        ] {
            assert!(
                matches!(framing(raw), Err(HeadError::NotImplemented(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
