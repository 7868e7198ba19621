//! Writing responses straight into a connection's output buffer. Every response carries
//! CORS (the original allowed every origin) and an exact `Content-Length`, so pipelined
//! responses can be concatenated and sent with one write.

use std::io::Write;

/// The statuses the server answers with, each with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Created,
    NoContent,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UpgradeRequired,
    HeadersTooLarge,
    InternalError,
    NotImplemented,
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::Created => 201,
            Status::NoContent => 204,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::UpgradeRequired => 426,
            Status::HeadersTooLarge => 431,
            Status::InternalError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Created => "Created",
            Status::NoContent => "No Content",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::UpgradeRequired => "Upgrade Required",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// Appends a complete response. `extra_headers` are whole `Name: value\r\n` lines.
pub fn write(
    out: &mut Vec<u8>,
    status: Status,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    close: bool,
) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Access-Control-Allow-Origin: *\r\n{extra_headers}{}\r\n",
        status.code(),
        status.reason(),
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    );
    out.extend_from_slice(body);
}

pub fn json(out: &mut Vec<u8>, status: Status, body: &[u8], close: bool) {
    write(out, status, "application/json", "", body, close);
}

/// The contract's error shape: `{"error":"<HTTP reason>","message":"<detail>"}`.
pub fn error(out: &mut Vec<u8>, status: Status, message: &str, close: bool) {
    error_with_headers(out, status, message, "", close);
}

pub fn error_with_headers(
    out: &mut Vec<u8>,
    status: Status,
    message: &str,
    extra: &str,
    close: bool,
) {
    let body = serde_json::json!({ "error": status.reason(), "message": message }).to_string();
    write(
        out,
        status,
        "application/json",
        extra,
        body.as_bytes(),
        close,
    );
}

/// `OPTIONS` on any path: the permissive preflight answer of the original.
pub fn preflight(out: &mut Vec<u8>, close: bool) {
    write(
        out,
        Status::NoContent,
        "application/json",
        "Access-Control-Allow-Methods: GET,POST,PUT,PATCH,DELETE,OPTIONS\r\n\
         Access-Control-Allow-Headers: *\r\nAccess-Control-Max-Age: 86400\r\n",
        b"",
        close,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_has_the_contract_shape_and_cors() {
        let mut out = Vec::new();
        error(&mut out, Status::NotFound, "Order not found", false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body, r#"{"error":"Not Found","message":"Order not found"}"#);
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
