//! `kakigori::orders::journal::recover` on arbitrary file contents.
//!
//! Input layout: byte 0 picks how the file is made:
//! * bit 0 clear: a valid version 2 header, then the rest; set: the rest as-is
//!   (an invalid header, or a version 1 journal such as the committed seed);
//! * bit 1 set: the rest is a script of records ([kind, a, b, key len, key…]) put
//!   into batches with correct checksums, so the order rules are reached, followed by
//!   damage; clear: the rest is raw bytes.
//!
//! Invariants: never panics (the upgrade of a version 1 journal included); either
//! errors and leaves the file alone, or returns orders numbered 1..=n in order with
//! times that never run backwards, idempotency keys naming them, the file exactly
//! `valid_len` long (cut, or upgraded), and a second recovery agrees with the first
//! and cuts nothing.
#![no_main]

use std::path::Path;

use kakigori::orders::journal::recover;
use kakigori::orders::record::{encode_header, BatchEncoder, Record, HEADER_LEN};
use kakigori::orders::{Status, TIME_UNKNOWN};
use libfuzzer_sys::fuzz_target;

const ID: u64 = 0x6b61_6b69_676f_7269;

/// Turns a script into batches. Each step is [kind, a, b, key length, key…]; numbers
/// stay small (relative to the orders so far) so the rules are hit. Kind bits: 0x80
/// stops (the rest is appended raw), 0x20 ends the batch after this record, 0x40 gives
/// that batch a wrong first sequence number, 0x10 makes the time go back.
fn scripted(mut script: &[u8], out: &mut Vec<u8>) {
    let mut seq = 1u64;
    let mut created = 0u64;
    let mut time_ms = 1_000u64;
    let mut batch = BatchEncoder::default();
    let mut wrong_seq = false;
    while let [kind, a, b, key_len, rest @ ..] = script {
        if kind & 0x80 != 0 {
            script = &script[1..];
            break;
        }
        let nudge = u64::from(*a % 5);
        time_ms = if kind & 0x10 != 0 {
            time_ms.saturating_sub(1)
        } else {
            time_ms + u64::from(*b)
        };
        let record = if kind & 1 == 0 {
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
                time_ms,
                idempotency_key: key,
            }
        } else {
            script = rest;
            Record::Transition {
                number: nudge.min(created.max(1)),
                status: Status::ALL[usize::from(*b) % 3],
                time_ms,
            }
        };
        batch.push(&record);
        wrong_seq |= kind & 0x40 != 0;
        if kind & 0x20 != 0 {
            seal(&mut batch, &mut seq, wrong_seq, out);
            wrong_seq = false;
        }
    }
    seal(&mut batch, &mut seq, wrong_seq, out);
    out.extend_from_slice(script);
}

fn seal(batch: &mut BatchEncoder, seq: &mut u64, wrong_seq: bool, out: &mut Vec<u8>) {
    let records = batch.records() as u64;
    if records == 0 {
        return;
    }
    let first = if wrong_seq { *seq + 1 } else { *seq };
    out.extend(std::mem::take(batch).finish(ID, first));
    *seq += records;
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
    let mut previous_created_ms = TIME_UNKNOWN;
    for (i, order) in recovered.orders.iter().enumerate() {
        assert_eq!(order.number, i as u64 + 1, "orders not numbered 1..=n");
        assert!(usize::from(order.menu) < 4);
        // Times never run backwards: not within an order, not from order to order.
        assert!(order.updated_ms >= order.created_ms, "{order:?}");
        assert!(order.created_ms >= previous_created_ms, "{order:?}");
        previous_created_ms = order.created_ms;
    }
    assert_eq!(recovered.rules.orders(), recovered.orders.len() as u64);
    assert!(recovered.rules.keys() <= recovered.orders.len());
    assert!(recovered.next_seq >= 1);
    assert!(recovered.valid_len >= HEADER_LEN as u64);
    let upgraded = contents.get(8) == Some(&1);
    if !upgraded {
        assert_eq!(
            recovered.valid_len + recovered.torn_bytes,
            contents.len() as u64
        );
    }
    let orders = recovered.orders.clone();
    let next_seq = recovered.next_seq;
    let valid_len = recovered.valid_len;
    drop(recovered); // releases the lock
    let on_disk = std::fs::read(path).unwrap();
    assert_eq!(on_disk.len() as u64, valid_len, "not cut at valid_len");
    if !upgraded {
        assert_eq!(on_disk, &contents[..valid_len as usize]);
    }

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
        encode_header(ID, &mut contents);
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
