//! Turns a stream of complete client frames into messages (RFC 6455 §5.4, §5.5).
//!
//! The connection owns the bytes: it parses a header, waits for the payload,
//! unmasks it in place and hands the frame to [`Reassembler::push`], which
//! answers with at most one [`Event`]. Two memory rules shape the design:
//!
//! * An unfragmented data frame — nearly every frame a browser sends — is
//!   yielded straight from the caller's buffer (`Cow::Borrowed`): no copy.
//! * Only a fragmented message needs a buffer of its own. It is allocated
//!   when the first fragment arrives and *moved out* into the event when the
//!   last one does (`Cow::Owned`), so it is freed as soon as the caller drops
//!   the event. An idle connection therefore holds no reassembly memory.
//!
//! Control frames may arrive between fragments (§5.4) and are yielded without
//! touching the partial message.

use std::borrow::Cow;

use super::frame::{FrameHeader, Opcode};
use crate::limits::{
    CLOSE_INVALID_PAYLOAD, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, CONTROL_PAYLOAD_BYTES_MAX,
};

/// The largest message the spec lets a client send (§2: over 4 KiB → 1009).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4096;

/// What one frame amounted to, once it completes something.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole, valid UTF-8 text message.
    Text(Cow<'a, str>),
    /// A whole binary message.
    Binary(Cow<'a, [u8]>),
    /// A ping; answer with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong (a heartbeat answer or unsolicited); only proves liveness.
    Pong,
    /// The client started the close handshake; echo a close and stop reading.
    /// `code` is `None` when the close frame had no payload.
    Close { code: Option<u16>, reason: &'a str },
}

/// The client broke the protocol: send a close frame with `code` and
/// `reason`, then drop the connection. The reassembler has released its
/// buffer by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseError {
    pub code: u16,
    pub reason: &'static str,
}

/// Which kind of data message a run of fragments is building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// Per-connection reassembly state. Costs a few words while idle.
#[derive(Debug)]
pub struct Reassembler {
    max_message_bytes: usize,
    /// `Some` while a fragmented message is open (its first fragment seen,
    /// its last one not yet).
    open: Option<MessageKind>,
    /// The fragments so far; empty with no capacity unless a message is open.
    partial: Vec<u8>,
    /// How much of `partial` is known to be valid UTF-8, so each text
    /// fragment is checked once and invalid text fails at the fragment that
    /// carries it instead of at the end.
    utf8_checked_bytes: usize,
}

impl Reassembler {
    /// A reassembler refusing messages over `max_message_bytes` (with 1009).
    pub fn new(max_message_bytes: usize) -> Self {
        Reassembler {
            max_message_bytes,
            open: None,
            partial: Vec::new(),
            utf8_checked_bytes: 0,
        }
    }

    /// The message limit; also the right `max_payload_bytes` for
    /// [`super::frame::parse_client_header`], since no single frame of a
    /// message may be larger than the message.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Whether a fragmented message is in progress.
    pub fn is_message_open(&self) -> bool {
        self.open.is_some()
    }

    /// Heap bytes held right now; 0 whenever no fragmented message is open.
    pub fn buffer_capacity_bytes(&self) -> usize {
        self.partial.capacity()
    }

    /// Feeds one complete frame whose `payload` is already unmasked.
    ///
    /// `payload.len()` is authoritative; the header contributes only `fin`
    /// and `opcode`. Returns `Ok(None)` when the frame only continued a
    /// message. The event borrows from `payload`, never from `self`, so the
    /// caller may consume its buffer once it is done with the event.
    pub fn push<'a>(
        &mut self,
        header: &FrameHeader,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, CloseError> {
        if header.opcode.is_control() && (!header.fin || payload.len() > CONTROL_PAYLOAD_BYTES_MAX)
        {
            // parse_client_header already refuses these; repeated so this
            // type is sound on its own.
            return Err(self.fail(CLOSE_PROTOCOL_ERROR, "invalid control frame"));
        }
        match header.opcode {
            Opcode::Ping => Ok(Some(Event::Ping(payload))),
            Opcode::Pong => Ok(Some(Event::Pong)),
            Opcode::Close => match parse_close(payload) {
                Ok(event) => Ok(Some(event)),
                Err(error) => Err(self.fail(error.code, error.reason)),
            },
            Opcode::Text => self.start(MessageKind::Text, header.fin, payload),
            Opcode::Binary => self.start(MessageKind::Binary, header.fin, payload),
            Opcode::Continuation => self.continue_message(header.fin, payload),
        }
    }

    /// The first frame of a data message.
    fn start<'a>(
        &mut self,
        kind: MessageKind,
        fin: bool,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, CloseError> {
        if self.open.is_some() {
            return Err(self.fail(
                CLOSE_PROTOCOL_ERROR,
                "new data frame while a fragmented message is open",
            ));
        }
        if payload.len() > self.max_message_bytes {
            return Err(self.fail(CLOSE_TOO_BIG, "message too big"));
        }
        if fin {
            return match kind {
                MessageKind::Binary => Ok(Some(Event::Binary(Cow::Borrowed(payload)))),
                MessageKind::Text => match std::str::from_utf8(payload) {
                    Ok(text) => Ok(Some(Event::Text(Cow::Borrowed(text)))),
                    Err(_) => Err(self.fail(CLOSE_INVALID_PAYLOAD, "text is not valid UTF-8")),
                },
            };
        }
        self.open = Some(kind);
        self.append(kind, payload)?;
        Ok(None)
    }

    /// A continuation frame: append, and hand the message over if final.
    fn continue_message<'a>(
        &mut self,
        fin: bool,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, CloseError> {
        let Some(kind) = self.open else {
            return Err(self.fail(
                CLOSE_PROTOCOL_ERROR,
                "continuation frame without a message to continue",
            ));
        };
        if payload.len() > self.max_message_bytes - self.partial.len() {
            return Err(self.fail(CLOSE_TOO_BIG, "message too big"));
        }
        self.append(kind, payload)?;
        if !fin {
            return Ok(None);
        }
        let message = std::mem::take(&mut self.partial);
        self.reset();
        match kind {
            MessageKind::Binary => Ok(Some(Event::Binary(Cow::Owned(message)))),
            // Everything but a possibly unfinished last character has been
            // checked already; this pass also settles that tail.
            MessageKind::Text => match String::from_utf8(message) {
                Ok(text) => Ok(Some(Event::Text(Cow::Owned(text)))),
                Err(_) => Err(self.fail(CLOSE_INVALID_PAYLOAD, "text is not valid UTF-8")),
            },
        }
    }

    /// Appends a fragment (within the limit, checked by the callers) and, for
    /// text, checks the newly completed characters.
    fn append(&mut self, kind: MessageKind, payload: &[u8]) -> Result<(), CloseError> {
        self.partial.extend_from_slice(payload);
        if kind == MessageKind::Binary {
            return Ok(());
        }
        match std::str::from_utf8(&self.partial[self.utf8_checked_bytes..]) {
            Ok(_) => self.utf8_checked_bytes = self.partial.len(),
            // An incomplete character at the end may be finished by the
            // next fragment; anything else is already wrong.
            Err(error) if error.error_len().is_none() => {
                self.utf8_checked_bytes += error.valid_up_to();
            }
            Err(_) => return Err(self.fail(CLOSE_INVALID_PAYLOAD, "text is not valid UTF-8")),
        }
        Ok(())
    }

    /// Forgets any partial message and gives its memory back.
    fn reset(&mut self) {
        self.open = None;
        self.partial = Vec::new();
        self.utf8_checked_bytes = 0;
    }

    /// Resets, then describes the close to send. The connection is over after
    /// an error, so there is no point keeping memory for it.
    fn fail(&mut self, code: u16, reason: &'static str) -> CloseError {
        self.reset();
        CloseError { code, reason }
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

/// Whether a peer may put `code` in a close frame (RFC 6455 §7.4, plus the
/// IANA-registered 1012–1014). 1004–1006 and 1015 are reserved or meant only
/// for local reporting; 1016–2999 are unassigned; below 1000 and from 5000 up
/// are not status codes at all.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close frame's payload: empty, or a valid 2-byte code then UTF-8.
fn parse_close(payload: &[u8]) -> Result<Event<'_>, CloseError> {
    let (code, reason) = match payload {
        [] => {
            return Ok(Event::Close {
                code: None,
                reason: "",
            })
        }
        [_] => {
            return Err(CloseError {
                code: CLOSE_PROTOCOL_ERROR,
                reason: "close payload of one byte",
            })
        }
        [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), reason),
    };
    if !is_valid_close_code(code) {
        return Err(CloseError {
            code: CLOSE_PROTOCOL_ERROR,
            reason: "invalid close code",
        });
    }
    match std::str::from_utf8(reason) {
        Ok(reason) => Ok(Event::Close {
            code: Some(code),
            reason,
        }),
        Err(_) => Err(CloseError {
            code: CLOSE_INVALID_PAYLOAD,
            reason: "close reason is not valid UTF-8",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(fin: bool, opcode: Opcode) -> FrameHeader {
        FrameHeader {
            fin,
            opcode,
            mask: [0; 4],
            payload_len: 0,
            header_len: 0,
        }
    }

    fn push<'a>(
        reassembler: &mut Reassembler,
        fin: bool,
        opcode: Opcode,
        payload: &'a [u8],
    ) -> Result<Option<Event<'a>>, CloseError> {
        reassembler.push(&header(fin, opcode), payload)
    }

    fn code(result: Result<Option<Event<'_>>, CloseError>) -> u16 {
        result.unwrap_err().code
    }

    #[test]
    fn unfragmented_frames_are_borrowed() {
        let mut r = Reassembler::default();
        let payload = br#"{"value": 42.5}"#;
        match push(&mut r, true, Opcode::Text, payload).unwrap() {
            Some(Event::Text(Cow::Borrowed(text))) => {
                assert_eq!(text.as_ptr(), payload.as_ptr());
            }
            other => panic!("unexpected {other:?}"),
        }
        match push(&mut r, true, Opcode::Binary, b"\x00\xff").unwrap() {
            Some(Event::Binary(Cow::Borrowed(bytes))) => assert_eq!(bytes, b"\x00\xff"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.buffer_capacity_bytes(), 0);
        assert_eq!(
            push(&mut r, true, Opcode::Text, b"").unwrap(),
            Some(Event::Text(Cow::Borrowed("")))
        );
    }

    #[test]
    fn fragments_reassemble_around_control_frames_and_memory_is_released() {
        let mut r = Reassembler::new(64);
        assert_eq!(push(&mut r, false, Opcode::Text, b"Hel").unwrap(), None);
        assert!(r.is_message_open());
        assert!(r.buffer_capacity_bytes() > 0);
        assert_eq!(
            push(&mut r, true, Opcode::Ping, b"hb").unwrap(),
            Some(Event::Ping(b"hb"))
        );
        assert_eq!(
            push(&mut r, true, Opcode::Pong, b"").unwrap(),
            Some(Event::Pong)
        );
        assert_eq!(
            push(&mut r, false, Opcode::Continuation, b"lo, ").unwrap(),
            None
        );
        assert_eq!(
            push(&mut r, true, Opcode::Continuation, b"world").unwrap(),
            Some(Event::Text(Cow::Owned("Hello, world".to_owned())))
        );
        assert!(!r.is_message_open());
        assert_eq!(r.buffer_capacity_bytes(), 0);

        assert_eq!(push(&mut r, false, Opcode::Binary, b"").unwrap(), None);
        assert_eq!(
            push(&mut r, true, Opcode::Continuation, b"\xff").unwrap(),
            Some(Event::Binary(Cow::Owned(vec![0xff])))
        );
        assert_eq!(r.buffer_capacity_bytes(), 0);
    }

    #[test]
    fn sequencing_errors_are_1002() {
        let mut r = Reassembler::default();
        assert_eq!(code(push(&mut r, true, Opcode::Continuation, b"x")), 1002);
        assert_eq!(push(&mut r, false, Opcode::Text, b"a").unwrap(), None);
        assert_eq!(code(push(&mut r, true, Opcode::Text, b"b")), 1002);
        assert_eq!(r.buffer_capacity_bytes(), 0, "released on error");
        assert_eq!(push(&mut r, false, Opcode::Binary, b"a").unwrap(), None);
        assert_eq!(code(push(&mut r, false, Opcode::Binary, b"b")), 1002);
        assert_eq!(code(push(&mut r, false, Opcode::Ping, b"")), 1002);
        assert_eq!(code(push(&mut r, true, Opcode::Ping, &[0; 126])), 1002);
    }

    #[test]
    fn size_limit_is_1009_at_exactly_one_byte_over() {
        let mut r = Reassembler::new(10);
        assert!(push(&mut r, true, Opcode::Text, &[b'a'; 10]).is_ok());
        assert_eq!(code(push(&mut r, true, Opcode::Text, &[b'a'; 11])), 1009);
        assert_eq!(push(&mut r, false, Opcode::Text, &[b'a'; 6]).unwrap(), None);
        assert_eq!(
            push(&mut r, false, Opcode::Continuation, &[b'a'; 4]).unwrap(),
            None
        );
        assert_eq!(code(push(&mut r, true, Opcode::Continuation, b"a")), 1009);
        assert_eq!(r.buffer_capacity_bytes(), 0);
    }

    #[test]
    fn invalid_utf8_is_1007_and_fails_fast_across_fragments() {
        let mut r = Reassembler::default();
        assert_eq!(code(push(&mut r, true, Opcode::Text, b"\xff")), 1007);
        // "é" = C3 A9, split across fragments: fine.
        assert_eq!(push(&mut r, false, Opcode::Text, b"caf\xc3").unwrap(), None);
        assert_eq!(
            push(&mut r, true, Opcode::Continuation, b"\xa9").unwrap(),
            Some(Event::Text(Cow::Owned("café".to_owned())))
        );
        // An invalid byte is refused at the fragment carrying it.
        assert_eq!(push(&mut r, false, Opcode::Text, b"ok").unwrap(), None);
        assert_eq!(
            code(push(&mut r, false, Opcode::Continuation, b"\xc0\xaf")),
            1007
        );
        // A character left unfinished by the final fragment.
        assert_eq!(push(&mut r, false, Opcode::Text, b"x").unwrap(), None);
        assert_eq!(
            code(push(&mut r, true, Opcode::Continuation, b"\xe3\x81")),
            1007
        );
        // Binary messages are not checked.
        assert!(push(&mut r, true, Opcode::Binary, b"\xff").is_ok());
    }

    #[test]
    fn close_frames() {
        let mut r = Reassembler::default();
        assert_eq!(
            push(&mut r, true, Opcode::Close, b"").unwrap(),
            Some(Event::Close {
                code: None,
                reason: ""
            })
        );
        assert_eq!(
            push(&mut r, true, Opcode::Close, b"\x03\xe8bye").unwrap(),
            Some(Event::Close {
                code: Some(1000),
                reason: "bye"
            })
        );
        assert_eq!(code(push(&mut r, true, Opcode::Close, b"\x03")), 1002);
        assert_eq!(
            code(push(&mut r, true, Opcode::Close, b"\x03\xe8\xff")),
            1007
        );
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                code(push(&mut r, true, Opcode::Close, &bad.to_be_bytes())),
                1002,
                "{bad}"
            );
        }
        for good in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(
                push(&mut r, true, Opcode::Close, &good.to_be_bytes()).is_ok(),
                "{good}"
            );
        }
        // A close between fragments leaves the message alone.
        assert_eq!(push(&mut r, false, Opcode::Text, b"a").unwrap(), None);
        assert!(push(&mut r, true, Opcode::Close, b"").is_ok());
        assert!(r.is_message_open());
    }

    fn opcode() -> impl Strategy<Value = Opcode> {
        prop_oneof![
            Just(Opcode::Continuation),
            Just(Opcode::Text),
            Just(Opcode::Binary),
            Just(Opcode::Close),
            Just(Opcode::Ping),
            Just(Opcode::Pong),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic_and_idle_holds_nothing(
            frames in proptest::collection::vec(
                (any::<bool>(), opcode(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..40,
            ),
            limit in 0usize..100,
        ) {
            let mut r = Reassembler::new(limit);
            for (fin, opcode, payload) in &frames {
                let result = push(&mut r, *fin, *opcode, payload);
                match result {
                    Ok(Some(Event::Text(text))) => prop_assert!(text.len() <= limit),
                    Ok(Some(Event::Binary(bytes))) => prop_assert!(bytes.len() <= limit),
                    Err(error) => {
                        prop_assert!(matches!(error.code, 1002 | 1007 | 1009));
                        prop_assert!(!r.is_message_open());
                    }
                    _ => {}
                }
                prop_assert!(r.is_message_open() || r.buffer_capacity_bytes() == 0);
                prop_assert!(r.buffer_capacity_bytes() <= 2 * limit.max(8));
            }
        }

        #[test]
        fn any_fragmentation_with_interleaved_pings_reassembles(
            text in "\\PC{0,60}",
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
            pings in proptest::collection::vec(any::<bool>(), 6),
        ) {
            let bytes = text.as_bytes();
            let mut cut_points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            cut_points.sort_unstable();
            cut_points.dedup();
            cut_points.retain(|&cut| cut > 0 && cut < bytes.len());
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cut_points {
                pieces.push(&bytes[start..cut]);
                start = cut;
            }
            pieces.push(&bytes[start..]);

            let mut r = Reassembler::new(bytes.len());
            let last = pieces.len() - 1;
            let mut got = None;
            for (index, piece) in pieces.iter().enumerate() {
                let opcode = if index == 0 { Opcode::Text } else { Opcode::Continuation };
                match push(&mut r, index == last, opcode, piece).unwrap() {
                    Some(Event::Text(message)) => got = Some(message.into_owned()),
                    None => prop_assert!(index < last),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
                if pings[index] {
                    prop_assert_eq!(push(&mut r, true, Opcode::Ping, b"p").unwrap(), Some(Event::Ping(b"p")));
                }
            }
            prop_assert_eq!(got.as_deref(), Some(text.as_str()));
            prop_assert_eq!(r.buffer_capacity_bytes(), 0);
        }
    }
}
