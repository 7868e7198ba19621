//! `POST /api/v1/chant` (SPEC.md §4) end to end: the built-in generator, and the optional
//! Gemini backend against a fake Gemini server on loopback.

mod common;

use common::{next_text, Server};
use kakigori::chant::rules::check_line;
use kakigori::menu;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

fn chant(server: &Server, menu_id: &str) -> String {
    let response = server.post(
        "/api/v1/chant",
        &format!(r#"{{"menu_item_id":"{menu_id}"}}"#),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["chant"]
        .as_str()
        .expect("chant")
        .to_string()
}

#[test]
fn built_in_lines_follow_the_rules_and_vary() {
    let server = Server::start(&[]);
    for item in menu::MENU {
        let index = menu::find(item.id).unwrap();
        let lines: std::collections::BTreeSet<String> =
            (0..40).map(|_| chant(&server, item.id)).collect();
        for line in &lines {
            check_line(line, index).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        assert!(lines.len() >= 10, "{} distinct lines of 40", lines.len());
    }
    let bad = server.post("/api/v1/chant", "nope");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_message(), "Invalid request body");
    let unknown = server.post("/api/v1/chant", r#"{"menu_item_id":"giiku-x"}"#);
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.error_message(), "invalid menu_item_id: giiku-x");
}

/// What the fake Gemini does with each request.
#[derive(Clone, Copy)]
enum Fake {
    Answer(&'static str),
    Status500,
    Hang,
}

/// A loopback HTTP server that answers like `generateContent`; reports each request head.
fn fake_gemini(fake: Fake) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, heads) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = seen.send(head);
            let reply = match fake {
                Fake::Hang => {
                    std::thread::sleep(Duration::from_secs(30));
                    continue;
                }
                Fake::Status500 => {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_string()
                }
                Fake::Answer(text) => {
                    let json = serde_json::json!({"candidates": [{"content": {"parts": [{"text": text}]}}]}).to_string();
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}", json.len())
                }
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, heads)
}

/// A server whose chant lines come from the backend at `url`, with its data directory.
fn server_with_backend(url: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        dir.path(),
        &["--chant-timeout-ms", "500", "--gemini-model", "test-model"],
        &[
            ("KAKIGORI_GEMINI_API_KEY", "fake-key"),
            ("KAKIGORI_GEMINI_URL", url),
        ],
    );
    (server, dir)
}

fn fallbacks(server: &Server) -> u64 {
    let metrics = server.get("/metrics").text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("kakigori_chant_fallbacks_total "))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_valid_backend_line_is_served() {
    let good = "封印されし技育祭の力よ、ストロベリーの嵐となりて解き放て！";
    let (url, heads) = fake_gemini(Fake::Answer(good));
    let (server, _dir) = server_with_backend(&url);
    assert_eq!(chant(&server, "giiku-sai"), good);
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        head.starts_with("POST /v1beta/models/test-model:generateContent"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("x-goog-api-key: fake-key"),
        "{head}"
    );
    assert_eq!(fallbacks(&server), 0);
}

#[test]
fn invalid_answers_errors_and_hangs_fall_back_to_the_built_in_line() {
    for fake in [
        Fake::Answer("I am not Japanese."),
        Fake::Status500,
        Fake::Hang,
    ] {
        let (url, _heads) = fake_gemini(fake);
        let (server, _dir) = server_with_backend(&url);
        let line = chant(&server, "giiku-camp");
        check_line(&line, menu::find("giiku-camp").unwrap())
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(fallbacks(&server), 1);
    }
}

/// Three guests fill the lobby of `menu_id`; returns once they have their start time.
fn form_group(server: &Server, menu_id: &str) {
    let mut guests: Vec<_> = (0..3)
        .map(|_| server.ws(&format!("/ws/stay?room={menu_id}")))
        .collect();
    for guest in &mut guests {
        while !next_text(guest).contains(r#""stay_num":"3""#) {}
    }
}

#[test]
fn guests_of_one_group_chant_one_line_on_every_core() {
    let server = Server::start(&["--cores", "2"]);
    let giiku_sai = menu::find("giiku-sai").unwrap();
    form_group(&server, "giiku-sai");
    // The line is chosen on the lobby's core just as the group forms; wait until it is
    // published (two answers alike), then every request, on connections spread over both
    // cores, gets it.
    let mut previous = chant(&server, "giiku-sai");
    let mut line = chant(&server, "giiku-sai");
    for _ in 0..50 {
        if line == previous {
            break;
        }
        previous = std::mem::replace(&mut line, chant(&server, "giiku-sai"));
    }
    check_line(&line, giiku_sai).unwrap();
    for _ in 0..20 {
        assert_eq!(chant(&server, "giiku-sai"), line);
    }
    // Another item's lines still vary.
    let others: std::collections::BTreeSet<String> =
        (0..40).map(|_| chant(&server, "giiku-ten")).collect();
    assert!(others.len() >= 10, "{} distinct lines of 40", others.len());
}
