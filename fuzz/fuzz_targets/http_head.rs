//! `kakigori::http::request::parse` on arbitrary bytes.
//!
//! Invariants (beyond "never panics"):
//! * a complete head has `head_len <= input.len()`, and parsing exactly
//!   `&buf[..head_len]` gives the very same head (nothing after the head can
//!   change how it reads, and nothing before its end makes it complete);
//! * a `Framing::Length` comes only from `Content-Length` values that are ASCII
//!   digits (optionally surrounded by spaces/tabs), and equals their value;
//! * `Framing::Chunked` only when `Transfer-Encoding` names `chunked` exactly once,
//!   nothing else, in HTTP/1.1 and without `Content-Length`;
//! * `close`, `authorization`, `idempotency_key` agree with the header table.
#![no_main]

use kakigori::http::request::{header_storage, parse, Framing, Head, HeadError, Method};
use libfuzzer_sys::fuzz_target;

/// Everything a `Head` says, owned, so two parses can be compared.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    head_len: usize,
    framing: Framing,
    close: bool,
    authorization: Option<Vec<u8>>,
    idempotency_key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

fn seen(head: &Head<'_, '_>) -> Seen {
    Seen {
        method: head.method,
        path: head.path.to_owned(),
        query: head.query.map(str::to_owned),
        head_len: head.head_len,
        framing: head.framing,
        close: head.close,
        authorization: head.authorization.map(<[u8]>::to_vec),
        idempotency_key: head.idempotency_key.map(<[u8]>::to_vec),
        headers: head
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    }
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if !is_ows(*first) {
            break;
        }
        v = rest;
    }
    while let [rest @ .., last] = v {
        if !is_ows(*last) {
            break;
        }
        v = rest;
    }
    v
}

fuzz_target!(|data: &[u8]| {
    // An exactly sized copy: any read past the end is an ASan report.
    let buf = data.to_vec();
    let mut storage = header_storage();
    let head = match parse(&buf, &mut storage) {
        Ok(head) => head,
        Err(HeadError::Partial | HeadError::TooManyHeaders) => return,
        Err(HeadError::Malformed(why) | HeadError::NotImplemented(why)) => {
            assert!(!why.is_empty());
            return;
        }
    };
    let first = seen(&head);
    assert!(
        first.head_len <= buf.len(),
        "head_len past the input: {first:?}"
    );
    assert!(first.head_len > 0);
    assert!(first.path.starts_with('/'));
    assert!(!first.path.contains('?'));

    // Content-Length: digits only, every copy the same value.
    let mut lengths = first
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| {
            let digits = trim_ows(value);
            assert!(
                !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
                "Content-Length accepted from non-digits: {value:?} -> {:?}",
                first.framing
            );
            std::str::from_utf8(digits)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .peekable();
    let length = lengths.peek().copied();
    assert!(lengths.all(|l| Some(l) == length), "conflicting lengths");
    let codings: Vec<Vec<u8>> = first
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, value)| {
            value
                .split(|&b| b == b',')
                .map(|c| trim_ows(c).to_ascii_lowercase())
        })
        .filter(|coding| !coding.is_empty())
        .collect();
    let transfer_encoding = first
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
    match first.framing {
        Framing::Length(n) => {
            assert!(!transfer_encoding, "Transfer-Encoding ignored");
            assert_eq!(n, length.unwrap_or(0));
        }
        Framing::Chunked => {
            assert_eq!(length, None, "chunked despite Content-Length");
            assert_eq!(codings, [b"chunked".to_vec()], "chunked from {codings:?}");
        }
    }
    let named = |want: &str| {
        first
            .headers
            .iter()
            .rev()
            .find(|(name, _)| name.eq_ignore_ascii_case(want))
            .map(|(_, value)| value.clone())
    };
    assert_eq!(first.authorization, named("authorization"));
    assert_eq!(first.idempotency_key, named("idempotency-key"));

    // Exactly the head's bytes parse to the same head.
    let exact = buf[..first.head_len].to_vec();
    let mut storage = header_storage();
    let again = parse(&exact, &mut storage)
        .map(|head| seen(&head))
        .unwrap_or_else(|e| panic!("head of {} bytes no longer parses: {e:?}", first.head_len));
    assert_eq!(first, again);

    // One byte less is never a complete head.
    let shorter = buf[..first.head_len - 1].to_vec();
    let mut storage = header_storage();
    if let Ok(head) = parse(&shorter, &mut storage) {
        panic!(
            "a prefix of a head is a complete head too: {:?}",
            seen(&head)
        );
    }
});
