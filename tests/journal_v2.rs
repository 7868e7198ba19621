//! Journal format version 2 against the real binary: a data directory of the previous
//! release opens with everything in it, an unfinished group commit torn at a page
//! boundary is cut at start-up without help, orders carry their times across restarts,
//! and `kakigori journal verify|export` reads a running server's journal.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{run_to_exit, Server, STAFF_TOKEN};
use kakigori::orders::record::{BatchEncoder, Header, Record};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v1");
const PAGE_BYTES: usize = 4096;

fn create(server: &Server, menu: &str, key: Option<&str>) -> serde_json::Value {
    let body = format!(r#"{{"menu_item_id":"{menu}"}}"#);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    let response = server.request("POST", "/api/v1/stores/orders", &headers, body.as_bytes());
    assert!(matches!(response.status, 200 | 201), "{}", response.text());
    response.json()
}

fn all_orders(server: &Server) -> Vec<serde_json::Value> {
    let list = server.staff("GET", "/api/v1/stores/orders");
    assert_eq!(list.status, 200);
    list.json()["orders"].as_array().unwrap().clone()
}

fn journal_tool(args: &[&str], data_dir: &Path) -> (Option<i32>, String, String) {
    let mut all = vec!["journal"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", data_dir.to_str().unwrap()]);
    run_to_exit(&all, None)
}

#[test]
fn a_data_dir_of_the_previous_release_opens_with_every_order_number_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("orders.journal");
    std::fs::copy(format!("{FIXTURE}/orders.journal"), &journal).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/orders.json")).unwrap())
            .unwrap();
    let expected = expected["orders"].as_array().unwrap().clone();
    assert_eq!(expected.len(), 12);

    // The tool reads the old format as it is, without changing it.
    let (code, out, err) = journal_tool(&["verify"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("format version 1"), "{out}");
    assert!(
        out.contains("orders: 12 (pending 7, waitingPickup 3, completed 2)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        std::fs::read(format!("{FIXTURE}/orders.journal")).unwrap()
    );

    let server = Server::start_in(dir.path(), &[]);
    assert!(
        server
            .log_text()
            .contains("upgrading from format version 1 to 2"),
        "{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("upgraded"),
        "{}",
        server.log_text()
    );
    let orders = all_orders(&server);
    assert_eq!(orders.len(), expected.len());
    for (order, old) in orders.iter().zip(&expected) {
        for field in ["id", "menu_item_id", "menu_name", "status", "order_number"] {
            assert_eq!(order[field], old[field], "{field} of {old}");
        }
        // Times were not recorded before version 2.
        assert!(order["created_at"].is_null() && order["updated_at"].is_null());
    }
    // Every idempotency key still names its order: 3, 6, 9, 12 by guest-N and 7 by
    // the longest key the contract allows.
    for (key, number) in [
        ("guest-3", 3),
        ("guest-6", 6),
        ("guest-9", 9),
        ("guest-12", 12),
    ] {
        assert_eq!(
            create(&server, "giiku-sai", Some(key))["order_number"],
            number,
            "{key}"
        );
    }
    let longest = "k".repeat(128);
    assert_eq!(
        create(&server, "giiku-sai", Some(&longest))["order_number"],
        7
    );
    // Numbering continues, and moves of upgraded orders go on from their status.
    let next = create(&server, "giiku-ten", None);
    assert_eq!(next["order_number"], 13);
    assert!(next["created_at"].is_string());
    let moved = server.staff("POST", "/api/v1/stores/orders/store-001-4/waiting-pickup");
    assert_eq!(moved.status, 200);
    assert!(moved.json()["created_at"].is_null());
    assert!(moved.json()["updated_at"].is_string());
    drop(server);

    let server = Server::start_in(dir.path(), &[]);
    assert!(
        !server.log_text().contains("upgrading"),
        "{}",
        server.log_text()
    );
    assert_eq!(all_orders(&server).len(), 13);
    let (code, out, err) = journal_tool(&["verify"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("format version 2"), "{out}");
    assert!(out.contains("last order number: 13"), "{out}");
}

/// What the reported power cut left: the last batch straddles a page boundary and only
/// the later page reached the disk, so zeros run up to the boundary and whole records
/// of a batch never acknowledged follow.
#[test]
fn a_last_batch_torn_at_a_page_boundary_is_cut_at_start_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("orders.journal");
    let acknowledged: Vec<serde_json::Value> = {
        let server = Server::start_in(dir.path(), &[]);
        (0..5)
            .map(|_| create(&server, "giiku-haku", None))
            .collect()
    };
    let mut bytes = std::fs::read(&journal).unwrap();
    let Ok(Header::V2 { journal_id }) = kakigori::orders::record::read_header(&bytes) else {
        panic!("not a version 2 journal");
    };
    // The batch the server would have written next: 100 creates with 100-byte keys.
    let keys: Vec<String> = (0..100).map(|n| format!("{n:0>100}")).collect();
    let mut batch = BatchEncoder::default();
    for (i, key) in keys.iter().enumerate() {
        batch.push(&Record::Create {
            number: 6 + i as u64,
            menu: 0,
            time_ms: 4_102_444_800_000, // 2100-01-01, after every time already there
            idempotency_key: key.as_bytes(),
        });
    }
    let batch_start = bytes.len();
    bytes.extend(batch.finish(journal_id, 6));
    let boundary = (batch_start / PAGE_BYTES + 1) * PAGE_BYTES;
    assert!(boundary + PAGE_BYTES < bytes.len(), "the batch spans pages");
    bytes[batch_start..boundary].fill(0);
    std::fs::write(&journal, &bytes).unwrap();

    let (code, out, _) = journal_tool(&["verify"], dir.path());
    assert_eq!(
        code,
        Some(0),
        "an unfinished last batch is no damage: {out}"
    );
    assert!(out.contains("unfinished batch"), "{out}");

    let server = Server::start_in(dir.path(), &[]);
    let log = server.log_text();
    assert!(
        log.contains("WARN")
            && log.contains("unfinished last batch")
            && log.contains(&format!("byte offset {batch_start}")),
        "{log}"
    );
    assert_eq!(all_orders(&server), acknowledged);
    assert_eq!(create(&server, "giiku-sai", None)["order_number"], 6);
    drop(server);
    assert!(std::fs::metadata(&journal).unwrap().len() < boundary as u64);
}

#[test]
fn damage_before_a_complete_batch_refuses_start_and_verify_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("orders.journal");
    {
        let server = Server::start_in(dir.path(), &[]);
        for _ in 0..4 {
            create(&server, "giiku-camp", None);
        }
    }
    let mut bytes = std::fs::read(&journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&journal, &bytes).unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, _, start_error) = run_to_exit(
        &["--listen", "127.0.0.1:0", "--data-dir", data_dir],
        Some(STAFF_TOKEN),
    );
    assert_eq!(code, Some(1));
    let message = start_error
        .lines()
        .find(|line| line.contains("is damaged at byte offset"))
        .unwrap_or_else(|| panic!("{start_error}"));
    assert!(message.contains("yet a complete, valid batch"), "{message}");
    let message = &message[message.find("journal ").unwrap()..];
    let (code, out, verify_error) = journal_tool(&["verify"], dir.path());
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out}");
    assert!(
        verify_error.contains(message),
        "{verify_error}\nvs\n{message}"
    );
    assert_eq!(std::fs::read(&journal).unwrap(), bytes, "nothing was cut");
}

#[test]
fn times_survive_a_restart_and_the_tool_exports_them_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &["--store-id", "stall-9"]);
    for menu in ["giiku-sai", "giiku-haku", "giiku-ten"] {
        create(&server, menu, None);
    }
    assert_eq!(
        server
            .staff("POST", "/api/v1/stores/orders/stall-9-1/waiting-pickup")
            .status,
        200
    );
    assert_eq!(
        server
            .staff("POST", "/api/v1/stores/orders/stall-9-1/complete")
            .status,
        200
    );
    assert_eq!(
        server
            .staff("POST", "/api/v1/stores/orders/stall-9-2/waiting-pickup")
            .status,
        200
    );
    let before = all_orders(&server);
    let first = &before[0];
    assert!(first["updated_at"].as_str() >= first["created_at"].as_str());

    // Read-only and lock-free: works while the server holds the journal.
    let (code, out, err) = journal_tool(&["verify"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("orders: 3 (pending 1, waitingPickup 1, completed 1)"),
        "{out}"
    );
    assert!(out.contains("last order number: 3"), "{out}");
    let (code, jsonl, err) = journal_tool(
        &["export", "--format", "jsonl", "--store-id", "stall-9"],
        dir.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    let exported: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(exported, before, "export is the API's JSON of every order");
    let (code, csv, err) = journal_tool(&["export", "--store-id", "stall-9"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "id,order_number,menu_item_id,menu_name,status,created_at,updated_at"
    );
    assert_eq!(rows.len(), 4);
    let fields: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(
        fields[..5],
        [
            "stall-9-1",
            "1",
            "giiku-sai",
            "技育祭な いちご味",
            "completed"
        ]
    );
    assert_eq!(fields[5], first["created_at"]);
    assert_eq!(fields[6], first["updated_at"]);

    // kill -9, then the same times come back from the journal.
    drop(server);
    let server = Server::start_in(dir.path(), &["--store-id", "stall-9"]);
    assert_eq!(all_orders(&server), before);
}

/// A server under load keeps appending while the tool reads: every read sees whole
/// batches, maybe one being written, and never damage.
#[test]
fn verify_during_a_load_never_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start_in(dir.path(), &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|i| {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut made = 0u64;
                while !stop.load(Ordering::Relaxed) && made < 2_000 {
                    create(&server, ["giiku-sai", "giiku-camp"][i], None);
                    made += 1;
                }
                made
            })
        })
        .collect();
    for _ in 0..15 {
        let (code, out, err) = journal_tool(&["verify"], dir.path());
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("last order number: "), "{out}");
    }
    stop.store(true, Ordering::Relaxed);
    let made: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let (code, out, err) = journal_tool(&["verify"], dir.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("last order number: {made}")), "{out}");
    assert!(!out.contains("unfinished"), "the server is idle now: {out}");
}
