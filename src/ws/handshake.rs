//! The server half of the RFC 6455 §4.2 opening handshake.
//!
//! The HTTP layer has already parsed the request head; this module only
//! judges the upgrade headers and writes the `101` answer. It takes headers as
//! `(name, raw value)` pairs — what `httparse` hands out — so it neither
//! allocates nor depends on the HTTP parser.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The GUID every server appends to the client's key (§1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A base64-encoded SHA-1 digest (20 bytes) is always 28 characters.
const ACCEPT_KEY_BYTES: usize = 28;

/// A client key is a base64-encoded 16-byte nonce (§4.1), so 24 characters.
const CLIENT_KEY_BYTES: usize = 24;

/// Why a request cannot be upgraded; each maps to an HTTP error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// No `Upgrade: websocket` or no `upgrade` token in `Connection`: a plain
    /// request to a WebSocket-only path.
    NotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13. The answer must carry
    /// `Sec-WebSocket-Version: 13` so the client knows what we speak (§4.4).
    BadVersion,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes of base64.
    BadKey,
}

impl HandshakeError {
    /// The HTTP status to answer with: 426 Upgrade Required for a version we
    /// do not speak (as §4.4 suggests), 400 otherwise.
    pub fn status_code(self) -> u16 {
        match self {
            HandshakeError::BadVersion => 426,
            HandshakeError::NotUpgrade | HandshakeError::BadKey => 400,
        }
    }

    /// A header the error answer must carry, if any.
    pub fn required_header(self) -> Option<(&'static str, &'static str)> {
        match self {
            HandshakeError::BadVersion => Some(("Sec-WebSocket-Version", "13")),
            HandshakeError::NotUpgrade | HandshakeError::BadKey => None,
        }
    }

    /// A message for the JSON error body that tells the client what to fix.
    pub fn message(self) -> &'static str {
        match self {
            HandshakeError::NotUpgrade => "expected a WebSocket upgrade request",
            HandshakeError::BadVersion => "unsupported WebSocket version: only 13 is supported",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be 16 bytes encoded in base64",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for HandshakeError {}

/// Whether a comma-separated header value lists `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Checks that the request asks for a version-13 WebSocket upgrade and
/// returns its `Sec-WebSocket-Key`, still encoded, for [`write_response`].
///
/// Header names compare case-insensitively; `Upgrade` and `Connection` may
/// be lists and may repeat (`Connection: keep-alive, Upgrade` is what
/// Firefox sends). The method, path and `Host` are the HTTP layer's concern.
pub fn check_upgrade<'a>(
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<&'a str, HandshakeError> {
    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut version_13 = false;
    let mut keys_seen = 0u32;
    let mut key: &[u8] = &[];
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version_13 |= value.trim_ascii() == b"13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            keys_seen = keys_seen.saturating_add(1);
            key = value.trim_ascii();
        }
    }
    if !upgrade_websocket || !connection_upgrade {
        return Err(HandshakeError::NotUpgrade);
    }
    if !version_13 {
        return Err(HandshakeError::BadVersion);
    }
    if keys_seen != 1 || key.len() != CLIENT_KEY_BYTES {
        return Err(HandshakeError::BadKey);
    }
    let mut nonce = [0u8; 18];
    match STANDARD.decode_slice(key, &mut nonce) {
        Ok(16) => {}
        _ => return Err(HandshakeError::BadKey),
    }
    // Valid base64 is ASCII, hence UTF-8.
    std::str::from_utf8(key).map_err(|_| HandshakeError::BadKey)
}

/// SHA-1 of the key followed by the GUID (§4.2.2, step 5.4).
fn accept_digest(sec_websocket_key: &str) -> [u8; 20] {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(sec_websocket_key.as_bytes());
    sha1.update(ACCEPT_GUID);
    sha1.digest().bytes()
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(sec_websocket_key: &str) -> String {
    STANDARD.encode(accept_digest(sec_websocket_key))
}

/// Appends the whole `101 Switching Protocols` response head, blank line
/// included. No subprotocol or extension is negotiated, so none is echoed.
pub fn write_response(sec_websocket_key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Access-Control-Allow-Origin: *\r\n\
          Sec-WebSocket-Accept: ",
    );
    // Encoded on the stack: 20 bytes always give exactly 28 characters.
    let mut accept = [0u8; ACCEPT_KEY_BYTES];
    let written = STANDARD
        .encode_slice(accept_digest(sec_websocket_key), &mut accept)
        .unwrap_or(0);
    out.extend_from_slice(&accept[..written]);
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn check(headers: &[(&'static str, &'static str)]) -> Result<&'static str, HandshakeError> {
        check_upgrade(
            headers
                .iter()
                .map(|&(name, value)| (name, value.as_bytes())),
        )
    }

    fn browser_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("Host", "localhost:8080"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 §1.3 (also §4.2.2's worked example).
        assert_eq!(accept_key(RFC_KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn response_head_is_complete() {
        let mut out = b"prefix".to_vec();
        write_response(RFC_KEY, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "prefixHTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn accepts_real_browser_shapes() {
        assert_eq!(check(&browser_headers()), Ok(RFC_KEY));
        let firefox = [
            ("upgrade", "WebSocket"),
            ("CONNECTION", "keep-alive, Upgrade"),
            ("sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== "),
            ("Sec-WebSocket-Version", "13"),
        ];
        assert_eq!(check(&firefox), Ok(RFC_KEY));
        let split_connection = [
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive"),
            ("Connection", "upgrade"),
            ("Sec-WebSocket-Key", RFC_KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        assert_eq!(check(&split_connection), Ok(RFC_KEY));
    }

    #[test]
    fn plain_requests_are_not_upgrades() {
        assert_eq!(check(&[("Host", "x")]), Err(HandshakeError::NotUpgrade));
        let mut headers = browser_headers();
        headers[2] = ("Connection", "keep-alive, upgraded");
        assert_eq!(check(&headers), Err(HandshakeError::NotUpgrade));
        let mut headers = browser_headers();
        headers[1] = ("Upgrade", "h2c");
        assert_eq!(check(&headers), Err(HandshakeError::NotUpgrade));
        assert_eq!(HandshakeError::NotUpgrade.status_code(), 400);
        assert_eq!(
            HandshakeError::NotUpgrade.to_string(),
            "expected a WebSocket upgrade request"
        );
    }

    #[test]
    fn wrong_or_missing_version_asks_for_13() {
        let mut headers = browser_headers();
        headers[4] = ("Sec-WebSocket-Version", "8");
        assert_eq!(check(&headers), Err(HandshakeError::BadVersion));
        headers.remove(4);
        assert_eq!(check(&headers), Err(HandshakeError::BadVersion));
        assert_eq!(HandshakeError::BadVersion.status_code(), 426);
        assert_eq!(
            HandshakeError::BadVersion.required_header(),
            Some(("Sec-WebSocket-Version", "13"))
        );
    }

    #[test]
    fn keys_must_be_sixteen_bytes_of_base64() {
        for bad in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",       // no padding
            "dGhlIHNhbXBsZSBub25jZQ=!",     // not base64
            "dGhlIHNhbXBsZSBub25jZXg=",     // 17 bytes
            "dGhlIHNhbXBsZSBub25jZQ==AAAA", // too long
        ] {
            let mut headers = browser_headers();
            headers[3] = ("Sec-WebSocket-Key", bad);
            assert_eq!(check(&headers), Err(HandshakeError::BadKey), "{bad:?}");
        }
        let mut headers = browser_headers();
        headers.remove(3);
        assert_eq!(check(&headers), Err(HandshakeError::BadKey));
        let mut headers = browser_headers();
        headers.push(("Sec-WebSocket-Key", RFC_KEY));
        assert_eq!(check(&headers), Err(HandshakeError::BadKey), "repeated key");
    }

    #[test]
    fn non_utf8_values_do_not_panic() {
        let headers: [(&str, &[u8]); 4] = [
            ("Upgrade", b"websocket\xff"),
            ("Connection", b"\xffupgrade"),
            ("Sec-WebSocket-Key", b"\xff\xff"),
            ("Sec-WebSocket-Version", b"13"),
        ];
        assert_eq!(
            check_upgrade(headers.into_iter()),
            Err(HandshakeError::NotUpgrade)
        );
    }
}
