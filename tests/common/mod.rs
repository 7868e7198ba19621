//! Black-box test support: start the real `kakigori` binary on an ephemeral loopback port
//! with its own data directory, and talk to it over real sockets.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server's stderr, line by line, as it arrives.
pub type Log = Arc<Mutex<Vec<String>>>;

pub const STAFF_TOKEN: &str = "test-staff-token-0123456789";

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    pub log: Log,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start(args: &[&str]) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut server = Server::start_in(&dir, args);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data_dir` (which outlives it), waiting until it listens.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_with_token(data_dir, args, Some(STAFF_TOKEN))
    }

    /// As [`Server::start_in`]; `None` leaves the staff token to the server.
    pub fn start_with_token(data_dir: &Path, args: &[&str], token: Option<&str>) -> Server {
        Server::spawn_with(data_dir, args, token, &[])
    }

    /// As [`Server::start_in`], with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::spawn_with(data_dir, args, Some(STAFF_TOKEN), envs)
    }

    fn spawn_with(
        data_dir: &Path,
        args: &[&str],
        token: Option<&str>,
        envs: &[(&str, &str)],
    ) -> Server {
        let (child, addr, log) = spawn(data_dir, args, token, envs)
            .unwrap_or_else(|log| panic!("server did not start:\n{log}"));
        Server {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush or sync anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait().expect("wait")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn staff(&self, method: &str, path: &str) -> Response {
        let auth = format!("Bearer {STAFF_TOKEN}");
        self.request(method, path, &[("Authorization", &auth)], b"")
    }

    /// One request on a fresh connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = self.connect();
        let bytes = encode_request(method, path, headers, body);
        stream.write_all(&bytes).expect("send");
        read_response(&mut BufReader::new(stream)).expect("a response")
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// A WebSocket client on `path_and_query` (e.g. `/ws?room=a`).
    pub fn ws(&self, path_and_query: &str) -> Ws {
        let stream = self.connect();
        let url = format!("ws://{}{}", self.addr, path_and_query);
        let (socket, response) =
            tungstenite::client::client(url.as_str(), stream).expect("websocket handshake");
        assert_eq!(response.status(), 101);
        socket
    }
}

pub type Ws = tungstenite::WebSocket<TcpStream>;

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(
    data_dir: &Path,
    args: &[&str],
    token: Option<&str>,
    envs: &[(&str, &str)],
) -> Result<(Child, SocketAddr, Log), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kakigori"));
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("KAKIGORI_STAFF_TOKEN")
        .env("KAKIGORI_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("KAKIGORI_STAFF_TOKEN", token);
    }
    command.envs(envs.iter().copied());
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (addr_sender, addr_receiver) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = addr_sender.send(addr);
            }
            lines.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = addr_receiver.recv_timeout(Duration::from_millis(50)) {
            return Ok((
                child,
                addr.parse().map_err(|_| format!("bad address {addr}"))?,
                log,
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!(
                "exited with {status}: {}",
                log.lock().unwrap().join("\n")
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(log.lock().unwrap().join("\n"));
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the contract's error shape and returns the message.
    pub fn error_message(&self) -> String {
        let json = self.json();
        assert!(json["error"].is_string(), "no error field: {json}");
        json["message"].as_str().expect("message").to_string()
    }
}

/// Reads one response with a Content-Length body; `None` on a clean EOF.
pub fn read_response<R: BufRead>(reader: &mut R) -> Option<Response> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Reads the next text message, answering nothing else; panics on close or timeout.
pub fn next_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("a message") {
            tungstenite::Message::Text(text) => return text.to_string(),
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads until the server closes; returns the close code.
pub fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(tungstenite::Message::text(text)).expect("send");
}

/// The bytes of one request that asks the server to close afterwards.
pub fn encode_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A connected socket whose receive buffer is made as small as the kernel allows before
/// the handshake, so a client that never reads pushes back on the server quickly.
pub fn connect_with_small_receive_buffer(addr: SocketAddr) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return TcpStream::connect(addr);
    };
    // SAFETY: plain socket calls on a descriptor we create and hand to TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = 1024;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sockaddr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sockaddr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Runs `kakigori ARGS` to completion (a subcommand, or a server expected to refuse to
/// start) with the test's staff token or none; returns its exit code and stderr.
pub fn run_to_exit(args: &[&str], token: Option<&str>) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kakigori"));
    command
        .args(args)
        .env_remove("KAKIGORI_STAFF_TOKEN")
        .env_remove("KAKIGORI_DATA_DIR")
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.env("KAKIGORI_STAFF_TOKEN", token);
    }
    let output = command.output().expect("kakigori runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
