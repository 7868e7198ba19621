//! The chant meter `/ws?room=R` and the WebSocket layer (SPEC.md §2, §2.1), with real
//! WebSocket clients against the real binary.

mod common;

use common::{next_text, send_text, Server, Ws};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use tungstenite::Message;

fn reading(ws: &mut Ws) -> (f64, u64) {
    let json: serde_json::Value = serde_json::from_str(&next_text(ws)).unwrap();
    (
        json["average"].as_f64().expect("average"),
        json["count"].as_u64().expect("count"),
    )
}

/// Reads averages until one has `count`, returning it.
fn reading_with_count(ws: &mut Ws, count: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (average, seen) = reading(ws);
        if seen == count {
            return average;
        }
        assert!(Instant::now() < deadline, "never saw count {count}");
    }
}

#[test]
fn averages_across_clients_include_the_sender() {
    let server = Server::start(&["--meter-interval-ms", "0", "--cores", "2"]);
    let mut a = server.ws("/ws?room=giiku-sai");
    let mut b = server.ws("/ws?room=giiku-sai");
    let mut c = server.ws("/ws?room=giiku-sai");
    send_text(&mut a, r#"{"value": 10}"#);
    assert_eq!(
        reading(&mut a),
        (10.0, 1),
        "the sender receives its own broadcast"
    );
    assert_eq!(reading(&mut b), (10.0, 1));
    assert_eq!(reading(&mut c), (10.0, 1));
    send_text(&mut b, r#"{"value": 20}"#);
    send_text(&mut c, r#"{"value": 60}"#);
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(reading_with_count(ws, 3), 30.0);
    }
}

#[test]
fn junk_and_zero_are_ignored_and_never_fatal() {
    let server = Server::start(&["--meter-interval-ms", "0"]);
    let mut a = server.ws("/ws?room=r");
    for junk in [
        r#"{"value": 0}"#,
        r#"{"value": "5"}"#,
        "hello",
        "{}",
        r#"{"value": null}"#,
        "[1]",
        r#"{"value":1e400}"#,
    ] {
        send_text(&mut a, junk);
    }
    a.send(Message::binary(vec![1, 2, 3])).unwrap();
    send_text(&mut a, r#"{"value": 4.5}"#);
    assert_eq!(reading(&mut a), (4.5, 1), "only the valid value counted");
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("kakigori_ws_messages_ignored_total{reason=\"not_a_value\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kakigori_ws_messages_ignored_total{reason=\"zero\"} 1"),
        "{metrics}"
    );
}

#[test]
fn rooms_are_isolated_and_may_live_on_different_cores() {
    let server = Server::start(&["--cores", "2", "--meter-interval-ms", "0"]);
    // Enough rooms that both cores are homes to some.
    let mut clients: Vec<(Ws, Ws)> = (0..6)
        .map(|i| {
            (
                server.ws(&format!("/ws?room=room-{i}")),
                server.ws(&format!("/ws?room=room-{i}")),
            )
        })
        .collect();
    for (i, (sender, _)) in clients.iter_mut().enumerate() {
        send_text(sender, &format!(r#"{{"value": {}}}"#, i + 1));
    }
    for (i, (sender, listener)) in clients.iter_mut().enumerate() {
        assert_eq!(reading(sender), ((i + 1) as f64, 1));
        assert_eq!(
            reading(listener),
            ((i + 1) as f64, 1),
            "room {i} sees only its own value"
        );
    }
    let metrics = server.get("/metrics").text();
    for core in 0..2 {
        let rooms: u64 = metric(&metrics, &format!("kakigori_core_rooms{{core=\"{core}\"}}"));
        assert!(
            rooms >= 1,
            "core {core} is home to some of the rooms:\n{metrics}"
        );
    }
    let rooms: u64 = (0..2)
        .map(|core| metric(&metrics, &format!("kakigori_core_rooms{{core=\"{core}\"}}")))
        .sum();
    assert_eq!(rooms, 6, "each room lives on exactly one core");
}

#[test]
fn a_leaving_client_takes_its_samples_and_old_samples_expire() {
    let server = Server::start(&["--meter-interval-ms", "0", "--meter-window-ms", "1000"]);
    let mut a = server.ws("/ws?room=w");
    let mut b = server.ws("/ws?room=w");
    send_text(&mut a, r#"{"value": 100}"#);
    assert_eq!(reading(&mut b), (100.0, 1));
    a.close(None).unwrap();
    while a.read().is_ok() {}
    std::thread::sleep(Duration::from_millis(100));
    send_text(&mut b, r#"{"value": 2}"#);
    assert_eq!(reading(&mut b), (2.0, 1), "a's sample left with a");
    std::thread::sleep(Duration::from_millis(1300));
    send_text(&mut b, r#"{"value": 4}"#);
    assert_eq!(reading(&mut b), (4.0, 1), "b's earlier sample expired");
}

#[test]
fn busy_rooms_fold_values_into_bounded_broadcasts() {
    let server = Server::start(&["--meter-interval-ms", "200"]);
    let mut a = server.ws("/ws?room=busy");
    for v in 1..=10 {
        send_text(&mut a, &format!(r#"{{"value": {v}}}"#));
    }
    // The first value of a quiet room goes out at once; the other nine fold into one.
    assert_eq!(reading(&mut a), (1.0, 1));
    assert_eq!(reading(&mut a), (5.5, 10));
}

#[test]
fn rate_cap_ignores_the_excess() {
    let server = Server::start(&["--meter-interval-ms", "0", "--meter-values-per-s-max", "5"]);
    let mut a = server.ws("/ws?room=fast");
    for _ in 0..20 {
        send_text(&mut a, r#"{"value": 1}"#);
    }
    send_text(&mut a, "{}");
    std::thread::sleep(Duration::from_millis(300));
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("kakigori_ws_messages_ignored_total{reason=\"rate_limited\"} 15"),
        "{metrics}"
    );
    assert_eq!(reading_with_count(&mut a, 5), 1.0);
}

#[test]
fn room_parameter_rules() {
    let server = Server::start(&[]);
    let upgrade = |path: &str| {
        server.request(
            "GET",
            path,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
            b"",
        )
    };
    for path in ["/ws", "/ws?room=", "/ws/stay", "/ws/confirm?other=1"] {
        let response = upgrade(path);
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(response.error_message(), "room is required");
    }
    let long = format!("/ws?room={}", "x".repeat(129));
    assert_eq!(upgrade(&long).status, 400);
    assert_eq!(
        upgrade(&format!("/ws?room={}", "x".repeat(128))).status,
        101
    );
    assert_eq!(upgrade("/ws?room=%ff%fe").status, 400, "not UTF-8");
    let confirm = upgrade("/ws/confirm?room=giiku-nope");
    assert_eq!(confirm.status, 400);
    assert_eq!(confirm.error_message(), "menu item not found: giiku-nope");
    let plain = server.get("/ws?room=a");
    assert_eq!(plain.status, 400, "a plain GET without upgrade headers");
    plain.error_message();
    // Percent-decoding: both spellings are the same room.
    let mut a = server.ws("/ws?room=caf%C3%A9+bar");
    let mut b = server.ws("/ws?room=café%20bar");
    send_text(&mut a, r#"{"value": 3}"#);
    assert_eq!(reading(&mut b).1, 1);
}

/// Writes raw client frames on a handshaken socket and returns the close code the
/// server answers with.
fn close_code_for(server: &Server, frames: &[u8]) -> u16 {
    let mut stream = server.connect();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET /ws?room=hostile HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream.write_all(frames).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    // The close frame: 0x88, length, then the code.
    let at = reply
        .windows(1)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    u16::from_be_bytes([reply[at + 2], reply[at + 3]])
}

fn masked(opcode_and_fin: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![opcode_and_fin];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn hostile_frames_get_the_right_close_codes() {
    let server = Server::start(&[]);
    // Unmasked client frame.
    assert_eq!(close_code_for(&server, &[0x81, 0x02, b'h', b'i']), 1002);
    // Text message over 4 KiB.
    assert_eq!(
        close_code_for(&server, &masked(0x81, &vec![b'a'; 5000])),
        1009
    );
    // Invalid UTF-8 in text.
    assert_eq!(
        close_code_for(&server, &masked(0x81, &[0xff, 0xfe, 0xfd])),
        1007
    );
    // Continuation without a start; reserved bits; unknown opcode.
    assert_eq!(close_code_for(&server, &masked(0x80, b"x")), 1002);
    assert_eq!(close_code_for(&server, &masked(0xC1, b"x")), 1002);
    assert_eq!(close_code_for(&server, &masked(0x83, b"x")), 1002);
    // Fragments over the limit in total.
    let mut fragments = masked(0x01, &vec![b'a'; 3000]);
    fragments.extend(masked(0x80, &vec![b'a'; 3000]));
    assert_eq!(close_code_for(&server, &fragments), 1009);
    // The server survived all of it.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn fragments_reassemble_pings_are_answered_and_close_completes() {
    let server = Server::start(&["--meter-interval-ms", "0"]);
    let mut ws = server.ws("/ws?room=frag");
    ws.send(Message::Ping(b"hey".to_vec())).unwrap();
    loop {
        if let Message::Pong(payload) = ws.read().unwrap() {
            assert_eq!(&payload[..], b"hey");
            break;
        }
    }
    let frame1 = tungstenite::protocol::frame::Frame::message(
        b"{\"value\":".to_vec(),
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Text,
        ),
        false,
    );
    let frame2 = tungstenite::protocol::frame::Frame::message(
        b" 7}".to_vec(),
        tungstenite::protocol::frame::coding::OpCode::Data(
            tungstenite::protocol::frame::coding::Data::Continue,
        ),
        true,
    );
    ws.write(Message::Frame(frame1)).unwrap();
    ws.send(Message::Frame(frame2)).unwrap();
    assert_eq!(reading(&mut ws), (7.0, 1));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close handshake did not complete: {e}"),
        }
    }
}

#[test]
fn server_pings_and_drops_silent_clients() {
    let server = Server::start(&[
        "--ws-ping-interval-ms",
        "200",
        "--ws-idle-timeout-ms",
        "1500",
    ]);
    let mut ws = server.ws("/ws?room=quiet");
    let deadline = Instant::now() + Duration::from_secs(5);
    // tungstenite answers pings on its own while we read.
    loop {
        if let Message::Ping(_) = ws.read().unwrap() {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    // A raw client that never answers is dropped after the idle timeout.
    let mut raw = server.connect();
    let request = "GET /ws?room=quiet HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    raw.write_all(request.as_bytes()).unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "not dropped before the idle timeout"
    );
    let at = sink
        .windows(2)
        .position(|w| w == [0x88, 0x0e] || w[0] == 0x88)
        .expect("close frame");
    assert_eq!(u16::from_be_bytes([sink[at + 2], sink[at + 3]]), 1001);
}

#[test]
fn a_slow_reader_gets_the_newest_average_without_a_backlog() {
    const VALUES: u32 = 20_000;
    let server = Server::start(&[
        "--meter-interval-ms",
        "0",
        "--meter-values-per-s-max",
        "100000",
    ]);
    let stream = common::connect_with_small_receive_buffer(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let url = format!("ws://{}/ws?room=slow", server.addr);
    let (mut slow, _) = tungstenite::client::client(url.as_str(), stream).unwrap();
    let mut sender = server.ws("/ws?room=slow");
    // The slow client reads nothing while thousands of averages are produced.
    for v in 1..=VALUES {
        sender
            .write(Message::text(format!(r#"{{"value": {v}}}"#)))
            .unwrap();
        if v.is_multiple_of(100) {
            sender.flush().unwrap();
        }
    }
    sender.flush().unwrap();
    let _ = reading_with_count(&mut sender, u64::from(VALUES));
    // Now it resumes: it reaches the newest average, having been sent only a fraction of
    // the averages; the rest were replaced before they could be sent, not queued.
    let mut received = 0u32;
    loop {
        let (average, count) = reading(&mut slow);
        received += 1;
        if count == u64::from(VALUES) {
            assert_eq!(average, f64::from(VALUES + 1) / 2.0);
            break;
        }
    }
    assert!(
        received < VALUES / 2,
        "the slow reader got {received} of {VALUES} averages: a backlog was kept"
    );
    let metrics = server.get("/metrics").text();
    let conflated: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kakigori_ws_messages_conflated_total "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        conflated >= u64::from(VALUES - received),
        "conflation is counted: {conflated}"
    );
}

#[test]
fn a_websocket_outlives_the_http_head_timeout() {
    // The head deadline is for reading a request; a quiet WebSocket may stay far longer.
    let server = Server::start(&["--head-timeout-ms", "300", "--meter-interval-ms", "0"]);
    let mut quiet = server.ws("/ws?room=patient");
    let mut sender = server.ws("/ws?room=patient");
    std::thread::sleep(Duration::from_millis(1000));
    send_text(&mut sender, r#"{"value": 9}"#);
    assert_eq!(
        reading(&mut quiet),
        (9.0, 1),
        "the quiet client is still connected"
    );
}

/// The value of the metric line that starts with `series`.
fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[test]
fn the_four_menu_rooms_are_spread_over_both_cores() {
    let server = Server::start(&["--cores", "2", "--meter-interval-ms", "0"]);
    let menu = ["giiku-sai", "giiku-haku", "giiku-ten", "giiku-camp"];
    let mut clients: Vec<Ws> = menu
        .iter()
        .map(|room| server.ws(&format!("/ws?room={room}")))
        .collect();
    for client in &mut clients {
        send_text(client, r#"{"value": 0.5}"#);
        assert_eq!(reading(client), (0.5, 1));
    }
    let metrics = server.get("/metrics").text();
    for core in 0..2 {
        let series = format!("kakigori_core_rooms{{core=\"{core}\"}}");
        assert_eq!(metric(&metrics, &series), 2, "{metrics}");
    }
}

#[test]
fn a_room_that_closes_and_reopens_keeps_one_home() {
    // Clients join and leave a room from both cores' accept queues at once, so hand-offs
    // are in flight while the room closes and reopens. Whatever the interleaving, the
    // members connected at the same time must hear each other: one room, one core.
    let server = Server::start(&["--cores", "2", "--meter-interval-ms", "0"]);
    for round in 0..40 {
        let mut a = server.ws("/ws?room=flicker");
        let mut b = server.ws("/ws?room=flicker");
        send_text(&mut a, &format!(r#"{{"value": {}}}"#, round + 1));
        assert_eq!(reading(&mut b), ((round + 1) as f64, 1), "round {round}");
        a.close(None).unwrap();
        b.close(None).unwrap();
        while a.read().is_ok() {}
        while b.read().is_ok() {}
    }
    let metrics = server.get("/metrics").text();
    let rooms: u64 = (0..2)
        .map(|core| metric(&metrics, &format!("kakigori_core_rooms{{core=\"{core}\"}}")))
        .sum();
    assert_eq!(rooms, 0, "a closed room leaves nothing behind:\n{metrics}");
}
