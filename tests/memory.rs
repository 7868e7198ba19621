//! Memory comes back after a crowd leaves: once most connections have closed, the server
//! returns freed memory to the system instead of staying at its peak size.

mod common;

use common::Server;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn rss_returns_near_baseline_after_many_websockets_close() {
    const CLIENTS: usize = 3000;
    let server = Server::start(&["--cores", "1"]);
    let baseline = rss_kib(server.pid());
    let request = "GET /ws?room=crowd HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut crowd = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut stream = server.connect();
        stream.write_all(request.as_bytes()).unwrap();
        crowd.push(stream);
    }
    for stream in &mut crowd {
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
    }
    let peak = rss_kib(server.pid());
    drop(crowd);
    // The journal core looks once a second; give it a few.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss_kib(server.pid());
    while after > baseline + (peak - baseline) / 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_kib(server.pid());
    }
    eprintln!(
        "RSS KiB: baseline {baseline}, with {CLIENTS} WebSockets {peak}, after they left {after}"
    );
    assert!(
        peak > baseline + 2048,
        "the crowd should cost something: {baseline} → {peak}"
    );
    assert!(
        after <= baseline + (peak - baseline) / 2,
        "memory not returned: baseline {baseline}, peak {peak}, after {after} KiB"
    );
    assert_eq!(server.get("/healthz").status, 200);
}
