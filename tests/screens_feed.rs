//! The screens' live feeds (`/ws/kitchen`, `/ws/board`, and the `/ws` rooms the crowd
//! screen listens to) and pages, against the real binary.

mod common;

use common::{close_code, next_text, send_text, Server, STAFF_TOKEN};
use serde_json::{json, Value};

fn message(ws: &mut common::Ws) -> Value {
    serde_json::from_str(&next_text(ws)).unwrap()
}

/// The next board message about orders, passing over the totals updates in between.
fn board_message(ws: &mut common::Ws) -> Value {
    loop {
        let message = message(ws);
        if message["type"] != "totals" {
            return message;
        }
    }
}

/// Reads totals updates until one says `today` and `last_10_min`; panics on any other
/// message, or (the read timeout) if none does.
fn totals_until(ws: &mut common::Ws, today: &Value, last_10_min: u64) -> Value {
    loop {
        let message = message(ws);
        assert_eq!(message["type"], "totals", "{message}");
        let totals = &message["totals"];
        if totals["today"] == *today && totals["last_10_min"] == last_10_min {
            return totals.clone();
        }
    }
}

/// A staff kitchen viewer, past its token; returns the socket and its snapshot.
fn kitchen(server: &Server) -> (common::Ws, Value) {
    let mut kitchen = server.ws("/ws/kitchen");
    send_text(
        &mut kitchen,
        &format!(r#"{{"type":"auth","token":"{STAFF_TOKEN}"}}"#),
    );
    let snapshot = message(&mut kitchen);
    assert_eq!(snapshot["type"], "snapshot");
    (kitchen, snapshot)
}

fn today(sai: u64, haku: u64, ten: u64, camp: u64) -> Value {
    json!({"giiku-sai": sai, "giiku-haku": haku, "giiku-ten": ten, "giiku-camp": camp})
}

fn order(server: &Server, menu_item_id: &str) {
    let body = format!(r#"{{"menu_item_id":"{menu_item_id}"}}"#);
    assert_eq!(server.post("/api/v1/stores/orders", &body).status, 201);
}

#[test]
fn pages_are_served_as_html() {
    let server = Server::start(&[]);
    for path in ["/kitchen", "/board", "/crowd"] {
        let page = server.get(path);
        assert_eq!(page.status, 200);
        assert!(page
            .header("Content-Type")
            .unwrap()
            .starts_with("text/html"));
        assert!(page.text().to_ascii_lowercase().contains("<!doctype html"));
    }
}

#[test]
fn kitchen_needs_the_token_then_follows_every_change() {
    let server = Server::start(&["--cores", "2"]);
    let mut intruder = server.ws("/ws/kitchen");
    send_text(
        &mut intruder,
        r#"{"type":"auth","token":"not-the-staff-token"}"#,
    );
    assert_eq!(close_code(&mut intruder), Some(1008));

    let first = server
        .post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-sai"}"#)
        .json();
    let (mut kitchen, snapshot) = kitchen(&server);
    assert_eq!(snapshot["orders"][0]["id"], "store-001-1");
    // The card's age comes from the order's own time, the one REST gives.
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(snapshot["orders"][0]["created_at"], first["created_at"]);
    assert_eq!(snapshot["orders"][0]["updated_at"], first["created_at"]);

    let mut board = server.ws("/ws/board");
    let snapshot = message(&mut board);
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["orders"], json!([]));

    server.post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-ten"}"#);
    let created = message(&mut kitchen);
    assert_eq!(created["type"], "order");
    assert_eq!(created["order"]["order_number"], 2);
    assert_eq!(created["order"]["status"], "pending");

    server.staff("POST", "/api/v1/stores/orders/store-001-2/waiting-pickup");
    assert_eq!(message(&mut kitchen)["order"]["status"], "waitingPickup");
    assert_eq!(
        board_message(&mut board),
        json!({"type": "ready", "order": {"order_number": 2, "menu_name": "技育展な ブルーハワイ味"}})
    );
    server.staff("POST", "/api/v1/stores/orders/store-001-2/complete");
    assert_eq!(message(&mut kitchen)["order"]["status"], "completed");
    assert_eq!(
        board_message(&mut board),
        json!({"type": "gone", "order_number": 2})
    );

    // A board that joins later sees what is ready now, and nothing about pending orders.
    server.staff("POST", "/api/v1/stores/orders/store-001-1/waiting-pickup");
    let mut late = server.ws("/ws/board");
    let snapshot = message(&mut late);
    assert_eq!(
        snapshot["orders"],
        json!([{"order_number": 1, "menu_name": "技育祭な いちご味"}])
    );
}

#[test]
fn board_feed_counts_todays_orders_as_they_become_durable() {
    let server = Server::start(&[]);
    order(&server, "giiku-sai");
    order(&server, "giiku-sai");
    order(&server, "giiku-camp");

    let mut board = server.ws("/ws/board");
    let snapshot = message(&mut board);
    assert_eq!(snapshot["type"], "snapshot");
    let totals = &snapshot["totals"];
    assert_eq!(totals["today"], today(2, 0, 0, 1));
    assert_eq!(totals["last_10_min"], 3);
    let since = totals["since"].as_str().unwrap();
    assert!(
        since.ends_with("T00:00:00+09:00"),
        "every order of this run is known, so today starts at midnight in Tokyo: {since}"
    );

    order(&server, "giiku-haku");
    assert_eq!(
        totals_until(&mut board, &today(2, 1, 0, 1), 4)["since"],
        since
    );
    // A status change is not a new order: the board hears of it, the totals stay.
    server.staff("POST", "/api/v1/stores/orders/store-001-4/waiting-pickup");
    assert_eq!(board_message(&mut board)["type"], "ready");
    order(&server, "giiku-ten");
    totals_until(&mut board, &today(2, 1, 1, 1), 5);

    // The kitchen feed is not extended.
    let (_kitchen, snapshot) = kitchen(&server);
    assert!(snapshot.get("totals").is_none());
}

#[test]
fn after_a_restart_today_still_counts_the_orders_made_before_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data.path(), &[]);
    order(&server, "giiku-sai");
    drop(server);

    let server = Server::start_in(data.path(), &[]);
    let mut board = server.ws("/ws/board");
    let snapshot = message(&mut board);
    // Every order carries its creation time in the journal, so today's counts survive a
    // restart and start at midnight in Tokyo.
    let totals = &snapshot["totals"];
    assert_eq!(totals["today"], today(1, 0, 0, 0));
    assert_eq!(totals["last_10_min"], 1);
    let since = chrono::DateTime::parse_from_rfc3339(totals["since"].as_str().unwrap()).unwrap();
    assert_eq!(since.offset().local_minus_utc(), 9 * 3600, "{since}");
    assert_eq!(since.format("%H:%M:%S").to_string(), "00:00:00", "{since}");

    order(&server, "giiku-sai");
    totals_until(&mut board, &today(2, 0, 0, 0), 2);
}

/// The crowd screen listens to each flavour's room: it hears every average and moves
/// none, and a room with only listeners in it hears nothing.
#[test]
fn a_listener_hears_its_room_and_does_not_move_it() {
    let server = Server::start(&["--cores", "2"]);
    let mut listener = server.ws("/ws?room=giiku-sai");
    let mut quiet = server.ws("/ws?room=giiku-ten");
    let mut chanter = server.ws("/ws?room=giiku-sai");
    let mut heard = Value::Null;
    for value in ["0.5", "0.25", "0.75"] {
        send_text(&mut chanter, &format!(r#"{{"value":{value}}}"#));
        heard = message(&mut chanter);
        assert_eq!(message(&mut listener), heard);
    }
    assert_eq!(heard, json!({"average": 0.5, "count": 3}));

    // The first thing the quiet room's listener hears is its first value: nothing before.
    let mut first = server.ws("/ws?room=giiku-ten");
    send_text(&mut first, r#"{"value":0.125}"#);
    assert_eq!(message(&mut quiet), json!({"average": 0.125, "count": 1}));
}
