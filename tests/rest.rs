//! The REST contract (SPEC.md §1), end to end against the real binary.

mod common;

use common::{read_response, Server, STAFF_TOKEN};
use std::io::{BufReader, Read, Write};
use std::time::Duration;

fn create(server: &Server, menu: &str) -> serde_json::Value {
    let response = server.post(
        "/api/v1/stores/orders",
        &format!(r#"{{"menu_item_id":"{menu}"}}"#),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()
}

#[test]
fn health_menu_and_cors() {
    let server = Server::start(&[]);
    for path in ["/healthz", "/api/v1/healthz", "/ws/health"] {
        let response = server.get(path);
        assert_eq!(response.status, 200);
        assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
        assert_eq!(response.header("Access-Control-Allow-Origin"), Some("*"));
        assert_eq!(response.header("Content-Type"), Some("application/json"));
    }
    let menu = server.get("/api/v1/stores/menu");
    assert_eq!(menu.status, 200);
    let expected = serde_json::json!({"menu": [
        {"id": "giiku-sai", "name": "技育祭な いちご味", "description": "技育祭をイメージしたいちご味のかき氷"},
        {"id": "giiku-haku", "name": "技育博な メロン味", "description": "技育博をイメージしたメロン味のかき氷"},
        {"id": "giiku-ten", "name": "技育展な ブルーハワイ味", "description": "技育展をイメージしたブルーハワイ味のかき氷"},
        {"id": "giiku-camp", "name": "技育CAMPな オレンジ味", "description": "技育CAMPをイメージしたオレンジ味のかき氷"},
    ]});
    assert_eq!(menu.json(), expected);
    assert!(
        menu.text()
            .starts_with(r#"{"menu":[{"id":"giiku-sai","name":"#),
        "field order of the original"
    );

    let preflight = server.request("OPTIONS", "/api/v1/stores/orders", &[], b"");
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("Access-Control-Allow-Methods"),
        Some("GET,POST,PUT,PATCH,DELETE,OPTIONS")
    );
    assert_eq!(preflight.header("Access-Control-Allow-Headers"), Some("*"));
    assert_eq!(preflight.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        server
            .request("OPTIONS", "/anything/at/all", &[], b"")
            .status,
        204
    );

    let swagger = server.get("/swagger.yaml");
    assert_eq!(swagger.status, 200);
    assert_eq!(swagger.header("Content-Type"), Some("application/yaml"));
    assert!(swagger.text().contains("openapi: 3"));
    assert_eq!(server.get("/api/v1/swagger.yaml").body, swagger.body);
}

#[test]
fn create_and_get_orders_with_exact_errors() {
    let server = Server::start(&["--store-id", "store-007"]);
    let order = create(&server, "giiku-ten");
    // The original shape, plus the additive times (RFC 3339, UTC): a new order's last
    // change is its creation.
    let created_at = order["created_at"]
        .as_str()
        .expect("created_at")
        .to_string();
    assert!(
        created_at.len() == 24 && created_at.ends_with('Z') && created_at.as_bytes()[10] == b'T',
        "{created_at}"
    );
    assert_eq!(
        order,
        serde_json::json!({"id": "store-007-1", "menu_item_id": "giiku-ten", "menu_name": "技育展な ブルーハワイ味",
                           "status": "pending", "order_number": 1,
                           "created_at": created_at, "updated_at": created_at})
    );
    assert_eq!(create(&server, "giiku-camp")["order_number"], 2);
    let fetched = server.get("/api/v1/stores/orders/store-007-1");
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), order);

    for body in [
        "",
        "not json",
        "[]",
        "null",
        r#"{"menu_item_id":""}"#,
        r#"{"menu_item_id":7}"#,
        "{}",
    ] {
        let response = server.post("/api/v1/stores/orders", body);
        assert_eq!(response.status, 400, "body {body:?}");
        assert_eq!(response.error_message(), "Invalid request body");
        assert_eq!(response.json()["error"], "Bad Request");
    }
    let unknown = server.post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-xyz"}"#);
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.error_message(), "menu item not found: giiku-xyz");

    for id in ["abc", "store-007-abc", "store-007-", "-5"] {
        let response = server.get(&format!("/api/v1/stores/orders/{id}"));
        assert_eq!(response.status, 400, "id {id}");
        assert_eq!(response.error_message(), "Invalid order ID format");
    }
    for id in ["store-007-99", "store-001-1", "store-007-0"] {
        let response = server.get(&format!("/api/v1/stores/orders/{id}"));
        assert_eq!(response.status, 404, "id {id}");
        assert_eq!(response.error_message(), "Order not found");
        assert_eq!(response.json()["error"], "Not Found");
    }
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let server = Server::start(&[]);
    let missing = server.get("/api/v1/nothing");
    assert_eq!(missing.status, 404);
    missing.error_message();
    let wrong = server.request("DELETE", "/api/v1/stores/menu", &[], b"");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("Allow"), Some("GET, OPTIONS"));
    wrong.error_message();
    let wrong = server.request("PUT", "/api/v1/stores/orders", &[], b"");
    assert_eq!(wrong.header("Allow"), Some("GET, POST, OPTIONS"));
    let wrong = server.get("/api/v1/chant");
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("Allow"), Some("POST, OPTIONS"));
}

#[test]
fn staff_endpoints_need_the_token_and_move_orders_forward() {
    let server = Server::start(&[]);
    create(&server, "giiku-sai");
    create(&server, "giiku-haku");
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789x"),
        Some(STAFF_TOKEN),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let response = server.request("GET", "/api/v1/stores/orders", &headers, b"");
        assert_eq!(response.status, 401, "auth {auth:?}");
        assert_eq!(response.json()["error"], "Unauthorized");
        let response = server.request(
            "POST",
            "/api/v1/stores/orders/store-001-1/complete",
            &headers,
            b"",
        );
        assert_eq!(response.status, 401);
    }
    let list = server.staff("GET", "/api/v1/stores/orders").json();
    let numbers: Vec<_> = list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_number"].clone())
        .collect();
    assert_eq!(numbers, vec![1, 2]);

    let early = server.staff("POST", "/api/v1/stores/orders/store-001-1/complete");
    assert_eq!(early.status, 400);
    assert_eq!(early.error_message(), "order status is not waiting pickup");
    let ready = server.staff("POST", "/api/v1/stores/orders/store-001-1/waiting-pickup");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "waitingPickup");
    let again = server.staff("POST", "/api/v1/stores/orders/store-001-1/waiting-pickup");
    assert_eq!(again.status, 400);
    assert_eq!(again.error_message(), "order status is not pending");
    let done = server.staff("POST", "/api/v1/stores/orders/store-001-1/complete");
    assert_eq!(done.json()["status"], "completed");
    assert_eq!(
        server.get("/api/v1/stores/orders/store-001-1").json()["status"],
        "completed"
    );
    assert_eq!(
        server
            .staff("POST", "/api/v1/stores/orders/store-001-9/complete")
            .status,
        404
    );
    assert_eq!(
        server
            .staff("POST", "/api/v1/stores/orders/nine/complete")
            .status,
        400
    );

    let pending = server
        .staff("GET", "/api/v1/stores/orders?status=pending")
        .json();
    assert_eq!(pending["orders"].as_array().unwrap().len(), 1);
    assert_eq!(pending["orders"][0]["order_number"], 2);
    let completed = server
        .staff("GET", "/api/v1/stores/orders?status=completed")
        .json();
    assert_eq!(completed["orders"][0]["order_number"], 1);
    let waiting = server
        .staff("GET", "/api/v1/stores/orders?status=waitingPickup")
        .json();
    assert_eq!(waiting["orders"].as_array().unwrap().len(), 0);
    assert_eq!(
        server
            .staff("GET", "/api/v1/stores/orders?status=cooking")
            .status,
        400
    );
}

/// The status of the staff order list asked for with `token`.
fn list_status_with(server: &Server, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    server
        .request(
            "GET",
            "/api/v1/stores/orders",
            &[("Authorization", &bearer)],
            b"",
        )
        .status
}

#[test]
fn generated_staff_token_is_stored_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let token = {
        let server = Server::start_with_token(dir.path(), &[], None);
        let path = dir.path().join("staff-token");
        let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(token.len() >= 32);
        assert!(
            server.log_text().contains("staff-token"),
            "the log says where the token is"
        );
        assert_eq!(list_status_with(&server, &token), 200);
        assert_eq!(server.staff("GET", "/api/v1/stores/orders").status, 401);
        token
    };
    let server = Server::start_with_token(dir.path(), &[], None);
    assert_eq!(list_status_with(&server, &token), 200);
}

#[test]
fn idempotency_key_returns_the_same_order_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"{"menu_item_id":"giiku-sai"}"#;
    let first = {
        let server = Server::start_in(dir.path(), &[]);
        let first = server.request(
            "POST",
            "/api/v1/stores/orders",
            &[("Idempotency-Key", "guest-42")],
            body,
        );
        assert_eq!(first.status, 201);
        let repeat = server.request(
            "POST",
            "/api/v1/stores/orders",
            &[("Idempotency-Key", "guest-42")],
            body,
        );
        assert_eq!(repeat.json(), first.json());
        let other = server.request(
            "POST",
            "/api/v1/stores/orders",
            &[("Idempotency-Key", "guest-43")],
            body,
        );
        assert_eq!(other.json()["order_number"], 2);
        let long = "k".repeat(129);
        let refused = server.request(
            "POST",
            "/api/v1/stores/orders",
            &[("Idempotency-Key", &long)],
            body,
        );
        assert_eq!(refused.status, 400);
        let max = "k".repeat(128);
        assert_eq!(
            server
                .request(
                    "POST",
                    "/api/v1/stores/orders",
                    &[("Idempotency-Key", &max)],
                    body
                )
                .status,
            201
        );
        first.json()
    };
    let server = Server::start_in(dir.path(), &[]);
    let after = server.request(
        "POST",
        "/api/v1/stores/orders",
        &[("Idempotency-Key", "guest-42")],
        body,
    );
    assert_eq!(after.json(), first);
    assert_eq!(create(&server, "giiku-sai")["order_number"], 4);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    let body = r#"{"menu_item_id":"giiku-haku"}"#;
    let mut batch = String::new();
    batch.push_str("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    batch.push_str(&format!(
        "POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    batch.push_str("GET /api/v1/stores/orders/store-001-1 HTTP/1.1\r\nHost: a\r\n\r\n");
    batch.push_str("GET /nope HTTP/1.1\r\nHost: a\r\n\r\n");
    stream.write_all(batch.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let statuses: Vec<u16> = (0..4)
        .map(|_| read_response(&mut reader).unwrap().status)
        .collect();
    assert_eq!(statuses, vec![200, 201, 200, 404]);
    // Keep-alive: the same connection still works, and Connection: close is honoured.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = read_response(&mut reader).unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(last.header("Connection"), Some("close"));
    assert!(
        read_response(&mut reader).is_none(),
        "server closes after Connection: close"
    );
}

fn raw_exchange(server: &Server, bytes: &[u8]) -> (common::Response, bool) {
    let mut stream = server.connect();
    let _ = stream.write_all(bytes);
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("an error response");
    let mut rest = Vec::new();
    let closed = reader.read_to_end(&mut rest).is_ok();
    (response, closed)
}

#[test]
fn limits_and_malformed_requests_get_json_errors_then_close() {
    let server = Server::start(&[]);
    let big_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let (response, closed) = raw_exchange(&server, big_head.as_bytes());
    assert_eq!(response.status, 431);
    response.error_message();
    assert!(closed);

    let big_body = format!(
        "POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        70_000
    );
    let (response, _) = raw_exchange(&server, big_body.as_bytes());
    assert_eq!(response.status, 413);
    response.error_message();

    let (response, closed) = raw_exchange(&server, b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(response.status, 400);
    response.error_message();
    assert!(closed);

    // Chunked bodies are decoded (tests/http_chunked.rs); other transfer codings are not.
    let gzip = b"POST /api/v1/stores/orders HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
    let (response, closed) = raw_exchange(&server, gzip);
    assert_eq!(response.status, 501);
    response.error_message();
    assert!(closed);

    // The server is unharmed.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn a_slow_head_is_cut_off() {
    let server = Server::start(&["--head-timeout-ms", "300"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader).expect("408");
    assert_eq!(response.status, 408);
    response.error_message();
    let idle = server.connect();
    std::thread::sleep(Duration::from_millis(700));
    let mut buf = [0u8; 16];
    assert_eq!(
        (&idle).read(&mut buf).unwrap_or(0),
        0,
        "an idle connection is closed silently"
    );
}
