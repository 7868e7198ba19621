//! The screens' live feeds (`/ws/kitchen`, `/ws/board`) and pages, against the real binary.

mod common;

use common::{close_code, next_text, send_text, Server, STAFF_TOKEN};

fn message(ws: &mut common::Ws) -> serde_json::Value {
    serde_json::from_str(&next_text(ws)).unwrap()
}

#[test]
fn pages_are_served_as_html() {
    let server = Server::start(&[]);
    for path in ["/kitchen", "/board"] {
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
    let mut kitchen = server.ws("/ws/kitchen");
    send_text(
        &mut kitchen,
        &format!(r#"{{"type":"auth","token":"{STAFF_TOKEN}"}}"#),
    );
    let snapshot = message(&mut kitchen);
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["orders"][0]["id"], "store-001-1");
    // The card's age comes from the order's own time, the one REST gives.
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(snapshot["orders"][0]["created_at"], first["created_at"]);
    assert_eq!(snapshot["orders"][0]["updated_at"], first["created_at"]);

    let mut board = server.ws("/ws/board");
    assert_eq!(
        message(&mut board),
        serde_json::json!({"type": "snapshot", "orders": []})
    );

    server.post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-ten"}"#);
    let created = message(&mut kitchen);
    assert_eq!(created["type"], "order");
    assert_eq!(created["order"]["order_number"], 2);
    assert_eq!(created["order"]["status"], "pending");

    server.staff("POST", "/api/v1/stores/orders/store-001-2/waiting-pickup");
    assert_eq!(message(&mut kitchen)["order"]["status"], "waitingPickup");
    assert_eq!(
        message(&mut board),
        serde_json::json!({"type": "ready", "order": {"order_number": 2, "menu_name": "技育展な ブルーハワイ味"}})
    );
    server.staff("POST", "/api/v1/stores/orders/store-001-2/complete");
    assert_eq!(message(&mut kitchen)["order"]["status"], "completed");
    assert_eq!(
        message(&mut board),
        serde_json::json!({"type": "gone", "order_number": 2})
    );

    // A board that joins later sees what is ready now, and nothing about pending orders.
    server.staff("POST", "/api/v1/stores/orders/store-001-1/waiting-pickup");
    let mut late = server.ws("/ws/board");
    let snapshot = message(&mut late);
    assert_eq!(
        snapshot["orders"],
        serde_json::json!([{"order_number": 1, "menu_name": "技育祭な いちご味"}])
    );
}
