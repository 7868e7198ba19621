//! `kakigori::http::chunked::Decoder`, the chunked request-body decoder.
//!
//! The first input byte picks how the rest (the wire) is cut into reads. Invariants:
//! * never panics; body data handed out lies inside the input, never exceeds the
//!   body limit, and nothing is consumed past the end of the chunked body;
//! * the outcome (body, bytes consumed, or the error) is the same whether the wire
//!   arrives whole or in reads of any size, through `decode` or `decode_in_place`,
//!   and `decode_in_place` leaves exactly the bytes after the body behind it;
//! * any bytes, cut into chunks of sizes the input chooses and encoded, decode back to
//!   themselves.
#![no_main]

use kakigori::http::chunked::{ChunkedError, Decoder};
use libfuzzer_sys::fuzz_target;

const BODY_MAX: usize = 300;
const TRAILERS_MAX: usize = 64;

/// A body, the bytes of the wire it took, and whether it ended; or the error.
type Outcome = Result<(Vec<u8>, usize, bool), ChunkedError>;

/// Read sizes from `seed`: a small generator, so that cuts land everywhere.
fn reads(seed: u8, len: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut state = u32::from(seed) | 1;
    let mut at = 0;
    while at < len {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 1 + (state >> 16) as usize % 17;
        at = (at + size).min(len);
        cuts.push(at);
    }
    cuts
}

/// `decode` over reads ending at `cuts`.
fn by_slices(wire: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
    let mut body = Vec::new();
    let mut at = 0;
    for &arrived in cuts {
        while at < arrived && !decoder.is_done() {
            let input = &wire[at..arrived];
            let step = decoder.decode(input)?;
            assert!(step.consumed > 0 && step.consumed <= input.len());
            assert!(step.data.end <= step.consumed && step.data.start <= step.data.end);
            body.extend_from_slice(&input[step.data]);
            assert!(decoder.body_bytes() <= BODY_MAX);
            assert_eq!(decoder.body_bytes(), body.len());
            at += step.consumed;
        }
    }
    Ok((body, at, decoder.is_done()))
}

/// `decode_in_place` over the same reads, appending each to what it left.
fn in_place(wire: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(BODY_MAX, TRAILERS_MAX);
    let mut buf = Vec::new();
    let mut sent = 0;
    for &arrived in cuts {
        if decoder.is_done() {
            break;
        }
        buf.extend_from_slice(&wire[sent..arrived]);
        sent = arrived;
        let left = decoder.decode_in_place(&mut buf)?;
        assert!(left.len <= buf.len());
        buf.truncate(left.len);
        if !left.done {
            assert_eq!(
                left.len,
                decoder.body_bytes(),
                "undecoded input left behind"
            );
        }
    }
    let body_len = decoder.body_bytes();
    let after = buf.len() - body_len;
    assert_eq!(
        &buf[body_len..],
        &wire[sent - after..sent],
        "the bytes after the body are not what followed it"
    );
    buf.truncate(body_len);
    Ok((buf, sent - after, decoder.is_done()))
}

fn encode(body: &[u8], sizes: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at(usize::from(size.max(1)).min(rest.len()));
        wire.extend_from_slice(format!("{:x};e=1\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
        rest = after;
    }
    wire.extend_from_slice(b"0\r\nT: v\r\n\r\n");
    wire
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let whole = by_slices(wire, &[wire.len()]);
    let cuts = reads(seed, wire.len());
    assert_eq!(by_slices(wire, &cuts), whole, "reads changed the outcome");
    assert_eq!(in_place(wire, &cuts), whole, "in place differs");
    if let Ok((_, consumed, true)) = &whole {
        assert!(*consumed <= wire.len());
    }

    let sizes = if wire.is_empty() {
        &[1][..]
    } else {
        &wire[..wire.len().min(4)]
    };
    let encoded = encode(wire, sizes);
    let mut decoder = Decoder::new(wire.len(), TRAILERS_MAX);
    let mut buf = encoded.clone();
    let left = decoder.decode_in_place(&mut buf).expect("a valid encoding");
    assert!(left.done);
    assert_eq!(&buf[..left.len], wire);
});
