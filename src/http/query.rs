//! Query-string parameters, decoded the way Go's `url.Query().Get` does (the original
//! front end was written against it): `+` is a space, `%XX` is a byte.

use std::borrow::Cow;

/// Why a parameter could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct BadEncoding;

/// The first value of parameter `name` in `query`, percent-decoded. `Ok(None)` when absent.
pub fn param<'a>(query: Option<&'a str>, name: &str) -> Result<Option<Cow<'a, [u8]>>, BadEncoding> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(key.as_bytes())?.as_ref() == name.as_bytes() {
            return decode(value.as_bytes()).map(Some);
        }
    }
    Ok(None)
}

/// Percent-decodes `raw`; borrows when there is nothing to decode.
pub fn decode(raw: &[u8]) -> Result<Cow<'_, [u8]>, BadEncoding> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(BadEncoding)?;
                let high = hex_value(hex[0]).ok_or(BadEncoding)?;
                let low = hex_value(hex[1]).ok_or(BadEncoding)?;
                out.push(high << 4 | low);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(Cow::Owned(out))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_go() {
        let get = |q: &str, n: &str| param(Some(q), n).map(|v| v.map(|v| v.into_owned()));
        assert_eq!(get("room=abc", "room"), Ok(Some(b"abc".to_vec())));
        assert_eq!(get("x=1&room=a%20b+c", "room"), Ok(Some(b"a b c".to_vec())));
        assert_eq!(
            get("room=%E3%81%82", "room"),
            Ok(Some("あ".as_bytes().to_vec()))
        );
        assert_eq!(get("room", "room"), Ok(Some(Vec::new())));
        assert_eq!(get("rooms=1", "room"), Ok(None));
        assert_eq!(get("room=%zz", "room"), Err(BadEncoding));
        assert_eq!(get("room=%4", "room"), Err(BadEncoding));
        assert_eq!(param(None, "room"), Ok(None));
    }
}
