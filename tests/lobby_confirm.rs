//! Lobbies (`/ws/stay`, SPEC.md §2.2) and confirms (`/ws/confirm`, §2.3) with real
//! WebSocket clients against the real binary.

mod common;

use common::{close_code, next_text, send_text, Server, Ws};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

fn json(ws: &mut Ws) -> serde_json::Value {
    serde_json::from_str(&next_text(ws)).unwrap()
}

fn stay(n: &str) -> serde_json::Value {
    serde_json::json!({"stay_num": n, "start_time": "null"})
}

/// Seconds from now until an RFC 3339 time, e.g. `2025-10-25T14:03:21+09:00`.
fn seconds_until(rfc3339: &str) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    at.timestamp() - now
}

#[test]
fn three_joins_form_a_group_with_one_tokyo_start_time() {
    let server = Server::start(&[]);
    let mut a = server.ws("/ws/stay?room=lobby-1");
    assert_eq!(json(&mut a), stay("1"));
    let mut b = server.ws("/ws/stay?room=lobby-1");
    assert_eq!(json(&mut a), stay("2"));
    assert_eq!(json(&mut b), stay("2"));
    let mut c = server.ws("/ws/stay?room=lobby-1");
    let mut start_times = BTreeSet::new();
    for ws in [&mut a, &mut b, &mut c] {
        let message = json(ws);
        assert_eq!(message["stay_num"], "3");
        let start = message["start_time"].as_str().unwrap().to_string();
        assert!(start.ends_with("+09:00"), "{start}");
        assert_eq!(
            start.len(),
            "2025-10-25T14:03:21+09:00".len(),
            "whole seconds: {start}"
        );
        let delta = seconds_until(&start);
        assert!((8..=12).contains(&delta), "now + 10 s, got {delta}");
        start_times.insert(start);
        assert_eq!(close_code(ws), Some(1000), "the server closes the group");
    }
    assert_eq!(start_times.len(), 1, "one start time per group");
    // The lobby is empty again.
    let mut d = server.ws("/ws/stay?room=lobby-1");
    assert_eq!(json(&mut d), stay("1"));
}

#[test]
fn a_leave_tells_those_remaining() {
    let server = Server::start(&[]);
    let mut a = server.ws("/ws/stay?room=lobby-2");
    assert_eq!(json(&mut a), stay("1"));
    let mut b = server.ws("/ws/stay?room=lobby-2");
    assert_eq!(json(&mut a), stay("2"));
    assert_eq!(json(&mut b), stay("2"));
    b.close(None).unwrap();
    while b.read().is_ok() {}
    assert_eq!(json(&mut a), stay("1"));
    // Client messages are ignored.
    send_text(&mut a, "hello");
    let mut c = server.ws("/ws/stay?room=lobby-2");
    assert_eq!(json(&mut a), stay("2"));
    assert_eq!(json(&mut c), stay("2"));
}

#[test]
fn the_waiting_page_s_ping_is_answered_with_the_count() {
    let server = Server::start(&[]);
    let mut alone = server.ws("/ws/stay?room=giiku-haku");
    assert_eq!(json(&mut alone), stay("1"));
    // What the front end sends every 5 s; the answer keeps its "no response" banner away.
    for _ in 0..3 {
        send_text(&mut alone, r#"{"action":"ping"}"#);
        assert_eq!(json(&mut alone), stay("1"));
    }
    let mut other = server.ws("/ws/stay?room=giiku-haku");
    assert_eq!(json(&mut alone), stay("2"));
    assert_eq!(json(&mut other), stay("2"));
    send_text(&mut other, r#"{"action":"ping"}"#);
    assert_eq!(json(&mut other), stay("2"), "answered to the one who asked");
    send_text(&mut alone, r#"{"action":"ping"}"#);
    assert_eq!(json(&mut alone), stay("2"), "and not also to the others");
}

#[test]
fn thirty_simultaneous_joins_form_exactly_ten_groups_of_three() {
    let server = Server::start(&["--cores", "2"]);
    let addr = server.addr;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(30));
    let joiners: Vec<_> = (0..30)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                barrier.wait();
                let url = format!("ws://{addr}/ws/stay?room=crowd");
                let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).unwrap();
                loop {
                    let message: serde_json::Value =
                        serde_json::from_str(&next_text(&mut ws)).unwrap();
                    let start = message["start_time"].as_str().unwrap().to_string();
                    if start != "null" {
                        assert_eq!(message["stay_num"], "3");
                        assert_eq!(close_code(&mut ws), Some(1000));
                        return start;
                    }
                }
            })
        })
        .collect();
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for joiner in joiners {
        *groups
            .entry(joiner.join().expect("every client gets a start time"))
            .or_default() += 1;
    }
    // Start times have one-second resolution, so groups formed in the same second share
    // one; what matters is that 30 clients were grouped in threes.
    let total: usize = groups.values().sum();
    assert_eq!(total, 30);
    assert!(groups.values().all(|n| n % 3 == 0), "{groups:?}");
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("\nkakigori_lobbies_open 0\n"),
        "no lobby left over"
    );
}

fn order_of(ws: &mut Ws) -> serde_json::Value {
    let order = json(ws);
    assert_eq!(close_code(ws), Some(1000));
    order
}

#[test]
fn confirm_orders_once_everyone_is_ready() {
    let server = Server::start(&["--cores", "2"]);
    for size in [2usize, 5] {
        let mut clients: Vec<Ws> = (0..size)
            .map(|_| server.ws("/ws/confirm?room=giiku-haku"))
            .collect();
        for ws in &mut clients {
            send_text(ws, r#"{"status":"ready"}"#);
            send_text(ws, r#"{"status":"ready"}"#);
        }
        let orders: Vec<_> = clients.iter_mut().map(order_of).collect();
        let ids: BTreeSet<_> = orders
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), size, "one distinct order per client");
        for order in &orders {
            assert_eq!(order["menu_item_id"], "giiku-haku");
            assert_eq!(order["menu_name"], "技育博な メロン味");
            assert_eq!(order["status"], "pending");
            let fetched = server.get(&format!(
                "/api/v1/stores/orders/{}",
                order["id"].as_str().unwrap()
            ));
            assert_eq!(fetched.json(), *order);
        }
    }
}

#[test]
fn a_departure_can_complete_the_batch_and_a_timeout_orders_for_all() {
    let server = Server::start(&["--confirm-timeout-ms", "1500"]);
    let mut ready = server.ws("/ws/confirm?room=giiku-sai");
    let mut dawdler = server.ws("/ws/confirm?room=giiku-sai");
    send_text(&mut ready, r#"{"status":"ready"}"#);
    std::thread::sleep(Duration::from_millis(100));
    dawdler.close(None).unwrap();
    while dawdler.read().is_ok() {}
    let order = order_of(&mut ready);
    assert_eq!(order["menu_item_id"], "giiku-sai");

    // Nobody says ready: the batch times out and orders for everyone connected.
    let mut x = server.ws("/ws/confirm?room=giiku-ten");
    let mut y = server.ws("/ws/confirm?room=giiku-ten");
    send_text(&mut x, "not json");
    let (ox, oy) = (order_of(&mut x), order_of(&mut y));
    assert_ne!(ox["id"], oy["id"]);
    assert_eq!(ox["menu_item_id"], "giiku-ten");
}

#[test]
fn a_join_during_ordering_lands_in_the_next_batch() {
    let server = Server::start(&["--confirm-timeout-ms", "2000"]);
    let mut first = server.ws("/ws/confirm?room=giiku-camp");
    send_text(&mut first, r#"{"status":"ready"}"#);
    // The batch of one orders at once; the next client starts a new batch and is not
    // ordered for by the first one.
    let order = order_of(&mut first);
    let mut second = server.ws("/ws/confirm?room=giiku-camp");
    let mut third = server.ws("/ws/confirm?room=giiku-camp");
    send_text(&mut second, r#"{"status":"ready"}"#);
    send_text(&mut third, r#"{"status":"ready"}"#);
    let (o2, o3) = (order_of(&mut second), order_of(&mut third));
    let ids: BTreeSet<_> = [&order, &o2, &o3]
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn unknown_menu_item_is_refused_at_the_handshake() {
    let server = Server::start(&[]);
    let stream = server.connect();
    let url = format!("ws://{}/ws/confirm?room=giiku-nope", server.addr);
    match tungstenite::client::client(url.as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_ref().unwrap()).unwrap();
            assert_eq!(body["message"], "menu item not found: giiku-nope");
        }
        other => panic!("expected a 400, got {:?}", other.map(|(_, r)| r.status())),
    }
}
