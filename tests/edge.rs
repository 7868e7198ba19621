//! The multi-node edge: two real nodes (store-001 and store-002) behind Debian's real nginx
//! running deploy/nginx/kakigori-edge.conf, all on loopback. Checks that every client of a
//! room reaches the same node (meter and lobby), and that an order id finds its own node.
//!
//! Needs nginx: `apt-get install -y nginx-light` (or `nginx`).

mod common;

use common::{close_code, read_response, send_text, Response, Server, Ws, STAFF_TOKEN};
use serde_json::Value;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";
const EDGE_CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/nginx/kakigori-edge.conf"
);
/// The example node addresses in the shipped fragment, replaced by the test nodes'.
const EXAMPLE_STORE_001: &str = "192.0.2.1:8080";
const EXAMPLE_STORE_002: &str = "192.0.2.2:8080";
const EXAMPLE_LISTEN: &str = "listen 80;";

/// A running nginx in its own temporary prefix; killed (and its log shown on failure) on drop.
struct Edge {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Edge {
    fn start(store_001: SocketAddr, store_002: SocketAddr) -> Edge {
        require_nginx();
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir.path();
        let addr = free_loopback_addr();
        let fragment =
            std::fs::read_to_string(EDGE_CONF).expect("read deploy/nginx/kakigori-edge.conf");
        let fragment = replace_all_checked(&fragment, EXAMPLE_STORE_001, &store_001.to_string());
        let fragment = replace_all_checked(&fragment, EXAMPLE_STORE_002, &store_002.to_string());
        let fragment = replace_all_checked(&fragment, EXAMPLE_LISTEN, &format!("listen {addr};"));
        let p = prefix.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
             error_log {p}/error.log info;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/client_body;\n\
             \x20 proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
             \x20 uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\n{fragment}\n}}\n"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let error_log = prefix.join("error.log");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX}: {e}"));
        let mut edge = Edge { child, addr, dir };
        edge.wait_ready();
        edge
    }

    /// Until `/healthz` answers 200 through the edge (so both nginx and a node are up).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", self.error_log());
            }
            if let Ok(stream) = TcpStream::connect(self.addr) {
                if let Some(response) = try_request(stream, "GET", "/healthz", &[], b"") {
                    if response.status == 200 {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "the edge at {} never answered /healthz with 200:\n{}",
                    self.addr,
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let stream = TcpStream::connect(self.addr).expect("connect to the edge");
        try_request(stream, method, path, headers, body).unwrap_or_else(|| {
            panic!(
                "no response from the edge to {method} {path}:\n{}",
                self.error_log()
            )
        })
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    fn post(&self, path: &str, body: &str) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    fn staff(&self, method: &str, path: &str) -> Response {
        let auth = format!("Bearer {STAFF_TOKEN}");
        self.request(method, path, &[("Authorization", &auth)], b"")
    }

    fn ws(&self, path_and_query: &str) -> Ws {
        let stream = TcpStream::connect(self.addr).expect("connect to the edge");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let url = format!("ws://{}{}", self.addr, path_and_query);
        let (socket, response) =
            tungstenite::client::client(url.as_str(), stream).unwrap_or_else(|e| {
                panic!("WebSocket handshake through the edge on {path_and_query}: {e}")
            });
        assert_eq!(response.status(), 101);
        socket
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- nginx error.log ---\n{}", self.error_log());
        }
    }
}

fn require_nginx() {
    if !Path::new(NGINX).exists() {
        panic!("{NGINX} not found: install nginx (apt-get install -y nginx-light or nginx)");
    }
}

fn replace_all_checked(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{EDGE_CONF} no longer contains {from:?}; update tests/edge.rs"
    );
    text.replace(from, to)
}

fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap()
}

fn try_request(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let bytes = common::encode_request(method, path, headers, body);
    stream.write_all(&bytes).ok()?;
    read_response(&mut BufReader::new(stream))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The next text message as JSON. A time-out here usually means the room's clients were
/// spread over both nodes, so the message that needs all of them never comes.
fn next_json(ws: &mut Ws, what: &str) -> Value {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(text)) => return json(&text),
            Ok(tungstenite::Message::Close(frame)) => panic!("{what}: closed early: {frame:?}"),
            Ok(_) => {}
            Err(e) => {
                panic!("{what}: no message ({e}); were the room's clients split across nodes?")
            }
        }
    }
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

#[test]
fn two_nodes_behind_nginx() {
    require_nginx();
    let store_001 = Server::start(&["--store-id", "store-001"]);
    let store_002 = Server::start(&["--store-id", "store-002"]);
    let edge = Edge::start(store_001.addr, store_002.addr);

    meter_room_lands_on_one_node(&edge);
    lobby_forms_through_the_edge(&edge);
    orders_are_found_on_their_own_node(&edge, &store_001, &store_002);
}

/// (a) Six clients of one /ws room, each sending a distinct value, all see one average
/// over all six: they were all hashed to the same node.
fn meter_room_lands_on_one_node(edge: &Edge) {
    let room = unique("edge-meter");
    let mut clients: Vec<Ws> = (0..6)
        .map(|_| edge.ws(&format!("/ws?room={room}")))
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        send_text(client, &format!("{{\"value\": {}}}", i + 1));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, client) in clients.iter_mut().enumerate() {
        loop {
            assert!(
                Instant::now() < deadline,
                "client {i} never saw count 6 in room {room}"
            );
            let message = next_json(client, &format!("meter client {i} of room {room}"));
            let count = message["count"]
                .as_u64()
                .unwrap_or_else(|| panic!("no count: {message}"));
            assert!(count <= 6, "more samples than clients: {message}");
            if count == 6 {
                let average = message["average"].as_f64().expect("average");
                assert!(
                    (average - 3.5).abs() < 1e-9,
                    "average of 1..=6 should be 3.5: {message}"
                );
                break;
            }
        }
    }
    for client in &mut clients {
        let _ = client.close(None);
    }
}

/// (b) A /ws/stay lobby of three forms through the edge: each client gets stay_num "3" and
/// the same start time in Tokyo time, then a normal close.
fn lobby_forms_through_the_edge(edge: &Edge) {
    let room = unique("edge-lobby");
    let mut clients: Vec<Ws> = (0..3)
        .map(|_| edge.ws(&format!("/ws/stay?room={room}")))
        .collect();
    let mut start_times = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "lobby client {i} never got a start_time"
            );
            let message = next_json(client, &format!("lobby client {i} of room {room}"));
            let start_time = message["start_time"]
                .as_str()
                .unwrap_or_else(|| panic!("no start_time: {message}"));
            if start_time != "null" {
                assert_eq!(message["stay_num"], "3", "{message}");
                assert!(
                    start_time.ends_with("+09:00"),
                    "start_time not in Asia/Tokyo: {message}"
                );
                start_times.push(start_time.to_string());
                break;
            }
        }
    }
    assert!(
        start_times.iter().all(|t| *t == start_times[0]),
        "one group, one start time: {start_times:?}"
    );
    for client in &mut clients {
        assert_eq!(close_code(client), Some(1000));
    }
}

/// (c) Orders made through the edge (round robin over both nodes) and directly on each node
/// are all fetched back through the edge, which routes each id to its store's node.
fn orders_are_found_on_their_own_node(edge: &Edge, store_001: &Server, store_002: &Server) {
    let body = r#"{"menu_item_id":"giiku-sai"}"#;
    let mut orders: Vec<Value> = Vec::new();
    for _ in 0..4 {
        let response = edge.post("/api/v1/stores/orders", body);
        assert_eq!(response.status, 201, "{}", response.text());
        orders.push(response.json());
    }
    // Round robin spreads those over both nodes, but make sure each store holds one anyway.
    for node in [store_001, store_002] {
        let response = node.post("/api/v1/stores/orders", r#"{"menu_item_id":"giiku-ten"}"#);
        assert_eq!(response.status, 201, "{}", response.text());
        orders.push(response.json());
    }
    // `?store=` pins a new order to a store.
    let pinned = edge.post(
        "/api/v1/stores/orders?store=store-002",
        r#"{"menu_item_id":"giiku-camp"}"#,
    );
    assert_eq!(pinned.status, 201, "{}", pinned.text());
    let pinned = pinned.json();
    assert!(
        pinned["id"].as_str().unwrap().starts_with("store-002-"),
        "?store=store-002 ignored: {pinned}"
    );
    orders.push(pinned);

    let ids: Vec<String> = orders
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_string())
        .collect();
    for store in ["store-001-", "store-002-"] {
        assert!(
            ids.iter().any(|id| id.starts_with(store)),
            "no order of {store}*: {ids:?}"
        );
    }
    for order in &orders {
        let id = order["id"].as_str().unwrap();
        let response = edge.get(&format!("/api/v1/stores/orders/{id}"));
        assert_eq!(
            response.status,
            200,
            "GET {id} through the edge: {}",
            response.text()
        );
        assert_eq!(&response.json(), order, "GET {id} through the edge");
    }

    // Staff transitions go to the owning node too.
    for store in ["store-001-", "store-002-"] {
        let id = ids.iter().find(|id| id.starts_with(store)).unwrap();
        let response = edge.staff(
            "POST",
            &format!("/api/v1/stores/orders/{id}/waiting-pickup"),
        );
        assert_eq!(
            response.status,
            200,
            "waiting-pickup {id} through the edge: {}",
            response.text()
        );
        assert_eq!(response.json()["status"], "waitingPickup");
    }
    // And a store's list is that store's orders.
    let listed = edge.staff("GET", "/api/v1/stores/orders?store=store-002");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let listed: Vec<String> = listed.json()["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<&String> = ids
        .iter()
        .filter(|id| id.starts_with("store-002-"))
        .collect();
    assert_eq!(
        listed.iter().collect::<Vec<_>>(),
        expected,
        "store-002's list through the edge"
    );

    // Well-formed ids that name no order, and malformed ones, get the nodes' own answers.
    assert_eq!(
        edge.get("/api/v1/stores/orders/store-002-999999").status,
        404
    );
    assert_eq!(edge.get("/api/v1/stores/orders/store-999-1").status, 404);
    assert_eq!(edge.get("/api/v1/stores/orders/abc").status, 400);
    // Everything else reaches some node.
    assert_eq!(edge.get("/api/v1/stores/menu").status, 200);
    assert_eq!(edge.post("/api/v1/chant", body).status, 200);
}
