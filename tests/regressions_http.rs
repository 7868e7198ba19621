//! Regressions found by fuzzing (`fuzz/fuzz_targets/http_head.rs`).
//!
//! Content-Length is `1*DIGIT` (RFC 9110 §8.6), with at most spaces or tabs around it
//! (OWS). `http::request::parse` trims the value with `str::trim`, which also strips
//! *Unicode* whitespace, so `Content-Length: \u{a0}5` (NBSP, bytes C2 A0 — httparse lets
//! obs-text bytes through in header values) was read as 5. A front proxy that refuses or
//! reads such a header differently would then disagree with us about where the body
//! ends: the classic request-smuggling set-up. Expected: 400 "invalid Content-Length".
//!
//! Fuzzer input (minimal): b"POST / HTTP/1.1\r\nContent-Length: \xc2\xa05\r\n\r\n"

use kakigori::http::request::{header_storage, parse, Framing, HeadError};

fn content_length(raw: &[u8]) -> Result<usize, HeadError> {
    let mut storage = header_storage();
    parse(raw, &mut storage).map(|head| match head.framing {
        Framing::Length(length) => length,
        Framing::Chunked => panic!("chunked framing from {raw:?}"),
    })
}

#[test]
fn content_length_with_spaces_and_tabs_is_fine() {
    assert_eq!(
        content_length(b"POST / HTTP/1.1\r\nContent-Length: \t 5 \t\r\n\r\nhello"),
        Ok(5)
    );
}

#[test]
fn content_length_surrounded_by_unicode_whitespace_is_malformed() {
    for (what, raw) in [
        (
            "NBSP before",
            &b"POST / HTTP/1.1\r\nContent-Length: \xc2\xa05\r\n\r\nhello"[..],
        ),
        (
            "NEL after",
            &b"POST / HTTP/1.1\r\nContent-Length: 5\xc2\x85\r\n\r\nhello"[..],
        ),
        (
            "ideographic space after",
            &b"POST / HTTP/1.1\r\nContent-Length: 5\xe3\x80\x80\r\n\r\nhello"[..],
        ),
        (
            "en quad before",
            &b"POST / HTTP/1.1\r\nContent-Length: \xe2\x80\x805\r\n\r\nhello"[..],
        ),
    ] {
        assert!(
            matches!(content_length(raw), Err(HeadError::Malformed(_))),
            "{what}: {:?}",
            content_length(raw)
        );
    }
}
