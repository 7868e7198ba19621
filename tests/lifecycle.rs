//! Running under systemd (SPEC.md §5): readiness and watchdog notifications, and the
//! graceful shutdown on SIGTERM/SIGINT, against the real binary.

mod common;

use common::{read_response, Server, STAFF_TOKEN};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Sends `signal` and waits for the exit; SIGKILLs the server (so the test fails instead
/// of hanging) if it has not exited after `limit`.
fn signal_and_wait_within(server: &mut Server, signal: i32, limit: Duration) -> ExitStatus {
    let pid = server.pid() as i32;
    let (done, cancelled) = mpsc::channel::<()>();
    let guard = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let status = server.signal_and_wait(signal);
    drop(done);
    guard.join().unwrap();
    status
}

fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            server.log_text()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Creates an order on a fresh connection; the order id if it was acknowledged.
fn try_create(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    let body = r#"{"menu_item_id":"giiku-ten"}"#;
    let request = format!(
        "POST /api/v1/stores/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let response = read_response(&mut BufReader::new(stream))?;
    if response.status != 201 {
        return None;
    }
    Some(response.json()["id"].as_str()?.to_string())
}

fn staff_orders(server: &Server) -> Vec<serde_json::Value> {
    let response = server.staff("GET", "/api/v1/stores/orders");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["orders"].as_array().unwrap().clone()
}

#[test]
fn sigterm_keeps_every_acknowledged_order_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path(), &[]);
    let addr = server.addr;
    let mut acked: Vec<String> = (0..50)
        .map(|_| try_create(addr).expect("order acknowledged"))
        .collect();

    // More clients keep ordering while the signal lands: whatever they got a 201 for
    // must survive too; the rest may be refused or cut.
    let stop = Arc::new(AtomicBool::new(false));
    let racing = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, racing) = (stop.clone(), racing.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match try_create(addr) {
                        Some(id) => racing.lock().unwrap().push(id),
                        None => break,
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    let status = signal_and_wait_within(&mut server, libc::SIGTERM, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    acked.extend(racing.lock().unwrap().drain(..));

    let restarted = Server::start_in(dir.path(), &[]);
    let orders = staff_orders(&restarted);
    for id in &acked {
        let response = restarted.get(&format!("/api/v1/stores/orders/{id}"));
        assert_eq!(response.status, 200, "acknowledged order {id} was lost");
    }
    assert!(
        orders.len() >= acked.len(),
        "{} < {}",
        orders.len(),
        acked.len()
    );
    // Every first-50 order is there, numbered 1..=50.
    let numbers: Vec<u64> = orders
        .iter()
        .map(|o| o["order_number"].as_u64().unwrap())
        .collect();
    assert_eq!(&numbers[..50], &(1..=50).collect::<Vec<u64>>()[..]);
    assert!(
        restarted
            .log_text()
            .contains(&format!("holds {} orders", orders.len())),
        "{}",
        restarted.log_text()
    );
}

#[test]
fn sigterm_closes_websockets_with_1001_and_exits() {
    let mut server = Server::start(&[]);
    let meter = server.ws("/ws?room=shutdown-meter");
    let stay = server.ws("/ws/stay?room=shutdown-lobby");
    let readers: Vec<_> = [meter, stay]
        .into_iter()
        .map(|mut ws| thread::spawn(move || common::close_code(&mut ws)))
        .collect();
    thread::sleep(Duration::from_millis(100));
    let status = signal_and_wait_within(&mut server, libc::SIGTERM, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    for reader in readers {
        assert_eq!(reader.join().unwrap(), Some(1001));
    }
}

#[test]
fn in_flight_requests_finish_idle_ones_close_and_no_new_ones_are_accepted() {
    let mut server = Server::start(&["--head-timeout-ms", "30000"]);
    // Keep-alive connection, idle after one answer.
    let mut idle = server.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut idle = BufReader::new(idle);
    let first = read_response(&mut idle).expect("a response");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("Connection"), None);
    // A request whose head is still arriving when the signal comes.
    let mut busy = server.connect();
    busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    wait_for_log(&server, "shutting down");

    // The idle keep-alive connection is closed (EOF, not a read timeout).
    idle.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(idle.read(&mut byte).expect("closed, not timed out"), 0);
    // New connections are refused.
    thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(server.addr).is_err());
    assert!(!server.log_text().contains("shutdown complete"));

    // The in-flight request is answered, with Connection: close, then the server exits.
    busy.write_all(b"\r\n").unwrap();
    let mut busy = BufReader::new(busy);
    let answer = read_response(&mut busy).expect("the in-flight request is answered");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(busy.read_to_end(&mut rest).unwrap_or(0), 0);
    let status = signal_and_wait_within(&mut server, 0, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    assert!(server.log_text().contains("shutdown complete"));
}

#[test]
fn a_second_signal_ends_a_slow_shutdown_at_once() {
    let mut server = Server::start(&[
        "--shutdown-timeout-ms",
        "20000",
        "--head-timeout-ms",
        "60000",
    ]);
    // A request that never completes holds the graceful shutdown for 20 s.
    let mut stuck = server.connect();
    stuck
        .write_all(b"POST /api/v1/stores/orders HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    wait_for_log(&server, "shutting down");
    thread::sleep(Duration::from_millis(300));
    assert!(!server.log_text().contains("shutdown complete"));
    // Exit code 1 without "shutdown complete" is the abrupt exit: the graceful path would
    // have ended with 0 after the 20 s timeout, and a hang with the guard's SIGKILL.
    let status = signal_and_wait_within(&mut server, libc::SIGINT, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", server.log_text());
    assert!(!server.log_text().contains("shutdown complete"));
    drop(stuck);
}

/// A server started by hand, killed if the test ends early.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`, in `dir`.
fn notify_socket(dir: &std::path::Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    (socket, path)
}

/// The next notification, its `KEY=value` lines joined by newlines. The protocol allows
/// a final newline too (sd-notify ends every line with one); it is dropped here.
fn datagram(socket: &UnixDatagram) -> String {
    try_datagram(socket).expect("a notification in time")
}

fn try_datagram(socket: &UnixDatagram) -> std::io::Result<String> {
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

#[test]
fn notifies_systemd_ready_watchdog_and_stopping_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, socket_path) = notify_socket(dir.path());
    let data_dir = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_kakigori"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("KAKIGORI_STAFF_TOKEN", STAFF_TOKEN)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Spawned(child);
    let mut stderr = child.0.stderr.take().unwrap();
    let log = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // READY is the only thing we wait for: the port must accept at once.
    let ready = datagram(&socket);
    let status_line = ready
        .strip_prefix("READY=1\nSTATUS=serving on ")
        .unwrap_or_else(|| panic!("not a readiness notification: {ready:?}"));
    let addr: SocketAddr = status_line
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(status_line.ends_with(" cores"), "{ready:?}");
    let mut stream = TcpStream::connect(addr).expect("the port accepts once READY=1 is sent");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream)).expect("a response");
    assert_eq!(response.status, 200);

    // Watchdog pings (every 100 ms, half of WATCHDOG_USEC: `ping_interval`'s unit test
    // checks the period), nothing else meanwhile.
    for _ in 0..4 {
        assert_eq!(datagram(&socket), "WATCHDOG=1");
    }

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let mut after = Vec::new();
    loop {
        let message = datagram(&socket);
        if message.starts_with("STOPPING=1") {
            assert_eq!(message, "STOPPING=1\nSTATUS=shutting down");
            break;
        }
        assert_eq!(message, "WATCHDOG=1", "before STOPPING: {after:?}");
        after.push(message);
    }
    let exit = child.0.wait().unwrap();
    let log = log.join().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}\n{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    // Nothing but (late) watchdog pings after STOPPING, and never READY again.
    socket.set_nonblocking(true).unwrap();
    while let Ok(message) = try_datagram(&socket) {
        assert_eq!(message, "WATCHDOG=1");
    }
}

#[test]
fn watchdog_stays_quiet_when_meant_for_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, socket_path) = notify_socket(dir.path());
    let socket_name = socket_path.to_str().unwrap();
    let mut server = Server::start_with_env(
        &dir.path().join("data"),
        &[],
        &[
            ("NOTIFY_SOCKET", socket_name),
            ("WATCHDOG_USEC", "100000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    assert!(datagram(&socket).starts_with("READY=1\n"));
    socket
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(socket.recv(&mut buf).is_err(), "no watchdog pings expected");
    let status = signal_and_wait_within(&mut server, libc::SIGTERM, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(datagram(&socket), "STOPPING=1\nSTATUS=shutting down");
}

#[test]
fn a_notify_socket_that_cannot_be_used_is_logged_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.sock");
    for (socket, warning) in [
        (
            "@kakigori-abstract-notify",
            "only absolute paths are supported",
        ),
        (gone.to_str().unwrap(), "cannot notify systemd"),
    ] {
        let mut server = Server::start_with_env(
            &dir.path().join("data"),
            &[],
            &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "100000")],
        );
        assert_eq!(server.get("/healthz").status, 200);
        wait_for_log(&server, warning);
        let status = signal_and_wait_within(&mut server, libc::SIGTERM, Duration::from_secs(15));
        assert_eq!(status.code(), Some(0), "{socket}: {}", server.log_text());
    }
}
