//! Orders are never lost (SPEC.md §3): acknowledged orders and status changes survive
//! `kill -9` in the middle of a load, and numbering continues after the highest.

mod common;

use common::{read_response, Server, STAFF_TOKEN};
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENTS: usize = 8;

/// What a client was told: order number → the status the server acknowledged last.
type Acked = Arc<Mutex<BTreeMap<u64, String>>>;

/// Creates orders on one keep-alive connection and moves every third along, until the
/// server dies or `stop` is set.
fn client(addr: SocketAddr, acked: Acked, stop: Arc<AtomicBool>, menu: &'static str) {
    let Ok(stream) = TcpStream::connect(addr) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let body = format!(r#"{{"menu_item_id":"{menu}"}}"#);
    let mut count = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let request = format!(
            "POST /api/v1/stores/orders HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(request.as_bytes()).is_err() {
            return;
        }
        let Some(response) = read_response(&mut reader) else {
            return;
        };
        assert_eq!(response.status, 201, "{}", response.text());
        let order = response.json();
        let number = order["order_number"].as_u64().unwrap();
        assert_eq!(order["status"], "pending");
        let previous = acked.lock().unwrap().insert(number, "pending".into());
        assert!(previous.is_none(), "order number {number} handed out twice");
        count += 1;
        if count.is_multiple_of(3) {
            let request = format!(
                "POST /api/v1/stores/orders/store-001-{number}/waiting-pickup HTTP/1.1\r\nHost: t\r\n\
                 Authorization: Bearer {STAFF_TOKEN}\r\nContent-Length: 0\r\n\r\n"
            );
            if writer.write_all(request.as_bytes()).is_err() {
                return;
            }
            let Some(response) = read_response(&mut reader) else {
                return;
            };
            assert_eq!(response.status, 200, "{}", response.text());
            acked.lock().unwrap().insert(number, "waitingPickup".into());
        }
    }
}

#[test]
fn acknowledged_orders_survive_kill_9_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &["--cores", "2"]);
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let menus = ["giiku-sai", "giiku-haku", "giiku-ten", "giiku-camp"];
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (acked, stop, addr) = (acked.clone(), stop.clone(), server.addr);
            std::thread::spawn(move || client(addr, acked, stop, menus[i % menus.len()]))
        })
        .collect();
    // Let the load build up, then pull the plug while requests are in flight.
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let acked = acked.lock().unwrap().clone();
    let highest = *acked.keys().last().unwrap();

    let server = Server::start_in(dir.path(), &["--cores", "2"]);
    for (number, status) in &acked {
        let response = server.get(&format!("/api/v1/stores/orders/store-001-{number}"));
        assert_eq!(response.status, 200, "acknowledged order {number} is lost");
        let recovered = response.json()["status"].as_str().unwrap().to_string();
        if status == "waitingPickup" {
            assert_eq!(
                &recovered, status,
                "acknowledged move of order {number} is lost"
            );
        }
    }
    let next = server
        .post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-sai"}"#)
        .json();
    let next_number = next["order_number"].as_u64().unwrap();
    assert!(
        next_number > highest,
        "numbering continues: {next_number} after {highest}"
    );
    // No gaps: every number below the new one names an order.
    let all = server.staff("GET", "/api/v1/stores/orders").json();
    let numbers: Vec<u64> = all["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=next_number).collect::<Vec<_>>());
}

#[test]
fn torn_tail_is_cut_with_a_warning_and_damage_elsewhere_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Server::start_in(dir.path(), &[]);
        for _ in 0..5 {
            assert_eq!(
                server
                    .post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-ten"}"#)
                    .status,
                201
            );
        }
    }
    let journal = dir.path().join("orders.journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let clean_len = bytes.len();
    // A torn write: half a record's worth of junk at the tail.
    bytes.extend_from_slice(&[0x17, 0, 0, 0, 0xde, 0xad]);
    std::fs::write(&journal, &bytes).unwrap();
    {
        let server = Server::start_in(dir.path(), &[]);
        assert!(
            server.log_text().contains("WARN"),
            "a torn tail is reported: {}",
            server.log_text()
        );
        assert_eq!(server.get("/api/v1/stores/orders/store-001-5").status, 200);
        assert_eq!(
            server
                .post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-ten"}"#)
                .json()["order_number"],
            6
        );
    }
    // Damage in the middle: flip a byte inside the second record.
    let mut bytes = std::fs::read(&journal).unwrap();
    assert!(bytes.len() > clean_len / 2);
    let middle = clean_len / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kakigori"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("KAKIGORI_STAFF_TOKEN", STAFF_TOKEN)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "must refuse to start on a damaged journal"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("orders.journal") && stderr.contains("offset"),
        "clear message: {stderr}"
    );
}
