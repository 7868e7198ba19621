//! The chunked transfer coding of request bodies (RFC 9112 §7.1), decoded as it
//! arrives: an incremental state machine over byte slices that keeps a few integers
//! and never allocates.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! The framing is read strictly, because two parsers that disagree about where a body
//! ends are how requests are smuggled past a proxy: lines end in CRLF only, a size is
//! hex digits only and must fit 64 bits, whitespace after a size may only precede an
//! extension. Chunk extensions and trailer fields are skipped, within bounds. The
//! decoded body has a limit of its own, checked as each chunk announces its size, so an
//! oversized body is refused before its data is read.
//!
//! [`Decoder::decode_in_place`] is how a connection uses it: the body is compacted over
//! its own framing in the connection's buffer, so a chunked body costs no more buffer
//! than the same body sent with `Content-Length`.

use std::ops::Range;

/// Longest chunk-size line accepted, CRLF and extensions included: real clients send
/// a few hex digits; a longer line only costs the server time.
pub const SIZE_LINE_BYTES_MAX: usize = 1024;

/// Why a chunked body cannot be read; each maps to one response, after which the
/// connection is closed (where the next request begins is no longer known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// 400, with a message for the client.
    Malformed(&'static str),
    /// 413: the decoded body would exceed its limit.
    TooLarge,
    /// 431: the trailer section exceeds its limit.
    TrailersTooLarge,
}

/// What one [`Decoder::decode`] call did with its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input used, body data included.
    pub consumed: usize,
    /// Where in the input the body data of this call lies (empty when there was none).
    pub data: Range<usize>,
}

/// What [`Decoder::decode_in_place`] left at the start of its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    /// Bytes still in use: the body decoded so far and, once done, whatever followed
    /// the chunked body (the next pipelined request).
    pub len: usize,
    /// The body and its trailer section are complete.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// In the chunk size's hex digits.
    Size,
    /// Whitespace after the size: only an extension may follow it.
    SizeSpace,
    /// In a chunk extension, skipped up to the end of the line.
    Extension,
    /// The size line's CR was read; its LF must follow.
    SizeLf,
    /// In chunk data, `size` bytes of it still to come.
    Data,
    /// Chunk data ended; its CR must follow.
    DataCr,
    DataLf,
    /// At the start of a trailer field line, or of the empty line that ends the body.
    TrailerStart,
    /// In a trailer field line, skipped up to its end.
    Trailer,
    TrailerLf,
    /// The final empty line's CR was read; its LF ends the body.
    EndLf,
    Done,
}

/// Decodes one chunked body. Feed it the bytes after the request head, in pieces of
/// any size, until [`is_done`](Self::is_done).
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// The size being read; then, in [`State::Data`], what is left of the chunk.
    size: u64,
    size_line_bytes: usize,
    trailer_bytes: usize,
    body_bytes: usize,
    body_bytes_max: usize,
    trailer_bytes_max: usize,
}

impl Decoder {
    pub fn new(body_bytes_max: usize, trailer_bytes_max: usize) -> Decoder {
        Decoder {
            state: State::SizeStart,
            size: 0,
            size_line_bytes: 0,
            trailer_bytes: 0,
            body_bytes: 0,
            body_bytes_max,
            trailer_bytes_max,
        }
    }

    /// Body bytes handed out so far.
    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    /// The last chunk and the trailer section have been read: the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads framing from `input` until body data, the end of the body or the end of
    /// the input, and returns at most one run of body data. Input after the end of the
    /// body is left unconsumed; once done, nothing more is consumed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkedError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let available = (input.len() - at) as u64;
                let taken = self.size.min(available);
                self.size -= taken;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                // `taken` is at most `available`, a slice length.
                let end = at + taken as usize;
                self.body_bytes += taken as usize;
                return Ok(Decoded {
                    consumed: end,
                    data: at..end,
                });
            }
            self.framing_byte(input[at])?;
            at += 1;
        }
        Ok(Decoded {
            consumed: at,
            data: at..at,
        })
    }

    /// Decodes in place. `buf[..body_bytes()]` is the body decoded so far and the
    /// rest is raw input that follows what was already read; body data is moved down
    /// to follow the body and the framing is dropped, so afterwards the buffer holds
    /// the body, then (once done) the bytes after the chunked body, in its first
    /// [`InPlace::len`] bytes.
    pub fn decode_in_place(&mut self, buf: &mut [u8]) -> Result<InPlace, ChunkedError> {
        let mut read = self.body_bytes;
        while read < buf.len() && !self.is_done() {
            let write = self.body_bytes;
            let step = self.decode(&buf[read..])?;
            buf.copy_within(read + step.data.start..read + step.data.end, write);
            read += step.consumed;
        }
        let rest = buf.len() - read;
        buf.copy_within(read.., self.body_bytes);
        Ok(InPlace {
            len: self.body_bytes + rest,
            done: self.is_done(),
        })
    }

    /// One byte of a size line, of the CRLF after data, or of the trailer section.
    fn framing_byte(&mut self, byte: u8) -> Result<(), ChunkedError> {
        use ChunkedError::Malformed;
        use State::*;
        match self.state {
            SizeStart | Size | SizeSpace | Extension | SizeLf => {
                self.size_line_bytes += 1;
                if self.size_line_bytes > SIZE_LINE_BYTES_MAX {
                    return Err(Malformed("chunk-size line is too long"));
                }
            }
            TrailerStart | Trailer | TrailerLf | EndLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > self.trailer_bytes_max {
                    return Err(ChunkedError::TrailersTooLarge);
                }
            }
            DataCr | DataLf | Data | Done => {}
        }
        self.state = match (self.state, byte) {
            (SizeStart | Size, _) if byte.is_ascii_hexdigit() => {
                let digit = char::from(byte).to_digit(16).expect("a hex digit");
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(u64::from(digit)))
                    .ok_or(Malformed("chunk size does not fit 64 bits"))?;
                Size
            }
            (SizeStart, _) => return Err(Malformed("chunk size is not hexadecimal")),
            (Size | SizeSpace | Extension, b'\n') => {
                return Err(Malformed("chunk-size line does not end in CRLF"))
            }
            (Size | SizeSpace, b' ' | b'\t') => SizeSpace,
            (Size | SizeSpace, b';') => Extension,
            (Size, b'\r') => SizeLf,
            (Size, _) => return Err(Malformed("chunk size is not hexadecimal")),
            (SizeSpace, _) => return Err(Malformed("whitespace after a chunk size")),
            (Extension, b'\r') => SizeLf,
            (Extension, _) if is_field_byte(byte) => Extension,
            (Extension, _) => return Err(Malformed("invalid byte in a chunk extension")),
            (SizeLf, b'\n') => self.chunk_begins()?,
            (SizeLf, _) => return Err(Malformed("chunk-size line does not end in CRLF")),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.size_line_bytes = 0;
                SizeStart
            }
            (DataCr | DataLf, _) => return Err(Malformed("chunk data does not end in CRLF")),
            (TrailerStart | Trailer, b'\n') => {
                return Err(Malformed("trailer line does not end in CRLF"))
            }
            (TrailerStart, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (TrailerStart | Trailer, _) if is_field_byte(byte) => Trailer,
            (TrailerStart | Trailer, _) => return Err(Malformed("invalid byte in a trailer")),
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            (TrailerLf | EndLf, _) => return Err(Malformed("trailer line does not end in CRLF")),
            (Data | Done, _) => unreachable!("decode hands out data and stops when done"),
        };
        Ok(())
    }

    /// A size line is complete: data follows, or the trailer section after size 0.
    fn chunk_begins(&mut self) -> Result<State, ChunkedError> {
        if self.size == 0 {
            return Ok(State::TrailerStart);
        }
        let room = (self.body_bytes_max - self.body_bytes) as u64;
        if self.size > room {
            return Err(ChunkedError::TooLarge);
        }
        Ok(State::Data)
    }
}

/// A byte allowed inside a field line or an extension (RFC 9110 §5.5: visible ASCII,
/// space, tab and obs-text); control bytes, a lone CR or LF among them, are not.
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BODY_MAX: usize = 64 << 10;
    const TRAILERS_MAX: usize = 8 << 10;

    /// Decodes `raw` in one piece: the body and how many bytes the chunked body took.
    fn decode_all(raw: &[u8]) -> Result<(Vec<u8>, usize), ChunkedError> {
        let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
        let mut body = Vec::new();
        let mut at = 0;
        while at < raw.len() && !decoder.is_done() {
            let step = decoder.decode(&raw[at..])?;
            body.extend_from_slice(&raw[at..][step.data]);
            at += step.consumed;
        }
        assert!(decoder.is_done(), "incomplete: {raw:?}");
        assert_eq!(decoder.body_bytes(), body.len());
        Ok((body, at))
    }

    fn error_of(raw: &[u8]) -> ChunkedError {
        let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
        let mut at = 0;
        loop {
            match decoder.decode(&raw[at..]) {
                Ok(step) if step.consumed > 0 => at += step.consumed,
                Ok(_) => panic!("no error, needs more after {at} bytes: {raw:?}"),
                Err(error) => return error,
            }
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let raw = b"5\r\nhello\r\n7;name=value;q=\"a b\"\r\n, world\r\n0\r\n\r\nNEXT";
        assert_eq!(
            decode_all(raw).unwrap(),
            (b"hello, world".to_vec(), raw.len() - 4)
        );
        let raw = b"A \t;ext\r\n0123456789\r\n000;last\r\nExpires: never\r\nX-A: b\r\n\r\n";
        assert_eq!(
            decode_all(raw).unwrap(),
            (b"0123456789".to_vec(), raw.len())
        );
        assert_eq!(decode_all(b"0\r\n\r\n").unwrap(), (Vec::new(), 5));
        let leading_zeros = b"00000000000000000000000000000003\r\nabc\r\n0\r\n\r\n";
        assert_eq!(decode_all(leading_zeros).unwrap().0, b"abc");
    }

    #[test]
    fn refuses_broken_framing() {
        for (raw, why) in [
            (&b"\r\n"[..], "chunk size is not hexadecimal"),
            (b"x\r\n", "chunk size is not hexadecimal"),
            (b"+5\r\nhello\r\n0\r\n\r\n", "chunk size is not hexadecimal"),
            (b"0x5\r\nhello\r\n", "chunk size is not hexadecimal"),
            (b"5\nhello\r\n", "chunk-size line does not end in CRLF"),
            (b"5 \r\nhello\r\n", "whitespace after a chunk size"),
            (b"5;a\nhello", "chunk-size line does not end in CRLF"),
            (b"5;\x00\r\n", "invalid byte in a chunk extension"),
            (b"5\r\rhello", "chunk-size line does not end in CRLF"),
            (b"5\r\nhelloX\r\n", "chunk data does not end in CRLF"),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data does not end in CRLF"),
            (b"5\r\nhello\rX", "chunk data does not end in CRLF"),
            (b"0\r\nX: y\n\r\n", "trailer line does not end in CRLF"),
            (b"0\r\nX:\x7f\r\n\r\n", "invalid byte in a trailer"),
            (b"0\r\nX: y\r\r\n", "trailer line does not end in CRLF"),
            (b"0\r\n\rX", "trailer line does not end in CRLF"),
            (b"0\r\n\n", "trailer line does not end in CRLF"),
            (b"10000000000000000\r\n", "chunk size does not fit 64 bits"),
        ] {
            assert_eq!(
                error_of(raw),
                ChunkedError::Malformed(why),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut long = b"1;".to_vec();
        long.resize(SIZE_LINE_BYTES_MAX, b'x');
        long.extend_from_slice(b"\r\n");
        assert_eq!(
            error_of(&long),
            ChunkedError::Malformed("chunk-size line is too long")
        );
        // Exactly at the limit is fine.
        long.truncate(SIZE_LINE_BYTES_MAX - 2);
        long.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert_eq!(decode_all(&long).unwrap().0, b"a");
    }

    #[test]
    fn the_body_limit_applies_to_the_decoded_body_before_its_data_arrives() {
        let exactly = b"6\r\nabcdef\r\n4;pad-the-framing\r\nwxyz\r\n0\r\n\r\n";
        let mut decoder = Decoder::new(10, TRAILERS_MAX);
        let mut buf = exactly.to_vec();
        assert_eq!(
            decoder.decode_in_place(&mut buf),
            Ok(InPlace {
                len: 10,
                done: true
            })
        );
        // One byte over: refused at its size line, before any of its data is read.
        let mut decoder = Decoder::new(10, TRAILERS_MAX);
        assert_eq!(decoder.decode(b"6\r\nabcdef\r\n").unwrap().data, 3..9);
        assert_eq!(decoder.decode(b"\r\n5\r\n"), Err(ChunkedError::TooLarge));
        let mut decoder = Decoder::new(10, TRAILERS_MAX);
        assert_eq!(
            decoder.decode(b"ffffffffffffffff\r\n"),
            Err(ChunkedError::TooLarge)
        );
    }

    #[test]
    fn trailers_are_bounded() {
        let mut decoder = Decoder::new(BODY_MAX, 8);
        assert_eq!(
            decoder.decode(b"0\r\nA: b\r\n\r\n").unwrap().consumed,
            11,
            "eight bytes of trailer section fit"
        );
        let mut decoder = Decoder::new(BODY_MAX, 8);
        assert_eq!(
            decoder.decode(b"0\r\nA: bc\r\n\r\n"),
            Err(ChunkedError::TrailersTooLarge)
        );
    }

    #[test]
    fn nothing_is_consumed_after_the_end() {
        let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
        assert_eq!(decoder.decode(b"0\r\n\r\nGET").unwrap().consumed, 5);
        assert!(decoder.is_done());
        assert_eq!(
            decoder.decode(b"GET").unwrap(),
            Decoded {
                consumed: 0,
                data: 0..0
            }
        );
    }

    #[test]
    fn in_place_leaves_the_body_then_the_next_request() {
        let mut buf = b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec();
        let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
        let left = decoder.decode_in_place(&mut buf).unwrap();
        assert!(left.done);
        assert_eq!(&buf[..left.len], b"abcdeGET / HTTP/1.1\r\n\r\n");
        assert_eq!(decoder.body_bytes(), 5);
    }

    /// Encodes `body` cut into chunks of the given sizes (cycled; 0 is taken as 1),
    /// with an extension on some size lines, and `trailers`.
    fn encode(body: &[u8], sizes: &[usize], trailers: &[String]) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let size = sizes
                .get(i % sizes.len().max(1))
                .copied()
                .unwrap_or(1)
                .max(1);
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            let extension = if i % 3 == 1 { ";n=\"v\"" } else { "" };
            let spelled = if i % 2 == 0 {
                format!("{:x}", chunk.len())
            } else {
                format!("00{:X}", chunk.len())
            };
            raw.extend_from_slice(format!("{spelled}{extension}\r\n").as_bytes());
            raw.extend_from_slice(chunk);
            raw.extend_from_slice(b"\r\n");
            rest = after;
            i += 1;
        }
        raw.extend_from_slice(b"0\r\n");
        for trailer in trailers {
            raw.extend_from_slice(trailer.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw
    }

    proptest! {
        /// However the body is chunked and however the input is split into reads,
        /// the same body comes out, and the bytes after it are left alone.
        #[test]
        fn any_chunking_and_any_split_decode_to_the_body(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(0usize..80, 0..6),
            trailers in proptest::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,12}", 0..3),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            let raw = encode(&body, &sizes, &trailers);
            let next = b"GET / HTTP/1.1\r\n\r\n";
            let mut wire = raw.clone();
            wire.extend_from_slice(next);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();

            // Slices, read by read, as a caller of `decode` sees them.
            let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
            let mut got = Vec::new();
            let (mut at, mut arrived) = (0, 0);
            for &cut in &cuts {
                arrived = arrived.max(cut);
                while at < arrived && !decoder.is_done() {
                    let step = decoder.decode(&wire[at..arrived]).unwrap();
                    prop_assert!(step.consumed > 0);
                    got.extend_from_slice(&wire[at..arrived][step.data]);
                    at += step.consumed;
                }
            }
            prop_assert!(decoder.is_done());
            prop_assert_eq!(&got, &body);
            prop_assert_eq!(at, raw.len());

            // In place, as the connection does: compact, then append the next read.
            let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
            let mut buf = Vec::new();
            let mut sent = 0;
            for &cut in &cuts {
                if cut <= sent || decoder.is_done() {
                    continue;
                }
                buf.extend_from_slice(&wire[sent..cut]);
                sent = cut;
                let left = decoder.decode_in_place(&mut buf).unwrap();
                buf.truncate(left.len);
                if !left.done {
                    prop_assert_eq!(left.len, decoder.body_bytes(), "all input consumed");
                }
            }
            buf.extend_from_slice(&wire[sent..]);
            prop_assert!(decoder.is_done());
            prop_assert_eq!(&buf[..body.len()], &body[..]);
            prop_assert_eq!(&buf[body.len()..], &next[..]);
        }

        /// Arbitrary bytes never panic, and whatever is handed out fits the limit.
        #[test]
        fn arbitrary_input_is_refused_or_bounded(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut decoder = Decoder::new(16, 32);
            let mut at = 0;
            while at < input.len() && !decoder.is_done() {
                match decoder.decode(&input[at..]) {
                    Ok(step) => at += step.consumed,
                    Err(_) => break,
                }
                prop_assert!(decoder.body_bytes() <= 16);
            }
        }
    }
}
