//! `kakigori::orders::journal::recover` on arbitrary file contents.
//!
//! Input layout: byte 0 picks how the file is made:
//! * bit 0 clear: a valid journal header, then the rest; set: the rest as-is
//!   (usually an invalid header);
//! * bit 1 set: the rest is a script of records ([kind, a, b, key len, key…]),
//!   encoded with correct sequence numbers and checksums so the replay rules
//!   are reached, followed by damage; clear: the rest is raw bytes.
//!
//! Invariants: never panics; either errors, or returns orders numbered 1..=n
//! in order, idempotency keys pointing at them, a torn tail cut so the file is
//! exactly `valid_len` long, and a second recovery of the cut file agrees with
//! the first and cuts nothing.
#![no_main]

use std::path::Path;

use kakigori::orders::journal::recover;
use kakigori::orders::record::{encode, encode_header, Record, HEADER_LEN};
use kakigori::orders::Status;
use libfuzzer_sys::fuzz_target;

/// Turns a script into records: each step is [kind, a, b, key length, key…].
/// Numbers stay small (relative to the orders so far) so replay rules are hit.
fn scripted(mut script: &[u8], out: &mut Vec<u8>) -> usize {
    let mut seq = 1u64;
    let mut created = 0u64;
    while let [kind, a, b, key_len, rest @ ..] = script {
        if kind & 0x80 != 0 {
            // Stop: whatever remains is appended raw (a torn or damaged tail).
            script = &script[1..];
            break;
        }
        let nudge = u64::from(*a % 5);
        let record = if kind & 1 == 0 {
            // Usually the next number; sometimes off by a little.
            let number = if a & 0x10 == 0 {
                created + 1
            } else {
                created + nudge
            };
            let key_len = usize::from(*key_len % 8).min(rest.len());
            let key = &rest[..key_len];
            script = &rest[key_len..];
            created += 1;
            Record::Create {
                number,
                menu: b % 4,
                idempotency_key: key,
            }
        } else {
            script = rest;
            let _ = key_len;
            Record::Transition {
                number: nudge.min(created.max(1)),
                status: Status::ALL[usize::from(*b) % 3],
            }
        };
        // Sometimes a wrong sequence number.
        let record_seq = if kind & 0x40 != 0 { seq + 1 } else { seq };
        encode(record_seq, &record, out);
        seq += 1;
    }
    out.extend_from_slice(script);
    seq as usize
}

fn check(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).expect("write the journal");
    let Ok(recovered) = recover(path) else {
        // An error must leave the file alone.
        assert_eq!(
            std::fs::read(path).unwrap(),
            contents,
            "a failed recovery changed the file"
        );
        return;
    };
    for (i, order) in recovered.orders.iter().enumerate() {
        assert_eq!(order.number, i as u64 + 1, "orders not numbered 1..=n");
        assert!(usize::from(order.menu) < 4);
    }
    let n = recovered.orders.len() as u64;
    for &number in recovered.idempotency.values() {
        assert!(
            (1..=n).contains(&number),
            "idempotency key names order {number} of {n}"
        );
    }
    assert!(recovered.next_seq >= 1);
    assert!(recovered.valid_len >= HEADER_LEN as u64);
    assert_eq!(
        recovered.valid_len + recovered.torn_bytes,
        contents.len() as u64
    );
    let orders = recovered.orders.clone();
    let next_seq = recovered.next_seq;
    let valid_len = recovered.valid_len;
    drop(recovered); // releases the lock
    let on_disk = std::fs::read(path).unwrap();
    assert_eq!(
        on_disk,
        &contents[..valid_len as usize],
        "not cut at valid_len"
    );

    let again = recover(path).expect("a recovered journal recovers again");
    assert_eq!(again.orders, orders);
    assert_eq!(again.next_seq, next_seq);
    assert_eq!(again.valid_len, valid_len);
    assert_eq!(again.torn_bytes, 0);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut contents = Vec::new();
    if mode & 1 == 0 {
        encode_header(&mut contents);
    }
    if mode & 2 != 0 {
        scripted(rest, &mut contents);
    } else {
        contents.extend_from_slice(rest);
    }

    thread_local! {
        // Recovery fsyncs after cutting a tail, so tmpfs when there is one.
        // libFuzzer leaves by exit(), which skips this TempDir's cleanup:
        // scripts/fuzz.sh points KAKIGORI_FUZZ_TMP at a directory it removes.
        static DIR: tempfile::TempDir = {
            let base = std::env::var_os("KAKIGORI_FUZZ_TMP")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    if Path::new("/dev/shm").is_dir() {
                        "/dev/shm".into()
                    } else {
                        std::env::temp_dir()
                    }
                });
            tempfile::Builder::new()
                .prefix("kakigori-fuzz-journal")
                .tempdir_in(base)
                .expect("temp dir")
        };
    }
    DIR.with(|dir| check(&dir.path().join("orders.journal"), &contents));
});
