//! The RFC 6455 §5 frame codec, seen from the server.
//!
//! Parsing works on whatever prefix of a frame has arrived so far: the
//! connection keeps one small read buffer, asks [`parse_client_header`] what
//! the next frame is, and only waits for (and only buffers) the payload once
//! the header has been judged acceptable. Every check that the header alone
//! can decide — masking, reserved bits, control-frame rules, the size limit —
//! is made as soon as the bytes carrying it are present, so a hostile client
//! can never make us buffer a frame we were going to refuse anyway.
//!
//! Server frames are never masked (§5.1), so one encoded frame is the same
//! bytes for every client: a room encodes a broadcast once and shares it.

use crate::limits::{
    CLIENT_FRAME_HEADER_BYTES_MAX, CLOSE_PROTOCOL_ERROR, CLOSE_REASON_BYTES_MAX, CLOSE_TOO_BIG,
    CONTROL_PAYLOAD_BYTES_MAX, SERVER_FRAME_HEADER_BYTES_MAX,
};

/// Frame opcodes defined by RFC 6455 §5.2; every other value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// The opcode for the low four bits of a frame's first byte, if defined.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The four bits this opcode is written as.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may interleave with the fragments of
    /// a data message and have stricter rules: no fragmentation, ≤ 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed client frame header. The payload follows at `header_len` and is
/// `payload_len` bytes long, still masked with `mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    pub payload_len: usize,
    pub header_len: usize,
}

impl FrameHeader {
    /// Bytes the whole frame occupies in the read buffer: header plus payload.
    /// Cannot overflow: [`parse_client_header`] refuses lengths that would.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Why a header could not be accepted (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The buffer ends before the header does; read more and ask again.
    NeedMore,
    /// The client broke RFC 6455; close with 1002 and this reason.
    Protocol(&'static str),
    /// The declared payload is over the limit; close with 1009.
    TooBig,
}

impl HeaderError {
    /// The close code to send for this error, or `None` for [`HeaderError::NeedMore`].
    pub fn close_code(self) -> Option<u16> {
        match self {
            HeaderError::NeedMore => None,
            HeaderError::Protocol(_) => Some(CLOSE_PROTOCOL_ERROR),
            HeaderError::TooBig => Some(CLOSE_TOO_BIG),
        }
    }

    /// A short reason for the close frame (≤ 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            HeaderError::NeedMore => "",
            HeaderError::Protocol(reason) => reason,
            HeaderError::TooBig => "frame too big",
        }
    }
}

/// The largest payload length we can represent without `frame_len` overflowing.
const PAYLOAD_LEN_CEILING: usize = usize::MAX - CLIENT_FRAME_HEADER_BYTES_MAX;

/// Parses a client frame header at the start of `buf`.
///
/// Client frames must be masked (§5.1); reserved bits must be clear since we
/// negotiate no extension; opcodes must be defined; control frames must be
/// final and carry ≤ 125 bytes; a 64-bit length must have its top bit clear.
/// All of those are [`HeaderError::Protocol`]. A payload longer than
/// `max_payload_bytes` is [`HeaderError::TooBig`], decided from the header
/// alone so the payload is never buffered. Non-minimal length encodings are
/// accepted, as most servers do. Never panics, whatever `buf` holds.
pub fn parse_client_header(
    buf: &[u8],
    max_payload_bytes: usize,
) -> Result<FrameHeader, HeaderError> {
    let Some(&first) = buf.first() else {
        return Err(HeaderError::NeedMore);
    };
    if first & 0x70 != 0 {
        return Err(HeaderError::Protocol("reserved bits set"));
    }
    let Some(opcode) = Opcode::from_bits(first & 0x0F) else {
        return Err(HeaderError::Protocol("unknown opcode"));
    };
    let fin = first & 0x80 != 0;
    if opcode.is_control() && !fin {
        return Err(HeaderError::Protocol("fragmented control frame"));
    }

    let Some(&second) = buf.get(1) else {
        return Err(HeaderError::NeedMore);
    };
    if second & 0x80 == 0 {
        return Err(HeaderError::Protocol("client frame not masked"));
    }
    let short_len = second & 0x7F;
    if opcode.is_control() && usize::from(short_len) > CONTROL_PAYLOAD_BYTES_MAX {
        return Err(HeaderError::Protocol("control frame over 125 bytes"));
    }

    let (payload_len, length_bytes): (u64, usize) = match short_len {
        126 => {
            let Some(&[high, low]) = buf.get(2..4) else {
                return Err(HeaderError::NeedMore);
            };
            (u64::from(u16::from_be_bytes([high, low])), 2)
        }
        127 => {
            let mut bytes = [0u8; 8];
            let Some(extended) = buf.get(2..10) else {
                return Err(HeaderError::NeedMore);
            };
            bytes.copy_from_slice(extended);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(HeaderError::Protocol("payload length has its top bit set"));
            }
            (len, 8)
        }
        len => (u64::from(len), 0),
    };
    let limit = max_payload_bytes.min(PAYLOAD_LEN_CEILING);
    let payload_len = match usize::try_from(payload_len) {
        Ok(len) if len <= limit => len,
        _ => return Err(HeaderError::TooBig),
    };

    let mask_at = 2 + length_bytes;
    let Some(&[m0, m1, m2, m3]) = buf.get(mask_at..mask_at + 4) else {
        return Err(HeaderError::NeedMore);
    };
    Ok(FrameHeader {
        fin,
        opcode,
        mask: [m0, m1, m2, m3],
        payload_len,
        header_len: mask_at + 4,
    })
}

/// Applies (or removes — XOR is its own inverse) a frame mask in place.
///
/// Works eight bytes at a time: the mask repeats every four bytes, so a
/// doubled mask lines up with every 8-byte chunk counted from the start.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [m0, m1, m2, m3] = mask;
    let mask_word = u64::from_ne_bytes([m0, m1, m2, m3, m0, m1, m2, m3]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let unmasked = u64::from_ne_bytes(word) ^ mask_word;
        chunk.copy_from_slice(&unmasked.to_ne_bytes());
    }
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[index & 3];
    }
}

/// Appends the fixed and length bytes of a final frame; `mask_bit` is 0x80
/// for client frames and 0 for ours.
fn push_header(opcode: Opcode, payload_len: usize, mask_bit: u8, out: &mut Vec<u8>) {
    out.push(0x80 | opcode.bits());
    if payload_len <= CONTROL_PAYLOAD_BYTES_MAX {
        // Fits in seven bits by the test above.
        out.push(mask_bit | payload_len as u8);
    } else if let Ok(len) = u16::try_from(payload_len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// Appends one final, unmasked server frame. A control frame's payload must be
/// ≤ 125 bytes; the callers here only ever echo a ping or send a close.
pub fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!opcode.is_control() || payload.len() <= CONTROL_PAYLOAD_BYTES_MAX);
    out.reserve(SERVER_FRAME_HEADER_BYTES_MAX + payload.len());
    push_header(opcode, payload.len(), 0, out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and as much of `reason` as fits (cut at a
/// character boundary so the reason stays UTF-8, as §5.5.1 requires).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut reason_len = reason.len().min(CLOSE_REASON_BYTES_MAX);
    while !reason.is_char_boundary(reason_len) {
        reason_len -= 1;
    }
    let reason = &reason.as_bytes()[..reason_len];
    out.reserve(SERVER_FRAME_HEADER_BYTES_MAX + 2 + reason.len());
    push_header(Opcode::Close, 2 + reason.len(), 0, out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// Appends one final, masked client frame: what a load-test client sends.
pub fn encode_client_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(CLIENT_FRAME_HEADER_BYTES_MAX + payload.len());
    push_header(opcode, payload.len(), 0x80, out);
    out.extend_from_slice(&mask);
    let payload_at = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[payload_at..], mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CLOSE_NORMAL;
    use proptest::prelude::*;

    const LIMIT: usize = 4096;

    fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_client_frame(opcode, payload, [0x37, 0xfa, 0x21, 0x3d], &mut out);
        out
    }

    #[test]
    fn parses_the_rfc_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let mut frame = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let header = parse_client_header(&frame, LIMIT).unwrap();
        assert_eq!(
            header,
            FrameHeader {
                fin: true,
                opcode: Opcode::Text,
                mask: [0x37, 0xfa, 0x21, 0x3d],
                payload_len: 5,
                header_len: 6,
            }
        );
        assert_eq!(header.frame_len(), frame.len());
        unmask(&mut frame[6..], header.mask);
        assert_eq!(&frame[6..], b"Hello");
        assert_eq!(
            client_frame(Opcode::Text, b"Hello"),
            vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn every_proper_prefix_needs_more() {
        for payload_len in [0usize, 5, 125, 126, 300, 65_535, 65_536] {
            let payload = vec![b'x'; payload_len];
            let frame = client_frame(Opcode::Binary, &payload);
            let header = parse_client_header(&frame, usize::MAX).unwrap();
            assert_eq!(header.payload_len, payload_len);
            for cut in 0..header.header_len {
                assert_eq!(
                    parse_client_header(&frame[..cut], usize::MAX),
                    Err(HeaderError::NeedMore)
                );
            }
        }
    }

    #[test]
    fn refuses_unmasked_client_frames() {
        let mut frame = Vec::new();
        encode_frame(Opcode::Text, b"hi", &mut frame);
        assert_eq!(
            parse_client_header(&frame, LIMIT),
            Err(HeaderError::Protocol("client frame not masked"))
        );
    }

    #[test]
    fn refuses_reserved_bits_and_opcodes() {
        for rsv in [0x40u8, 0x20, 0x10] {
            assert!(matches!(
                parse_client_header(&[0x81 | rsv], LIMIT),
                Err(HeaderError::Protocol(_))
            ));
        }
        for opcode in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                parse_client_header(&[0x80 | opcode], LIMIT),
                Err(HeaderError::Protocol("unknown opcode"))
            );
        }
    }

    #[test]
    fn refuses_bad_control_frames() {
        // Ping without FIN.
        assert!(matches!(
            parse_client_header(&[0x09], LIMIT),
            Err(HeaderError::Protocol(_))
        ));
        // Ping declaring 126 bytes, refused before its extended length arrives.
        assert!(matches!(
            parse_client_header(&[0x89, 0x80 | 126], LIMIT),
            Err(HeaderError::Protocol(_))
        ));
        // 125 is fine.
        let frame = client_frame(Opcode::Ping, &[7; 125]);
        assert_eq!(parse_client_header(&frame, LIMIT).unwrap().payload_len, 125);
    }

    #[test]
    fn too_big_is_decided_before_the_mask_arrives() {
        assert_eq!(
            parse_client_header(&[0x81, 0x80 | 126, 0x10, 0x01], LIMIT),
            Err(HeaderError::TooBig)
        );
        let frame = client_frame(Opcode::Text, &[b'a'; LIMIT + 1]);
        assert_eq!(parse_client_header(&frame, LIMIT), Err(HeaderError::TooBig));
        let frame = client_frame(Opcode::Text, &[b'a'; LIMIT]);
        assert_eq!(
            parse_client_header(&frame, LIMIT).unwrap().payload_len,
            LIMIT
        );
    }

    #[test]
    fn refuses_64_bit_length_with_top_bit() {
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(matches!(
            parse_client_header(&frame, usize::MAX),
            Err(HeaderError::Protocol(_))
        ));
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        // The biggest legal length: refused by any real limit, and even with
        // no limit at all `frame_len` cannot overflow.
        assert_eq!(
            parse_client_header(&frame, 1 << 20),
            Err(HeaderError::TooBig)
        );
        if let Ok(header) = parse_client_header(&frame, usize::MAX) {
            assert_eq!(header.frame_len(), header.payload_len + 14);
        }
    }

    #[test]
    fn encodes_all_three_length_forms() {
        for (payload_len, header_len) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
        ] {
            let payload = vec![9u8; payload_len];
            let mut out = vec![0xEE];
            encode_frame(Opcode::Binary, &payload, &mut out);
            assert_eq!(out.len(), 1 + header_len + payload_len);
            assert_eq!(out[1], 0x82);
            assert_eq!(out[2] & 0x80, 0, "server frames are unmasked");
            assert_eq!(&out[1 + header_len..], &payload[..]);
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let reason = "かき氷".repeat(20); // 180 bytes, 3 per char
        let mut out = Vec::new();
        encode_close(CLOSE_NORMAL, &reason, &mut out);
        assert_eq!(out[0], 0x88);
        let payload_len = usize::from(out[1]);
        assert!(payload_len <= CONTROL_PAYLOAD_BYTES_MAX);
        assert_eq!(&out[2..4], &CLOSE_NORMAL.to_be_bytes());
        let kept = std::str::from_utf8(&out[4..]).unwrap();
        assert_eq!(kept.len(), 123);
        assert!(reason.starts_with(kept));
    }

    #[test]
    fn header_errors_map_to_close_codes() {
        assert_eq!(HeaderError::NeedMore.close_code(), None);
        assert_eq!(HeaderError::Protocol("x").close_code(), Some(1002));
        assert_eq!(HeaderError::TooBig.close_code(), Some(1009));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_stays_in_bounds(
            buf in proptest::collection::vec(any::<u8>(), 0..32),
            limit in prop_oneof![Just(usize::MAX), 0usize..70_000],
        ) {
            if let Ok(header) = parse_client_header(&buf, limit) {
                prop_assert!(header.header_len <= buf.len());
                prop_assert!(header.header_len <= CLIENT_FRAME_HEADER_BYTES_MAX);
                prop_assert!(header.payload_len <= limit);
                prop_assert!(!header.opcode.is_control()
                    || (header.fin && header.payload_len <= CONTROL_PAYLOAD_BYTES_MAX));
            }
        }

        #[test]
        fn client_frames_round_trip(
            opcode in prop_oneof![Just(Opcode::Text), Just(Opcode::Binary), Just(Opcode::Continuation)],
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
        ) {
            let mut frame = vec![1, 2, 3];
            encode_client_frame(opcode, &payload, mask, &mut frame);
            let frame = &mut frame[3..];
            let header = parse_client_header(frame, usize::MAX).unwrap();
            prop_assert_eq!(header.frame_len(), frame.len());
            prop_assert_eq!(header.opcode, opcode);
            prop_assert!(header.fin);
            unmask(&mut frame[header.header_len..], header.mask);
            prop_assert_eq!(&frame[header.header_len..], &payload[..]);
        }

        #[test]
        fn unmask_matches_bytewise_xor(
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            mask in any::<[u8; 4]>(),
        ) {
            let mut fast = payload.clone();
            unmask(&mut fast, mask);
            let slow: Vec<u8> = payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            prop_assert_eq!(fast, slow);
        }
    }
}
