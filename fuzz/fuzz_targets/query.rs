//! `kakigori::http::query::{param, decode}` on arbitrary input.
//!
//! Invariants:
//! * neither ever panics;
//! * `decode` of bytes without `%` or `+` borrows them unchanged;
//! * `decode` agrees with a straightforward reference decoder, and never
//!   returns more bytes than it was given;
//! * for any bytes `b`, percent-encoding every byte as `%XX` (mixed case) and
//!   decoding gives `b` back;
//! * `param` agrees with a reference: the first pair whose decoded key is the
//!   name, its decoded value.
#![no_main]

use std::borrow::Cow;

use kakigori::http::query::{decode, param};
use libfuzzer_sys::fuzz_target;

fn hex(d: u8) -> Option<u8> {
    (d as char).to_digit(16).map(|v| v as u8)
}

/// Go's `url.QueryUnescape`, as the contract describes it.
fn reference_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex(*raw.get(i + 1)?)?;
                let lo = hex(*raw.get(i + 2)?)?;
                out.push(hi * 16 + lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn reference_param(query: &str, name: &str) -> Result<Option<Vec<u8>>, ()> {
    for pair in query.split('&') {
        let (key, value) = match pair.find('=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, ""),
        };
        if reference_decode(key.as_bytes()).ok_or(())? == name.as_bytes() {
            return reference_decode(value.as_bytes()).ok_or(()).map(Some);
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let raw = data.to_vec();

    // decode: borrowed when nothing to do, else the reference.
    match decode(&raw) {
        Ok(Cow::Borrowed(same)) => {
            assert!(!raw.iter().any(|&b| b == b'%' || b == b'+'));
            assert_eq!(same.as_ptr(), raw.as_ptr());
            assert_eq!(same, &raw[..]);
        }
        Ok(Cow::Owned(decoded)) => {
            assert!(raw.iter().any(|&b| b == b'%' || b == b'+'));
            assert!(decoded.len() <= raw.len());
            assert_eq!(Some(decoded), reference_decode(&raw));
        }
        Err(_) => assert_eq!(reference_decode(&raw), None),
    }

    // Percent-encoding every byte round-trips; the case of the hex digits
    // follows the input's bits so both cases are exercised.
    let mut encoded = Vec::with_capacity(raw.len() * 3);
    for (i, &b) in raw.iter().enumerate() {
        let upper = raw.get(i + 1).is_some_and(|n| n & 1 == 1);
        let text = if upper {
            format!("%{b:02X}")
        } else {
            format!("%{b:02x}")
        };
        encoded.extend_from_slice(text.as_bytes());
    }
    let decoded = decode(&encoded).expect("a fully percent-encoded string decodes");
    assert_eq!(&decoded[..], &raw[..]);

    // param: the input is "name\0query" when it has a NUL, else the query for "room".
    let Ok(text) = std::str::from_utf8(&raw) else {
        return;
    };
    let (name, query) = text.split_once('\0').unwrap_or(("room", text));
    let got = param(Some(query), name)
        .map(|v| v.map(Cow::into_owned))
        .map_err(|_| ());
    assert_eq!(
        got,
        reference_param(query, name),
        "query {query:?} name {name:?}"
    );
    assert_eq!(param(None, name), Ok(None));
    // A query that only holds the encoded name finds it, with an empty value.
    let mut just_name = String::new();
    for b in name.bytes() {
        just_name.push_str(&format!("%{b:02X}"));
    }
    assert_eq!(
        param(Some(&just_name), name).map(|v| v.map(Cow::into_owned)),
        Ok(Some(Vec::new()))
    );
});
